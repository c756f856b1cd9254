"""Metrics on a set of posteriors q(z|x_1), ..., q(z|x_N): mutual information, active units,
the hole metrics of DG-VAE and per-dimension KL (``docs/metrics.md``).

A posterior set is one torch Distribution with batch shape (N,) and event shape (d,). A
diagonal Gaussian (``Normal(loc, scale).to_event(1)``) takes a fast path that evaluates the
aggregated posterior q_D(z) = (1/N) sum_j q(z|x_j) in chunks over samples *and* posteriors: joint
densities by matrix products in float64 (memory chunk x posterior chunk), one-dimensional
marginals elementwise (memory chunk x posterior chunk x d, and most of the cost of
:func:`hole_metrics`). Any other family (e.g. a vMF posterior with a uniform prior on the sphere)
takes a generic path through ``log_prob``/``sample``: chunked over samples only, each chunk
evaluated against all N posteriors at once with at most ``GENERIC_CHUNK_ELEMENTS`` (chunk x N x d)
elements, joint densities only. Samples come from torch's global RNG: seed with
``torch.manual_seed``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Sequence

import torch
from torch.distributions import Distribution, Independent, Normal

from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.config import ACTIVE_UNIT_THRESHOLD

from .evaluate_options import EVALUATE_DEFAULTS

HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)
GENERIC_CHUNK_ELEMENTS = 2**24
MI_CHUNK, MI_POSTERIOR_CHUNK = 1024, 4096  # samples x posteriors of one float64 product of mutual_information
HOLE_CHUNK, HOLE_POSTERIOR_CHUNK = 512, 1024  # prior draws x posteriors of one chunk of hole_metrics


def _diagonal_gaussian(distribution: Distribution) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(loc, scale) expanded to batch + event shape if ``distribution`` is Normal(...).to_event(1)."""
    if (
        isinstance(distribution, Independent)
        and distribution.reinterpreted_batch_ndims == 1
        and isinstance(distribution.base_dist, Normal)
    ):
        shape = distribution.batch_shape + distribution.event_shape
        return distribution.base_dist.loc.expand(shape), distribution.base_dist.scale.expand(shape)
    return None


def _check_posterior(posterior: Distribution, caller: str) -> tuple[int, int]:
    if not isinstance(posterior, Distribution):
        raise TypeError(f"{caller}: posterior must be a torch Distribution, got {type(posterior).__name__}")
    if len(posterior.batch_shape) != 1 or len(posterior.event_shape) != 1:
        raise ValueError(
            f"{caller}: posterior must have batch shape (N,) and event shape (d,), got "
            f"{tuple(posterior.batch_shape)} and {tuple(posterior.event_shape)}"
        )
    return posterior.batch_shape[0], posterior.event_shape[0]


def _check_positive_ints(caller: str, **options: int) -> None:
    for name, value in options.items():
        POSITIVE_INT.check(f"{caller}: {name}", value)


