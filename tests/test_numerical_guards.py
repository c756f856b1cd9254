"""The estimators stay finite at extreme encoder outputs (log-variance +-30, kappa up to 1e4)."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from evaluation.likelihood import importance_log_likelihood
from inference.density_gap import density_gap_kl
from pyro_textvae.distributions import HypersphericalUniform, VonMisesFisher


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
def test_density_gap_is_finite_for_very_concentrated_vmf(kappa):
    loc = torch.nn.functional.normalize(torch.randn(16, 32), dim=-1).requires_grad_()
    posterior = VonMisesFisher(loc, torch.full((16,), kappa))
    value = density_gap_kl(posterior, HypersphericalUniform(32), num_samples=4, mode="joint")
    value.backward()
    assert torch.isfinite(value) and torch.isfinite(loc.grad).all()


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
