"""Training options (:class:`TrainConfig`) and the synthetic corpus's defaults, importable without
torch: the command line reads its defaults from here before it imports anything heavy."""
from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass

from pyro_textvae.config import DEFAULT_PRECISION, check_precision
from pyro_textvae.demo import SYNTHETIC_DEFAULTS, SYNTHETIC_EPOCHS
from pyro_textvae.errors import option_error

from .protocol import PAPER_SCHEDULE, PlateauSchedule

__all__ = [
    "CURVE_PRIOR_SAMPLES",
    "DEFAULT_LR",
    "MAX_CURVE_SAMPLES",
    "MAX_LR",
    "OPTIMIZER_NAMES",
    "SYNTHETIC_DEFAULTS",
    "SYNTHETIC_EPOCHS",
    "TrainConfig",
    "launched_by_torchrun",
]

OPTIMIZER_NAMES = ("sgd", "adam")
DEFAULT_LR = {"sgd": 0.5, "adam": 1e-3}  # the paper's, by optimiser
MAX_LR = 100.0  # far above any rate that trains (the paper's 0.5, 1e-3); Adam overflows float32 near 3e37
CHECKPOINT_MINUTES = 10.0  # last.pt at least this often (minutes of training), besides every epoch
CURVE_PRIOR_SAMPLES = 12_800  # prior draws of the per-epoch validation joint-KL (evaluation.curves)
MAX_CURVE_SAMPLES = 1_000_000  # about 80 x the default's seconds an epoch
MAX_SEED = 2**32 - 1  # pyro.set_rng_seed seeds NumPy too, which takes seeds below 2**32
MAX_THREADS = 1024  # more intra-op threads than any machine has cores makes the OpenMP runtime abort


def launched_by_torchrun() -> bool:
    """True when the environment of a ``torchrun`` launch with more than one process is set."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


@dataclass
class TrainConfig:
    """Options of :class:`~inference.trainer.Trainer`; defaults are the paper's (``docs/maths.md#paper-settings``): the
    plateau rule's from :data:`inference.protocol.PAPER_SCHEDULE` (``epochs`` is its ``max_epochs``).

    ``batch_size`` is per process: with ``distributed`` over N ranks a step sees N x batch_size
    sentences. ``distributed=None`` turns it on exactly when launched by ``torchrun`` with more
    than one process (``WORLD_SIZE > 1``). ``threads``: torch's intra-op threads while training
    (None: torch's default, the number of cores or ``OMP_NUM_THREADS``); the trainer records the
    number it used, and a resume uses it again, since results are bit-identical only at one thread count.
    ``precision``: the networks in ``"fp32"`` or ``"bf16"`` mixed precision (:mod:`pyro_textvae.precision`).
    ``curve_samples``: prior draws of the per-epoch validation MI and joint-KL curves that the command line
    adds to ``metrics.jsonl`` (:func:`evaluation.curves.curve_metrics`; 0: none), recorded so that a resume
    draws as many.
    """

    epochs: int = PAPER_SCHEDULE.max_epochs
    batch_size: int = 32
    optimizer: str = "sgd"
    lr: float | None = None
    clip_norm: float = 5.0
    decay_patience: int = PAPER_SCHEDULE.decay_patience
    lr_decay: float = PAPER_SCHEDULE.lr_decay
    max_decays: int = PAPER_SCHEDULE.max_decays
    seed: int = 0
    checkpoint_every: int = 0
    checkpoint_minutes: float = CHECKPOINT_MINUTES
    skip_nonfinite: int = 0
    validate_args: bool = True
    device: str = "cpu"
    progress: bool = True
    distributed: bool | None = None
    threads: int | None = None
    precision: str = DEFAULT_PRECISION
    curve_samples: int = CURVE_PRIOR_SAMPLES

    def __post_init__(self) -> None:
        check_precision(self.precision)
        if self.distributed is None:
            self.distributed = launched_by_torchrun()
        if self.optimizer not in OPTIMIZER_NAMES:
            raise option_error("optimizer", f"must be one of {sorted(OPTIMIZER_NAMES)}, got {self.optimizer!r}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.optimizer]
        if not 0 <= self.checkpoint_minutes < math.inf:
            raise option_error("checkpoint_minutes", f"must be >= 0 (0: off), got {self.checkpoint_minutes}")
        for name in ("lr", "clip_norm"):
            if not getattr(self, name) > 0:
                raise option_error(name, f"must be > 0, got {getattr(self, name)}")
        if not self.lr <= MAX_LR:
            raise option_error("lr", f"must be <= {MAX_LR:g} (the paper's rates are 0.5 with sgd, 1e-3 with adam), "
                               f"got {self.lr}")
        if self.threads is not None and not 1 <= self.threads <= MAX_THREADS:
            raise option_error("threads", f"must be in [1, {MAX_THREADS}], got {self.threads}")
        if self.seed > MAX_SEED:
            raise option_error("seed", f"must be <= {MAX_SEED}, got {self.seed}")
        for name in ("epochs", "batch_size"):
            if getattr(self, name) < 1:
                raise option_error(name, f"must be >= 1, got {getattr(self, name)}")
        for name in ("seed", "decay_patience", "max_decays", "checkpoint_every", "skip_nonfinite"):
            if getattr(self, name) < 0:
                raise option_error(name, f"must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.curve_samples <= MAX_CURVE_SAMPLES:
            raise option_error("curve_samples", f"must be in [0, {MAX_CURVE_SAMPLES:,}] (0: no curves), "
                               f"got {self.curve_samples:,}")
        if not 0 < self.lr_decay < 1:
            raise option_error("lr_decay", f"must be in (0, 1), got {self.lr_decay}")

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def plateau(self) -> PlateauSchedule:
        """The learning-rate halving and early-stop rule of these options."""
        return PlateauSchedule(self.epochs, self.decay_patience, self.lr_decay, self.max_decays)