def _gaussian_mixture_log_densities(
    z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, posterior_chunk_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """log (1/N) sum_j N(z; loc_j, diag scale_j^2) for z of shape (S, d), and the same for every
    one-dimensional marginal, shape (S, d). The logsumexp over posteriors is accumulated across
    chunks of ``posterior_chunk_size`` components (memory S x chunk x d)."""
    num_components = loc.size(0)
    inv_scale = scale.reciprocal()
    neg_shift = -loc * inv_scale
    log_norm = -scale.log() - HALF_LOG_TWO_PI
    joint = z.new_full(z.shape[:1], -math.inf)
    marginal = z.new_full(z.shape, -math.inf)
    for start in range(0, num_components, posterior_chunk_size):
        part = slice(start, start + posterior_chunk_size)
        standardized = torch.addcmul(neg_shift[part], z.unsqueeze(1), inv_scale[part])
        log_density = torch.addcmul(log_norm[part], standardized, standardized, value=-0.5)
        joint = torch.logaddexp(joint, torch.logsumexp(log_density.sum(-1), dim=1))
        marginal = torch.logaddexp(marginal, torch.logsumexp(log_density, dim=1))
    log_n = math.log(num_components)
    return joint - log_n, marginal - log_n


def _gaussian_mixture_joint_log_density(
    z: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor, posterior_chunk_size: int
) -> torch.Tensor:
    """log (1/N) sum_j N(z; loc_j, diag scale_j^2) for z of shape (S, d), in float64 through two
    matrix products per chunk of components (memory S x chunk):

        log N(z; m_j, diag s_j^2) = -1/2 z^2 . w_j + z . (m_j w_j) - 1/2 m_j^2 . w_j - sum log s_j - d/2 log 2 pi,
        w_j = 1 / s_j^2.
    """
    z, loc, scale = z.double(), loc.double(), scale.double()
    precision = scale.pow(-2)
    linear = loc * precision
    offset = -0.5 * (loc.square() * precision).sum(-1) - scale.log().sum(-1) - loc.size(-1) * HALF_LOG_TWO_PI
    z_squared = z.square()
    joint = z.new_full(z.shape[:1], -math.inf)
    for start in range(0, loc.size(0), posterior_chunk_size):
        part = slice(start, start + posterior_chunk_size)
        log_density = -0.5 * z_squared @ precision[part].T + z @ linear[part].T + offset[part]
        joint = torch.logaddexp(joint, torch.logsumexp(log_density, dim=1))
    return joint - math.log(loc.size(0))


def _aggregate_log_density(
    z: torch.Tensor, posterior: Distribution, chunk_size: int, posterior_chunk_size: int
) -> torch.Tensor:
    """log q_D(z) = logsumexp_j log q(z|x_j) - log N for z of shape (S, d), chunked over z (the
    generic path caps a chunk at ``GENERIC_CHUNK_ELEMENTS`` // (N d) samples)."""
    gaussian = _diagonal_gaussian(posterior)
    num_components, dim = posterior.batch_shape[0], posterior.event_shape[0]
    if gaussian is None:
        chunk_size = max(1, min(chunk_size, GENERIC_CHUNK_ELEMENTS // (num_components * dim)))
    pieces = []
    for start in range(0, z.size(0), chunk_size):
        z_chunk = z[start : start + chunk_size]
        if gaussian is not None:
            pieces.append(_gaussian_mixture_joint_log_density(z_chunk, *gaussian, posterior_chunk_size))
        else:
            log_q = posterior.log_prob(z_chunk.unsqueeze(1))
            pieces.append(torch.logsumexp(log_q, dim=1) - math.log(num_components))
    return torch.cat(pieces)


@torch.no_grad()
def mutual_information(
    posterior: Distribution, num_samples: int = 1, chunk_size: int = MI_CHUNK,
    posterior_chunk_size: int = MI_POSTERIOR_CHUNK
) -> float:
    """I_q(x; z) = E_x[-H(q(z|x))] - E_{x, z~q(z|x)} log q_D(z), q_D(z) = (1/N) sum_j q(z|x_j)
    (Hoffman & Johnson 2016; He et al. 2019, sec. 4; ``docs/metrics.md#mutual-information``), with
    ``num_samples`` draws z ~ q(z|x_i) per posterior (one per sentence in the protocol).

    The entropy term uses ``posterior.entropy()``; for a family without it, the Monte-Carlo
    estimate E log q(z|x_i) on the same draws. 0 <= I_q <= log N for the aggregate of N posteriors.
    """
    num_posteriors, dim = _check_posterior(posterior, "mutual_information")
    _check_positive_ints(
        "mutual_information", num_samples=num_samples, chunk_size=chunk_size, posterior_chunk_size=posterior_chunk_size
    )
    z = posterior.sample((num_samples,))
    log_aggregate = _aggregate_log_density(z.reshape(-1, dim), posterior, chunk_size, posterior_chunk_size)
    try:
        neg_entropy = -posterior.entropy().double().mean()
    except NotImplementedError:
        neg_entropy = posterior.log_prob(z).double().mean()
    return float(neg_entropy - log_aggregate.double().mean())


def active_units(loc: torch.Tensor, threshold: float = ACTIVE_UNIT_THRESHOLD) -> tuple[int, torch.Tensor]:
    """AU = #{k : Var_x(E_q[z_k | x]) >= threshold} (Burda et al. 2016, sec. 5.2; ``docs/metrics.md#active-units``),
    with the unbiased sample variance over the N data (divisor N - 1), as in the classic
    text-VAE code. ``loc`` holds the posterior means, shape (N, d). Returns (AU, variances (d,))."""
    if not isinstance(loc, torch.Tensor) or loc.dim() != 2 or loc.size(0) < 2:
        raise ValueError("active_units: loc must be a tensor of shape (N, d) with N >= 2")
    if not threshold >= 0:
        raise ValueError(f"active_units: threshold must be >= 0, got {threshold!r}")
    variances = loc.var(dim=0, correction=1)
    return int((variances >= threshold).sum()), variances


def posterior_kl_per_dim(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, s^2) || N(0, 1)) = (mu^2 + s^2 - 1) / 2 - log s, elementwise: (N, d) -> (N, d)
    (Kingma & Welling 2014, appendix B)."""
    if loc.shape != scale.shape:
        raise ValueError(f"posterior_kl_per_dim: loc {tuple(loc.shape)} and scale {tuple(scale.shape)} differ")
    return 0.5 * (loc.square() + scale.square() - 1) - scale.log()


def _check_prior(prior: Distribution, dim: int, caller: str) -> None:
    if not isinstance(prior, Distribution):
        raise TypeError(f"{caller}: prior must be a torch Distribution, got {type(prior).__name__}")
    if len(prior.batch_shape) != 0 or tuple(prior.event_shape) != (dim,):
        raise ValueError(
            f"{caller}: prior must have batch shape () and event shape ({dim},), got "
            f"{tuple(prior.batch_shape)} and {tuple(prior.event_shape)}"
        )


def _marginal_skip_reason(posterior: Distribution, prior: Distribution) -> str | None:
    if _diagonal_gaussian(posterior) is None:
        return f"posterior {type(posterior).__name__} is not a diagonal Gaussian (Normal(...).to_event(1))"
    if _diagonal_gaussian(prior) is None:
        return f"prior {type(prior).__name__} is not a diagonal Gaussian (Normal(...).to_event(1))"
    return None


@torch.no_grad()
def hole_metrics(
    posterior: Distribution,
    prior: Distribution,
    num_prior_samples: int = EVALUATE_DEFAULTS.prior_samples,
    taus: Sequence[float] = (0.01, 0.03, 0.05, 0.1),
    chunk_size: int = HOLE_CHUNK,
    posterior_chunk_size: int = HOLE_POSTERIOR_CHUNK,
    marginal: bool | None = None,
    on_chunk: Callable[[int], object] | None = None,
) -> dict:
    """Hole metrics of Zhang et al. 2022 (sec. 5; ``docs/metrics.md#hole-metrics``), z ~ p(z) by Monte Carlo:

        joint-KL      = E_{z~p}[log p(z) - log q_D(z)]            (KL(p || q_D): uncovered prior mass)
        marginal-KL_k = E_{z~p}[log p_k(z_k) - log q_D,k(z_k)]     (1-D marginals, k = 1..d)
        CU(tau)       = #{k : marginal-KL_k < tau}

    with q_D = (1/N) sum_j q(z|x_j). Prior samples come in chunks of ``chunk_size`` from torch's
    global RNG; Gaussian posteriors are also chunked by ``posterior_chunk_size`` (logsumexp
    accumulated across chunks). ``marginal=None`` computes the marginal terms when posterior and
    prior are diagonal Gaussians and skips them otherwise (e.g. vMF: its 1-D marginals have no
    closed form here); ``marginal=True`` on such a family raises ValueError. ``on_chunk`` is called
    with the number of prior draws of each chunk once it is scored (a progress bar's ``update``). Returns
    {"joint_kl": float, "marginal_kl": list[float] | None, "cu": {tau: int} | None,
    "marginal_skipped": reason | None, "num_prior_samples": S, "num_posteriors": N}.
    """
    num_posteriors, dim = _check_posterior(posterior, "hole_metrics")
    _check_prior(prior, dim, "hole_metrics")
    _check_positive_ints(
        "hole_metrics",
        num_prior_samples=num_prior_samples,
        chunk_size=chunk_size,
        posterior_chunk_size=posterior_chunk_size,
    )
    taus = tuple(taus)
    if not taus or any(not tau > 0 for tau in taus):
        raise ValueError(f"hole_metrics: taus must be a non-empty sequence of positive numbers, got {taus!r}")
    skip_reason = _marginal_skip_reason(posterior, prior)
    if marginal and skip_reason is not None:
        raise ValueError(f"hole_metrics: marginal=True needs diagonal Gaussians: {skip_reason}")
    use_marginal = skip_reason is None if marginal is None else marginal
    gaussian = _diagonal_gaussian(posterior)

    joint_total = torch.zeros((), dtype=torch.float64)
    marginal_total = torch.zeros(dim, dtype=torch.float64)
    for start in range(0, num_prior_samples, chunk_size):
        z = prior.sample((min(chunk_size, num_prior_samples - start),))
        if use_marginal:
            log_q, log_q_dims = _gaussian_mixture_log_densities(z, *gaussian, posterior_chunk_size)
            marginal_total += (prior.base_dist.log_prob(z) - log_q_dims).double().sum(0).cpu()
        else:
            log_q = _aggregate_log_density(z, posterior, chunk_size, posterior_chunk_size)
        joint_total += (prior.log_prob(z) - log_q).double().sum().cpu()
        if on_chunk is not None:
            on_chunk(z.shape[0])

    marginal_kl = (marginal_total / num_prior_samples).tolist() if use_marginal else None
    return {
        "joint_kl": float(joint_total / num_prior_samples),
        "marginal_kl": marginal_kl,
        "cu": {tau: sum(value < tau for value in marginal_kl) for tau in taus} if use_marginal else None,
        "marginal_skipped": None if use_marginal else (skip_reason or "marginal=False"),
        "num_prior_samples": num_prior_samples,
        "num_posteriors": num_posteriors,
    }
