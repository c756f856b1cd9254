"""WAE-MMD: the latent term replaced by the MMD between posterior and prior samples.

Tolstikhin et al. 2018 ("Wasserstein Auto-Encoders", Algorithm 2; ``docs/maths.md#baselines``) penalise
the distance between the aggregated posterior q(z) and the prior p(z) by the maximum mean
discrepancy of their samples. For posterior samples x_1..x_n (one z_i ~ q(z|x_i) per datum) and as
many prior samples y_1..y_n, the unbiased U-statistic (Gretton et al. 2012, eq. 3) is

    MMD^2 = 1/(n(n-1)) sum_{i != j} k(x_i, x_j) + 1/(n(n-1)) sum_{i != j} k(y_i, y_j)
            - 2/n^2 sum_{i, j} k(x_i, y_j),

with the inverse multiquadratic kernel k(x, y) = C / (C + ||x - y||^2), C = 2 d (2 d sigma^2 for
the prior N(0, sigma^2 I_d), sigma = 1). In the per-datum sum convention of
:class:`inference.latent_penalty.LatentPenaltyELBO` the penalty is ``R = lambda n MMD^2``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Distribution

from pyro_textvae.checks import NON_NEGATIVE

from .latent_penalty import LatentPenaltyELBO
from .objective_configs import WAEConfig


def inverse_multiquadratic_kernel(x: torch.Tensor, y: torch.Tensor, scale: float) -> torch.Tensor:
    """``k(x_i, y_j) = C / (C + ||x_i - y_j||^2)`` for ``x (..., n, d)``, ``y (..., m, d)``: shape ``(..., n, m)``."""
    squared_distance = (x.unsqueeze(-2) - y.unsqueeze(-3)).pow(2).sum(-1)
    return scale / (scale + squared_distance)


def mmd_u_statistic(x: torch.Tensor, y: torch.Tensor, scale: float | None = None) -> torch.Tensor:
    """Unbiased estimate of MMD^2 between the laws of ``x (..., n, d)`` and ``y (..., m, d)`` with the
    inverse multiquadratic kernel (Gretton et al. 2012, eq. 3), shape ``(...)``.

    :param scale: the kernel's C; default ``2 d``.
    """
    n, m = x.shape[-2], y.shape[-2]
    if n < 2 or m < 2:
        raise ValueError(f"the MMD U-statistic needs at least 2 samples on each side, got {n} and {m}")
    if x.shape[-1] != y.shape[-1]:
        raise ValueError(f"samples of different dimensions: {x.shape[-1]} and {y.shape[-1]}")
    if scale is None:
        scale = 2.0 * x.shape[-1]
    if scale <= 0:
        raise ValueError(f"kernel scale C must be > 0, got {scale}")

    def within(samples: torch.Tensor, count: int) -> torch.Tensor:
        off_diagonal = ~torch.eye(count, dtype=torch.bool, device=samples.device)
        kernel = inverse_multiquadratic_kernel(samples, samples, scale)
        return (kernel * off_diagonal).sum((-2, -1)) / (count * (count - 1))

    cross = inverse_multiquadratic_kernel(x, y, scale).mean((-2, -1))
    return within(x, n) + within(y, m) - 2 * cross


class WassersteinMMDELBO(LatentPenaltyELBO):
    """WAE-MMD: ``R = lambda |B| MMD^2({z_i ~ q(z|x_i)}, {y_j ~ p(z)})`` with |B| prior samples
    (Tolstikhin et al. 2018, Algorithm 2), IMQ kernel with C = 2 d.

    :param weight: lambda, the weight of the MMD (Tolstikhin et al. 2018 use 10 on MNIST).
    :param sites: penalised latent sites (see :class:`LatentPenaltyELBO`).
    """

    term_name = "mmd"

    def __init__(self, weight: float = WAEConfig.weight, sites: Sequence[str] = ("z",), **kwargs) -> None:
        weight = NON_NEGATIVE.check("weight", weight)
        super().__init__(sites, **kwargs)
        self.weight = weight

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        prior_samples = prior.expand(posterior.batch_shape).sample()
        return self.weight * value.shape[-2] * mmd_u_statistic(value, prior_samples).sum()
