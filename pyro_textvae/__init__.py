"""pyro-textvae: sentence VAEs in Pyro without posterior collapse or holes (DG-VAE and baselines).

The names below are imported on first use (PEP 562), so ``textvae --help`` does not import torch.
"""
from .lazy import lazy_getattr

_LAZY = {
    "TextVAE": "model",
    "TokenCategorical": "model",
    "TextVAEConfig": "config",
    "VonMisesFisher": "distributions",
    "HypersphericalUniform": "distributions",
    "open_run": "run_folder",
    "Run": "run_folder",
}

__all__ = list(_LAZY)

__getattr__ = lazy_getattr(__name__, _LAZY)
