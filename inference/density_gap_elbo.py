"""``DensityGapELBO``: the density-gap regulariser as a drop-in Pyro ELBO (Zhang et al. 2022, sec. 3).

A :class:`inference.latent_penalty.LatentPenaltyELBO` whose penalty is ``|B| KL(q_B || p)``,
estimated by :func:`inference.density_gap.density_gap_kl` (the math is in that module's docstring
and ``docs/maths.md#density-gap-estimator``). Swap ``loss=Trace_ELBO()`` for ``loss=DensityGapELBO()`` in an
SVI loop.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.distributions import Distribution

from pyro_textvae.checks import NON_NEGATIVE, check_value

from .density_gap import AGGREGATIONS, check_estimator_options, density_gap_kl
from .distributed import gather_distribution
from .latent_penalty import LatentPenaltyELBO
from .objective_configs import DGConfig

# LatentPenaltyELBO


class DensityGapELBO(LatentPenaltyELBO):
    """Trace_ELBO with the per-datum KL of chosen latent sites replaced by the density gap (DG-VAE).

        loss = - sum_{observed} log p(x|z) - sum_{other latents} [log p(z) - log q(z)]
               + sum_{DG sites} scale * beta * |B| * KL(q_B || p)

    with KL(q_B || p) from :func:`density_gap_kl` (Zhang et al. 2022, sec. 3; ``docs/maths.md#density-gap-estimator``).
    ``scale`` is the guide site's scale (the plate's subsample factor N/|B| times any
    ``poutine.scale``, e.g. a KL warm-up weight), so a subsampled plate of N data gives
    N KL(q_B || p), the scale of Trace_ELBO's summed KL. A site masked out by ``poutine.mask``
    contributes nothing. Prior and posterior come from the traces (``site["fn"]``), so any
    model/guide pair with a batch plate and reparameterised latent sites works.

    :param num_samples: M, samples per datum for the estimate.
    :param agg_size: aggregation size b (``None`` or 0: the whole batch).
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

    term_name = "density_gap"
    label = "the density gap"

    def __init__(
        self,
        num_samples: int = DGConfig.num_samples,
        agg_size: int | None = None,
        mode: str = DGConfig.mode,
        beta: float = 1.0,
        sites: Sequence[str] | None = None,
        chunk_size: int | None = None,
        agg: str = DGConfig.agg,
        **kwargs,
    ) -> None:
        agg_size = None if agg_size == 0 and not isinstance(agg_size, bool) else agg_size
        check_estimator_options(num_samples, agg_size, mode, chunk_size)
        check_value("agg", agg, str, choices=AGGREGATIONS)
        beta = NON_NEGATIVE.check("beta", beta)
        if isinstance(sites, str):
            raise TypeError(f"sites must be a sequence of site names, got the string {sites!r}")
        super().__init__(sites, **kwargs)
        self.num_samples, self.agg_size, self.mode, self.beta = num_samples, agg_size, mode, beta
        self.chunk_size, self.agg = chunk_size, agg
        self._estimates: list[float] = []

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        """``R = beta |B| sum_particles KL(q_B || p)``; the unscaled estimates are kept for ``last_terms``."""
        aggregate, offset = gather_distribution(posterior) if self.agg == "global" else (posterior, 0)
        kl = density_gap_kl(posterior, prior, self.num_samples, self.agg_size, self.mode, self.chunk_size,
                            aggregate, offset)
        self._estimates.extend(kl.detach().flatten().tolist())
        return self.beta * posterior.batch_shape[-1] * kl.sum()

    def _reset_terms(self) -> None:
        super()._reset_terms()
        self._estimates = []

    def _publish_terms(self) -> None:
        estimates = self._estimates
        super()._publish_terms()
        self.last_terms["kl_estimate"] = sum(estimates) / len(estimates) if estimates else math.nan
