"""Which validation loss picks best.pt: the -ELBO, or for the density gap its own loss at weight 1."""
from __future__ import annotations

import pytest
import torch

from inference.objectives import OBJECTIVES
from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.io import load_checkpoint
from tests.conftest import SMALL

DATA = {"synthetic": {"num_train": 64, "num_valid": 48, "num_test": 16, "seed": 2}}


def _trainer(tmp_path, objective, params):
    config = TrainConfig(epochs=3, batch_size=16, optimizer="adam", progress=False, seed=3)
    return new_trainer(tmp_path / objective, DATA, SMALL, objective, params, config)


def _scripted_validation(monkeypatch, trainer, elbo, own):
    """Feed ``_end_epoch`` a validation -ELBO and an own-loss sequence instead of evaluating."""
    elbo, own = iter(elbo), iter(own)
    split = {"reconstruction": 1.0, "kl": 1.0, "active_units": 0}
    monkeypatch.setattr(trainer, "evaluate_split", lambda s: {**split, "elbo_loss": next(elbo)})
    monkeypatch.setattr(trainer, "evaluate_objective", lambda s: next(own))


@pytest.mark.parametrize("objective, best_epoch", [("dg", 3), ("elbo", 1)])
def test_best_checkpoint_follows_the_objectives_selection(tmp_path, monkeypatch, objective, best_epoch):
    """DG-VAE's per-sentence KL grows while its own loss falls (the -ELBO rises): best.pt must be
    the epoch of its lowest own loss; the VAE keeps the -ELBO."""
    trainer = _trainer(tmp_path, objective, {"warmup_epochs": 1})
    _scripted_validation(monkeypatch, trainer, elbo=[50.0, 51.0, 52.0], own=[45.0, 44.0, 43.0])
    for epoch in range(3):
        record = trainer._end_epoch(epoch, 0.0)
    assert load_checkpoint(tmp_path / objective / "best.pt")["epoch"] == best_epoch
    assert trainer.state["bad_epochs"] == 3 - best_epoch
    assert ("valid_objective_loss" in record) == (objective == "dg")


def test_only_the_density_gap_objectives_select_on_their_own_loss():
    own = sorted(name for name, o in OBJECTIVES.items() if o.selection == "objective")
    assert own == ["dg", "dg-vmf"]
    assert all(o.selection == "elbo" for name, o in OBJECTIVES.items() if name not in own)


@pytest.mark.slow
def test_own_loss_with_aggregation_size_one_is_the_elbo_at_weight_one(tmp_path):
    """With b = 1 the density gap is the per-sentence Monte-Carlo KL, so the own validation loss
    is the -ELBO whatever the warm-up weight (here 0.25), dropout off; a posterior pushed to
    means 2.5 makes the KL (about 12.5 nats) large against the error."""
    trainer = _trainer(tmp_path, "dg", {"warmup_epochs": 1, "agg_size": 1, "num_samples": 512})
    with torch.no_grad():
        bias = trainer.vae.posterior.linear.bias
        bias[: bias.numel() // 2] = 2.5
    trainer.weight = 0.25
    valid = trainer.corpus.splits["valid"]
    rng = torch.get_rng_state()
    own = trainer.evaluate_objective(valid)
    assert torch.equal(torch.get_rng_state(), rng), "the draws are under a forked RNG"
    assert trainer.weight == 0.25 and trainer.vae.training
    elbo = trainer.evaluate_split(valid)
    assert elbo["kl"] > 10.0
    assert own == pytest.approx(elbo["elbo_loss"], rel=0.01)
    assert trainer.evaluate_objective(valid) == own, "seeded: the same value every epoch"
