"""``DensityGapELBO``: the density-gap regulariser as a drop-in Pyro ELBO (Zhang et al. 2022, sec. 3).

A ``Trace_ELBO`` whose per-datum KL terms at the chosen latent sites are replaced by
``|B| KL(q_B || p)``, estimated by :func:`inference.density_gap.density_gap_kl` (the math is in
that module's docstring and ``dg-vae.md`` sec. 2-3). Swap ``loss=Trace_ELBO()`` for
``loss=DensityGapELBO()`` in an SVI loop.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from pyro.distributions.util import is_identically_zero
from pyro.infer import Trace_ELBO
from pyro.infer.util import MultiFrameTensor, get_plate_stacks, torch_item

from .density_gap import (
    AGGREGATIONS,
    PARTICLE_PLATE,
    check_estimator_options,
    density_gap_kl,
)
from .distributed import gather_distribution
from .elbo import TermsMixin


def _batch_frames(site: dict) -> list:
    return [frame for frame in site["cond_indep_stack"] if frame.name != PARTICLE_PLATE]


def _site_is_active(name: str, site: dict) -> bool:
    """False where ``poutine.mask`` drops the site's terms; a partial mask has no batch-level meaning."""
    mask = site["mask"]
    if mask is None or mask is True:
        return True
    if mask is False:
        return False
    if bool(mask.all()):
        return True
    if not bool(mask.any()):
        return False
    raise ValueError(f"site {name!r}: the density gap is a batch term and cannot take a partial mask")


def _site_scale(name: str, site: dict) -> float | torch.Tensor:
    scale = site["scale"]
    if torch.is_tensor(scale):
        if scale.numel() != 1:
            raise ValueError(
                f"site {name!r}: the density gap needs one scale for the batch, "
                f"got shape {tuple(scale.shape)}"
            )
        return scale.reshape(())
    return scale


def _score_function_reward(model_trace, guide_trace, skipped: Sequence[str]) -> MultiFrameTensor:
    """Per-plate ``log p - log q`` of the sites kept in the loss: the score-function reward of
    non-reparameterised sites (the density-gap term, a batch term, is left out of it)."""
    reward = MultiFrameTensor()
    stacks = get_plate_stacks(model_trace)
    for name, site in model_trace.nodes.items():
        if site["type"] == "sample" and name not in skipped:
            term = site["log_prob"]
            if not site["is_observed"]:
                term = term - guide_trace.nodes[name]["log_prob"]
            reward.add((stacks[name], term.detach()))
    return reward


