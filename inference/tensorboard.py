"""TensorBoard scalars of a run, when the optional ``tensorboard`` package is installed.

:class:`ScalarLog` writes every number of an epoch's ``metrics.jsonl`` line into ``RUN/tensorboard/``
with the epoch as the step, ``train_*`` and ``valid_*`` keys as ``train/*`` and ``valid/*`` (so
TensorBoard groups them) and the rest under ``schedule/``. A resumed run purges the events after the
epoch it resumes from, so a redone epoch is not drawn twice. Without ``tensorboard`` it does nothing.
"""
from __future__ import annotations

import importlib.util
import math
from pathlib import Path

TENSORBOARD_DIR = "tensorboard"


def tensorboard_available() -> bool:
    """True when the ``tensorboard`` package can be imported (``pip install pyro-textvae[tensorboard]``)."""
    return importlib.util.find_spec("tensorboard") is not None


def scalar_tag(key: str) -> str:
    """``train_loss`` -> ``train/loss``, ``valid_mi`` -> ``valid/mi``, ``lr`` -> ``schedule/lr``."""
    prefix, _, rest = key.partition("_")
    return f"{prefix}/{rest}" if prefix in ("train", "valid") and rest else f"schedule/{key}"


class ScalarLog:
    """Scalars of each epoch into ``run_dir/tensorboard`` (events after ``start_epoch`` purged); the
    event file is opened at the first :meth:`write`, so a run with nothing to train writes nothing."""

    def __init__(self, run_dir: str | Path, start_epoch: int = 0) -> None:
        self.log_dir = Path(run_dir) / TENSORBOARD_DIR
        self.start_epoch = start_epoch
        self.writer = None

    def write(self, record: dict) -> None:
        """Every finite number of ``record`` (booleans left out) at step ``record["epoch"]``."""
        if self.writer is None and tensorboard_available():
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(self.log_dir), purge_step=self.start_epoch + 1)
        if self.writer is None:
            return
        for key, value in record.items():
            if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                if key != "epoch":
                    self.writer.add_scalar(scalar_tag(key), value, int(record["epoch"]))
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
