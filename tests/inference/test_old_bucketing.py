"""A last.pt written in the middle of an epoch by the code that bucketed batches in pools of 50
sentences' batches (before exact-length buckets) resumes on the batches that code would have
served, and the epochs after it are bucketed by exact length.

tests/data/old_bucketing/ holds such a run (3 of 10 batches of epoch 1 done) and the model after
that epoch run straight, both written by that code (make_old_run.py there says how).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from inference.run import resume_trainer
from pyro_textvae.data import iterate_batches, make_batch
from pyro_textvae.errors import CheckpointError
from pyro_textvae.io import load_checkpoint, save_checkpoint

OLD = Path(__file__).resolve().parents[1] / "data" / "old_bucketing"


def _resume_recording(run: Path, epochs: int) -> tuple[list[torch.Tensor], object]:
    trainer = resume_trainer(run, epochs=epochs)
    served, step = [], trainer.step

    def recording(tokens, mask):
        served.append(tokens.clone())
        return step(tokens, mask)

    trainer.step = recording
    trainer.fit(resume=True)
    return served, trainer


def _tokens(split, batches):
    return [make_batch([split.ids[i] for i in positions]).tokens for positions in batches]


@pytest.fixture
def old_run(tmp_path) -> Path:
    shutil.copytree(OLD / "run", tmp_path / "run")
    return tmp_path / "run"


def test_an_old_mid_epoch_checkpoint_ends_its_epoch_on_the_old_batches(old_run):
    expected = torch.load(OLD / "expected.pt", weights_only=False)
    served, trainer = _resume_recording(old_run, epochs=1)
    wanted = _tokens(trainer.train_split, expected["batches"][3:])
    assert len(served) == len(wanted) and all(torch.equal(a, b) for a, b in zip(served, wanted))
    model = load_checkpoint(old_run / "last.pt")["model"]
    for name, value in expected["model"].items():  # the old encoder packed its input: float rounding apart
        torch.testing.assert_close(model[name], value, rtol=0, atol=1e-5)


def test_the_epochs_after_it_are_bucketed_by_exact_length(old_run):
    _resume_recording(old_run, epochs=1)
    served, trainer = _resume_recording(old_run, epochs=2)
    seed = trainer._epoch_seed(1)
    new = [b.tokens for b in iterate_batches(trainer.train_split, 16, shuffle=True, seed=seed)]
    assert len(served) == len(new) and all(torch.equal(a, b) for a, b in zip(served, new))


def test_a_checkpoint_of_an_unknown_bucketing_is_refused_in_one_line(old_run):
    state = load_checkpoint(old_run / "last.pt")
    state["trainer"]["bucketing"] = "by topic"
    save_checkpoint(old_run / "last.pt", state)
    with pytest.raises(CheckpointError, match="bucketing 'by topic'") as refused:
        resume_trainer(old_run, epochs=1).fit(resume=True)
    assert "\n" not in str(refused.value)


def test_an_unknown_bucketing_is_refused_by_the_batcher(tiny_corpus):
    with pytest.raises(ValueError, match="bucketing must be one of exact, pools"):
        iterate_batches(tiny_corpus.splits["train"], 16, shuffle=True, seed=0, bucketing="sorted")