class DensityGapELBO(TermsMixin, Trace_ELBO):
    """Trace_ELBO with the per-datum KL of chosen latent sites replaced by the density gap (DG-VAE).

        loss = - sum_{observed} log p(x|z) - sum_{other latents} [log p(z) - log q(z)]
               + beta * sum_{DG sites} scale * |B| * KL(q_B || p)

    with KL(q_B || p) from :func:`density_gap_kl` (Zhang et al. 2022, sec. 3; ``dg-vae.md`` sec. 3).
    ``scale`` is the guide site's scale (the plate's subsample factor N/|B| times any
    ``poutine.scale``, e.g. a KL warm-up weight), so a subsampled plate of N data gives
    N KL(q_B || p), the scale of Trace_ELBO's summed KL. A site masked out by ``poutine.mask``
    contributes nothing. Prior and posterior come from the traces (``site["fn"]``), so any
    model/guide pair with a batch plate and reparameterised latent sites works.

    :param num_samples: M, samples per datum for the estimate.
    :param agg_size: aggregation size b (``None``: the whole batch).
    :param mode: ``"marginal"`` or ``"joint"`` (see :func:`density_gap_kl`).
    :param beta: weight of the density-gap term.
    :param sites: latent site names to regularise; ``None``: every latent guide site inside a
        batch plate (the vectorised-particles plate does not count).
    :param chunk_size: passed to :func:`density_gap_kl`.
    :param agg: ``"local"``: q_B aggregates this process's batch. ``"global"``: under
        ``torch.distributed``, q_B aggregates every rank's batch (parameters gathered by
        :func:`inference.distributed.gather_distribution`, differentiable) and this rank's term is
        the mean density gap of its own samples, so with N ranks of equal batches B the average of
        the ranks' terms, and of their gradients, is the single-process KL(q_{NB} || p) estimate on
        the global batch (Zhang et al. 2022, sec. 3 with B -> NB). Without a process group both
        are the same.

    After each evaluation ``last_terms`` holds ``reconstruction`` (the NLL of the observed sites,
    scaled as in the loss), ``density_gap`` (the term as it entered the loss) and ``kl_estimate``
    (the unscaled KL(q_B || p), averaged over sites and particles; NaN when every site is masked),
    each averaged over particles.
    """

    def __init__(
        self,
        num_samples: int = 32,
        agg_size: int | None = None,
        mode: str = "marginal",
        beta: float = 1.0,
        sites: Sequence[str] | None = None,
        num_particles: int = 1,
        vectorize_particles: bool = False,
        max_plate_nesting: float = float("inf"),
        chunk_size: int | None = None,
        agg: str = "local",
        **kwargs,
    ) -> None:
        check_estimator_options(num_samples, agg_size, mode, chunk_size)
        if agg not in AGGREGATIONS:
            raise ValueError(f"agg must be one of {AGGREGATIONS}, got {agg!r}")
        if beta < 0:
            raise ValueError(f"beta must be >= 0, got {beta}")
        if isinstance(sites, str):
            raise TypeError(f"sites must be a sequence of site names, got the string {sites!r}")
        super().__init__(
            num_particles=num_particles,
            vectorize_particles=vectorize_particles,
            max_plate_nesting=max_plate_nesting,
            **kwargs,
        )
        self.num_samples = num_samples
        self.agg_size = agg_size
        self.mode = mode
        self.beta = beta
        self.sites = None if sites is None else tuple(sites)
        self.chunk_size = chunk_size
        self.agg = agg
        self.last_terms: dict[str, float] = {}
        self._records: list[dict] = []

    def _density_gap_sites(self, model_trace, guide_trace) -> tuple[str, ...]:
        latent = [
            name
            for name, site in guide_trace.nodes.items()
            if site["type"] == "sample" and not site["is_observed"]
        ]
        if self.sites is None:
            names = tuple(name for name in latent if _batch_frames(guide_trace.nodes[name]))
        else:
            names = self.sites
        for name in names:
            if name not in latent:
                raise ValueError(
                    f"sites: {name!r} is not a latent sample site of the guide (latent sites: {latent})"
                )
            model_site = model_trace.nodes.get(name)
            if model_site is None or model_site["type"] != "sample" or model_site["is_observed"]:
                raise ValueError(f"site {name!r} is not a latent sample site of the model")
            guide_site = guide_trace.nodes[name]
            if not guide_site["fn"].has_rsample:
                raise ValueError(
                    f"site {name!r}: the density gap needs a reparameterised guide distribution, but "
                    f"{type(guide_site['fn']).__name__} has no rsample; choose other sites with sites=[...]"
                )
            if not any(frame.vectorized and frame.dim == -1 for frame in _batch_frames(guide_site)):
                raise ValueError(
                    f"site {name!r} needs a vectorised batch plate as its rightmost batch dim (dim=-1)"
                )
        return names

    def _density_gap_term(self, model_trace, guide_trace, names: Sequence[str]):
        """``beta * sum_sites scale * |B| * sum_particles KL(q_B || p)`` and the unscaled estimates."""
        total, estimates = 0.0, []
        for name in names:
            guide_site = guide_trace.nodes[name]
            if not _site_is_active(name, guide_site):
                continue
            posterior = guide_site["fn"]
            prior = model_trace.nodes[name]["fn"]
            aggregate, offset = gather_distribution(posterior) if self.agg == "global" else (posterior, 0)
            kl = density_gap_kl(
                posterior, prior, self.num_samples, self.agg_size, self.mode, self.chunk_size, aggregate, offset
            )
            total = total + self.beta * _site_scale(name, guide_site) * posterior.batch_shape[-1] * kl.sum()
            estimates.extend(kl.detach().flatten().tolist())
        return total, estimates

    def _differentiable_loss_particle(self, model_trace, guide_trace):
        names = self._density_gap_sites(model_trace, guide_trace)
        elbo, surrogate, reconstruction = 0.0, 0.0, 0.0
        for name, site in model_trace.nodes.items():
            if site["type"] == "sample" and name not in names:
                elbo += torch_item(site["log_prob_sum"])
                surrogate = surrogate + site["log_prob_sum"]
                if site["is_observed"]:
                    reconstruction -= torch_item(site["log_prob_sum"])
        reward = None
        for name, site in guide_trace.nodes.items():
            if site["type"] == "sample" and name not in names:
                _, score_function_term, entropy_term = site["score_parts"]
                elbo -= torch_item(site["log_prob_sum"])
                if not is_identically_zero(entropy_term):
                    surrogate = surrogate - entropy_term.sum()
                if not is_identically_zero(score_function_term):
                    if reward is None:
                        reward = _score_function_reward(model_trace, guide_trace, names)
                    site_reward = reward.sum_to(site["cond_indep_stack"])
                    surrogate = surrogate + (site_reward * score_function_term).sum()
        density_gap, estimates = self._density_gap_term(model_trace, guide_trace, names)
        elbo -= torch_item(density_gap)
        surrogate = surrogate - density_gap
        self._records.append({"reconstruction": reconstruction, "density_gap": torch_item(density_gap),
                              "estimates": estimates})
        return -elbo, -surrogate

    def _publish_terms(self) -> None:
        estimates = [value for record in self._records for value in record["estimates"]]
        self.last_terms = {
            "reconstruction": sum(record["reconstruction"] for record in self._records) / self.num_particles,
            "density_gap": sum(record["density_gap"] for record in self._records) / self.num_particles,
            "kl_estimate": sum(estimates) / len(estimates) if estimates else math.nan,
        }
        self._records = []
