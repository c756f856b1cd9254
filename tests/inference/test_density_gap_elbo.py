"""Tests of DensityGapELBO: its loss and gradients against the density-gap estimator on the same
random draws, Pyro's scales, masks, particles and other sites."""
from __future__ import annotations

import contextlib
import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from inference.density_gap import density_gap_kl
from inference.density_gap_elbo import DensityGapELBO
from tests.inference.test_density_gap import (
    DOUBLE,
    analytic_kl,
    mixture_kl_quad,
    normal_posterior,
    replicated_estimates,
    standard_prior,
)


def model_and_guide(loc, scale, num_data=None, data=None, weight=None, mask=None):
    """``z_i ~ N(0, I)`` in a batch plate (optionally ``x_i ~ N(z_i, I)``); guide ``N(loc_i, scale_i^2)``."""
    batch, d = loc.shape

    def site_context():
        if mask is not None:
            return poutine.mask(mask=mask)
        return poutine.scale(scale=weight) if weight is not None else contextlib.nullcontext()

    def model():
        with pyro.plate("data", num_data or batch, subsample=torch.arange(batch)):
            with site_context():
                z = pyro.sample("z", dist.Normal(torch.zeros(d, dtype=loc.dtype), 1.0).to_event(1))
            if data is not None:
                pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=data)

    def guide():
        guide_loc = pyro.param("loc", loc.clone())
        guide_scale = pyro.param("scale", scale.clone(), constraint=dist.constraints.positive)
        with pyro.plate("data", num_data or batch, subsample=torch.arange(batch)):
            with site_context():
                pyro.sample("z", normal_posterior(guide_loc, guide_scale))

    return model, guide


def guide_posterior() -> dist.Distribution:
    return normal_posterior(pyro.param("loc"), pyro.param("scale"))


def example_posterior(batch: int = 4, d: int = 2, seed: int = 20):
    torch.manual_seed(seed)
    return torch.randn(batch, d, dtype=DOUBLE), 0.4 + torch.rand(batch, d, dtype=DOUBLE)


@pytest.mark.parametrize(("num_data", "weight"), [(None, None), (40, None), (None, 0.3), (40, 0.3)])
def test_loss_is_data_size_times_estimate(num_data, weight):
    loc, scale = example_posterior()
    model, guide = model_and_guide(loc, scale, num_data=num_data, weight=weight)
    elbo = DensityGapELBO(num_samples=8)
    torch.manual_seed(21)
    loss = elbo.loss(model, guide)
    torch.manual_seed(21)
    guide_posterior().rsample()
    estimate = density_gap_kl(guide_posterior(), standard_prior(2), 8).item()
    expected = (num_data or 4) * (weight or 1.0) * estimate
    assert loss == pytest.approx(expected, rel=1e-12)
    assert elbo.last_terms["density_gap"] == pytest.approx(expected, rel=1e-12)
    assert elbo.last_terms["kl_estimate"] == pytest.approx(estimate, rel=1e-12)
    assert elbo.last_terms["reconstruction"] == 0.0


@pytest.mark.parametrize("beta", [0.0, 0.5])
def test_loss_is_reconstruction_plus_beta_times_density_gap(beta):
    loc, scale = example_posterior()
    data = torch.randn(4, 2, dtype=DOUBLE)
    model, guide = model_and_guide(loc, scale, data=data)
    elbo = DensityGapELBO(num_samples=8, beta=beta)
    torch.manual_seed(22)
    loss = elbo.loss(model, guide)
    torch.manual_seed(22)
    z = guide_posterior().rsample()
    reconstruction = -torch.distributions.Normal(z, 1.0).log_prob(data).sum().item()
    density_gap = beta * 4 * density_gap_kl(guide_posterior(), standard_prior(2), 8).item()
    assert loss == pytest.approx(reconstruction + density_gap, rel=1e-12)
    assert elbo.last_terms["reconstruction"] == pytest.approx(reconstruction, rel=1e-12)
    assert elbo.last_terms["density_gap"] == pytest.approx(density_gap, rel=1e-12, abs=0.0)


def test_masked_latent_site_has_no_density_gap_term():
    loc, scale = example_posterior()
    data = torch.randn(4, 2, dtype=DOUBLE)
    model, guide = model_and_guide(loc, scale, data=data, mask=False)
    elbo = DensityGapELBO(num_samples=8)
    torch.manual_seed(23)
    loss = elbo.loss(model, guide)
    torch.manual_seed(23)
    z = guide_posterior().rsample()
    assert loss == pytest.approx(-torch.distributions.Normal(z, 1.0).log_prob(data).sum().item(), rel=1e-12)
    assert elbo.last_terms["density_gap"] == 0.0
    assert math.isnan(elbo.last_terms["kl_estimate"])


def test_global_latent_keeps_its_ordinary_elbo_terms():
    loc, scale = example_posterior()
    global_loc = torch.tensor(0.7, dtype=DOUBLE)

    def model():
        pyro.sample("g", dist.Normal(torch.tensor(0.0, dtype=DOUBLE), 1.0))
        with pyro.plate("data", 4):
            pyro.sample("z", dist.Normal(torch.zeros(2, dtype=DOUBLE), 1.0).to_event(1))

    def guide():
        pyro.sample("g", dist.Normal(pyro.param("g_loc", global_loc), 1.0))
        with pyro.plate("data", 4):
            pyro.sample("z", normal_posterior(pyro.param("loc", loc), pyro.param("scale", scale)))

    for sites in (None, ["z"]):
        torch.manual_seed(24)
        loss = DensityGapELBO(num_samples=8, sites=sites).loss(model, guide)
        torch.manual_seed(24)
        g = torch.distributions.Normal(global_loc, 1.0).rsample()
        normal_posterior(loc, scale).rsample()
        estimate = density_gap_kl(normal_posterior(loc, scale), standard_prior(2), 8).item()
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(g)
        log_guide = torch.distributions.Normal(global_loc, 1.0).log_prob(g)
        assert loss == pytest.approx((log_guide - log_prior).item() + 4 * estimate, rel=1e-12)


