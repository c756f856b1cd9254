"""A trainer whose n-th optimisation step raises ``KeyboardInterrupt``, as a kill mid-epoch would."""
from __future__ import annotations


def crash_at_step(trainer, n: int):
    """Replace ``trainer.step`` so that its ``n``-th call raises ``KeyboardInterrupt``; returns the trainer."""
    original, calls = trainer.step, {"n": 0}

    def step(tokens, mask):
        calls["n"] += 1
        if calls["n"] == n:
            raise KeyboardInterrupt
        return original(tokens, mask)

    trainer.step = step
    return trainer
