"""Per-datum ELBO terms of a model/guide pair, read from Pyro traces.

For a guide sample ``z ~ q(z|x)`` (one particle)::

    reconstruction(x) = -sum_{observed sites s} log p(x_s | z)
    kl(x)             =  sum_{latent sites s} KL(q(z_s|x) || p(z_s))      (analytic)
    -ELBO(x)          =  reconstruction(x) + kl(x)

(Kingma and Welling 2014, eq. 7). The per-datum values come from the sites' unscaled
``fn.log_prob`` and ``kl_divergence``, so subsampling scales and KL weights do not enter: these
are the quantities reported as Rec, KL and ELBO (``docs/metrics.md#rec-kl-and-elbo``). Sites outside the batch
plate are not supported here.
"""
from __future__ import annotations

from collections.abc import Callable

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.util import site_is_subsample
from pyro.util import warn_if_nan
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
    """Mixin for ``Trace_ELBO`` subclasses: route ``loss`` through the particle hook and publish terms.

    ``Trace_ELBO.loss`` recomputes ``log p - log q`` itself instead of calling
    ``_differentiable_loss_particle``, so a subclass that changes the objective must override it
    (``docs/maths.md#latent-terms-in-pyro``). The subclass's hook appends a dict of terms per particle to
    ``self._records`` (summed over a vectorised particle dim, as Pyro does); after each ``loss``,
    ``differentiable_loss`` or ``loss_and_grads`` they are averaged into ``self.last_terms``.
    """

    last_terms: dict[str, float]

    def _reset_terms(self) -> None:
        """Forget the terms of an earlier evaluation (called before each one)."""
        self._records = []

    def _publish_terms(self) -> None:
        records = getattr(self, "_records", [])
        self._reset_terms()
        self.last_terms = {key: sum(r[key] for r in records) / self.num_particles for key in (records or [{}])[0]}

    def loss(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective, averaged over particles, through the particle hook."""
        self._reset_terms()
        loss = 0.0
        with torch.no_grad():
            for model_trace, guide_trace in self._get_traces(model, guide, args, kwargs):
                loss += self._differentiable_loss_particle(model_trace, guide_trace)[0] / self.num_particles
        warn_if_nan(loss, "loss")
        self._publish_terms()
        return loss

    def differentiable_loss(self, model: Callable, guide: Callable, *args, **kwargs) -> torch.Tensor:
        """The negative objective as a differentiable surrogate (see ``Trace_ELBO``)."""
        self._reset_terms()
        loss = super().differentiable_loss(model, guide, *args, **kwargs)
        self._publish_terms()
        return loss

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """The negative objective; runs backward on its surrogate (see ``Trace_ELBO``)."""
        self._reset_terms()
        loss = super().loss_and_grads(model, guide, *args, **kwargs)
        self._publish_terms()
        return loss


def observed_negative_log_likelihood(model_trace: poutine.Trace) -> float:
    """``-sum`` of the observed sites' scaled log-probabilities (``pyro.factor`` sites included)."""
    return -sum(
        float(site["log_prob_sum"].detach())
        for site in model_trace.nodes.values()
        if site["type"] == "sample" and site["is_observed"]
    )


def latent_log_ratio(model_trace: poutine.Trace, guide_trace: poutine.Trace) -> float:
    """``sum log q(z|x) - sum log p(z)`` over the latent sites, scaled as in the loss: the
    single-sample KL term, summed from its own sites (not ``loss - reconstruction``, which is
    ``inf - inf`` when only the reconstruction is infinite)."""
    def total(trace: poutine.Trace) -> float:
        return sum(float(site["log_prob_sum"].detach()) for site in trace.nodes.values()
                   if site["type"] == "sample" and not site["is_observed"] and not site_is_subsample(site))

    return total(guide_trace) - total(model_trace)


class LoggedTrace_ELBO(TermsMixin, Trace_ELBO):
    """``Trace_ELBO`` keeping its reconstruction and KL terms in ``last_terms`` for the progress bar."""

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        loss, surrogate = super()._differentiable_loss_particle(model_trace, guide_trace)
        reconstruction = observed_negative_log_likelihood(model_trace)
        self._records.append({"reconstruction": reconstruction, "kl": latent_log_ratio(model_trace, guide_trace)})
        return loss, surrogate
