"""AAE: the latent term replaced by an adversarial match of q(z) to p(z) (Makhzani et al. 2016).

A discriminator D(z) (a logit) learns to tell prior samples y ~ p(z) from posterior samples
z_i ~ q(z|x_i); the encoder is trained to fool it. With sigma the logistic function
(Makhzani et al. 2016, sec. 2; Goodfellow et al. 2014, non-saturating generator loss):

    discriminator:  L_D = -(1/n) sum_j log sigma(D(y_j)) - (1/|B|) sum_i log(1 - sigma(D(z_i)))
    encoder:        R   = lambda sum_{i in B} -log sigma(D(z_i))

``R`` is in the per-datum sum convention of :class:`inference.latent_penalty.LatentPenaltyELBO`
(|B| times the mean generator loss), so it takes the site's scale like the KL it replaces.
Inside one ``SVI.step`` (``loss_and_grads``) the discriminator first takes one step of its own
Adam optimiser on L_D, with n = |B| fresh prior samples and the detached posterior samples, then
the encoder's term is computed with the updated discriminator (whose parameters get no gradient
from it). ``loss`` and ``differentiable_loss`` leave the discriminator alone. Under data-parallel
training (:mod:`inference.distributed`) rank 0's initial discriminator is copied to every rank and
its gradients are averaged over ranks, so all ranks hold the same discriminator.
"""
from __future__ import annotations

import statistics
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Distribution

from pyro_textvae.checks import NON_NEGATIVE, POSITIVE, POSITIVE_INT

from .distributed import average_gradients, broadcast_module
from .latent_penalty import LatentPenaltyELBO
from .objective_configs import AAEConfig


