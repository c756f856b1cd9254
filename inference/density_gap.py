"""The density-gap regulariser of DG-VAE (Zhang et al. 2022, sec. 3; ``docs/maths.md#density-gap-estimator``).

DG-VAE keeps the reconstruction term of the ELBO and replaces the per-datum KL terms by the KL
between the aggregated posterior of the batch and the prior,

    L_DG(B) = sum_{i in B} E_{q(z|x_i)} log p(x_i|z)  -  beta |B| KL(q_B(z) || p(z)),
    q_B(z)  = (1/|B|) sum_{j in B} q(z|x_j),

(the |B| puts the batch term on the scale of the summed per-datum KLs it replaces). The KL is
estimated with M reparameterised samples z_{i,m} ~ q(z|x_i) per datum:

    KL(q_B || p) ~= (1/(|B| M)) sum_{i,m} [ log q_B(z_{i,m}) - log p(z_{i,m}) ],
    log q_B(z)   =  logsumexp_j log q(z|x_j) - log |B|,

where log q_B(z) - log p(z) is the *density gap* at z. The estimator is unbiased, since
(1/|B|) sum_i E_{q(z|x_i)} f(z) = E_{q_B} f(z). Variants (``docs/maths.md#density-gap-estimator``):

* ``mode="marginal"`` (the paper's Gaussian default): the estimator applied to each coordinate k
  with the one-dimensional marginals q(z_k|x_j), p(z_k), summed over k. For a product prior this
  estimates KL(q_B || p) - TC(q_B), TC the total correlation of q_B.
* ``mode="joint"``: full d-dimensional log densities (the paper's choice for vMF posteriors).
* ``agg_size=b``: the batch is cut into consecutive chunks of b; q_B is the chunk's aggregate
  for the samples of that chunk. b = 1 gives back the usual single-posterior Monte-Carlo KL.
* ``agg="global"`` (data-parallel training, :mod:`inference.distributed`): q_B aggregates the
  posteriors of every rank's batch (gathered with a differentiable all-gather), each rank scores
  its own samples, and the ranks' terms average to the estimate of one process on the global batch.

This module holds the estimator, :func:`density_gap_kl`; the Pyro ELBO built on it is
:class:`inference.density_gap_elbo.DensityGapELBO`.
"""
from __future__ import annotations

import math
from functools import partial
from typing import Callable

import pyro.distributions
import torch
from torch.distributions import Distribution, Independent
from torch.utils.checkpoint import checkpoint

from pyro_textvae.checks import POSITIVE_INT, Range, check_value

from .gaussian_mixture import GaussianJointLogMixture, per_coordinate_log_mixture
from .objective_configs import KERNELS

MODES = ("marginal", "joint")
WEIGHTS = ("uniform", "stratified")
AGGREGATIONS = ("local", "global")
PARTICLE_PLATE = "num_particles_vectorized"
_CHUNK_ELEMENTS = 2**18
_COMPILED_CHUNK_ELEMENTS = 2**21  # the fused kernel keeps no per-element temporaries: larger chunks, fewer calls
_RECOMPUTE_ELEMENTS = 2**22
OPTIONAL_POSITIVE_INT = Range(int, minimum=1, optional=True)
_NORMALS = (torch.distributions.Normal, pyro.distributions.Normal)


def check_estimator_options(
    num_samples: int, agg_size: int | None, mode: str, chunk_size: int | None
) -> None:
    """Raise ValueError naming the option when an estimator setting is out of range."""
    POSITIVE_INT.check("num_samples", num_samples)
    OPTIONAL_POSITIVE_INT.check("agg_size", agg_size)
    check_value("mode", mode, str, choices=MODES)
    OPTIONAL_POSITIVE_INT.check("chunk_size", chunk_size)


