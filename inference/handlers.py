"""Effect handlers for the latent term of an objective.

``scale_latent(fn, scale, sites)`` multiplies the log-density of the named latent sites by
``scale`` in whatever program ``fn`` it wraps, exactly as ``poutine.scale`` would around those
sites alone. Wrapping both model and guide gives ``scale * (log p(z) - log q(z|x))``, i.e. a
weighted KL term ``beta * KL`` (warm-up, beta-VAE) without touching the model's code; Pyro's
ELBOs (and :class:`inference.DensityGapELBO`) read the weight from ``site["scale"]``.
A scale of exactly 0 masks the sites instead (``poutine.scale`` refuses 0), which drops the
term while ``z`` is still drawn from the guide.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from pyro.poutine.messenger import Messenger


class LatentScaleMessenger(Messenger):
    """Scale (or, at 0, mask) the log-density of unobserved sample sites named in ``sites``."""

    def __init__(self, scale: float, sites: Iterable[str] | None = None) -> None:
        if scale < 0:
            raise ValueError(f"latent scale must be >= 0, got {scale}")
        super().__init__()
        self.scale = float(scale)
        self.sites = None if sites is None else frozenset(sites)

    def _process_message(self, msg: dict) -> None:
        if msg["type"] != "sample" or msg["is_observed"]:
            return
        if self.sites is not None and msg["name"] not in self.sites:
            return
        if self.scale == 0.0:
            msg["mask"] = False
        else:
            msg["scale"] = self.scale * msg["scale"]


def scale_latent(
    fn: Callable | None = None, scale: float = 1.0, sites: Iterable[str] | None = ("z",)
) -> LatentScaleMessenger | Callable:
    """Handler form of :class:`LatentScaleMessenger`: ``scale_latent(model, 0.3)`` or a context manager."""
    messenger = LatentScaleMessenger(scale, sites)
    return messenger if fn is None else messenger(fn)
