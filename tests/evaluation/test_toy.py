"""The 2-D toy: quadrature against closed forms, the model/guide pattern and per-datum loss, and the
behaviour it exists to show (ae leaves holes, dg does not, elbo collapses)."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from scipy import stats

from evaluation.toy import (
    TOY_OBJECTIVES,
    TOY_PARAMS,
    ToyConfig,
    ToyProblem,
    aggregate_log_density,
    default_snapshot_steps,
    grid_kl,
    train_toy,
    train_toy_objectives,
)
from inference.objectives import OBJECTIVES


def _gaussian_kl(loc, scale):
    """KL(N(m, diag s^2) || N(0, I)) per row, written out."""
    return (0.5 * (loc**2 + scale**2 - 1) - np.log(scale)).sum(-1)


def test_grid_kl_of_one_gaussian_matches_closed_forms():
    loc, scale = np.array([[0.7, -0.4]]), np.array([[0.5, 1.3]])
    result = grid_kl(loc, scale, limit=8.0, points=321)
    reverse = (np.log(scale) + (1 + loc**2) / (2 * scale**2) - 0.5).sum()
    assert result["mass"] == pytest.approx(1.0, abs=1e-6)
    assert result["kl"] == pytest.approx(_gaussian_kl(loc, scale)[0], abs=1e-4)
    assert result["reverse_kl"] == pytest.approx(reverse, abs=1e-4)


def test_grid_kl_is_zero_when_every_posterior_is_the_prior():
    result = grid_kl(np.zeros((5, 2)), np.ones((5, 2)))
    assert abs(result["kl"]) < 1e-6 and abs(result["reverse_kl"]) < 1e-6


def test_aggregate_log_density_is_the_mixture_density():
    rng = np.random.default_rng(0)
    loc, scale = rng.normal(size=(6, 2)), rng.uniform(0.2, 1.5, size=(6, 2))
    z = rng.normal(size=(10, 2)) * 2
    expected = np.mean(
        [stats.multivariate_normal(loc[i], np.diag(scale[i] ** 2)).pdf(z) for i in range(6)], axis=0
    )
    np.testing.assert_allclose(aggregate_log_density(loc, scale, z), np.log(expected), rtol=1e-10)


def test_model_and_guide_follow_the_text_vae_pattern():
    problem = ToyProblem(ToyConfig(num_classes=3, per_class=2))
    guide_trace = poutine.trace(problem.guide).get_trace(problem.labels)
    model_trace = poutine.trace(poutine.replay(problem.model, trace=guide_trace)).get_trace(problem.labels)
    z = guide_trace.nodes["z"]
    assert z["fn"].batch_shape == (6,) and z["fn"].event_shape == (2,)
    assert [frame.name for frame in z["cond_indep_stack"]] == ["data"]
    assert model_trace.nodes["x"]["is_observed"] and torch.equal(model_trace.nodes["x"]["value"], problem.labels)
    names = set(pyro.get_param_store().keys())
    assert {"toy_loc", "toy_scale"} <= names
    assert any(name.startswith("toy_classifier$$$") for name in names)


def test_training_loss_is_the_per_datum_negative_elbo_weighted_by_the_schedule():
    problem = ToyProblem(ToyConfig(num_classes=3, per_class=2))
    with torch.no_grad():
        pyro.param("toy_loc", torch.tensor([[0.3, -0.2], [1.0, 0.5], [-0.7, 0.1], [0.0, 0.4], [0.2, 0.2], [-1, -1.0]]))
    problem.latent_weight = 0.3
    guide_trace = poutine.trace(problem.training_guide).get_trace(problem.labels)
    z = guide_trace.nodes["z"]["value"]
    loss = Trace_ELBO().loss(poutine.replay(problem.training_model, trace=guide_trace), poutine.replay(
        problem.training_guide, trace=guide_trace), problem.labels)
    loc, scale = problem.posterior_parameters()
    log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
    log_p = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_lik = torch.log_softmax(problem.classifier(z), -1).gather(-1, problem.labels[:, None])[:, 0]
    expected = (-log_lik + 0.3 * (log_q - log_p)).mean()
    assert loss == pytest.approx(float(expected.detach()), rel=1e-5)


def test_training_leaves_the_callers_param_store_and_threads_alone():
    pyro.param("mine", torch.tensor(2.0))
    torch.set_num_threads(2)
    run = train_toy("elbo", ToyConfig(steps=3, snapshot_steps=(0, 3)))
    assert set(pyro.get_param_store().keys()) == {"mine"}
    assert torch.get_num_threads() == 2
    assert [s.step for s in run.snapshots] == [0, 3]
    np.testing.assert_array_equal(run.snapshots[0].loc, 0.0)
    np.testing.assert_array_equal(run.snapshots[0].scale, 1.0)
    assert not np.array_equal(run.snapshots[1].loc, run.snapshots[0].loc)


def test_snapshot_steps_default_to_fractions_of_the_run():
    assert default_snapshot_steps(300) == (0, 25, 100, 300) == ToyConfig().snapshot_steps
    assert ToyConfig(steps=24).snapshot_steps == (0, 2, 8, 24)
    assert ToyConfig(steps=2).snapshot_steps == (0, 1, 2)


def test_bad_options_and_objectives_are_refused():
    with pytest.raises(ValueError, match="snapshot_steps"):
        ToyConfig(steps=10, snapshot_steps=(0, 20))
    with pytest.raises(ValueError, match="num_classes"):
        ToyConfig(num_classes=1)
    with pytest.raises(ValueError, match="unknown objective"):
        train_toy("no-such-objective", ToyConfig(steps=1, snapshot_steps=(1,)))
    with pytest.raises(ValueError, match="Gaussian latent"):
        train_toy("vmf", ToyConfig(steps=1, snapshot_steps=(1,)))


def test_every_toy_objective_is_registered():
    assert set(TOY_OBJECTIVES) <= set(OBJECTIVES)


@pytest.fixture(scope="module")
def trained():
    """elbo, ae and dg after the default 300 steps (a few seconds)."""
    return train_toy_objectives(("elbo", "ae", "dg"), ToyConfig())


def test_ae_leaves_holes_that_dg_closes(trained):
    ae = grid_kl(trained["ae"].final.loc, trained["ae"].final.scale)
    dg = grid_kl(trained["dg"].final.loc, trained["dg"].final.scale)
    assert ae["mass"] == pytest.approx(1.0, abs=1e-3) and dg["mass"] == pytest.approx(1.0, abs=1e-3)
    assert ae["kl"] > 1.0 and ae["kl"] > 10 * dg["kl"]
    assert ae["reverse_kl"] > 10 * dg["reverse_kl"]
    # dg is no collapse: its posteriors carry at least the log C nats that tell the classes apart
    assert _gaussian_kl(trained["dg"].final.loc, trained["dg"].final.scale).mean() > math.log(8)


def test_elbo_posteriors_collapse_to_the_prior(trained):
    final = trained["elbo"].final
    per_datum = _gaussian_kl(final.loc, final.scale)
    # telling 8 classes apart needs at least log 8 = 2.08 nats per datum; the ELBO keeps almost none
    assert per_datum.mean() < 0.15
    assert grid_kl(final.loc, final.scale)["kl"] < 0.01


@pytest.mark.parametrize("name", ["aae", "wae-mmd"])
def test_adversarial_and_mmd_objectives_train_the_toy(name):
    config = ToyConfig(steps=60, snapshot_steps=(0, 60))
    run = train_toy(name, config, TOY_PARAMS.get(name))
    final = run.final
    # both replace the KL by a match of q_D to p: the posteriors leave the prior and separate classes
    assert _gaussian_kl(final.loc, final.scale).mean() > 1.0
    assert np.isfinite(final.loc).all() and (final.scale >= config.min_scale).all()
