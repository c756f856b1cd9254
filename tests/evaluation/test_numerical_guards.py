"""The estimators stay finite (and, for concentrated vMF posteriors, accurate) at extreme encoder
outputs (log-variance +-30, kappa up to 1e4)."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

from evaluation.likelihood import importance_log_likelihood
from inference.density_gap import density_gap_kl
from pyro_textvae.distributions import (
    HypersphericalUniform,
    VonMisesFisher,
    mean_resultant_length,
)


def _gaussians(logvar: float, batch: int = 16, d: int = 8) -> dist.Distribution:
    loc = torch.randn(batch, d) * 3
    return dist.Normal(loc, torch.full((batch, d), math.exp(0.5 * logvar))).to_event(1)


@pytest.mark.parametrize("logvar", [-30.0, 30.0])
@pytest.mark.parametrize("mode", ["marginal", "joint"])
def test_density_gap_is_finite_for_extreme_log_variances(logvar, mode):
    posterior = _gaussians(logvar)
    prior = dist.Normal(torch.zeros(8), torch.ones(8)).to_event(1)
    value = density_gap_kl(posterior, prior, num_samples=8, mode=mode)
    assert torch.isfinite(value) and value >= -1.0
    if logvar > 0:
        analytic = 0.5 * 8 * (math.exp(logvar) - logvar - 1)
        assert value > 0.5 * analytic


@pytest.mark.parametrize("kappa", [1e3, 1e4])
def test_density_gap_is_the_mean_kl_minus_log_n_for_very_concentrated_separated_vmf(kappa):
    """N vMF components with orthogonal mean directions: a draw z ~ q_i has <mu_i, z> ~= 1 - (d-1)/(2 kappa)
    while <mu_j, z> = O((kappa)^-1/2), so every other component's density at z is below exp(-kappa/2) of q_i's
    and log q_B(z) = log q_i(z) - log N up to far less than float precision. The estimate is then the
    mean of N M independent terms log q_i(z) - log p(z) - log N, each with mean KL(vMF || U) - log N and
    variance kappa^2 Var<mu, z> = kappa^2 (1 - (d-1) A_d / kappa - A_d^2) (E<mu, z>^2 = 1 - (d-1) A_d / kappa,
    Mardia and Jupp 2000, sec. 9.3), about (d-1)/2; the tolerance is 5 standard errors."""
    n, d, m = 16, 32, 64
    loc = torch.linalg.qr(torch.randn(d, d))[0][:n].contiguous().requires_grad_()
    posterior = VonMisesFisher(loc, torch.full((n,), kappa))
    value = density_gap_kl(posterior, HypersphericalUniform(d), num_samples=m, mode="joint")
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(loc.grad).all()
    kl = kl_divergence(posterior, HypersphericalUniform(d)).double()
    assert torch.allclose(kl, kl[0])
    concentration = torch.tensor(kappa, dtype=torch.float64)
    mean_cos = mean_resultant_length(d, concentration)
    variance = kappa**2 * (1 - (d - 1) * mean_cos / kappa - mean_cos**2)
    assert variance == pytest.approx((d - 1) / 2, rel=0.05)  # (d-1)/2 + O(d^2 / kappa)
    standard_error = math.sqrt(variance / (n * m))
    assert abs(value.item() - (kl[0].item() - math.log(n))) < 5 * standard_error


@pytest.mark.parametrize("logvar", [-30.0, 30.0])
def test_importance_sampling_is_finite_for_extreme_guides(logvar):
    x = torch.randn(6, 3)

    def model(x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(3), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z, 1.0).to_event(1), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("z", dist.Normal(x / 2, math.exp(0.5 * logvar)).to_event(1))

    log_px = importance_log_likelihood(model, guide, x, num_samples=20, chunk_size=7)
    truth = dist.Normal(torch.zeros(3), math.sqrt(2.0)).to_event(1).log_prob(x)
    assert torch.isfinite(log_px).all()
    assert (log_px < truth).all()