def _check_aggregate(posterior: Distribution, aggregate: Distribution, offset: int, shared: int) -> None:
    lead, batch = posterior.batch_shape[:-1], posterior.batch_shape[-1]
    if aggregate.batch_shape[:-1] != lead or aggregate.event_shape != posterior.event_shape:
        raise ValueError(
            f"aggregate of batch shape {tuple(aggregate.batch_shape)}, event {tuple(aggregate.event_shape)} does "
            f"not fit the posterior's {tuple(posterior.batch_shape)}, {tuple(posterior.event_shape)}"
        )
    own = aggregate.batch_shape[-1] - shared if isinstance(shared, int) and shared >= 0 else -1
    if own < batch:
        raise ValueError(f"shared must be a count of the aggregate's last components that leaves room for the "
                         f"posterior's {batch} data among its {aggregate.batch_shape[-1]}, got {shared!r}")
    if not isinstance(offset, int) or offset < 0 or offset + batch > own:
        raise ValueError(
            f"offset must place the posterior's {batch} data inside the aggregate's "
            f"{own}, got {offset!r}"
        )


def _check_shapes(posterior: Distribution, prior: Distribution) -> None:
    if len(posterior.event_shape) != 1 or len(posterior.batch_shape) < 1:
        raise ValueError(
            "density_gap_kl needs a posterior with batch shape (..., B) and event shape (d,), got "
            f"batch {tuple(posterior.batch_shape)}, event {tuple(posterior.event_shape)}"
        )
    if prior.event_shape not in (torch.Size(), posterior.event_shape):
        raise ValueError(
            f"prior event shape {tuple(prior.event_shape)} must be () or the posterior's "
            f"{tuple(posterior.event_shape)}"
        )
    full_shape = posterior.batch_shape + posterior.event_shape
    prior_shape = prior.batch_shape + prior.event_shape
    try:
        fits = torch.broadcast_shapes(prior_shape, full_shape) == full_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"prior of shape {tuple(prior_shape)} does not broadcast to the posterior's "
            f"{tuple(full_shape)}"
        )
    if not posterior.has_rsample:
        raise ValueError(
            "density_gap_kl needs a reparameterised posterior (has_rsample); "
            f"{type(posterior).__name__} has none"
        )


LogDensity = Callable[[torch.Tensor], torch.Tensor]


def _per_dimension_log_prob(distribution: Distribution, role: str) -> LogDensity:
    """``z (..., d) -> (..., d)``: the log densities of the one-dimensional marginals."""
    if distribution.event_shape == torch.Size():
        return distribution.log_prob
    if (
        isinstance(distribution, Independent)
        and distribution.reinterpreted_batch_ndims == 1
        and distribution.base_dist.event_shape == torch.Size()
    ):
        return distribution.base_dist.log_prob
    raise ValueError(
        f'mode="marginal" needs per-dimension densities, but the {role} is a '
        f"{type(distribution).__name__}, which cannot be split into one-dimensional marginals; "
        'use mode="joint"'
    )


def _joint_log_prob(distribution: Distribution) -> LogDensity:
    """``z (..., d) -> (...)``: the d-dimensional log density (a univariate one summed over k)."""
    if distribution.event_shape == torch.Size():
        return lambda value: distribution.log_prob(value).sum(-1)
    return distribution.log_prob


def _gaussian_parts(distribution: Distribution) -> tuple[torch.Tensor, ...] | None:
    """``(loc, 1 / scale, -log scale - log sqrt(2 pi))`` of a diagonal Normal q(z|x_j), else None."""
    base = distribution.base_dist if isinstance(distribution, Independent) else None
    if base is None or distribution.reinterpreted_batch_ndims != 1 or type(base) not in _NORMALS:
        return None
    return base.loc, base.scale.reciprocal(), -base.scale.log() - 0.5 * math.log(2 * math.pi)


