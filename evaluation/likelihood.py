"""Per-datum marginal likelihood by importance sampling, and perplexity.

The classic text-VAE protocol (``docs/metrics.md#marginal-likelihood``; Burda et al. 2016, eq. 8):

    log p(x_i) ~= logsumexp_k [log p(x_i, z_k) - log q(z_k | x_i)] - log K,   z_k ~ q(z | x_i),

built on Pyro's traces, so it holds for any model/guide pair, not one model's density.
"""

from __future__ import annotations

import contextlib
import math
from typing import Callable

import pyro
import torch
from pyro.infer.importance import vectorized_importance_weights


def _site_log_prob_per_datum(site: dict, num_data: int | None) -> torch.Tensor:
    """A site's unscaled log-density summed over all batch dims except the particle (leftmost)
    and the data (rightmost) dims: shape (chunk, B) or (chunk, 1) for a site outside the data plate."""
    log_prob = site["unscaled_log_prob"]
    if log_prob.dim() < 2:
        raise ValueError(
            f"importance_log_likelihood: site '{site['name']}' has log-prob shape {tuple(log_prob.shape)}; "
            "expected (num_samples, ..., B). Is max_plate_nesting right?"
        )
    inner_dims = tuple(range(1, log_prob.dim() - 1))
    per_datum = log_prob.sum(dim=inner_dims) if inner_dims else log_prob
    if num_data is not None and num_data > 1 and per_datum.size(-1) == 1:
        raise ValueError(
            f"importance_log_likelihood: site '{site['name']}' is outside the data plate (its log-prob does "
            "not vary over the rightmost batch dim), so log p(x) does not split into per-datum terms"
        )
    return per_datum


def _num_data(*traces) -> int | None:
    sizes = {
        site["unscaled_log_prob"].size(-1)
        for trace in traces
        for site in trace.nodes.values()
        if site["type"] == "sample" and "unscaled_log_prob" in site and site["unscaled_log_prob"].dim() >= 2
    }
    sizes.discard(1)
    if len(sizes) > 1:
        raise ValueError(f"importance_log_likelihood: sites disagree on the data-plate size: {sorted(sizes)}")
    return sizes.pop() if sizes else None


def _chunk_log_weights(
    model: Callable, guide: Callable, args: tuple, kwargs: dict, num_samples: int, max_plate_nesting: int
) -> torch.Tensor:
    """log p(x, z_k) - log q(z_k | x) per datum for one chunk of particles: shape (num_samples, B)."""
    _, model_trace, guide_trace = vectorized_importance_weights(
        model, guide, *args, num_samples=num_samples, max_plate_nesting=max_plate_nesting, **kwargs
    )
    model_sites = [s for s in model_trace.nodes.values() if s["type"] == "sample"]
    guide_sites = [s for s in guide_trace.nodes.values() if s["type"] == "sample" and not s["is_observed"]]
    guide_names = {s["name"] for s in guide_sites}
    missing = [s["name"] for s in model_sites if not s["is_observed"] and s["name"] not in guide_names]
    if missing:
        raise ValueError(f"importance_log_likelihood: model latent sites {missing} are not sampled by the guide")
    num_data = _num_data(model_trace, guide_trace)
    log_weight = 0.0
    for site in model_sites:
        log_weight = log_weight + _site_log_prob_per_datum(site, num_data)
    for site in guide_sites:
        log_weight = log_weight - _site_log_prob_per_datum(site, num_data)
    if not isinstance(log_weight, torch.Tensor):
        raise ValueError("importance_log_likelihood: the model has no sample sites")
    return log_weight.expand(num_samples, num_data or log_weight.size(-1))


