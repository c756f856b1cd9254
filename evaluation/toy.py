"""A two-dimensional toy that shows posterior collapse and the hole problem in seconds.

``C`` classes with ``n`` data each; datum ``i`` (label ``y_i``) has its own free posterior
``q(z|i) = N(mu_i, diag sigma_i^2)`` in R^2, held as ``pyro.param`` s of the guide, and the model is

    z_i ~ p(z) = N(0, I_2),    y_i ~ Cat(softmax(f(z_i)))

with ``f`` a small classifier (an ``nn.Module`` registered by ``pyro.module``). Model and guide
follow the text VAE's pattern (latent site ``"z"`` and observed site ``"x"`` inside the plate
``"data"``), so every objective of :mod:`inference.objectives` trains it unchanged: ``elbo``
collapses (with balanced classes the classifier's bias alone gives log p(y_i) = -log C, the
ELBO's upper bound, with every q(z|i) at the prior; telling the classes apart costs at least
log C nats of KL), ``ae`` separates the classes but leaves most of the prior uncovered (holes),
``dg`` (joint density gap, :data:`TOY_PARAMS`) separates them while the aggregated posterior
q_D(z) = (1/N) sum_i q(z|i) covers the prior (Zhang et al. 2022, sec. 2 and Figure 1;
``docs/metrics.md#two-dimensional-toy``). KL(q_D || p) and KL(p || q_D) are computed by quadrature on a grid.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions import constraints
from pyro.infer import SVI
from pyro.optim import Adam
from torch import nn

from inference.handlers import scale_latent
from inference.objectives import get_objective
from pyro_textvae.checks import POSITIVE_INT

TOY_OBJECTIVES = ("elbo", "ae", "aae", "wae-mmd", "dg")
TOY_PARAMS = {"dg": {"mode": "joint"}}
LATENT_DIM = 2
SNAPSHOT_FRACTIONS = (0.0, 1 / 12, 1 / 3, 1.0)
TOY_KL_COLUMNS = ("objective", "step", "kl_aggregate_prior", "kl_prior_aggregate")


def default_snapshot_steps(steps: int) -> tuple[int, ...]:
    """The recorded steps of a toy run: 0, steps/12, steps/3 and steps (rounded, distinct)."""
    return tuple(sorted({round(steps * fraction) for fraction in SNAPSHOT_FRACTIONS}))


@dataclass(frozen=True)
class ToyConfig:
    """Sizes and training options of the toy; ``snapshot_steps`` are the steps recorded for the grid
    (default: :func:`default_snapshot_steps`). A schedule's "epoch" (e.g. the KL warm-up's
    ``warmup_epochs``) is ``steps_per_epoch`` steps.
    """

    num_classes: int = 8
    per_class: int = 4
    hidden_dim: int = 32
    steps: int = 300
    snapshot_steps: tuple[int, ...] | None = None
    lr: float = 0.05
    steps_per_epoch: int = 2
    min_scale: float = 0.05
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("num_classes", "per_class", "hidden_dim", "steps", "steps_per_epoch"):
            value = getattr(self, name)
            POSITIVE_INT.check(f"toy option {name}", value)
        if self.num_classes < 2:
            raise ValueError(f"toy option num_classes must be at least 2, got {self.num_classes}")
        if not self.lr > 0 or not self.min_scale > 0:
            raise ValueError(f"toy options lr and min_scale must be > 0, got {self.lr} and {self.min_scale}")
        if self.snapshot_steps is None:
            object.__setattr__(self, "snapshot_steps", default_snapshot_steps(self.steps))
        steps = tuple(self.snapshot_steps)
        if not steps or any(not 0 <= s <= self.steps for s in steps) or list(steps) != sorted(set(steps)):
            raise ValueError(
                f"toy option snapshot_steps must be increasing steps in [0, steps={self.steps}], got {steps!r}"
            )

    @property
    def num_data(self) -> int:
        return self.num_classes * self.per_class


class ToyClassifier(nn.Module):
    """``z (..., 2) -> logits (..., C)``: one hidden tanh layer."""

    def __init__(self, num_classes: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(LATENT_DIM, hidden_dim), nn.Tanh(), nn.Linear(hidden_dim, num_classes))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class ToyProblem:
    """Model and guide of the toy: labels ``y``, free per-datum posteriors, a classifier decoder.

    ``training_model``/``training_guide`` are what SVI sees: the latent site's weight is
    ``latent_weight`` (the objective's schedule, :func:`inference.handlers.scale_latent`) and the
    loss is per datum (scale 1/N), as in :class:`inference.trainer.Trainer`.
    """

    def __init__(self, config: ToyConfig) -> None:
        self.config = config
        self.labels = torch.arange(config.num_classes).repeat_interleave(config.per_class)
        self.classifier = ToyClassifier(config.num_classes, config.hidden_dim)
        self.latent_weight = 1.0

    def model(self, labels: torch.Tensor) -> torch.Tensor:
        """z ~ N(0, I_2) at site ``"z"``, label ~ Cat(softmax(f(z))) observed at site ``"x"``."""
        pyro.module("toy_classifier", self.classifier)
        with pyro.plate("data", labels.shape[0]):
            z = pyro.sample("z", dist.Normal(torch.zeros(labels.shape[0], LATENT_DIM), 1.0).to_event(1))
            pyro.sample("x", dist.Categorical(logits=self.classifier(z)), obs=labels)
        return z

    def guide(self, labels: torch.Tensor) -> torch.Tensor:
        """z ~ N(mu_i, diag sigma_i^2) with free ``mu`` (``toy_loc``) and ``sigma >= min_scale`` (``toy_scale``)."""
        loc, scale = self.posterior_parameters()
        with pyro.plate("data", labels.shape[0]):
            return pyro.sample("z", dist.Normal(loc, scale).to_event(1))

    def training_model(self, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`model` with the latent term weighted by ``latent_weight`` and everything by 1/N."""
        with scale_latent(scale=self.latent_weight), poutine.scale(scale=1.0 / labels.shape[0]):
            return self.model(labels)

    def training_guide(self, labels: torch.Tensor) -> torch.Tensor:
        """:meth:`guide` under the same scales as :meth:`training_model`."""
        with scale_latent(scale=self.latent_weight), poutine.scale(scale=1.0 / labels.shape[0]):
            return self.guide(labels)

    def posterior_parameters(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The guide's ``(mu, sigma)``, each ``(N, 2)``, created at ``mu = 0``, ``sigma = 1`` (the prior)."""
        n = self.config.num_data
        loc = pyro.param("toy_loc", lambda: torch.zeros(n, LATENT_DIM))
        scale = pyro.param(
            "toy_scale", lambda: torch.ones(n, LATENT_DIM), constraint=constraints.greater_than(self.config.min_scale)
        )
        return loc, scale


@dataclass
class ToySnapshot:
    """The guide's parameters at one step: ``loc`` and ``scale`` arrays of shape ``(N, 2)``."""

    step: int
    loc: np.ndarray
    scale: np.ndarray


@dataclass
class ToyRun:
    """One objective's training: the labels ``(N,)`` and the snapshots at ``config.snapshot_steps``."""

    objective: str
    labels: np.ndarray
    snapshots: list[ToySnapshot] = field(default_factory=list)

    @property
    def final(self) -> ToySnapshot:
        return self.snapshots[-1]


def train_toy(objective: str, config: ToyConfig | None = None, params: dict | None = None) -> ToyRun:
    """Train the toy by SVI under the registered ``objective`` (``get_objective(objective)``) with
    its loss ``make_loss(params)`` and latent-weight schedule ``make_schedule(params, steps_per_epoch)``.

    Each step uses the whole data set as the batch; model and guide are scaled by 1/N as in
    :class:`inference.trainer.Trainer`, so the loss is per datum. Parameters live in a scoped
    Pyro param store (the caller's store is left as it was); ``torch.manual_seed(config.seed)``
    fixes the classifier's initialisation and the samples. The tensors are tiny, so torch runs on
    one thread meanwhile (a thread pool costs more than it saves here).
    """
    config = config or ToyConfig()
    chosen = get_objective(objective)
    resolved = chosen.configure(params)
    if chosen.model_options(resolved):
        raise ValueError(
            f"objective {objective!r} changes the model ({chosen.model_options(resolved)}); "
            "the toy has a Gaussian latent only"
        )
    torch.manual_seed(config.seed)
    problem = ToyProblem(config)
    loss = chosen.make_loss(resolved)
    schedule = chosen.make_schedule(resolved, config.steps_per_epoch)
    run = ToyRun(objective, problem.labels.numpy().copy())
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with pyro.get_param_store().scope():
            svi = SVI(problem.training_model, problem.training_guide, Adam({"lr": config.lr}), loss=loss)
            for step in range(config.steps + 1):
                if step in config.snapshot_steps:
                    loc, scale = problem.posterior_parameters()
                    run.snapshots.append(ToySnapshot(step, loc.detach().numpy().copy(), scale.detach().numpy().copy()))
                if step < config.steps:
                    problem.latent_weight = schedule(step)
                    svi.step(problem.labels)
    finally:
        torch.set_num_threads(threads)
    return run


def train_toy_objectives(
    objectives: Sequence[str] = TOY_OBJECTIVES,
    config: ToyConfig | None = None,
    params: Mapping[str, dict] = TOY_PARAMS,
) -> dict[str, ToyRun]:
    """:func:`train_toy` for each objective, in order, all from the same seed, with the objective's
    parameters overridden by ``params[name]``. The default runs ``dg`` with ``mode="joint"``: in
    two dimensions the joint density gap is cheap and sees the dependence between the coordinates
    that the dimension-wise estimator cannot (``docs/maths.md#density-gap-estimator``)."""
    return {name: train_toy(name, config, params.get(name)) for name in objectives}


def grid_points(limit: float = 4.0, points: int = 161) -> tuple[np.ndarray, np.ndarray, float]:
    """The square grid ``[-limit, limit]^2`` with ``points`` nodes a side: (x, y) meshes and cell area h^2."""
    if not limit > 0 or not isinstance(points, int) or points < 3:
        raise ValueError(f"grid needs limit > 0 and points >= 3, got limit={limit!r}, points={points!r}")
    axis = np.linspace(-limit, limit, points)
    x, y = np.meshgrid(axis, axis)
    return x, y, float(axis[1] - axis[0]) ** 2


def aggregate_log_density(loc: np.ndarray, scale: np.ndarray, z: np.ndarray) -> np.ndarray:
    """log q_D(z) = logsumexp_i log N(z; mu_i, diag sigma_i^2) - log N for points ``z (..., 2)``."""
    loc, scale = np.asarray(loc, dtype=np.float64), np.asarray(scale, dtype=np.float64)
    if loc.ndim != 2 or loc.shape != scale.shape:
        raise ValueError(f"loc and scale must both have shape (N, d), got {loc.shape} and {scale.shape}")
    points = np.asarray(z, dtype=np.float64)[..., None, :]
    standardized = (points - loc) / scale
    log_components = (-0.5 * standardized**2 - np.log(scale) - 0.5 * math.log(2 * math.pi)).sum(-1)
    peak = log_components.max(-1, keepdims=True)
    log_sum = np.log(np.exp(log_components - peak).sum(-1)) + peak[..., 0]
    return log_sum - math.log(loc.shape[0])


def prior_log_density(z: np.ndarray) -> np.ndarray:
    """log N(z; 0, I) for points ``z (..., d)``."""
    z = np.asarray(z, dtype=np.float64)
    return -0.5 * (z**2).sum(-1) - 0.5 * z.shape[-1] * math.log(2 * math.pi)


def grid_kl(loc: np.ndarray, scale: np.ndarray, limit: float = 6.0, points: int = 241) -> dict[str, float]:
    """KL between the aggregated posterior q_D and p = N(0, I_2) by the midpoint rule on a grid:

        KL(q_D || p) ~= h^2 sum_g q_D(z_g) [log q_D(z_g) - log p(z_g)]
        KL(p || q_D) ~= h^2 sum_g p(z_g) [log p(z_g) - log q_D(z_g)]     (the hole direction)

    ``mass`` = h^2 sum_g q_D(z_g) checks the grid: near 1 when it covers q_D and resolves its
    narrowest component (choose h below the smallest sigma).
    """
    x, y, area = grid_points(limit, points)
    z = np.stack([x, y], -1)
    log_q, log_p = aggregate_log_density(loc, scale, z), prior_log_density(z)
    q, p = np.exp(log_q), np.exp(log_p)
    return {
        "kl": float(area * (q * (log_q - log_p)).sum()),
        "reverse_kl": float(area * (p * (log_p - log_q)).sum()),
        "mass": float(area * q.sum()),
    }


def toy_kl_records(runs: Mapping[str, ToyRun]) -> list[dict]:
    """One record per objective and snapshot, keys :data:`TOY_KL_COLUMNS`: the step and
    KL(q_D || p), KL(p || q_D) of :func:`grid_kl` on the snapshot's posteriors."""
    records = []
    for name, run in runs.items():
        for snap in run.snapshots:
            kl = grid_kl(snap.loc, snap.scale)
            records.append(dict(zip(TOY_KL_COLUMNS, (name, snap.step, kl["kl"], kl["reverse_kl"]))))
    return records
