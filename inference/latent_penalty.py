"""ELBOs whose latent term is replaced by another penalty (free bits, AAE, WAE-MMD, the density gap).

For a latent site ``z`` inside a batch plate, ``Trace_ELBO`` minimises

    - sum_{i in B} [ log p(x_i|z_i) + s (log p(z_i) - log q(z_i|x_i)) ],   z_i ~ q(z|x_i),

``s`` the site's scale (the plate's subsample factor N/|B| times any ``poutine.scale``, e.g. the
KL warm-up weight of :func:`inference.handlers.scale_latent`). A :class:`LatentPenaltyELBO`
keeps every other term and puts ``s * R`` where the site's ``log p - log q`` stood:

    loss = - sum_{observed} log p(x|z) - sum_{other latents} [log p - log q] + sum_{penalised} s * R,

with ``R`` a penalty in the *per-datum sum convention*: it stands in for
``sum_{i in B} KL(q(z|x_i) || p(z))``, so a batch-level divergence D enters as ``|B| D``, exactly as
:class:`inference.density_gap_elbo.DensityGapELBO` enters ``|B| KL(q_B || p)``
(``docs/maths.md#why-the-kl-term-collapses``).
A site masked out by ``poutine.mask`` (a schedule weight of 0) contributes nothing. The other
latent sites keep ``Trace_ELBO``'s estimator: the reparameterised ones through their entropy term,
the others through the score function with the reward ``log p - log q`` of the sites kept in the
loss (the penalty, a batch term, is no part of that reward). Subclasses implement
:meth:`LatentPenaltyELBO.penalty`.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO
from pyro.infer.util import MultiFrameTensor, get_plate_stacks, torch_item
from torch.distributions import Distribution

from .elbo import TermsMixin

PARTICLE_PLATE = "num_particles_vectorized"


def _batch_frames(site: dict) -> list:
    """The site's plates but the vectorised-particles plate."""
    return [frame for frame in site["cond_indep_stack"] if frame.name != PARTICLE_PLATE]


def site_weight(name: str, site: dict, label: str) -> float | torch.Tensor | None:
    """The site's scale, one number for the batch, or ``None`` where ``poutine.mask`` drops the
    site; a partial mask or a scale per datum has no meaning for a batch term and is refused."""
    mask = site["mask"]
    if mask is False or (torch.is_tensor(mask) and not bool(mask.any())):
        return None
    if torch.is_tensor(mask) and not bool(mask.all()):
        raise ValueError(f"site {name!r}: {label} is a batch term and cannot take a partial mask")
    scale = site["scale"]
    if torch.is_tensor(scale):
        if scale.numel() != 1:
            raise ValueError(f"site {name!r}: {label} needs one scale for the batch, got shape {tuple(scale.shape)}")
        return scale.reshape(())
    return scale


def _compute_log_r(model_trace, guide_trace, skipped: Sequence[str]) -> MultiFrameTensor:
    """Per-plate ``log p - log q`` of the sites kept in the loss: the score-function reward."""
    log_r = MultiFrameTensor()
    stacks = get_plate_stacks(model_trace)
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and name not in skipped:
            term = site["log_prob"]
            if not site["is_observed"]:
                term = term - guide_trace.nodes[name]["log_prob"]
            log_r.add((stacks[name], term.detach()))
    return log_r


def data_plate_size(site: dict) -> int:
    """The full size N of the site's batch plate at dim -1 (a subsampled plate's ``size``, not the batch)."""
    frame = next(frame for frame in _batch_frames(site) if frame.vectorized and frame.dim == -1)
    return frame.size if frame.full_size is None else frame.full_size


def check_penalised_site(name: str, model_trace, guide_trace, label: str) -> None:
    """Refuse a site the penalty cannot replace: not latent in guide and model, not
    reparameterised, no event shape ``(d,)``, or no vectorised batch plate at dim -1."""
    latent = [n for n, s in guide_trace.nodes.items() if s["type"] == "sample" and not s["is_observed"]]
    if name not in latent:
        raise ValueError(f"sites: {name!r} is not a latent sample site of the guide (latent sites: {latent})")
    model_site = model_trace.nodes.get(name)
    if model_site is None or model_site["type"] != "sample" or model_site["is_observed"]:
        raise ValueError(f"site {name!r} is not a latent sample site of the model")
    guide_site = guide_trace.nodes[name]
    posterior = guide_site["fn"]
    if not posterior.has_rsample:
        raise ValueError(f"site {name!r}: {label} needs a reparameterised guide distribution, but "
                         f"{type(posterior).__name__} has no rsample; choose other sites with sites=[...]")
    if len(posterior.event_shape) != 1:
        raise ValueError(f"site {name!r}: {label} needs event shape (d,), got {tuple(posterior.event_shape)}")
    if not any(frame.vectorized and frame.dim == -1 for frame in _batch_frames(guide_site)):
        raise ValueError(f"site {name!r} needs a vectorised batch plate as its rightmost batch dim (dim=-1)")


