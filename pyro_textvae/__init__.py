"""pyro-textvae: sentence VAEs in Pyro without posterior collapse or holes (DG-VAE and baselines).

The names below are imported on first use (PEP 562), so ``textvae --help`` does not import torch.
"""
from importlib import import_module

_LAZY = {
    "TextVAE": "model",
    "TextVAEConfig": "config",
    "VonMisesFisher": "distributions",
    "HypersphericalUniform": "distributions",
}

__all__ = list(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
