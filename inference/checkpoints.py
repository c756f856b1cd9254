"""The training checkpoint ``last.pt`` of a :class:`~inference.trainer.Trainer`: what it holds, how
it is restored, and when it is written (never with a NaN or an infinity in its parameters or
optimiser state: :meth:`CheckpointMixin.check_finite`).

``last.pt`` holds everything needed to continue exactly where training stands: parameters,
optimiser state and learning rate, the trainer's counters (epoch, batch inside it, step, best
validation loss, plateau counters, running sums, the epoch's bucketing), the RNG state and the
loss's own state (an adversarial objective's discriminator). Distributed, the running sums are
added over ranks and every rank's RNG state is kept, so a resume needs the same number of processes.
"""
from __future__ import annotations

import time

import pyro

from pyro_textvae.data.batching import BUCKETINGS
from pyro_textvae.errors import NonFiniteError
from pyro_textvae.io import (
    CheckpointError,
    check_state_dict,
    non_finite_tensors,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)

from .checkpoint_checks import check_training_state
from .distributed import any_rank, gather_objects, sum_over_ranks


class CheckpointMixin:
    """The checkpoint methods of :class:`~inference.trainer.Trainer` (its ``vae``, ``optim``, ``loss``,
    ``state``, ``schedule``, ``context``, ``device``, ``run_dir`` and ``config``)."""

    def checkpoint_state(self) -> dict:
        """Everything :meth:`load_state` needs to continue exactly where training stands.
        Distributed (a collective: every rank calls it), the running training sums are added over
        ranks and every rank's RNG state is kept under ``rng_per_rank``."""
        state = {
            "model": self.vae.state_dict(),
            "optim": self.optim.get_state(),
            "lr": self.optim.lr,
            "trainer": {k: v for k, v in self.state.items()},
            "rng": rng_state(self.device),
            "loss_state": self.loss.state_dict() if hasattr(self.loss, "state_dict") else {},
        }
        if self.context:
            state["trainer"]["sums"] = sum_over_ranks(self.state["sums"], self.device)
            state["rng_per_rank"] = gather_objects(rng_state(self.device))
            state["world_size"] = self.world_size
        return state

    def load_state(self, state: dict) -> None:
        """Restore a :meth:`checkpoint_state` (parameters, optimiser, counters, RNG); a file that
        is not one (``best.pt`` holds parameters only) or of another model size is refused."""
        path = self.run_dir / "last.pt"
        missing = [key for key in ("model", "optim", "lr", "trainer", "rng") if key not in state]
        if missing:
            raise CheckpointError(f"{path}: not a training checkpoint (no {', '.join(missing)}); "
                                  "resuming needs the last.pt written by training, not a copy of best.pt")
        check_state_dict(self.vae, state["model"], path, " (sizes from config.json)")
        check_training_state(path, state, self.vae)
        pyro.clear_param_store()
        self.vae.load_state_dict(state["model"])
        self.optim.set_state(state["optim"])
        self.optim.set_lr(float(state["lr"]))
        self.state = {"bucketing": self.unrecorded_bucketing, **state["trainer"]}
        if self.state["bucketing"] not in BUCKETINGS:
            raise CheckpointError(f"{path}: its epoch was cut into batches by bucketing {self.state['bucketing']!r}, "
                                  f"which this version cannot serve ({', '.join(BUCKETINGS)}); resume it with the "
                                  "version that wrote it")
        step = self.state["step"]
        self.weight = self.schedule(step - 1) if step > 0 else 1.0
        saved = int(state.get("world_size", 1))
        if saved != self.world_size:
            raise CheckpointError(
                f"{self.run_dir / 'last.pt'} was written by {saved} process(es); resume it with the same "
                f"number (torchrun --nproc-per-node ... --nnodes ...), not {self.world_size}"
            )
        if self.context:
            restore_rng_state(state["rng_per_rank"][self.context.rank], self.device)
            if not self.context.is_main:
                self.state["sums"] = {}
        else:
            restore_rng_state(state["rng"], self.device)
        if hasattr(self.loss, "load_state_dict"):
            self.loss.load_state_dict(state["loss_state"])

    def check_finite(self, state: dict | None = None) -> None:
        """``NonFiniteError`` when a parameter (or, given a :meth:`checkpoint_state`, its optimiser
        state) holds a NaN or an infinity: the updates diverged, and nothing is evaluated or saved
        from them, so ``last.pt`` keeps the last finite checkpoint."""
        state = state or {"model": self.vae.state_dict()}
        bad = list(non_finite_tensors({key: state[key] for key in ("model", "optim") if key in state}))
        if bad:
            shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
            raise NonFiniteError(f"non-finite values in {shown} at step {self.state['step']}: the updates "
                                 f"diverged (lower the learning rate lr); {self.run_dir / 'last.pt'} keeps the "
                                 "last finite checkpoint")

    def _save_last(self) -> None:
        state = self.checkpoint_state()
        self.check_finite(state)
        if self.is_main:
            save_checkpoint(self.run_dir / "last.pt", state)
        self._saved_at = time.monotonic()

    def _checkpoint_due(self) -> bool:
        """Every ``checkpoint_every`` steps, and when ``checkpoint_minutes`` have passed since the
        last save (distributed: when they have on any rank, so every rank saves alike)."""
        cfg = self.config
        if cfg.checkpoint_every and self.state["step"] % cfg.checkpoint_every == 0:
            return True
        if not cfg.checkpoint_minutes:
            return False
        late = time.monotonic() - self._saved_at >= 60 * cfg.checkpoint_minutes
        return any_rank(late, self.device) if self.context else late