class LatentPenaltyELBO(TermsMixin, Trace_ELBO):
    """``Trace_ELBO`` with the ``log p(z) - log q(z|x)`` of the sites ``sites`` replaced by ``s * R``.

    :param sites: names of the penalised latent sites; each must be a reparameterised guide site
        with event shape ``(d,)`` whose rightmost batch dim is a vectorised batch plate. ``None``:
        every latent guide site inside a batch plate (the vectorised-particles plate does not count).
    Other ``Trace_ELBO`` options (``num_particles``, ``vectorize_particles``, ...) pass through.

    After each evaluation ``last_terms`` holds ``reconstruction`` (the NLL of the observed sites)
    and the penalty under the name :attr:`term_name` (as it entered the loss), averaged over
    particles. :attr:`label` names the penalty in error messages.
    """

    term_name = "penalty"
    label = "the latent penalty"

    def __init__(self, sites: Sequence[str] | None = ("z",), **kwargs) -> None:
        if isinstance(sites, str) or (sites is not None and not sites):
            raise TypeError(f"sites must be a non-empty sequence of site names, got {sites!r}")
        super().__init__(**kwargs)
        self.sites = None if sites is None else tuple(sites)
        self.last_terms: dict[str, float] = {}
        self._records: list[dict] = []

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        """``R`` for one site: the replacement of ``sum_i KL(q(z|x_i) || p)``, summed over leading
        (vectorised-particle) dims. ``posterior`` and ``prior`` have batch shape ``(..., B)``,
        ``value`` (the guide's sample) shape ``(..., B, d)``."""
        raise NotImplementedError

    def site_penalty(self, guide_site: dict, prior: Distribution) -> torch.Tensor:
        """``R`` for one guide site: :meth:`penalty` of its distribution, ``prior`` and its value. A
        penalty that needs more of the site (its plate's size) overrides this hook."""
        return self.penalty(guide_site["fn"], prior, guide_site["value"])

    def _penalised_sites(self, model_trace, guide_trace) -> tuple[str, ...]:
        names = self.sites
        if names is None:
            names = tuple(name for name, site in guide_trace.nodes.items() if site["type"] == "sample"
                          and not site["is_observed"] and _batch_frames(site))
        for name in names:
            check_penalised_site(name, model_trace, guide_trace, self.label)
        return names

    def _penalty_term(self, model_trace, guide_trace, names: Sequence[str]) -> torch.Tensor | float:
        """``sum_sites s * R`` over the sites that no mask drops."""
        total = 0.0
        for name in names:
            guide_site = guide_trace.nodes[name]
            weight = site_weight(name, guide_site, self.label)
            if weight is not None:
                total = total + weight * self.site_penalty(guide_site, model_trace.nodes[name]["fn"])
        return total

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        names = self._penalised_sites(model_trace, guide_trace)
        elbo_particle, surrogate_elbo_particle, reconstruction, log_r = 0.0, 0.0, 0.0, None
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and name not in names:
                elbo_particle += torch_item(site["log_prob_sum"])
                surrogate_elbo_particle = surrogate_elbo_particle + site["log_prob_sum"]
                if site["is_observed"]:
                    reconstruction -= torch_item(site["log_prob_sum"])
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in names:
                _, score_function_term, entropy_term = site["score_parts"]
                elbo_particle -= torch_item(site["log_prob_sum"])
                if not is_identically_zero(entropy_term):
                    surrogate_elbo_particle = surrogate_elbo_particle - entropy_term.sum()
                if not is_identically_zero(score_function_term):
                    if log_r is None:
                        log_r = _compute_log_r(model_trace, guide_trace, names)
                    reward = log_r.sum_to(site["cond_indep_stack"])
                    surrogate_elbo_particle = surrogate_elbo_particle + (reward * score_function_term).sum()
        penalty = self._penalty_term(model_trace, guide_trace, names)
        elbo_particle -= torch_item(penalty)
        surrogate_elbo_particle = surrogate_elbo_particle - penalty
        self._records.append({"reconstruction": reconstruction, self.term_name: torch_item(penalty)})
        return -elbo_particle, -surrogate_elbo_particle
