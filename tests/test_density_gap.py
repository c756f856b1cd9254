"""Tests of the density-gap estimator and DensityGapELBO against analytic KLs, scipy quadrature
and hand computations on the same random draws."""
from __future__ import annotations

import contextlib
import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from scipy import integrate, special, stats

import inference.density_gap as density_gap_module
from inference.density_gap import density_gap_kl
from inference.density_gap_elbo import DensityGapELBO

DOUBLE = torch.float64


@pytest.fixture(autouse=True)
def fresh_param_store():
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()


def normal_posterior(loc: torch.Tensor, scale: torch.Tensor) -> dist.Distribution:
    return dist.Normal(loc, scale).to_event(1)


def standard_prior(d: int) -> dist.Distribution:
    return dist.Normal(torch.zeros(d, dtype=DOUBLE), 1.0).to_event(1)


def analytic_kl(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(loc, diag scale^2) || N(0, I)), summed over the last dim."""
    return 0.5 * (loc**2 + scale**2 - 1 - 2 * scale.log()).sum(-1)


def mixture_log_pdf(z: float, means, sds) -> float:
    return special.logsumexp(stats.norm.logpdf(z, means, sds)) - math.log(len(means))


def mixture_kl_quad(means, sds) -> float:
    """KL(equal-weight 1-D Gaussian mixture || N(0, 1)) by adaptive quadrature."""

    def integrand(z: float) -> float:
        log_q = mixture_log_pdf(z, means, sds)
        return math.exp(log_q) * (log_q - stats.norm.logpdf(z))

    return integrate.quad(integrand, -15, 15, limit=200)[0]


def replicated_estimates(loc, scale, replicates: int, **options) -> torch.Tensor:
    """``replicates`` independent estimates, through the estimator's leading batch dims."""
    posterior = normal_posterior(loc.expand(replicates, -1, -1), scale.expand(replicates, -1, -1))
    return density_gap_kl(posterior, standard_prior(loc.shape[-1]), **options)


def assert_within_standard_errors(estimates: torch.Tensor, expected: float, k: float = 4.0) -> None:
    standard_error = estimates.std().item() / math.sqrt(estimates.numel())
    assert abs(estimates.mean().item() - expected) < k * standard_error


class FixedNoiseNormal(dist.Normal):
    """Normal whose ``rsample`` returns ``loc + noise * scale`` for a given noise tensor."""

    def __init__(self, loc, scale, noise):
        super().__init__(loc, scale)
        self.noise = noise

    def rsample(self, sample_shape=torch.Size()):
        return self.loc + self.noise * self.scale


def naive_estimate(samples, loc, scale, agg_size, mode) -> float:
    """The density-gap formula written out with loops over data, samples and chunks."""
    num_samples, batch, _ = samples.shape
    gaps = []
    for i in range(batch):
        start = (i // agg_size) * agg_size
        chunk = range(start, min(start + agg_size, batch))
        for m in range(num_samples):
            z = samples[m, i]
            per_datum = torch.stack([torch.distributions.Normal(loc[j], scale[j]).log_prob(z) for j in chunk])
            log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z)
            if mode == "joint":
                per_datum, log_prior = per_datum.sum(-1), log_prior.sum(-1)
            log_aggregate = torch.logsumexp(per_datum, 0) - math.log(len(chunk))
            gaps.append((log_aggregate - log_prior).sum())
    return torch.stack(gaps).mean().item()


# --- the estimator ---------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["marginal", "joint"])
@pytest.mark.parametrize("agg_size", [None, 2])
def test_posteriors_equal_to_prior_give_zero(mode, agg_size):
    torch.manual_seed(0)
    loc, scale = torch.zeros(5, 3, dtype=DOUBLE), torch.ones(5, 3, dtype=DOUBLE)
    estimate = density_gap_kl(normal_posterior(loc, scale), standard_prior(3), 16, agg_size, mode)
    assert abs(estimate.item()) < 1e-10


@pytest.mark.parametrize("mode", ["marginal", "joint"])
def test_single_posterior_matches_analytic_kl(mode):
    torch.manual_seed(1)
    loc = torch.tensor([[0.8, -1.2, 0.1]], dtype=DOUBLE)
    scale = torch.tensor([[0.5, 1.3, 0.9]], dtype=DOUBLE)
    estimates = replicated_estimates(loc, scale, 400, num_samples=50, mode=mode)
    assert_within_standard_errors(estimates, analytic_kl(loc, scale).item())