def test_loss_and_loss_and_grads_agree():
    loc, scale = example_posterior()
    model, guide = model_and_guide(loc, scale, data=torch.randn(4, 2, dtype=DOUBLE))
    elbo = DensityGapELBO(num_samples=8, num_particles=2)
    values = []
    for evaluate in (elbo.loss, elbo.loss_and_grads, lambda m, g: elbo.differentiable_loss(m, g).item()):
        torch.manual_seed(25)
        values.append(evaluate(model, guide))
    assert values[1] == pytest.approx(values[0], rel=1e-12)
    assert values[2] == pytest.approx(values[0], rel=1e-12)


def test_gradients_reach_every_guide_parameter():
    loc, scale = example_posterior()
    model, guide = model_and_guide(loc, scale, data=torch.randn(4, 2, dtype=DOUBLE))
    DensityGapELBO(num_samples=8).loss_and_grads(model, guide)
    for name in ("loc", "scale"):
        grad = pyro.param(name).unconstrained().grad
        assert torch.isfinite(grad).all() and (grad != 0).all()


def test_density_gap_gradient_is_that_of_the_estimate():
    loc, scale = example_posterior()
    model, guide = model_and_guide(loc, scale)
    torch.manual_seed(26)
    DensityGapELBO(num_samples=8).loss_and_grads(model, guide)
    params = [pyro.param("loc").unconstrained(), pyro.param("scale").unconstrained()]
    torch.manual_seed(26)
    guide_posterior().rsample()
    estimate = 4 * density_gap_kl(guide_posterior(), standard_prior(2), 8)
    for expected, param in zip(torch.autograd.grad(estimate, params), params):
        assert torch.allclose(param.grad, expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("vectorize", [False, True])
@pytest.mark.parametrize("agg_size", [None, 1])
def test_particle_average_has_the_right_expectation(vectorize, agg_size):
    loc, scale = example_posterior(batch=3)
    if agg_size == 1:
        expected = analytic_kl(loc, scale).sum().item()
    else:
        expected = 3 * sum(mixture_kl_quad(loc[:, k].tolist(), scale[:, k].tolist()) for k in range(2))
    torch.manual_seed(27)
    spread = replicated_estimates(loc, scale, 200, num_samples=8, agg_size=agg_size).std().item()
    model, guide = model_and_guide(loc, scale)
    elbo = DensityGapELBO(num_samples=8, agg_size=agg_size, num_particles=100, vectorize_particles=vectorize)
    loss = elbo.loss(model, guide)
    assert abs(loss - expected) < 4 * 3 * spread / math.sqrt(100)
    assert elbo.last_terms["kl_estimate"] == pytest.approx(loss / 3, rel=1e-9)


def test_discrete_site_reward_leaves_out_the_density_gap():
    loc, scale = example_posterior()
    data = torch.randn(4, 2, dtype=DOUBLE)
    half = torch.tensor(0.5, dtype=DOUBLE)

    def model():
        c = pyro.sample("c", dist.Bernoulli(half))
        with pyro.plate("data", 4):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=DOUBLE), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z + c, 1.0).to_event(1), obs=data)

    def guide():
        initial = torch.tensor(0.3, dtype=DOUBLE)
        probs = pyro.param("probs", initial, constraint=dist.constraints.unit_interval)
        pyro.sample("c", dist.Bernoulli(probs))
        with pyro.plate("data", 4):
            pyro.sample("z", normal_posterior(pyro.param("loc", loc), pyro.param("scale", scale)))

    torch.manual_seed(28)
    DensityGapELBO(num_samples=8, sites=["z"]).loss_and_grads(model, guide)
    unconstrained = pyro.param("probs").unconstrained()
    probs = pyro.param("probs")
    torch.manual_seed(28)
    c = dist.Bernoulli(probs).sample()
    z = normal_posterior(loc, scale).rsample()
    log_likelihood = torch.distributions.Normal(z + c, 1.0).log_prob(data).sum()
    reward = dist.Bernoulli(half).log_prob(c) - dist.Bernoulli(probs).log_prob(c) + log_likelihood
    expected = torch.autograd.grad(-reward.detach() * dist.Bernoulli(probs).log_prob(c), unconstrained)[0]
    assert torch.allclose(unconstrained.grad, expected, rtol=1e-10, atol=0)
    assert expected.abs().item() > 0


def test_non_reparameterised_site_is_rejected():
    def model():
        with pyro.plate("data", 4):
            pyro.sample("z", dist.Bernoulli(0.5 * torch.ones(2)).to_event(1))

    def guide():
        with pyro.plate("data", 4):
            pyro.sample("z", dist.Bernoulli(pyro.param("probs", torch.full((4, 2), 0.3))).to_event(1))

    with pytest.raises(ValueError, match="'z'.*reparameterised"):
        DensityGapELBO().loss(model, guide)


def test_unknown_site_is_rejected():
    loc, scale = example_posterior()
    model, guide = model_and_guide(loc, scale)
    with pytest.raises(ValueError, match="'w'"):
        DensityGapELBO(sites=["w"]).loss(model, guide)