def mixture_log_weights(
    row_group: torch.Tensor, row_own: torch.Tensor, group: torch.Tensor, counts: torch.Tensor, num_data: int | None
) -> torch.Tensor:
    """``log w_rj``, the weight of component j in the estimate of ``q(z_r)`` for sample row r, shape
    ``(rows, components)`` (``docs/maths.md#the-data-sets-aggregate``).

    Row r was drawn from component ``row_own[r]`` of chunk ``row_group[r]``; ``group`` gives each
    component's chunk (``-1``: shared by every chunk, the memory) and ``counts`` each chunk's number of
    components n (its own and the shared). Components outside the row's chunk get ``-inf``. Within it:

    * ``num_data`` None (the batch's aggregate): ``w = 1 / n`` for each;
    * ``num_data`` N (stratified, Chen et al. 2018): the own component ``1 / N``, each other one
      ``(N - 1) / (N (n - 1))``, an unbiased estimate of ``q_D(z)`` for a chunk drawn from the N data;
      a chunk of one component has nothing to stand for the other N - 1 data and keeps weight 1.
    """
    count = counts[row_group]
    member = (group == row_group.unsqueeze(-1)) | (group < 0)
    if num_data is None:
        value = (-count.log()).unsqueeze(-1).expand(member.shape)
    else:
        single = count <= 1
        other = math.log(num_data - 1) - math.log(num_data) - (count - 1).clamp(min=1).log() if num_data > 1 else (
            torch.full_like(count, -math.inf))
        other = torch.where(single, -math.inf, other)
        own = torch.where(single, torch.zeros_like(count), torch.full_like(count, -math.log(num_data)))
        value = other.unsqueeze(-1).expand(member.shape).clone()
        value.scatter_(-1, row_own.unsqueeze(-1), own.unsqueeze(-1))
    return value.masked_fill(~member, -math.inf)


def _chunk_log_aggregate(
    log_q: LogDensity | tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    weights: tuple[torch.Tensor, torch.Tensor, int | None] | None,
    log_total: float,
    num_lead: int,
    per_dimension: bool,
    kernel: str,
    rows: torch.Tensor,
    row_group: torch.Tensor,
    row_own: torch.Tensor,
) -> torch.Tensor:
    """``logsumexp_j [log q(z_r|x_j) + log w_rj]`` over the components j (:func:`mixture_log_weights`;
    ``weights`` None: every component at weight ``exp(-log_total)``).

    ``rows`` is ``(k, *lead, 1, d)``; ``log_q(rows)`` is ``(k, *lead, G)``, or ``(k, *lead, G, d)``
    per dimension; the result drops the G dim. ``log_q`` may instead be the ``(loc, 1/scale, c)``
    of diagonal Normal components (:func:`_gaussian_parts`), scored by :mod:`inference.gaussian_mixture`
    (per dimension with its ``kernel``).
    """
    log_weight = None
    if weights is not None:
        dimension = (1,) if per_dimension else ()
        log_weight = mixture_log_weights(row_group, row_own, *weights)
        log_weight = log_weight.view(rows.shape[0], *(1,) * num_lead, -1, *dimension)
    if isinstance(log_q, tuple):
        mixture = per_coordinate_log_mixture(kernel) if per_dimension else GaussianJointLogMixture.apply
        result = mixture(rows, *log_q, log_weight)
    else:
        log_density = log_q(rows)
        if log_weight is not None:
            log_density = log_density + log_weight
        result = torch.logsumexp(log_density, dim=-2 if per_dimension else -1)
    return result if weights is not None else result - log_total


