"""A Pyro optimiser with global gradient-norm clipping and a settable learning rate.

Pyro's ``PyroOptim`` keeps one torch optimiser per parameter and clips each parameter's gradient
on its own. The paper clips the norm of *all* gradients together (``||g||_2 <= 5``, Zhang et al.
2022, sec. 5): ``g <- g * min(1, c / ||g||_2)``. :class:`ClippedOptim` does that before the
per-parameter steps (in the order of the parameters' names: SVI hands over a ``set``, whose
order changes from run to run, and a sum of squares in another order differs in the last bit),
and :meth:`scale_lr` implements the lr decay on a validation plateau. A ``grad_hook`` runs on the
sorted parameters before clipping: data-parallel training averages the gradients over ranks
there (:func:`inference.distributed.average_gradients`), so every rank clips and steps alike.
After the step the gradients are released (``grad = None``, as ``torch.optim``'s ``zero_grad`` does),
so SVI's ``zero_grads`` finds nothing to refill with zeros and the next backward writes the
gradients instead of adding them to zeros (about 5 MB of embeddings and softmax weights a step).
``last_norm`` keeps the global norm of the last step's gradients before clipping (the clip factor
is ``min(1, clip_norm / last_norm)``).

A restored state (:meth:`set_state`) waits in Pyro's optimiser until its parameter's next step;
:meth:`get_state` returns it with the live states and :meth:`scale_lr` scales it too, so a
checkpoint written before that step (a resume that ends an epoch without one) keeps Adam's moments.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import pyro
import torch
from pyro.optim import PyroOptim

from pyro_textvae.errors import NonFiniteError

__all__ = ["ClippedOptim", "NonFiniteError", "OPTIMIZERS"]


OPTIMIZERS = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}  # keys: train_config.OPTIMIZER_NAMES


class ClippedOptim(PyroOptim):
    """``PyroOptim`` over ``torch.optim.SGD`` or ``Adam`` clipping the global gradient norm."""

    def __init__(
        self,
        name: str,
        lr: float,
        clip_norm: float | None = 5.0,
        grad_hook: Callable[[Sequence[torch.Tensor]], None] | None = None,
    ) -> None:
        if name not in OPTIMIZERS:
            raise ValueError(f"unknown optimizer {name!r}; valid: {sorted(OPTIMIZERS)}")
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if clip_norm is not None and clip_norm <= 0:
            raise ValueError(f"clip_norm must be > 0 or None, got {clip_norm}")
        self.clip_norm = clip_norm
        self.grad_hook = grad_hook
        self.last_norm = math.nan
        super().__init__(OPTIMIZERS[name], {"lr": lr})

    @property
    def lr(self) -> float:
        return self.pt_optim_args["lr"]

    def scale_lr(self, factor: float) -> None:
        """Multiply the learning rate of every parameter (present and future) by ``factor``."""
        self.pt_optim_args["lr"] *= factor
        groups = [group for optimizer in self.optim_objs.values() for group in optimizer.param_groups]
        groups += [group for state in self._state_waiting_to_be_consumed.values() for group in state["param_groups"]]
        for group in groups:
            group["lr"] = self.pt_optim_args["lr"]

    def get_state(self) -> dict:
        """Every parameter's optimiser state by parameter name: the live ones and those restored by
        :meth:`set_state` whose parameter has not stepped since."""
        return {**self._state_waiting_to_be_consumed, **super().get_state()}

    def set_lr(self, lr: float) -> None:
        """Set the learning rate of every parameter (used when resuming)."""
        self.scale_lr(lr / self.pt_optim_args["lr"])

    def __call__(self, params, *args, **kwargs) -> None:
        store = pyro.get_param_store()
        params = sorted(params, key=store.param_name)
        if self.grad_hook is not None:
            self.grad_hook(params)
        grads = [p for p in params if p.grad is not None]
        if self.clip_norm is not None:
            norm = float(torch.nn.utils.clip_grad_norm_(grads, self.clip_norm))
        else:
            norm = float(torch.nn.utils.get_total_norm([p.grad for p in grads]))
        self.last_norm = norm
        if not math.isfinite(norm):
            raise NonFiniteError(f"non-finite gradient norm {norm}")
        super().__call__(params, *args, **kwargs)
        for param in params:
            param.grad = None
