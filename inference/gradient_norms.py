"""Per-term gradient norms of an ELBO's surrogate loss, per group of parameters (a diagnostic).

A Pyro ELBO's surrogate loss of one particle splits into the reconstruction term and the rest::

    loss   = R + L
    R      = -sum_{observed sites s} scale_s log p(x_s | z)      (the reconstruction)
    L      = loss - R                                           (the latent term: KL, density gap, ...)

and :func:`term_gradient_norms` returns ``||dR/dtheta_g||_2``, ``||dL/dtheta_g||_2`` and
``||d loss/dtheta_g||_2`` for every named group g of parameters (e.g. encoder and decoder), with the
global norm over all groups and the factor ``min(1, c / ||d loss/dtheta||_2)`` that a global-norm
clip at c applies to every gradient (:class:`inference.optim.ClippedOptim`). With several particles
each term is averaged over them, as the loss is. Nothing is stepped and no ``.grad`` is written.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

import torch
from pyro.infer import ELBO

from .elbo import TermsMixin

TERMS = ("reconstruction", "latent", "total")


def _observed_loss(model_trace) -> torch.Tensor | float:
    return -sum(
        site["log_prob_sum"]
        for site in model_trace.nodes.values()
        if site["type"] == "sample" and site["is_observed"]
    )


def _surrogate_terms(elbo: ELBO, model: Callable, guide: Callable, args, kwargs) -> dict[str, torch.Tensor]:
    reconstruction, total = 0.0, 0.0
    if isinstance(elbo, TermsMixin):
        elbo._reset_terms()
    for model_trace, guide_trace in elbo._get_traces(model, guide, args, kwargs):
        _, surrogate = elbo._differentiable_loss_particle(model_trace, guide_trace)
        reconstruction = reconstruction + _observed_loss(model_trace) / elbo.num_particles
        total = total + surrogate / elbo.num_particles
    if isinstance(elbo, TermsMixin):
        elbo._reset_terms()
    return {"reconstruction": reconstruction, "latent": total - reconstruction, "total": total}


def _gradients(term: torch.Tensor | float, params: list[torch.Tensor]) -> list[torch.Tensor]:
    if not torch.is_tensor(term) or not term.requires_grad:
        return [torch.zeros_like(p) for p in params]
    grads = torch.autograd.grad(term, params, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(p) if g is None else g.detach() for p, g in zip(params, grads)]


def _squared_norm(grads: Sequence[torch.Tensor]) -> float:
    return float(sum(g.pow(2).sum() for g in grads)) if grads else 0.0


def term_gradient_norms(
    elbo: ELBO,
    model: Callable,
    guide: Callable,
    groups: Mapping[str, Sequence[torch.Tensor]],
    *args,
    clip_norm: float | None = None,
    **kwargs,
) -> dict[str, float]:
    """Gradient norms of the reconstruction, latent and total terms of ``elbo`` at one draw.

    :param groups: name -> parameters (disjoint lists); each term's gradient norm is reported per group
        as ``"{term}/{group}"`` and over all groups as ``"{term}/all"``, ``term`` in
        ``reconstruction``, ``latent``, ``total``.
    :param clip_norm: c of a global-norm clip; adds ``"clip_factor"`` = ``min(1, c / total/all)``.
    :returns: the norms as floats; ``"reconstruction_loss"`` and ``"latent_loss"`` hold the terms.
    """
    terms = _surrogate_terms(elbo, model, guide, args, kwargs)
    names = list(groups)
    params = [p for name in names for p in groups[name]]
    grads = {term: _gradients(terms[term], params) for term in ("reconstruction", "latent")}
    grads["total"] = [a + b for a, b in zip(grads["reconstruction"], grads["latent"])]
    result: dict[str, float] = {}
    for term in TERMS:
        start, squares = 0, 0.0
        for name in names:
            size = len(groups[name])
            square = _squared_norm(grads[term][start : start + size])
            result[f"{term}/{name}"] = math.sqrt(square)
            start, squares = start + size, squares + square
        result[f"{term}/all"] = math.sqrt(squares)
    if clip_norm is not None:
        total = result["total/all"]
        result["clip_factor"] = 1.0 if total <= clip_norm else clip_norm / total
    result["reconstruction_loss"] = float(torch.as_tensor(terms["reconstruction"]).detach())
    result["latent_loss"] = float(torch.as_tensor(terms["latent"]).detach())
    return result