def importance_log_likelihood(
    model: Callable,
    guide: Callable,
    *args,
    num_samples: int = 500,
    chunk_size: int = 50,
    max_plate_nesting: int = 1,
    validate: bool | None = None,
    **kwargs,
) -> torch.Tensor:
    """Importance-sampled log p(x_i) for every datum of a batch, shape (B,).

        log p(x_i) ~= logsumexp_{k=1..K} [log p(x_i, z_k) - log q(z_k | x_i)] - log K,  z_k ~ q(z | x_i)

    (Burda et al. 2016, eq. 8; ``docs/metrics.md#marginal-likelihood``, K = 500). The K particles are drawn in
    chunks of ``chunk_size`` through :func:`pyro.infer.importance.vectorized_importance_weights`
    (guide traced inside a ``num_particles_vectorized`` plate at dim ``-(max_plate_nesting + 1)``,
    model replayed against it). Each site's ``unscaled_log_prob`` is summed over its batch dims
    except the particle dim and the rightmost one, which must be the data plate, giving (chunk, B).

    ``unscaled_log_prob`` leaves out the factors of ``poutine.scale`` (e.g. a KL weight beta) and
    of subsampling (N / b), and the masks of ``poutine.mask``: the estimate is of the unscaled,
    unmasked model. A mask inside a distribution (``dist.mask(m)``, e.g. token padding) is part
    of its log-density and is kept. The estimate is a lower bound in expectation (Jensen) that
    tightens as K grows, and it is exact for any K when the guide is the exact posterior.

    Requirements: every latent site sits in the data plate (a global latent makes per-datum
    log p(x) undefined, raises ValueError), the guide samples every latent of the model, and the
    networks accept a leading sample dim. Randomness comes from torch's global RNG; different
    ``chunk_size`` values consume it differently, so they agree only within Monte-Carlo error.

    ``validate``: None keeps Pyro's global validation setting; False turns Pyro's argument and
    support checks off while estimating (for a text decoder they cost a full pass over the
    K x B x T x V logits, about 5% of the estimate; ``benchmarks/iw_eval.py``); True forces them on.
    """
    if not isinstance(num_samples, int) or num_samples < 1:
        raise ValueError(f"importance_log_likelihood: num_samples must be a positive int, got {num_samples!r}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"importance_log_likelihood: chunk_size must be a positive int, got {chunk_size!r}")
    if not isinstance(max_plate_nesting, int) or max_plate_nesting < 1:
        raise ValueError(
            "importance_log_likelihood: max_plate_nesting must be an int >= 1 (the data plate), "
            f"got {max_plate_nesting!r}"
        )
    if validate is not None and not isinstance(validate, bool):
        raise ValueError(f"importance_log_likelihood: validate must be None, True or False, got {validate!r}")
    checks = contextlib.nullcontext() if validate is None else pyro.validation_enabled(validate)
    chunks = []
    with torch.no_grad(), checks:
        for start in range(0, num_samples, chunk_size):
            size = min(chunk_size, num_samples - start)
            chunks.append(_chunk_log_weights(model, guide, args, kwargs, size, max_plate_nesting))
    log_weights = torch.cat(chunks, dim=0)
    return torch.logsumexp(log_weights, dim=0) - math.log(num_samples)


def perplexity(log_likelihoods: torch.Tensor, num_tokens: torch.Tensor | int) -> float:
    """PPL = exp(-sum_i log p(x_i) / sum_i T_i), T_i the tokens of sentence i counting ``</s>``
    (``docs/metrics.md#marginal-likelihood``)."""
    log_likelihoods = torch.as_tensor(log_likelihoods)
    total_tokens = float(torch.as_tensor(num_tokens).sum())
    if total_tokens <= 0:
        raise ValueError(f"perplexity: num_tokens must sum to a positive count, got {total_tokens}")
    return math.exp(-float(log_likelihoods.sum()) / total_tokens)


def negative_log_likelihood_summary(log_likelihoods: torch.Tensor, num_tokens: torch.Tensor | int) -> dict:
    """{"nll": mean -log p(x) per sentence, "ppl": :func:`perplexity`, "num_sentences": B,
    "num_tokens": total tokens} for reporting (``docs/metrics.md#marginal-likelihood``)."""
    log_likelihoods = torch.as_tensor(log_likelihoods)
    return {
        "nll": -float(log_likelihoods.mean()),
        "ppl": perplexity(log_likelihoods, num_tokens),
        "num_sentences": int(log_likelihoods.numel()),
        "num_tokens": int(torch.as_tensor(num_tokens).sum()),
    }
