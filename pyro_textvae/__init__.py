"""pyro-textvae: sentence VAEs in Pyro without posterior collapse or holes (DG-VAE and baselines)."""
from .distributions import HypersphericalUniform, VonMisesFisher
from .model import TextVAE, TextVAEConfig

__all__ = ["TextVAE", "TextVAEConfig", "VonMisesFisher", "HypersphericalUniform"]
