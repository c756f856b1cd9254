"""Guards of a training run: a bad step moves no parameter and names its term, a resumed epoch
records what an uninterrupted one does, a run killed in its first epoch resumes from step 0."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys

import pyro
import pytest
import torch

import inference.trainer as trainer_module
from inference.optim import NonFiniteError
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.cli import main
from pyro_textvae.data import iterate_batches
from pyro_textvae.io import load_checkpoint, read_jsonl
from tests.cli.test_run_files import TINY
from tests.conftest import SMALL

DATA = {"synthetic": {"num_train": 96, "num_valid": 32, "num_test": 32, "seed": 1}}


def _trainer(path, **train):
    options = {"epochs": 2, "batch_size": 16, "optimizer": "adam", "progress": False, "seed": 7, **train}
    return new_trainer(path, DATA, SMALL, "elbo", {"warmup_epochs": 1}, TrainConfig(**options))


def _spike_at(trainer, steps):
    """From now on, the model adds ``-inf`` (no gradient) to the log-likelihood at these steps."""
    model = trainer.vae.model

    def spiked(tokens, mask, **kwargs):
        value = model(tokens, mask, **kwargs)
        if trainer.state["step"] in steps:
            pyro.factor("spike", torch.tensor(-math.inf))
        return value

    trainer.vae.model = spiked


def test_an_infinite_loss_with_finite_gradients_moves_no_parameter_and_names_its_term(tmp_path):
    trainer = _trainer(tmp_path / "run")
    batch = next(iterate_batches(trainer.train_split, 16, shuffle=False))
    trainer.step(batch.tokens, batch.mask)
    trainer.state["step"] = 2
    _spike_at(trainer, {2})
    before = {name: value.detach().clone() for name, value in trainer.vae.state_dict().items()}
    optim = trainer.optim.get_state()
    with pytest.raises(NonFiniteError, match=r"at step 2 \(non-finite term: reconstruction\)"):
        trainer.step(batch.tokens, batch.mask)
    assert all(torch.equal(before[name], value) for name, value in trainer.vae.state_dict().items())
    after = trainer.optim.get_state()
    assert all(torch.equal(optim[k]["state"][0]["exp_avg"], after[k]["state"][0]["exp_avg"]) for k in optim)


def test_skip_nonfinite_that_skips_every_batch_of_an_epoch_stops_the_run(tmp_path):
    trainer = _trainer(tmp_path / "run", skip_nonfinite=100)
    _spike_at(trainer, set(range(trainer.steps_per_epoch, 2 * trainer.steps_per_epoch)))
    with pytest.raises(NonFiniteError, match=r"every batch of epoch 2 was non-finite"):
        trainer.fit()
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1]
    assert load_checkpoint(tmp_path / "run" / "last.pt")["trainer"]["epoch"] == 1


@pytest.mark.slow
@pytest.mark.parametrize("validation", [[], ["--no-validate-args"]])
def test_a_diverging_learning_rate_stops_with_one_line_naming_the_step(tmp_path, validation):
    done = subprocess.run([sys.executable, "-m", "pyro_textvae.cli", "train", "--out", str(tmp_path / "run"), *TINY,
                           "--optimizer", "sgd", "--lr", "100", "--clip-norm", "1e9", "--epochs", "2", *validation],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    message, = done.stderr.splitlines()
    assert "at step" in message and ("non-finite" in message or "invalid distribution parameter" in message)


@pytest.mark.slow
def test_a_resumed_epoch_records_what_the_uninterrupted_epoch_records(tmp_path, monkeypatch):
    straight = _trainer(tmp_path / "straight", epochs=1)
    straight.fit()
    victim = _trainer(tmp_path / "victim", epochs=1, checkpoint_every=straight.steps_per_epoch)

    def killed(self, epoch, seconds):
        raise KeyboardInterrupt  # the process dies after the epoch's last checkpoint, before its end

    monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        victim.fit()
    monkeypatch.undo()
    resume_trainer(tmp_path / "victim").fit(resume=True)
    expected, = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    found, = read_jsonl(tmp_path / "victim" / "metrics.jsonl")
    assert 0 < expected["kl_weight"] < 1
    assert {k: v for k, v in found.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}


def _killed_before_the_epoch_ends(monkeypatch, trainer):
    def killed(self, epoch, seconds):
        raise KeyboardInterrupt

    monkeypatch.setattr(trainer_module.Trainer, "_end_epoch", killed)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()


@pytest.mark.slow
def test_training_checkpoints_by_time_by_default(tmp_path, monkeypatch):
    clock = iter(range(0, 10**6, 240))  # four minutes of training pass between two readings
    monkeypatch.setattr(trainer_module.time, "monotonic", lambda: next(clock))
    trainer = _trainer(tmp_path / "run", epochs=1)
    assert trainer.config.checkpoint_every == 0
    _killed_before_the_epoch_ends(monkeypatch, trainer)
    state = load_checkpoint(tmp_path / "run" / "last.pt")["trainer"]
    assert state["epoch"] == 0 and 0 < state["batch"] <= trainer.steps_per_epoch


@pytest.mark.slow
def test_a_run_killed_before_its_first_checkpoint_resumes_from_step_zero(tmp_path, monkeypatch):
    straight = _trainer(tmp_path / "straight", epochs=1)
    straight.fit()
    victim = _trainer(tmp_path / "victim", epochs=1)
    _killed_before_the_epoch_ends(monkeypatch, victim)
    assert not (tmp_path / "victim" / "last.pt").exists()
    resume_trainer(tmp_path / "victim").fit(resume=True)
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "victim" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    expected, = read_jsonl(tmp_path / "straight" / "metrics.jsonl")
    found, = read_jsonl(tmp_path / "victim" / "metrics.jsonl")
    assert {k: v for k, v in found.items() if k != "seconds"} == {k: v for k, v in expected.items() if k != "seconds"}


@pytest.mark.slow
def test_a_start_killed_between_vocab_and_config_is_trained_without_overwrite(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    for path in out.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
        elif path.name not in ("vocab.json", ".lock"):
            path.unlink()
    (out / ".config.json.x1y2.tmp").write_text("{")
    assert main(["train", "--epochs", "1", "--out", str(out), *TINY]) == 0
    assert {"config.json", "last.pt", "metrics.jsonl"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.slow
def test_resume_removes_the_temporaries_of_a_killed_write(tmp_path):
    _trainer(tmp_path / "run", epochs=1).fit()
    stale = tmp_path / "run" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"torn")
    resume_trainer(tmp_path / "run", epochs=2).fit(resume=True)
    assert not stale.exists()