class LatentDiscriminator(nn.Module):
    """``D(z)``: the logit that ``z`` came from the prior; an MLP ``d -> h -> h -> 1`` with ReLUs."""

    def __init__(self, latent_dim: int, hidden_dim: int = AAEConfig.hidden_dim) -> None:
        super().__init__()
        self.latent_dim, self.hidden_dim = latent_dim, hidden_dim
        self.layers = nn.Sequential(
            nn.Linear(latent_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, hidden_dim), nn.ReLU(),
            nn.Linear(hidden_dim, 1),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """Logits of shape ``z.shape[:-1]``."""
        return self.layers(z).squeeze(-1)


def discriminator_loss(
    discriminator: nn.Module, prior_samples: torch.Tensor, posterior_samples: torch.Tensor
) -> torch.Tensor:
    """``L_D = mean_j softplus(-D(y_j)) + mean_i softplus(D(z_i))``, i.e. the cross-entropy of
    prior (label 1) against posterior (label 0) samples (Makhzani et al. 2016, sec. 2)."""
    return F.softplus(-discriminator(prior_samples)).mean() + F.softplus(discriminator(posterior_samples)).mean()


class AdversarialELBO(LatentPenaltyELBO):
    """AAE: ``R = lambda sum_i softplus(-D(z_i))`` with a discriminator trained in the same SVI step.

    :param weight: lambda, the weight of the encoder's adversarial term.
    :param hidden_dim: width of the discriminator's two hidden layers.
    :param lr: Adam learning rate of the discriminator.
    :param site: the penalised latent site (one discriminator for it).

    The discriminator is built at the first evaluation (its input size is the site's d) without
    drawing from the global RNG. :meth:`state_dict` / :meth:`load_state_dict` carry it and its
    optimiser (the Trainer stores them in checkpoints). ``last_terms`` adds ``discriminator``
    (L_D before its step) after a training step.
    """

    term_name = "adversarial"

    def __init__(self, weight: float = AAEConfig.weight, hidden_dim: int = AAEConfig.hidden_dim,
                 lr: float = AAEConfig.lr, site: str = "z", **kwargs) -> None:
        weight, lr = NON_NEGATIVE.check("weight", weight), POSITIVE.check("lr", lr)
        POSITIVE_INT.check("hidden_dim", hidden_dim)
        if not isinstance(site, str):
            raise TypeError(f"site must be a site name, got {site!r}")
        super().__init__((site,), **kwargs)
        self.weight, self.hidden_dim, self.lr = weight, hidden_dim, lr
        self.discriminator: LatentDiscriminator | None = None
        self.optimizer: torch.optim.Adam | None = None
        self._train_discriminator = False
        self._synchronised = False
        self._discriminator_losses: list[float] = []
        self._saved: dict = {}

    def _build(self, latent_dim: int, device: torch.device | str) -> None:
        """A new discriminator on ``device``, or the one :meth:`load_state_dict` left waiting
        (weights copied in and optimiser state cast onto ``device`` by torch's ``load_state_dict``)."""
        with torch.random.fork_rng(devices=[]):
            discriminator = LatentDiscriminator(latent_dim, self.hidden_dim)
        self.discriminator = discriminator.to(device)
        self.optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.lr)
        self._synchronised = False
        if self._saved:
            self.discriminator.load_state_dict(self._saved["discriminator"])
            self.optimizer.load_state_dict(self._saved["optimizer"])
            self._synchronised, self._saved = True, {}

    def _discriminator_for(self, latent_dim: int, device: torch.device) -> LatentDiscriminator:
        built = self.discriminator.latent_dim if self.discriminator else self._saved.get("latent_dim", latent_dim)
        if built != latent_dim:
            raise ValueError(f"the discriminator takes d = {built}, the site has d = {latent_dim}")
        if self.discriminator is None:
            self._build(latent_dim, device)
        return self.discriminator

    def _discriminator_step(self, prior_samples: torch.Tensor, posterior_samples: torch.Tensor) -> None:
        if not self._synchronised:
            broadcast_module(self.discriminator)
            self._synchronised = True
        with torch.enable_grad():
            loss = discriminator_loss(self.discriminator, prior_samples, posterior_samples)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            average_gradients(list(self.discriminator.parameters()))
            self.optimizer.step()
        self._discriminator_losses.append(float(loss.detach()))

    def penalty(self, posterior: Distribution, prior: Distribution, value: torch.Tensor) -> torch.Tensor:
        discriminator = self._discriminator_for(value.shape[-1], value.device)
        if self._train_discriminator:
            self._discriminator_step(prior.expand(posterior.batch_shape).sample(), value.detach())
        discriminator.requires_grad_(False)
        try:
            logits = discriminator(value)
        finally:
            discriminator.requires_grad_(True)
        return self.weight * F.softplus(-logits).sum()

    def loss_and_grads(self, model: Callable, guide: Callable, *args, **kwargs) -> float:
        """One discriminator step per particle, then the negative objective with its gradients."""
        self._train_discriminator, self._discriminator_losses = True, []
        try:
            loss = super().loss_and_grads(model, guide, *args, **kwargs)
        finally:
            self._train_discriminator = False
        if self._discriminator_losses:
            self.last_terms["discriminator"] = statistics.fmean(self._discriminator_losses)
        return loss

    def state_dict(self) -> dict:
        """The discriminator's and its optimiser's state (``{}`` before the first evaluation)."""
        if self.discriminator is None:
            return dict(self._saved)
        return {
            "latent_dim": self.discriminator.latent_dim,
            "hidden_dim": self.hidden_dim,
            "discriminator": self.discriminator.state_dict(),
            "optimizer": self.optimizer.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        """Restore a :meth:`state_dict` (``{}`` resets to an unbuilt discriminator). The
        discriminator is rebuilt at the next evaluation, on the device of the site's value, so a
        checkpoint loaded on the CPU resumes on a GPU."""
        if state and state.get("hidden_dim") != self.hidden_dim:
            raise ValueError(f"AAE state has a discriminator of hidden_dim {state.get('hidden_dim')!r}, "
                             f"this objective uses hidden_dim={self.hidden_dim}")
        self.discriminator = self.optimizer = None
        self._saved = dict(state)
