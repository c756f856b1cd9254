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
from .gaussian_mixture import check_compiler
from .latent_penalty import LatentPenaltyELBO, data_plate_size
from .objective_configs import AGGREGATES, KERNELS, DGConfig
from .posterior_memory import PosteriorMemory


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
    :param aggregate: what the density gap is taken against (``docs/maths.md#the-data-sets-aggregate``):
        ``"batch"``, q_B (the paper's); ``"stratified"``, the data set's aggregate q_D estimated from the
        batch with stratified weights (1/N for a sample's own posterior, (N - 1)/(N (b - 1)) for each
        other one; N the batch plate's size); ``"memory"``, the mixture of the batch's b posteriors and
        the last ``memory_size`` training posteriors (detached), b + K components of equal weight.
        Under ``agg="global"`` the memory holds the last K posteriors of the global batches, the same
        on every process.
    :param memory_size: K, the posteriors the memory keeps (``aggregate="memory"``). Each training
        step (:meth:`loss_and_grads`) pushes its batch after the loss is computed; ``loss`` and
        ``differentiable_loss`` read the memory and leave it as it is. :meth:`state_dict` saves it.
    :param kernel: ``"eager"`` or ``"compiled"``: how the per-dimension mixture of Normal posteriors is
        computed (:func:`inference.gaussian_mixture.per_coordinate_log_mixture`); the joint density gap
        and other posterior families do not use it.

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
        aggregate: str = DGConfig.aggregate,
        memory_size: int = DGConfig.memory_size,
        kernel: str = DGConfig.kernel,
        **kwargs,
    ) -> None:
        agg_size = None if agg_size == 0 and not isinstance(agg_size, bool) else agg_size
        check_estimator_options(num_samples, agg_size, mode, chunk_size)
        check_value("agg", agg, str, choices=AGGREGATIONS)
        check_value("aggregate", aggregate, str, choices=AGGREGATES)
        check_value("kernel", kernel, str, choices=KERNELS)
        if kernel == "compiled":
            check_compiler()
        beta = NON_NEGATIVE.check("beta", beta)
        if isinstance(sites, str):
            raise TypeError(f"sites must be a sequence of site names, got the string {sites!r}")
        super().__init__(sites, **kwargs)
        self.num_samples, self.agg_size, self.mode, self.beta = num_samples, agg_size, mode, beta
        self.chunk_size, self.agg, self.aggregate, self.memory_size = chunk_size, agg, aggregate, memory_size
        self.kernel = kernel
        self.memory = PosteriorMemory(memory_size) if aggregate == "memory" else None
        self._estimates: list[float] = []
        self._pending: list[Distribution] = []
        self._memory_sites: set[str] = set()
        self._evaluated: Distribution | None = None  # the last evaluation's aggregate, for the memory

    def site_penalty(self, guide_site: dict, prior: Distribution) -> torch.Tensor:
        """:meth:`penalty` with N, the batch plate's size, for ``aggregate="stratified"``."""
        if self.memory is not None:
            self._memory_sites.add(guide_site["name"])
            if len(self._memory_sites) > 1:
                raise ValueError(f'aggregate="memory" keeps the posteriors of one latent site, got '
                                 f"{sorted(self._memory_sites)}; choose one with sites=[...]")
        num_data = data_plate_size(guide_site) if self.aggregate == "stratified" else None
        return self.penalty(guide_site["fn"], prior, guide_site["value"], num_data)

    def penalty(
        self, posterior: Distribution, prior: Distribution, value: torch.Tensor, num_data: int | None = None
    ) -> torch.Tensor:
        """``R = beta |B| sum_particles KL(q_B || p)`` (q_D's estimate in place of q_B for the
        aggregates beyond the batch); the unscaled estimates are kept for ``last_terms``."""
        aggregate, offset = gather_distribution(posterior) if self.agg == "global" else (posterior, 0)
        shared = 0
        if self.memory is not None:
            self._pending.append(aggregate)
            aggregate, shared = self.memory.extend(aggregate)
        weights = "stratified" if num_data is not None else "uniform"
        kl = density_gap_kl(posterior, prior, self.num_samples, self.agg_size, self.mode, self.chunk_size,
                            aggregate, offset, weights, num_data, shared, kernel=self.kernel)
        self._estimates.extend(kl.detach().flatten().tolist())
        return self.beta * posterior.batch_shape[-1] * kl.sum()

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        """``Trace_ELBO.loss_and_grads``, then the batch's posteriors pushed into the memory (if any)."""
        loss = super().loss_and_grads(model, guide, *args, **kwargs)
        if self.memory is not None and self._evaluated is not None:
            self.memory.push(self._evaluated)
        return loss

    def state_dict(self) -> dict:
        """The memory's state (empty without one): saved in ``last.pt`` so a resumed run is bit-identical."""
        return {"memory": self.memory.state_dict()} if self.memory is not None else {}

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`'s output (a run saved before the memory existed has none: empty)."""
        if self.memory is not None and state.get("memory") is not None:
            self.memory.load_state_dict(state["memory"])

    def _reset_terms(self) -> None:
        super()._reset_terms()
        self._estimates, self._pending, self._memory_sites = [], [], set()

    def _publish_terms(self) -> None:
        estimates, pending = self._estimates, self._pending
        super()._publish_terms()
        self._evaluated = pending[-1] if pending else None
        self.last_terms["kl_estimate"] = sum(estimates) / len(estimates) if estimates else math.nan
