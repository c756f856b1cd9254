"""Per-datum ELBO terms of a model/guide pair, read from Pyro traces.

For a guide sample ``z ~ q(z|x)`` (one particle)::

    reconstruction(x) = -sum_{observed sites s} log p(x_s | z)
    kl(x)             =  sum_{latent sites s} KL(q(z_s|x) || p(z_s))      (analytic)
    -ELBO(x)          =  reconstruction(x) + kl(x)

(Kingma and Welling 2014, eq. 7). The per-datum values come from the sites' unscaled
``fn.log_prob`` and ``kl_divergence``, so subsampling scales and KL weights do not enter: these
are the quantities reported as Rec, KL and ELBO (``dg-vae.md`` sec. 5). Sites outside the batch
plate are not supported here.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine
from pyro.poutine.util import site_is_subsample
from torch.distributions import kl_divergence


def elbo_terms(model: Callable, guide: Callable, *args, **kwargs) -> dict[str, torch.Tensor]:
    """Return ``{"reconstruction": (B,), "kl": (B,)}`` for one guide sample (no gradients kept)."""
    with torch.no_grad():
        guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
        model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
    reconstruction, kl = 0.0, 0.0
    for name, site in model_trace.nodes.items():
        if site["type"] != "sample" or site_is_subsample(site):
            continue
        if site["is_observed"]:
            reconstruction = reconstruction - site["fn"].log_prob(site["value"])
        elif name in guide_trace.nodes:
            kl = kl + kl_divergence(guide_trace.nodes[name]["fn"], site["fn"])
    return {"reconstruction": torch.as_tensor(reconstruction), "kl": torch.as_tensor(kl)}


class TermsMixin:
    """Mixin for ``Trace_ELBO`` subclasses: keep the last particle's terms for progress logging.

    ``last_terms = {"reconstruction": -sum_obs log p (scaled as in the loss), "kl": loss - reconstruction}``.
    """

    last_terms: dict[str, float]

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        reconstruction = -sum(
            float(site["log_prob_sum"].detach())
            for site in model_trace.nodes.values()
            if site["type"] == "sample" and site["is_observed"]
        )
        self.last_terms = {"reconstruction": reconstruction, "kl": float(loss) - reconstruction}
        return loss, surrogate
