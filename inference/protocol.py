"""The training schedule of the paper as one named configuration (``docs/maths.md#training-schedule``).

A :class:`TrainingSchedule` is the whole schedule of a run:

* the KL weight warmed up linearly from 0 to 1 over ``warmup_epochs`` epochs (the objective's
  ``warmup_epochs`` parameter, for every objective that has one);
* after each epoch, the validation loss ``L_e`` (the -ELBO, or the objective's own loss, see
  :class:`inference.trainer.Trainer`) is compared with the best so far; ``decay_patience``
  epochs in a row without ``L_e < best`` halve the learning rate (``lr <- lr_decay * lr``) and
  restart the count;
* at most ``max_decays`` halvings: the plateau that would be number ``max_decays + 1`` stops the
  run (early stop), and no run goes past ``max_epochs`` epochs.

:data:`SCHEDULES` names the presets (``"paper"``: warm-up 10, patience 5, halving 0.5, at most 5
halvings, 100 epochs, Zhang et al. 2022 after He et al. 2019); the fields of
:class:`PlateauSchedule` are also the defaults of :class:`inference.trainer.TrainConfig`, so
there is one source for them. :meth:`PlateauSchedule.after_epoch` is the rule the trainer applies
and :func:`simulate` replays it on a list of validation losses.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Any

from pyro_textvae.checks import check_value


@dataclass(frozen=True)
class PlateauState:
    """What the schedule remembers between epochs: the best validation loss, the epochs since it
    last improved, and the halvings so far."""

    best: float = math.inf
    bad_epochs: int = 0
    decays: int = 0


@dataclass(frozen=True)
class EpochDecision:
    """The schedule's answer after an epoch: the new state, whether the loss improved (a new best
    checkpoint), whether the learning rate is halved now, and whether training stops."""

    state: PlateauState
    improved: bool
    halve: bool
    stop: bool


@dataclass(frozen=True)
class PlateauSchedule:
    """Learning-rate halving on a validation plateau and early stop (the part the trainer runs)."""

    max_epochs: int = 100
    decay_patience: int = 5
    lr_decay: float = 0.5
    max_decays: int = 5

    def __post_init__(self) -> None:
        if self.max_epochs < 1:
            raise ValueError(f"max_epochs must be >= 1, got {self.max_epochs}")
        for name in ("decay_patience", "max_decays"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 < self.lr_decay < 1:
            raise ValueError(f"lr_decay must be in (0, 1), got {self.lr_decay}")

    def after_epoch(self, state: PlateauState, epoch: int, valid_loss: float) -> EpochDecision:
        """The decision after epoch ``epoch`` (1-based) with validation loss ``valid_loss``: a loss
        below ``state.best`` resets the count; the ``decay_patience``-th bad epoch in a row halves
        the rate, unless ``max_decays`` halvings were made already, which stops the run (a NaN loss
        counts as a bad epoch; ``decay_patience = 0`` never halves); ``epoch = max_epochs`` stops too."""
        if valid_loss < state.best:
            new, improved, halve = replace(state, best=valid_loss, bad_epochs=0), True, False
        elif self.decay_patience and state.bad_epochs + 1 >= self.decay_patience:
            new, improved = replace(state, bad_epochs=0, decays=state.decays + 1), False
            halve = new.decays <= self.max_decays
        else:
            new, improved, halve = replace(state, bad_epochs=state.bad_epochs + 1), False, False
        stop = new.decays > self.max_decays or epoch >= self.max_epochs
        return EpochDecision(new, improved, halve, stop)


@dataclass(frozen=True)
class TrainingSchedule(PlateauSchedule):
    """The whole schedule: the plateau rule and the KL warm-up over ``warmup_epochs`` epochs."""

    warmup_epochs: float = 10.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.warmup_epochs >= 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {self.warmup_epochs}")

    def train_options(self) -> dict[str, Any]:
        """The :class:`~inference.trainer.TrainConfig` options this schedule sets."""
        return {"epochs": self.max_epochs, "decay_patience": self.decay_patience, "lr_decay": self.lr_decay,
                "max_decays": self.max_decays}

    def objective_params(self, defaults: dict[str, Any]) -> dict[str, Any]:
        """The objective parameters it sets: ``warmup_epochs`` where the objective (``defaults``)
        has that parameter, nothing otherwise (beta-VAE, the AE)."""
        return {"warmup_epochs": self.warmup_epochs} if "warmup_epochs" in defaults else {}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


SCHEDULES: dict[str, TrainingSchedule] = {"paper": TrainingSchedule()}
PAPER_SCHEDULE = SCHEDULES["paper"]


def named_schedule(options: dict[str, Any] | str, where: str = "schedule") -> TrainingSchedule:
    """The schedule ``options`` names: a preset name, or a table ``{name = PRESET, FIELD = VALUE...}``
    overriding some fields of the preset; an unknown name or field, a value of the wrong type or out
    of range raises ``ValueError`` naming ``where``."""
    if isinstance(options, str):
        options = {"name": options}
    if not isinstance(options, dict):
        raise ValueError(f"{where} must be a preset name or a table, got {options!r}")
    name = options.get("name", "paper")
    if name not in SCHEDULES:
        raise ValueError(f"{where}: unknown schedule {name!r}; valid: {sorted(SCHEDULES)}")
    fields = set(SCHEDULES[name].to_dict())
    overrides = {key: value for key, value in options.items() if key != "name"}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown field(s) {unknown}; valid: {sorted(fields | {'name'})}")
    for key, value in overrides.items():
        kind = float if key in ("lr_decay", "warmup_epochs") else int
        check_value(f"{where}: {key}", value, kind)
    try:
        return replace(SCHEDULES[name], **overrides)
    except ValueError as error:
        raise ValueError(f"{where}: {error}") from None


def simulate(schedule: PlateauSchedule, valid_losses: list[float]) -> dict[str, Any]:
    """Replay :meth:`PlateauSchedule.after_epoch` on a sequence of validation losses (epoch 1 first):
    the epochs after which the rate was halved, the learning-rate factor each epoch ran at, the best
    epoch and the epoch training stopped after (None when the losses run out first)."""
    state, halvings, factors, best_epoch, factor = PlateauState(), [], [], None, 1.0
    for epoch, loss in enumerate(valid_losses, 1):
        factors.append(factor)
        decision = schedule.after_epoch(state, epoch, loss)
        state = decision.state
        best_epoch = epoch if decision.improved else best_epoch
        if decision.halve:
            halvings.append(epoch)
            factor *= schedule.lr_decay
        if decision.stop:
            return {"halving_epochs": halvings, "lr_factors": factors, "best_epoch": best_epoch, "stop_epoch": epoch}
    return {"halving_epochs": halvings, "lr_factors": factors, "best_epoch": best_epoch, "stop_epoch": None}
