"""Posterior heads: map the encoder's hidden state ``h`` to the guide's distribution q(z|x).

* :class:`GaussianHead`: ``q(z|x) = N(mu(h), diag exp(logvar(h)))`` (Kingma and Welling 2014).
* :class:`BatchNormGaussianHead` (BN-VAE, Zhu et al. 2020): ``mu`` passes through batch
  normalisation with a *fixed* scale ``gamma`` and a learned shift ``beta_k``. Over a batch,
  ``mean_x mu_k^2 = gamma^2 + beta_k^2``, so the expected KL per sentence is at least
  ``sum_k mean_x mu_k^2 / 2 >= d gamma^2 / 2``.
* :class:`DeltaGaussianHead` (delta-VAE, Razavi et al. 2019): the variance ``s = sigma^2`` is squeezed
  into ``[l, u]``, the roots of ``ln s - s + 2 delta + 1 = 0``, so the variance part of the KL,
  ``(s - ln s - 1) / 2``, is at most ``delta``; the mean is pushed away from 0 by
  ``m(s) = sqrt(2 delta + 1 + ln s - s)``: ``mu = r + sign(r) m(s)``. Then every dimension's
  ``KL = (mu^2 + s - ln s - 1) / 2 >= delta``.
* :class:`VonMisesFisherHead` (Xu and Durrett 2018): ``q(z|x) = vMF(mu(h) / |mu(h)|, kappa)`` with a
  fixed concentration ``kappa``.
"""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from torch import nn

from .distributions import VonMisesFisher


class GaussianHead(nn.Module):
    """``h -> Normal(mu, sigma).to_event(1)`` with ``(mu, log sigma^2)`` a linear map of ``h``."""

    def __init__(self, hidden_dim: int, latent_dim: int, bias: bool = True) -> None:
        super().__init__()
        self.linear = nn.Linear(hidden_dim, 2 * latent_dim, bias=bias)

    def parameters_of(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(mu, sigma)`` of q(z|x)."""
        loc, logvar = self.linear(hidden).chunk(2, -1)
        return loc, torch.exp(0.5 * logvar)

    def forward(self, hidden: torch.Tensor) -> dist.Distribution:
        loc, scale = self.parameters_of(hidden)
        return dist.Normal(loc, scale).to_event(1)


class BatchNormGaussianHead(GaussianHead):
    """BN-VAE: ``mu = gamma * BN(mu_raw) + beta`` with fixed ``gamma`` (Zhu et al. 2020, eq. 8)."""

    def __init__(self, hidden_dim: int, latent_dim: int, gamma: float = 0.7, bias: bool = True) -> None:
        super().__init__(hidden_dim, latent_dim, bias)
        if gamma <= 0:
            raise ValueError(f"bn_gamma must be > 0, got {gamma}")
        self.gamma = gamma
        self.norm = nn.BatchNorm1d(latent_dim, affine=False)
        self.shift = nn.Parameter(torch.zeros(latent_dim))

    def parameters_of(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = super().parameters_of(hidden)
        return self.gamma * self.norm(loc) + self.shift, scale


def delta_variance_bounds(delta: float) -> tuple[float, float]:
    """The roots ``l < 1 < u`` of ``ln s - s + 2 delta + 1 = 0`` (Razavi et al. 2019, sec. 3), by bisection."""
    if delta <= 0:
        raise ValueError(f"delta must be > 0, got {delta}")

    def gap(s: float) -> float:
        return math.log(s) - s + 2 * delta + 1

    def bisect(lo: float, hi: float) -> float:
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            if (gap(mid) > 0) == (gap(lo) > 0):
                lo = mid
            else:
                hi = mid
        return 0.5 * (lo + hi)

    upper = 2.0
    while gap(upper) > 0:
        upper *= 2
    return bisect(1e-300, 1.0), bisect(1.0, upper)


_TINY_GAP = 1e-12  # margins below sqrt(_TINY_GAP) = 1e-6 are taken as 0


class DeltaGaussianHead(GaussianHead):
    """delta-VAE: every dimension's KL(q(z_k|x) || N(0, 1)) is at least ``delta`` for any input."""

    def __init__(self, hidden_dim: int, latent_dim: int, delta: float = 0.15, bias: bool = True) -> None:
        super().__init__(hidden_dim, latent_dim, bias)
        self.delta = delta
        self.lower, self.upper = delta_variance_bounds(delta)

    def parameters_of(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raw_loc, raw_var = self.linear(hidden).chunk(2, -1)
        var = self.lower + (self.upper - self.lower) * torch.sigmoid(raw_var)
        gap = 2 * self.delta + 1 + torch.log(var) - var
        # sqrt has an infinite slope at 0, reached where the sigmoid saturates at a bound: its
        # gradient would be inf * 0 = nan, so the margin below _TINY_GAP is 0 with gradient 0.
        safe = torch.clamp(gap, min=_TINY_GAP)
        margin = torch.where(gap > _TINY_GAP, safe.sqrt(), torch.zeros_like(gap))
        sign = torch.where(raw_loc >= 0, 1.0, -1.0)
        return raw_loc + sign * margin, var.sqrt()


class VonMisesFisherHead(nn.Module):
    """``h -> vMF(mu / |mu|, kappa)`` with a fixed concentration ``kappa``."""

    def __init__(self, hidden_dim: int, latent_dim: int, kappa: float = 13.0, bias: bool = True) -> None:
        super().__init__()
        if kappa <= 0:
            raise ValueError(f"kappa must be > 0, got {kappa}")
        self.linear = nn.Linear(hidden_dim, latent_dim, bias=bias)
        self.kappa = kappa

    def forward(self, hidden: torch.Tensor) -> dist.Distribution:
        loc = nn.functional.normalize(self.linear(hidden), dim=-1)
        return VonMisesFisher(loc, torch.full(loc.shape[:-1], self.kappa, dtype=loc.dtype, device=loc.device))
