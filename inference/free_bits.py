"""Free bits: the KL term counted only above a target (Kingma et al. 2016; ``docs/maths.md#baselines``).

Kingma et al. 2016, "Improved Variational Inference with Inverse Autoregressive Flow", appendix
"free bits".

Two forms, both in the per-datum sum convention of :class:`inference.latent_penalty.LatentPenaltyELBO`
(the penalty ``R`` replaces ``sum_{i in B} KL(q(z|x_i) || p)`` and is multiplied by the site's scale,
so KL warm-up and subsampling act on it as on the KL):

* fine, per dimension (:class:`FreeBitsELBO`): with ``lambda = target_kl / d`` and the KL of
  dimension k *averaged over the mini-batch*, as in Kingma et al. 2016 (there per group of
  dimensions; here every dimension is its own group, as in the text-VAE baselines)::

      R = |B| sum_k max(lambda, KL_k),   KL_k = (1/|B|) sum_{i in B} KL(q(z_k|x_i) || p(z_k)).

* coarse, per sentence (:class:`SentenceFreeBitsELBO`)::

      R = sum_{i in B} max(target_kl, KL(q(z|x_i) || p(z))).

Where the max takes the constant, the term passes no gradient: a dimension (or sentence) below its
target is left free to carry information. Both use the analytic KL (``torch.distributions.kl``),
so the penalised site needs a registered KL to its prior; the fine form also needs independent
one-dimensional marginals (``Normal(...).to_event(1)``).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.distributions import Distribution, Independent, kl_divergence

from pyro_textvae.checks import NON_NEGATIVE

from .latent_penalty import LatentPenaltyELBO
from .objective_configs import FreeBitsConfig


def per_dimension_kl(posterior: Distribution, prior: Distribution) -> torch.Tensor:
    """``KL(q(z_k|x_i) || p(z_k))`` of every dimension, shape ``(..., B, d)``, for ``Independent``
    posterior and prior over univariate distributions."""
    for role, distribution in (("posterior", posterior), ("prior", prior)):
        if not (isinstance(distribution, Independent) and distribution.reinterpreted_batch_ndims == 1
                and distribution.base_dist.event_shape == torch.Size()):
            raise ValueError(
                f"free-bits (per dimension) needs independent one-dimensional marginals, but the {role} is a "
                f"{type(distribution).__name__}; use free-bits-sentence"
            )
    return kl_divergence(posterior.base_dist, prior.base_dist)


class FreeBitsELBO(LatentPenaltyELBO):
    """Fine free bits: ``R = |B| sum_k max(target_kl / d, mean_i KL(q(z_k|x_i) || p(z_k)))``
    (Kingma et al. 2016, one group per dimension).

    :param target_kl: the total target over the d dimensions (4 in ``docs/maths.md#paper-settings``).
    :param sites: penalised latent sites (see :class:`LatentPenaltyELBO`).
    """

    term_name = "free_bits_kl"

    def __init__(self, target_kl: float = FreeBitsConfig.target_kl, sites: Sequence[str] = ("z",), **kwargs) -> None:
        super().__init__(sites, **kwargs)
        self.target_kl = NON_NEGATIVE.check("target_kl", target_kl)

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        kl = per_dimension_kl(posterior, prior)
        batch, dim = kl.shape[-2], kl.shape[-1]
        return batch * kl.mean(-2).clamp(min=self.target_kl / dim).sum()


class SentenceFreeBitsELBO(FreeBitsELBO):
    """Coarse free bits: ``R = sum_i max(target_kl, KL(q(z|x_i) || p(z)))`` (per sentence).

    :param target_kl: the per-sentence target (4 in ``docs/maths.md#paper-settings``).
    :param sites: penalised latent sites (see :class:`LatentPenaltyELBO`).
    """

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        return kl_divergence(posterior, prior).clamp(min=self.target_kl).sum()
