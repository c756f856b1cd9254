"""Tests of the density-gap estimator against analytic KLs, scipy quadrature and hand computations
on the same random draws (the helpers here are shared with ``test_density_gap_elbo``)."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from scipy import integrate, special, stats

import inference.density_gap as density_gap_module
from inference.density_gap import density_gap_kl

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


@pytest.fixture(params=["gaussian", "stored", "recomputed"])
def recompute(request, monkeypatch):
    """Normal components by the analytic-backward mixture; or the generic path through autograd,
    its chunks kept for backward or recomputed in backward (checkpointing)."""
    if request.param != "gaussian":
        monkeypatch.setattr(density_gap_module, "_gaussian_parts", lambda aggregate: None)
    monkeypatch.setattr(density_gap_module, "_RECOMPUTE_ELEMENTS", 0 if request.param == "recomputed" else 2**62)
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


@pytest.mark.parametrize("mode", ["marginal", "joint"])
@pytest.mark.parametrize("agg_size", [None, 4])
def test_gaussian_mixture_path_equals_the_generic_one_with_particle_dims(mode, agg_size, monkeypatch):
    loc = torch.randn(3, 12, 4, dtype=DOUBLE, requires_grad=True)
    log_scale = (0.4 * torch.randn(3, 12, 4, dtype=DOUBLE)).requires_grad_()

    def value_and_grads() -> list[torch.Tensor]:
        torch.manual_seed(13)
        posterior = normal_posterior(loc, log_scale.exp())
        estimate = density_gap_kl(posterior, standard_prior(4), 5, agg_size, mode, chunk_size=7)
        return [estimate, *torch.autograd.grad(estimate.sum(), [loc, log_scale])]

    fast = value_and_grads()
    monkeypatch.setattr(density_gap_module, "_gaussian_parts", lambda aggregate: None)
    for value, expected in zip(fast, value_and_grads()):
        assert value.shape == expected.shape and torch.allclose(value, expected, rtol=1e-12, atol=1e-14)


PEAK_SCRIPT = """
import torch, pyro.distributions as dist
from inference.density_gap import density_gap_kl
def peak():
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024
n, d = 1500, 32
torch.manual_seed(0)
posterior = dist.Normal(torch.randn(n, d), torch.rand(n, d) + 0.5).to_event(1)
prior = dist.Normal(torch.zeros(d), 1.0).to_event(1)
for mode in ("marginal", "joint"):
    open("/proc/self/clear_refs", "w").write("5")  # the peak starts again from the present size
    before = peak()
    with torch.no_grad():
        density_gap_kl(posterior, prior, 1, mode=mode)
    print(peak() - before)
"""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux's /proc/self for the peak size")
def test_without_gradients_n_posteriors_scored_a_row_at_a_time_hold_order_n_memory():
    """1,500 posteriors of d = 32 (a row of draws against all of them: 0.2 MB a temporary) grew the process
    by 270-300 MB, growing with N^2 (each small result kept between large temporaries fragmented the C heap:
    12 GB for a 10,000-sentence split); the rows now go into one tensor, and it grows by about 55 MB."""
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", PEAK_SCRIPT], cwd=root, capture_output=True, text=True,
                          check=True, env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"})
    marginal, joint = (int(line) for line in done.stdout.split())
    assert marginal < 128 * 2**20 and joint < 128 * 2**20


@pytest.mark.parametrize("grad", [False, True])
def test_on_chunk_ticks_once_a_chunk_and_changes_no_number(grad):
    torch.manual_seed(0)
    loc, scale = torch.randn(10, 3, requires_grad=grad), torch.rand(10, 3) + 0.5
    posterior, prior = normal_posterior(loc, scale), dist.Normal(torch.zeros(3), 1.0).to_event(1)
    ticks = []
    with torch.set_grad_enabled(grad):
        torch.manual_seed(1)
        plain = density_gap_kl(posterior, prior, 4, chunk_size=7)
        torch.manual_seed(1)
        ticked = density_gap_kl(posterior, prior, 4, chunk_size=7, on_chunk=ticks.append)
    assert ticks == [7] * 5 + [5] and torch.equal(plain, ticked)