def test_gaussian_mixture_matches_quadrature():
    torch.manual_seed(2)
    means, sds = [-1.5, 0.3, 2.0], [0.5, 1.0, 0.7]
    loc = torch.tensor(means, dtype=DOUBLE).unsqueeze(-1)
    scale = torch.tensor(sds, dtype=DOUBLE).unsqueeze(-1)
    estimates = replicated_estimates(loc, scale, 300, num_samples=100)
    assert_within_standard_errors(estimates, mixture_kl_quad(means, sds))


def test_joint_equals_marginal_when_aggregate_factorises():
    single = (torch.tensor([[0.4, -0.7, 1.1]], dtype=DOUBLE), torch.tensor([[0.6, 1.4, 0.8]], dtype=DOUBLE))
    first, second = torch.tensor([-1.0, 1.0], dtype=DOUBLE), torch.tensor([-0.5, 0.8], dtype=DOUBLE)
    grid = torch.cartesian_prod(first, second)
    for loc, scale in (single, (grid, torch.full_like(grid, 0.6))):
        posterior, prior = normal_posterior(loc, scale), standard_prior(loc.shape[-1])
        torch.manual_seed(3)
        joint = density_gap_kl(posterior, prior, 64, mode="joint")
        torch.manual_seed(3)
        marginal = density_gap_kl(posterior, prior, 64, mode="marginal")
        assert torch.allclose(joint, marginal, rtol=0, atol=1e-10)
        assert joint.item() > 0.1


def test_joint_exceeds_marginal_by_total_correlation():
    means, sd = np.array([[1.0, 1.0], [-1.0, -1.0]]), 0.5

    def log_normal(x: float, mean: float, std: float) -> float:
        return -0.5 * ((x - mean) / std) ** 2 - math.log(std) - 0.5 * math.log(2 * math.pi)

    def integrand(y: float, x: float) -> float:
        components = [log_normal(x, mx, sd) + log_normal(y, my, sd) for mx, my in means]
        log_q = max(components) + math.log(sum(math.exp(c - max(components)) for c in components) / 2)
        return math.exp(log_q) * (log_q - log_normal(x, 0.0, 1.0) - log_normal(y, 0.0, 1.0))

    joint_kl = integrate.dblquad(integrand, -5, 5, -5, 5, epsabs=1e-8)[0]
    marginal_kl = sum(mixture_kl_quad(means[:, k].tolist(), [sd, sd]) for k in range(2))
    loc = torch.tensor(means, dtype=DOUBLE)
    scale = torch.full_like(loc, sd)
    torch.manual_seed(4)
    joint = replicated_estimates(loc, scale, 200, num_samples=50, mode="joint")
    torch.manual_seed(4)
    marginal = replicated_estimates(loc, scale, 200, num_samples=50, mode="marginal")
    assert joint_kl - marginal_kl > 0.5
    assert_within_standard_errors(joint, joint_kl)
    assert_within_standard_errors(marginal, marginal_kl)
    assert_within_standard_errors(joint - marginal, joint_kl - marginal_kl)


@pytest.mark.parametrize("mode", ["marginal", "joint"])
@pytest.mark.parametrize("agg_size", [None, 2, 3])
def test_estimate_equals_the_formula_on_the_same_samples(mode, agg_size):
    torch.manual_seed(5)
    loc, scale = torch.randn(5, 2, dtype=DOUBLE), 0.4 + torch.rand(5, 2, dtype=DOUBLE)
    posterior = normal_posterior(loc, scale)
    torch.manual_seed(6)
    samples = posterior.rsample((4,))
    torch.manual_seed(6)
    estimate = density_gap_kl(posterior, standard_prior(2), 4, agg_size, mode)
    expected = naive_estimate(samples, loc, scale, agg_size or 5, mode)
    assert estimate.item() == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_aggregation_size_one_is_the_mean_per_datum_kl():
    torch.manual_seed(7)
    loc, scale = torch.randn(4, 2, dtype=DOUBLE), 0.3 + torch.rand(4, 2, dtype=DOUBLE)
    estimates = replicated_estimates(loc, scale, 300, num_samples=20, agg_size=1)
    assert_within_standard_errors(estimates, analytic_kl(loc, scale).mean().item())


