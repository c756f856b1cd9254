"""ELBOs whose latent term is replaced by another penalty (free bits, AAE, WAE-MMD).

For a latent site ``z`` inside a batch plate, ``Trace_ELBO`` minimises

    - sum_{i in B} [ log p(x_i|z_i) + s (log p(z_i) - log q(z_i|x_i)) ],   z_i ~ q(z|x_i),

``s`` the site's scale (the plate's subsample factor N/|B| times any ``poutine.scale``, e.g. the
KL warm-up weight of :func:`inference.handlers.scale_latent`). A :class:`LatentPenaltyELBO`
keeps every other term and puts ``s * R`` where the site's ``log p - log q`` stood:

    loss = - sum_{observed} log p(x|z) - sum_{other latents} [log p - log q] + sum_{penalised} s * R,

with ``R`` a penalty in the *per-datum sum convention*: it stands in for
``sum_{i in B} KL(q(z|x_i) || p(z))``, so a batch-level divergence D enters as ``|B| D``, exactly as
:class:`inference.density_gap.DensityGapELBO` enters ``|B| KL(q_B || p)`` (``dg-vae.md`` sec. 2).
A site masked out by ``poutine.mask`` (a schedule weight of 0) contributes nothing. Subclasses
implement :meth:`LatentPenaltyELBO.penalty`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO
from pyro.infer.util import torch_item
from torch.distributions import Distribution

from .elbo import TermsMixin

PARTICLE_PLATE = "num_particles_vectorized"


def _site_weight(name: str, site: dict) -> float | torch.Tensor | None:
    """The site's scale, or ``None`` where ``poutine.mask`` drops it; one number for the batch."""
    mask = site["mask"]
    if mask is False or (torch.is_tensor(mask) and not bool(mask.any())):
        return None
    if torch.is_tensor(mask) and not bool(mask.all()):
        raise ValueError(f"site {name!r}: a batch-level latent penalty cannot take a partial mask")
    scale = site["scale"]
    if torch.is_tensor(scale):
        if scale.numel() != 1:
            raise ValueError(
                f"site {name!r}: the latent penalty needs one scale for the batch, got {tuple(scale.shape)}"
            )
        return scale.reshape(())
    return scale


class LatentPenaltyELBO(TermsMixin, Trace_ELBO):
    """``Trace_ELBO`` with the ``log p(z) - log q(z|x)`` of the sites ``sites`` replaced by ``s * R``.

    :param sites: names of the penalised latent sites; each must be a reparameterised guide site
        with event shape ``(d,)`` whose rightmost batch dim is a vectorised batch plate.
    Other ``Trace_ELBO`` options (``num_particles``, ``vectorize_particles``, ...) pass through;
    every other latent site must be reparameterised too.

    After each evaluation ``last_terms`` holds ``reconstruction`` (the NLL of the observed sites)
    and the penalty under the name :attr:`term_name` (as it entered the loss), averaged over
    particles.
    """

    term_name = "penalty"

    def __init__(self, sites: Sequence[str] = ("z",), **kwargs) -> None:
        if isinstance(sites, str) or not sites:
            raise TypeError(f"sites must be a non-empty sequence of site names, got {sites!r}")
        super().__init__(**kwargs)
        self.sites = tuple(sites)
        self.last_terms: dict[str, float] = {}
        self._records: list[dict] = []

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        """``R`` for one site: the replacement of ``sum_i KL(q(z|x_i) || p)``, summed over leading
        (vectorised-particle) dims. ``posterior`` and ``prior`` have batch shape ``(..., B)``,
        ``value`` (the guide's sample) shape ``(..., B, d)``."""
        raise NotImplementedError

    def _check_sites(self, model_trace, guide_trace) -> None:
        latent = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]]
        for name in self.sites:
            if name not in latent:
                raise ValueError(f"sites: {name!r} is not a latent sample site of the guide (latent sites: {latent})")
            model_site = model_trace.nodes.get(name)
            if model_site is None or model_site["type"] != "sample" or model_site["is_observed"]:
                raise ValueError(f"site {name!r} is not a latent sample site of the model")
            guide_site = guide_trace.nodes[name]
            posterior = guide_site["fn"]
            if not posterior.has_rsample:
                raise ValueError(f"site {name!r}: the latent penalty needs a reparameterised guide distribution, "
                                 f"but {type(posterior).__name__} has no rsample")
            if len(posterior.event_shape) != 1:
                raise ValueError(
                    f"site {name!r}: the latent penalty needs event shape (d,), got {tuple(posterior.event_shape)}"
                )
            frames = [f for f in guide_site["cond_indep_stack"] if f.name != PARTICLE_PLATE]
            if not any(frame.vectorized and frame.dim == -1 for frame in frames):
                raise ValueError(f"site {name!r} needs a vectorised batch plate as its rightmost batch dim (dim=-1)")

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        self._check_sites(model_trace, guide_trace)
        elbo, reconstruction = 0.0, 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and name not in self.sites:
                elbo = elbo + site["log_prob_sum"]
                if site["is_observed"]:
                    reconstruction -= torch_item(site["log_prob_sum"])
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in self.sites:
                if not is_identically_zero(site["score_parts"].score_function):
                    raise ValueError(f"site {name!r} is not reparameterised; {type(self).__name__} supports "
                                     "reparameterised latent sites only")
                elbo = elbo - site["log_prob_sum"]
        penalty = 0.0
        for name in self.sites:
            guide_site = guide_trace.nodes[name]
            weight = _site_weight(name, guide_site)
            if weight is not None:
                term = self.penalty(guide_site["fn"], model_trace.nodes[name]["fn"], guide_site["value"])
                penalty = penalty + weight * term
        objective = elbo - penalty
        self._records.append({"reconstruction": reconstruction, self.term_name: torch_item(penalty)})
        return -torch_item(objective), -objective
