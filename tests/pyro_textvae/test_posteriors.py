"""Posterior heads: the bounds each one promises, for any input."""
from __future__ import annotations

import math

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from pyro_textvae.posteriors import (
    BatchNormGaussianHead,
    DeltaGaussianHead,
    GaussianHead,
    VonMisesFisherHead,
    delta_variance_bounds,
)

HIDDEN, LATENT = 8, 5


def test_gaussian_head_maps_the_linear_output_to_mean_and_standard_deviation():
    head = GaussianHead(HIDDEN, LATENT)
    hidden = torch.randn(4, HIDDEN)
    loc, logvar = head.linear(hidden).chunk(2, -1)
    posterior = head(hidden)
    assert posterior.batch_shape == (4,) and posterior.event_shape == (LATENT,)
    torch.testing.assert_close(posterior.base_dist.loc, loc)
    torch.testing.assert_close(posterior.base_dist.scale.square(), logvar.exp())


def test_bn_head_mean_square_over_the_batch_is_gamma_squared_plus_shift_squared():
    head = BatchNormGaussianHead(HIDDEN, LATENT, gamma=0.7).train()
    with torch.no_grad():
        head.shift.copy_(torch.linspace(-1.0, 1.0, LATENT))
    loc, _ = head.parameters_of(3.0 * torch.randn(256, HIDDEN) + 2.0)
    expected = 0.7**2 + head.shift.detach().square()
    torch.testing.assert_close(loc.detach().square().mean(0), expected, rtol=1e-3, atol=1e-3)
    kl = kl_divergence(Normal(loc.detach(), 1.0), Normal(0.0, 1.0)).sum(-1).mean()
    assert float(kl) >= LATENT * 0.7**2 / 2 - 1e-3


@pytest.mark.parametrize("delta", [0.01, 0.15, 1.0, 4.0])
def test_delta_bounds_are_the_two_roots(delta):
    lower, upper = delta_variance_bounds(delta)
    assert 0 < lower < 1 < upper
    for root in (lower, upper):
        assert math.log(root) - root + 2 * delta + 1 == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("delta", [0.05, 0.15, 0.6])
def test_delta_head_keeps_every_dimensions_kl_at_least_delta_for_any_input(delta):
    head = DeltaGaussianHead(HIDDEN, LATENT, delta=delta)
    hidden = torch.cat([torch.randn(200, HIDDEN), 50 * torch.randn(50, HIDDEN), torch.zeros(1, HIDDEN)])
    posterior = head(hidden)
    kl = kl_divergence(posterior.base_dist, Normal(0.0, 1.0))
    assert float(kl.min()) >= delta - 1e-5
    variance = posterior.base_dist.scale.square()
    assert float(variance.min()) >= head.lower * (1 - 1e-6) and float(variance.max()) <= head.upper * (1 + 1e-6)


def test_delta_head_gradients_stay_finite_where_the_variance_saturates():
    head = DeltaGaussianHead(HIDDEN, LATENT, delta=0.15)
    hidden = (1e3 * torch.randn(16, HIDDEN)).requires_grad_()
    loc, scale = head.parameters_of(hidden)
    (loc.sum() + scale.sum()).backward()
    assert torch.isfinite(hidden.grad).all()


def test_vmf_head_gives_unit_mean_directions_and_the_fixed_concentration():
    head = VonMisesFisherHead(HIDDEN, LATENT, kappa=13.0)
    posterior = head(torch.randn(6, HIDDEN))
    torch.testing.assert_close(posterior.loc.norm(dim=-1), torch.ones(6))
    torch.testing.assert_close(posterior.concentration, torch.full((6,), 13.0))


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: BatchNormGaussianHead(HIDDEN, LATENT, gamma=0.0), "bn_gamma"),
        (lambda: DeltaGaussianHead(HIDDEN, LATENT, delta=0.0), "delta"),
        (lambda: VonMisesFisherHead(HIDDEN, LATENT, kappa=-1.0), "kappa"),
    ],
)
def test_a_parameter_out_of_range_is_refused(make, message):
    with pytest.raises(ValueError, match=message):
        make()