@pytest.mark.parametrize("mode", ["marginal", "joint"])
@pytest.mark.parametrize("agg_size", [None, 2])
def test_invariant_to_the_order_of_the_batch(mode, agg_size):
    torch.manual_seed(8)
    loc, scale = torch.randn(6, 3, dtype=DOUBLE), 0.4 + torch.rand(6, 3, dtype=DOUBLE)
    noise = torch.randn(7, 6, 3, dtype=DOUBLE)
    order = torch.tensor([1, 0, 3, 2, 5, 4]) if agg_size else torch.randperm(6)

    def estimate(index: torch.Tensor) -> torch.Tensor:
        posterior = FixedNoiseNormal(loc[index], scale[index], noise[:, index]).to_event(1)
        return density_gap_kl(posterior, standard_prior(3), 7, agg_size, mode)

    assert torch.allclose(estimate(torch.arange(6)), estimate(order), rtol=1e-12, atol=0)


@pytest.fixture(params=[False, True], ids=["stored", "recomputed"])
def recompute(request, monkeypatch):
    """Chunks kept for backward, or recomputed in backward (the large-batch path)."""
    monkeypatch.setattr(density_gap_module, "_RECOMPUTE_ELEMENTS", 0 if request.param else 2**62)
    return request.param


@pytest.mark.parametrize("mode", ["marginal", "joint"])
@pytest.mark.parametrize("agg_size", [None, 10])
def test_chunked_computation_equals_unchunked(mode, agg_size, recompute):
    torch.manual_seed(9)
    loc = torch.randn(64, 3, dtype=DOUBLE, requires_grad=True)
    log_scale = (0.3 * torch.randn(64, 3, dtype=DOUBLE)).requires_grad_()

    def value_and_grads(chunk_size: int) -> list[torch.Tensor]:
        torch.manual_seed(10)
        posterior = normal_posterior(loc, log_scale.exp())
        estimate = density_gap_kl(posterior, standard_prior(3), 5, agg_size, mode, chunk_size)
        return [estimate, *torch.autograd.grad(estimate, [loc, log_scale])]

    for chunked, whole in zip(value_and_grads(7), value_and_grads(64 * 5)):
        assert torch.allclose(chunked, whole, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize(
    ("mode", "agg_size", "chunk_size"), [("marginal", None, 2), ("joint", 2, 4), ("marginal", 2, None)]
)
def test_gradient_matches_finite_differences(mode, agg_size, chunk_size, recompute):
    torch.manual_seed(11)
    loc = torch.randn(3, 2, dtype=DOUBLE, requires_grad=True)
    log_scale = (0.3 * torch.randn(3, 2, dtype=DOUBLE)).requires_grad_()

    def estimate(loc: torch.Tensor, log_scale: torch.Tensor) -> torch.Tensor:
        torch.manual_seed(12)
        posterior = normal_posterior(loc, log_scale.exp())
        return density_gap_kl(posterior, standard_prior(2), 3, agg_size, mode, chunk_size)

    assert torch.autograd.gradcheck(estimate, (loc, log_scale))


def test_joint_mode_with_correlated_multivariate_normal():
    torch.manual_seed(13)
    loc = torch.tensor([0.5, -1.0], dtype=DOUBLE)
    covariance = torch.tensor([[1.0, 0.6], [0.6, 0.5]], dtype=DOUBLE)
    posterior = dist.MultivariateNormal(loc.expand(300, 1, 2), covariance)
    expected = 0.5 * (covariance.trace() + loc @ loc - 2 - torch.logdet(covariance)).item()
    estimates = density_gap_kl(posterior, standard_prior(2), 40, mode="joint")
    assert_within_standard_errors(estimates, expected)


def test_marginal_mode_rejects_a_multivariate_normal():
    posterior = dist.MultivariateNormal(torch.zeros(4, 2), torch.eye(2))
    with pytest.raises(ValueError, match='MultivariateNormal.*mode="joint"'):
        density_gap_kl(posterior, dist.Normal(torch.zeros(2), 1.0).to_event(1))


@pytest.mark.parametrize(
    ("option", "value"), [("num_samples", 0), ("agg_size", 0), ("mode", "sum"), ("chunk_size", 0)]
)
def test_bad_options_are_rejected(option, value):
    posterior = normal_posterior(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match=option):
        density_gap_kl(posterior, dist.Normal(torch.zeros(2), 1.0).to_event(1), **{option: value})


# --- the ELBO --------------------------------------------------------------------------------


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
