"""The posteriors of a whole split as one distribution, and the prior they are compared with: what the
latent metrics (``docs/metrics.md``), the validation curves and evaluation read."""
from __future__ import annotations

import pyro.distributions as dist
import torch
from torch.distributions import Distribution, Independent, Normal

from pyro_textvae.data import EncodedSplit, iterate_batches
from pyro_textvae.distributions import HypersphericalUniform, VonMisesFisher
from pyro_textvae.model import TextVAE


def latent_prior(vae: TextVAE, device: torch.device | str = "cpu") -> Distribution:
    """p(z) of ``vae`` with batch shape ``()``: N(0, I_d) or uniform on S^{d-1} (``docs/maths.md#model-and-guide``)."""
    d = vae.config.latent_dim
    if vae.config.latent == "vmf":
        return HypersphericalUniform(d, device=device)
    return dist.Normal(torch.zeros(d, device=device), 1.0).to_event(1)


@torch.no_grad()
def collect_posteriors(
    vae: TextVAE, split: EncodedSplit, batch_size: int = 256, device: torch.device | str = "cpu"
) -> Distribution:
    """The posteriors q(z|x_1), ..., q(z|x_N) of a whole split as one distribution with batch shape
    ``(N,)`` in the split's order: ``Normal(loc, scale).to_event(1)`` or ``VonMisesFisher(loc, kappa)``.

    Batches are bucketed by length (less padding) and put back in order through ``Batch.index``;
    the encoder runs in eval mode (no dropout, batch-norm running statistics), without gradients.
    """
    if len(split) == 0:
        raise ValueError("collect_posteriors: the split is empty")
    was_training = vae.training
    vae.eval()
    params: list[torch.Tensor] = []
    try:
        for batch in iterate_batches(split, batch_size, shuffle=False):
            batch = batch.to(device)
            posterior = vae.posterior_distribution(batch.tokens, batch.mask)
            if isinstance(posterior, VonMisesFisher):
                values = (posterior.loc, posterior.concentration)
            elif isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal):
                values = (posterior.base_dist.loc, posterior.base_dist.scale)
            else:
                raise TypeError(f"collect_posteriors: unsupported posterior family {type(posterior).__name__}")
            if not params:
                params = [value.new_empty((len(split), *value.shape[1:])) for value in values]
            for stored, value in zip(params, values):
                stored[batch.index.to(stored.device)] = value
    finally:
        vae.train(was_training)
    if vae.config.latent == "vmf":
        return VonMisesFisher(*params)
    return dist.Normal(*params).to_event(1)
