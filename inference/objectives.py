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

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pyro.infer import ELBO

from .adversarial import AdversarialELBO
from .density_gap_elbo import DensityGapELBO
from .elbo import LoggedTrace_ELBO
from .free_bits import FreeBitsELBO, SentenceFreeBitsELBO
from .mmd import WassersteinMMDELBO
from .protocol import PAPER_SCHEDULE
from .schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup

Schedule = Callable[[int], float]
WARMUP = PAPER_SCHEDULE.warmup_epochs  # the KL warm-up of every objective that has one


@dataclass(frozen=True)
class Objective:
    """A named method: ``make_loss(params)``, ``make_schedule(params, steps_per_epoch)``, model options.

    ``selection`` is the validation loss that picks ``best.pt`` and drives the lr decay
    (:class:`inference.trainer.Trainer`): ``"elbo"``, the per-sentence -ELBO, or ``"objective"``,
    the validation value of the trained loss itself at latent weight 1. The density-gap objectives
    use the latter: they do not penalise the per-sentence KL, which grows while they train, so
    a -ELBO criterion would keep an early epoch.
    """

    name: str
    description: str
    defaults: dict[str, Any]
    make_loss: Callable[[dict], ELBO]
    make_schedule: Callable[[dict, int], Schedule]
    model_options: Callable[[dict], dict] = field(default=lambda params: {})
    selection: str = "elbo"

    def resolve(self, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Defaults updated by ``overrides`` (strings are cast to the default's type)."""
        params = dict(self.defaults)
        for key, value in (overrides or {}).items():
            if key not in self.defaults:
                valid = ", ".join(sorted(self.defaults)) or "none"
                raise ValueError(f"objective {self.name!r} has no parameter {key!r}; valid: {valid}")
            params[key] = _cast(self.name, key, value, self.defaults[key])
            number = params[key]
            if isinstance(number, (int, float)) and not isinstance(number, bool) and number < 0:
                raise ValueError(f"objective {self.name!r}: parameter {key}={value} must be >= 0")
        return params


def _cast(objective: str, key: str, value: Any, default: Any) -> Any:
    if not isinstance(value, str):
        return value
    try:
        if isinstance(default, bool):
            if value.lower() not in ("true", "false", "1", "0"):
                raise ValueError(value)
            return value.lower() in ("true", "1")
        return type(default)(value)
    except ValueError:
        raise ValueError(
            f"objective {objective!r}: parameter {key}={value!r} is not a {type(default).__name__}"
        ) from None


def _warmup(params: dict, steps_per_epoch: int) -> Schedule:
    return LinearWarmup(round(params["warmup_epochs"] * steps_per_epoch))


def _dg_loss(params: dict) -> ELBO:
    agg = params["agg_size"] or None
    return DensityGapELBO(num_samples=params["num_samples"], agg_size=agg, mode=params["mode"], agg=params["agg"])


def _model_option(**options: Any) -> Callable[[dict], dict]:
    """Model options that do not depend on the parameters (e.g. ``skip=True``)."""
    return lambda params: dict(options)


_DG_DEFAULTS = {"warmup_epochs": WARMUP, "num_samples": 32, "agg_size": 0, "mode": "marginal", "agg": "local"}

OBJECTIVES: dict[str, Objective] = {
    o.name: o
    for o in [
        Objective(
            "elbo",
            "VAE: ELBO with the KL weight warmed up linearly from 0 to 1",
            {"warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
        ),
        Objective(
            "beta",
            "beta-VAE: KL weight fixed at beta",
            {"beta": 0.4},
            lambda p: LoggedTrace_ELBO(),
            lambda p, n: ConstantSchedule(p["beta"]),
        ),
        Objective(
            "cyclical",
            "cyclical annealing: the warm-up restarts every cycle",
            {"cycle_epochs": 20.0, "warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            lambda p, n: CyclicalSchedule(round(p["cycle_epochs"] * n), max(1, round(p["warmup_epochs"] * n))),
        ),
        Objective(
            "free-bits",
            "free bits, fine: per-dimension batch-mean KL counted only above target_kl / d",
            {"target_kl": 4.0, "warmup_epochs": WARMUP},
            lambda p: FreeBitsELBO(p["target_kl"]),
            _warmup,
        ),
        Objective(
            "free-bits-sentence",
            "free bits, coarse: per-sentence KL counted only above target_kl",
            {"target_kl": 4.0, "warmup_epochs": WARMUP},
            lambda p: SentenceFreeBitsELBO(p["target_kl"]),
            _warmup,
        ),
        Objective(
            "bn",
            "BN-VAE: batch-normalised posterior mean with fixed scale gamma (E[KL] >= d gamma^2 / 2)",
            {"gamma": 0.7, "warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
            lambda p: {"posterior": "bn", "bn_gamma": p["gamma"]},
        ),
        Objective(
            "delta",
            "delta-VAE: posterior squeezed so every dimension's KL is at least delta",
            {"delta": 0.15, "warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
            lambda p: {"posterior": "delta", "delta": p["delta"]},
        ),
        Objective(
            "vmf",
            "vMF-VAE: von Mises-Fisher posterior with fixed kappa, uniform prior on the sphere",
            {"kappa": 13.0, "warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
            lambda p: {"latent": "vmf", "kappa": p["kappa"]},
        ),
        Objective(
            "aae",
            "AAE: a discriminator matches q(z) to p(z); the encoder is trained to fool it",
            {"weight": 1.0, "disc_hidden": 64, "disc_lr": 1e-3, "warmup_epochs": 0.0},
            lambda p: AdversarialELBO(p["weight"], p["disc_hidden"], p["disc_lr"]),
            _warmup,
        ),
        Objective(
            "wae-mmd",
            "WAE-MMD: lambda x MMD^2 of posterior vs prior samples, inverse multiquadratic kernel C = 2d",
            {"lambda": 10.0, "warmup_epochs": 0.0},
            lambda p: WassersteinMMDELBO(p["lambda"]),
            _warmup,
        ),
        Objective(
            "skip",
            "skip-VAE: z also feeds every decoder output",
            {"warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
            _model_option(skip=True),
        ),
        Objective(
            "bow",
            "bow-VAE: auxiliary bag-of-words log-likelihood of the sentence predicted from z",
            {"warmup_epochs": WARMUP},
            lambda p: LoggedTrace_ELBO(),
            _warmup,
            _model_option(bow=True),
        ),
        Objective(
            "ae",
            "autoencoder: no KL term at all (collapse-free, hole-full)",
            {},
            lambda p: LoggedTrace_ELBO(),
            lambda p, n: ConstantSchedule(0.0),
        ),
        Objective(
            "dg",
            "DG-VAE: density-gap estimate of KL(q_B(z) || p(z)) in place of the per-sentence KL",
            _DG_DEFAULTS,
            _dg_loss,
            _warmup,
            selection="objective",
        ),
        Objective(
            "dg-vmf",
            "DG-vMF-VAE: density gap with joint log densities, vMF posterior, uniform prior",
            {**_DG_DEFAULTS, "mode": "joint", "kappa": 13.0},
            _dg_loss,
            _warmup,
            lambda p: {"latent": "vmf", "kappa": p["kappa"]},
            selection="objective",
        ),
    ]
}


def get_objective(name: str) -> Objective:
    """The registered objective ``name``; an unknown name lists the valid ones."""
    if name not in OBJECTIVES:
        raise ValueError(f"unknown objective {name!r}; valid: {', '.join(OBJECTIVES)}")
    return OBJECTIVES[name]
