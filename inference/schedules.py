"""Weight schedules for the latent term (KL warm-up, beta, cyclical annealing), in optimiser steps.

* :class:`ConstantSchedule`: ``w(t) = beta`` (beta-VAE, Higgins et al. 2017).
* :class:`LinearWarmup`: ``w(t) = start + (end - start) min(1, t / T)`` (Bowman et al. 2016).
* :class:`CyclicalSchedule`: within each cycle of ``C`` steps the weight rises linearly from 0 to
  ``end`` over the first ``W`` steps and stays there: ``w(t) = end * min(1, (t mod C) / W)``
  (Fu et al. 2019).

A weight of exactly 0 drops the latent term (see :func:`inference.handlers.scale_latent`).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ConstantSchedule:
    """The same weight at every step."""

    value: float = 1.0

    def __post_init__(self) -> None:
        if self.value < 0:
            raise ValueError(f"schedule value must be >= 0, got {self.value}")

    def __call__(self, step: int) -> float:
        return self.value


@dataclass(frozen=True)
class LinearWarmup:
    """Linear increase from ``start`` to ``end`` over ``steps`` steps, then constant."""

    steps: int
    start: float = 0.0
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.steps < 0 or self.start < 0 or self.end < 0:
            raise ValueError(f"warm-up steps, start and end must be >= 0, got {self}")

    def __call__(self, step: int) -> float:
        if self.steps == 0:
            return self.end
        return self.start + (self.end - self.start) * min(1.0, step / self.steps)


@dataclass(frozen=True)
class CyclicalSchedule:
    """Warm-up restarting every ``cycle`` steps, rising over the first ``warmup`` steps of each."""

    cycle: int
    warmup: int
    end: float = 1.0

    def __post_init__(self) -> None:
        if self.cycle < 1 or not 0 < self.warmup <= self.cycle:
            raise ValueError(f"cyclical schedule needs cycle >= 1 and 0 < warmup <= cycle, got {self}")

    def __call__(self, step: int) -> float:
        return self.end * min(1.0, (step % self.cycle) / self.warmup)