def _mixture_layout(
    components: int, shared: int, agg_size: int | None, num_data: int | None, device: torch.device
) -> tuple[torch.Tensor, tuple | None, float]:
    """Each component's chunk (shared ones: -1), the ``weights`` of :func:`_chunk_log_aggregate` (None
    when every row weighs every component alike) and the log of the number of components."""
    own = components - shared
    size = own if agg_size is None else min(agg_size, own)
    group = torch.cat([torch.arange(own, device=device) // size, torch.full((shared,), -1, device=device)])
    counts = torch.bincount(group[:own]).to(torch.get_default_dtype()) + shared
    if num_data is not None and num_data < int(counts.max()):
        raise ValueError(f"num_data ({num_data}) must be at least the number of components a sample is scored "
                         f"against ({int(counts.max())})")
    weights = None if size == own and num_data is None else (group, counts, num_data)
    return group, weights, math.log(components)


def _score_rows(score: Callable, rows: torch.Tensor, indices: tuple[torch.Tensor, ...], chunk_size: int,
                recompute: bool, on_chunk: Callable[[int], object] | None) -> torch.Tensor:
    """``score`` of every row (with its entries of ``indices``), ``chunk_size`` rows at a time,
    ``on_chunk`` (where given) called with the rows of each chunk once it is scored. With gradients
    on, the chunks are concatenated, each recomputed in the backward pass when ``recompute``.
    Without gradients (evaluation) they are written into one tensor allocated once: a list of many
    small results kept between large temporaries fragments the C heap (the 10,000 posteriors of a
    short_yelp split, scored a row at a time, held 12 GB where a row's temporaries are 1.3 MB)."""
    grad = torch.is_grad_enabled()
    if grad and recompute:
        score = partial(checkpoint, score, use_reentrant=False, preserve_rng_state=False)
    pieces, scored = [], None
    for start in range(0, rows.shape[0], chunk_size):
        piece = score(rows[start : start + chunk_size], *(index[start : start + chunk_size] for index in indices))
        if grad:
            pieces.append(piece)
        else:
            scored = piece.new_empty((rows.shape[0], *piece.shape[1:])) if scored is None else scored
            scored[start : start + chunk_size] = piece
        if on_chunk is not None:
            on_chunk(piece.shape[0])
    return torch.cat(pieces) if grad else scored


def density_gap_kl(
    posterior: Distribution,
    prior: Distribution,
    num_samples: int = 32,
    agg_size: int | None = None,
    mode: str = "marginal",
    chunk_size: int | None = None,
    aggregate: Distribution | None = None,
    offset: int = 0,
    weights: str = "uniform",
    num_data: int | None = None,
    shared: int = 0,
    on_chunk: Callable[[int], object] | None = None,
    kernel: str = "eager",
) -> torch.Tensor:
    """Density-gap estimate of KL(q_B || p), q_B = (1/|B|) sum_j q(z|x_j) (Zhang et al. 2022, sec. 3).

        KL(q_B || p) ~= (1/(|B| M)) sum_{i,m} [log q_B(z_{i,m}) - log p(z_{i,m})],  z_{i,m} ~ q(z|x_i)
        log q_B(z) = logsumexp_j log q(z|x_j) - log |B|              (``docs/maths.md#density-gap-estimator``)

    or, with ``weights="stratified"`` or ``shared`` components, of KL(q_D || p) for the aggregate q_D
    of the whole data set (``docs/maths.md#the-data-sets-aggregate``).

    :param posterior: q(z|x_j), batch shape ``(..., B)`` (the last batch dim is the data batch;
        leading dims, e.g. vectorised particles, are kept), event shape ``(d,)``, with ``rsample``.
    :param prior: p(z), event shape ``(d,)`` or ``()`` (a univariate density applied per coordinate),
        broadcastable to the posterior's shape.
    :param num_samples: M, samples per datum.
    :param agg_size: b: estimate within consecutive chunks of b data (the last may be smaller) and
        average over data, i.e. weight each chunk by its size; ``None`` (one chunk) = the batch.
    :param mode: ``"marginal"``: per-coordinate one-dimensional estimates summed over k (needs an
        ``Independent`` univariate posterior); ``"joint"``: d-dimensional ``log_prob``.
    :param chunk_size: how many (i, m) samples are scored against all B posteriors at a time
        (default: chunks of about 2^18 numbers, which keeps them in cache). When the whole
        B x M x B x d array exceeds 2^22 numbers and gradients are on, each chunk is recomputed
        in the backward pass (checkpointing), so memory stays bounded by the chunk. Cost
        O(B^2 M d) for any ``agg_size`` (out-of-chunk pairs are masked).
    :param aggregate: the components q(z|x_j) of q_B when they are more than the sampled
        posterior's (default: the posterior itself): batch shape ``(..., G)``; the samples of the
        posterior's data are scored against all G, and ``agg_size`` chunks the G.
    :param offset: the position of the posterior's first datum among the aggregate's G.
    :param weights: the mixture weights of :func:`mixture_log_weights`: ``"uniform"`` (1/n each) or
        ``"stratified"`` (1/N for a sample's own component, (N - 1)/(N (n - 1)) for the others; needs
        ``num_data``), n a chunk's components.
    :param num_data: N, the size of the data set the batch was drawn from (``weights="stratified"``).
    :param shared: how many of the aggregate's last components belong to every chunk (a memory of
        earlier posteriors, :class:`inference.posterior_memory.PosteriorMemory`); they may carry no gradient.
    :param on_chunk: called with the number of samples of each chunk once it is scored (a progress
        bar's ``update``; ``M B`` samples in all).
    :param kernel: ``"eager"`` or ``"compiled"`` (:func:`inference.gaussian_mixture.per_coordinate_log_mixture`):
        how the per-dimension mixture of diagonal Normal components is computed (the joint one is matrix
        products, other families their ``log_prob``, whatever the kernel).
    :returns: the estimate, shape ``batch_shape[:-1]``, differentiable w.r.t. the posterior's
        parameters (through ``rsample`` and through log q).
    """
    check_estimator_options(num_samples, agg_size, mode, chunk_size)
    check_value("weights", weights, str, choices=WEIGHTS)
    if (weights == "stratified") != (num_data is not None):
        raise ValueError('num_data is needed by weights="stratified" and by nothing else')
    if num_data is not None:
        POSITIVE_INT.check("num_data", num_data)
    check_value("kernel", kernel, str, choices=KERNELS)
    _check_shapes(posterior, prior)
    aggregate = posterior if aggregate is None else aggregate
    _check_aggregate(posterior, aggregate, offset, shared)
    if mode == "marginal":
        log_q = _per_dimension_log_prob(aggregate, "posterior")
        log_p = _per_dimension_log_prob(prior, "prior")
    else:
        log_q, log_p = aggregate.log_prob, _joint_log_prob(prior)
    gaussian = _gaussian_parts(aggregate)
    if gaussian is not None:
        log_q = tuple(torch.broadcast_tensors(*gaussian))
    lead, batch = posterior.batch_shape[:-1], posterior.batch_shape[-1]
    components = aggregate.batch_shape[-1]
    dim = posterior.event_shape[0]

    samples = posterior.rsample((num_samples,))
    log_prior = log_p(samples).movedim(len(lead) + 1, 1)
    rows = samples.movedim(-2, 1).flatten(0, 1).unsqueeze(-2)

    group, mixture, log_total = _mixture_layout(components, shared, agg_size, num_data, samples.device)
    if mixture is not None:
        mixture = (mixture[0], mixture[1].to(samples.dtype), mixture[2])
    row_group = group[offset : offset + batch].repeat(num_samples)
    row_own = torch.arange(offset, offset + batch, device=samples.device).repeat(num_samples)
    score = partial(_chunk_log_aggregate, log_q, mixture, log_total, len(lead), mode == "marginal", kernel)
    per_row = dim if mode == "marginal" or gaussian is None else 1  # the joint Gaussian mixture is matrix products
    row_elements = max(1, lead.numel()) * components * per_row
    if chunk_size is None:
        fused = kernel == "compiled" and mode == "marginal" and gaussian is not None
        chunk_size = max(1, (_COMPILED_CHUNK_ELEMENTS if fused else _CHUNK_ELEMENTS) // row_elements)
    large = rows.shape[0] * row_elements > _RECOMPUTE_ELEMENTS
    recompute = large and rows.shape[0] > chunk_size and gaussian is None
    log_aggregate = _score_rows(score, rows, (row_group, row_own), chunk_size, recompute, on_chunk)
    log_aggregate = log_aggregate.unflatten(0, (num_samples, batch))

    gap = log_aggregate - log_prior
    if mode == "marginal":
        gap = gap.sum(-1)
    return gap.mean((0, 1))
