"""The registry of training objectives: one name, one loss, one weight schedule, model options.

An :class:`Objective` is the Pyro-native form of a method of ``docs/maths.md#baselines``: a loss term is
an ELBO subclass, the weight of the latent term a schedule applied by
:func:`inference.handlers.scale_latent`, a different posterior family or decoder a model option.
A comparison is one loop over :data:`OBJECTIVES`:

* ELBO with a schedule: ``elbo`` (linear warm-up), ``beta``, ``cyclical``, ``ae`` (weight 0);
* ELBO with a model option: ``bn`` (BN-VAE posterior), ``delta`` (delta-VAE posterior),
  ``vmf`` (vMF posterior, uniform prior), ``skip`` (skip decoder), ``bow`` (bag-of-words loss);
* the latent term replaced (:mod:`inference.latent_penalty`): ``free-bits``,
  ``free-bits-sentence`` (:mod:`inference.free_bits`), ``aae`` (:mod:`inference.adversarial`),
  ``wae-mmd`` (:mod:`inference.mmd`), ``dg``, ``dg-vmf`` (:mod:`inference.density_gap`).

Every latent term, replaced or not, is weighted by the schedule through the site's scale.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pyro.infer import ELBO

from .adversarial import AdversarialELBO
from .density_gap_elbo import DensityGapELBO
from .elbo import LoggedTrace_ELBO
from .free_bits import FreeBitsELBO, SentenceFreeBitsELBO
from .mmd import WassersteinMMDELBO
from .objective_configs import CONFIGS, ObjectiveConfig, config_class
from .schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup

Schedule = Callable[[int], float]


def warmup_schedule(config: ObjectiveConfig, steps_per_epoch: int) -> Schedule:
    """The latent weight warmed up linearly over ``config.warmup_epochs``."""
    return LinearWarmup(round(config.warmup_epochs * steps_per_epoch))


def beta_schedule(config: ObjectiveConfig, steps_per_epoch: int) -> Schedule:
    """The latent weight fixed at ``config.beta``."""
    return ConstantSchedule(config.beta)


def cyclical_schedule(config: ObjectiveConfig, steps_per_epoch: int) -> Schedule:
    """The warm-up of ``config.warmup_epochs`` restarted every ``config.cycle_epochs``."""
    return CyclicalSchedule(round(config.cycle_epochs * steps_per_epoch),
                            max(1, round(config.warmup_epochs * steps_per_epoch)))


def no_latent_term(config: ObjectiveConfig, steps_per_epoch: int) -> Schedule:
    """The latent weight 0 throughout (the autoencoder)."""
    return ConstantSchedule(0.0)


@dataclass(frozen=True)
class Objective:
    """A named method: its typed config, the ELBO it builds, its latent weight's schedule, its model options.

    ``loss`` (an ELBO class) is built with the config's loss parameters (same names as its arguments); the model
    options are ``fixed_model_options`` and the config's model parameters. ``selection`` (the config class's) is the
    validation loss that picks ``best.pt`` and drives the lr decay (:class:`inference.trainer.Trainer`):
    ``"elbo"``, the per-sentence -ELBO, or ``"objective"``, the validation value of the trained loss
    itself at latent weight 1. The density-gap objectives use the latter: they do not penalise the
    per-sentence KL, which grows while they train, so a -ELBO criterion would keep an early epoch.
    """

    name: str
    description: str
    config_class: type[ObjectiveConfig]
    loss: Callable[..., ELBO]
    schedule: Callable[[ObjectiveConfig, int], Schedule] = warmup_schedule
    fixed_model_options: Mapping[str, Any] = field(default_factory=dict)
    selection: str = "elbo"

    def configure(self, params: Mapping[str, Any] | ObjectiveConfig | None = None, latent: str | None = None,
                  given: Mapping[str, str] | None = None) -> ObjectiveConfig:
        """The typed config of ``params`` (see :meth:`ObjectiveConfig.from_dict`); a config passes through."""
        if isinstance(params, ObjectiveConfig):
            if not isinstance(params, self.config_class):
                raise TypeError(f"objective {self.name!r} takes a {self.config_class.__name__}, "
                                f"got a {type(params).__name__}")
            return params
        return self.config_class.from_dict(params, self.name, latent, given)

    def make_loss(self, params: Mapping[str, Any] | ObjectiveConfig | None = None) -> ELBO:
        """The ELBO of the config (or of parameters, read by :meth:`configure`)."""
        return self.loss(**self.configure(params).part("loss"))

    def make_schedule(self, params: Mapping[str, Any] | ObjectiveConfig | None, steps_per_epoch: int) -> Schedule:
        """The latent weight by step."""
        return self.schedule(self.configure(params), steps_per_epoch)

    def model_options(self, params: Mapping[str, Any] | ObjectiveConfig | None = None) -> dict[str, Any]:
        """The model options the objective sets."""
        return {**self.fixed_model_options, **self.configure(params).part("model")}


def _objective(name: str, description: str, loss: Callable[..., ELBO], *args: Any, **options: Any) -> Objective:
    return Objective(name, description, CONFIGS[name], loss, *args, selection=CONFIGS[name].selection, **options)


OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in [
        _objective("elbo", "VAE: ELBO with the KL weight warmed up linearly from 0 to 1", LoggedTrace_ELBO),
        _objective("beta", "beta-VAE: KL weight fixed at beta", LoggedTrace_ELBO, beta_schedule),
        _objective("cyclical", "cyclical annealing: the warm-up restarts every cycle", LoggedTrace_ELBO,
                   cyclical_schedule),
        _objective("free-bits", "free bits, fine: per-dimension batch-mean KL counted only above target_kl / d",
                   FreeBitsELBO),
        _objective("free-bits-sentence", "free bits, coarse: per-sentence KL counted only above target_kl",
                   SentenceFreeBitsELBO),
        _objective("bn", "BN-VAE: batch-normalised posterior mean with fixed scale bn_gamma "
                   "(E[KL] >= d bn_gamma^2 / 2)", LoggedTrace_ELBO, fixed_model_options={"posterior": "bn"}),
        _objective("delta", "delta-VAE: posterior squeezed so every dimension's KL is at least delta",
                   LoggedTrace_ELBO, fixed_model_options={"posterior": "delta"}),
        _objective("vmf", "vMF-VAE: von Mises-Fisher posterior with fixed kappa, uniform prior on the sphere",
                   LoggedTrace_ELBO, fixed_model_options={"latent": "vmf"}),
        _objective("aae", "AAE: a discriminator matches q(z) to p(z); the encoder is trained to fool it",
                   AdversarialELBO),
        _objective("wae-mmd", "WAE-MMD: weight x MMD^2 of posterior vs prior samples, inverse multiquadratic "
                   "kernel C = 2d", WassersteinMMDELBO),
        _objective("skip", "skip-VAE: z also feeds every decoder output", LoggedTrace_ELBO,
                   fixed_model_options={"skip": True}),
        _objective("bow", "bow-VAE: auxiliary bag-of-words log-likelihood of the sentence predicted from z",
                   LoggedTrace_ELBO, fixed_model_options={"bow": True}),
        _objective("ae", "autoencoder: no KL term at all (collapse-free, hole-full)", LoggedTrace_ELBO,
                   no_latent_term),
        _objective("dg", "DG-VAE: density-gap estimate of KL(q_B(z) || p(z)) in place of the per-sentence KL",
                   DensityGapELBO),
        _objective("dg-vmf", "DG-vMF-VAE: density gap with joint log densities, vMF posterior, uniform prior",
                   DensityGapELBO, fixed_model_options={"latent": "vmf"}),
    ]
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; an unknown name lists the valid ones."""
    config_class(name)  # an unknown name lists the valid ones
    return OBJECTIVES[name]
