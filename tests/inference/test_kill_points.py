"""A run killed after any checkpoint of an epoch and resumed, then continued from the ``last.pt``
the resume wrote, ends bit for bit where a straight run ends: parameters and optimiser state."""
from __future__ import annotations

import pytest
import torch

from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.io import load_checkpoint
from tests.conftest import SMALL

DATA = {"synthetic": {"num_train": 48, "num_valid": 16, "num_test": 16, "seed": 1}}
STEPS = 3  # an epoch of 48 sentences in batches of 16


def _train(run_dir, epochs: int, checkpoint_every: int = 0):
    config = TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", progress=False, seed=7,
                         checkpoint_every=checkpoint_every)
    return new_trainer(run_dir, DATA, SMALL, "elbo", {"warmup_epochs": 1}, config)


def _killed_after_save(trainer, n: int):
    """``trainer`` whose ``n``-th checkpoint is written, then the process dies (``KeyboardInterrupt``)."""
    original, calls = trainer._save_last, {"n": 0}

    def save() -> None:
        original()
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt

    trainer._save_last = save
    return trainer


def _flat(value, name=""):
    """Every leaf of a nested checkpoint (dicts, lists, tensors) by its path."""
    if isinstance(value, dict):
        return {k: v for key in value for k, v in _flat(value[key], f"{name}/{key}").items()}
    if isinstance(value, (list, tuple)):
        return {k: v for index, item in enumerate(value) for k, v in _flat(item, f"{name}/{index}").items()}
    return {name: value}


def _same(a, b) -> bool:
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    return a == b


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    _train(run, epochs=2).fit()
    return load_checkpoint(run / "last.pt")


@pytest.mark.parametrize("kill", range(1, STEPS + 2), ids=lambda n: f"after checkpoint {n}")
def test_a_resume_from_every_kill_point_of_an_epoch_carries_the_optimiser_state(tmp_path, straight, kill):
    """Checkpoints 1..STEPS follow each step of epoch 1 (``checkpoint_every`` 1), checkpoint STEPS + 1
    ends it. Killed after one, resumed to the end of epoch 1 (a resume after the last batch's checkpoint
    takes no step), then resumed again to epoch 2: parameters, Adam's moments and lr as a straight run's."""
    run = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):
        _killed_after_save(_train(run, epochs=2, checkpoint_every=1), kill).fit()
    assert load_checkpoint(run / "last.pt")["trainer"]["step"] == min(kill, STEPS)
    resume_trainer(run, epochs=1).fit(resume=True)
    middle = load_checkpoint(run / "last.pt")
    assert middle["trainer"]["epoch"] == 1 and set(middle["optim"]) == set(straight["optim"])
    resume_trainer(run, epochs=2).fit(resume=True)
    resumed = load_checkpoint(run / "last.pt")
    expected, found = _flat({k: straight[k] for k in ("model", "optim", "lr")}), \
        _flat({k: resumed[k] for k in ("model", "optim", "lr")})
    assert sorted(found) == sorted(expected)
    differing = [name for name in expected if not _same(expected[name], found[name])]
    assert not differing, differing
