"""The sentence VAE as a Pyro model and guide.

Generative story (Bowman et al. 2016; Zhang et al. 2022, sec. 5), for each sentence x in a batch::

    z ~ p(z)                          N(0, I_d), or uniform on the sphere S^{d-1} for latent="vmf"
    w_t ~ Cat(softmax(f(w_<t, z)))    t = 1..T, the last target being </s>

so ``log p(x|z) = sum_t m_t log Cat(w_t | w_<t, z)`` with ``m`` the mask of real tokens. The guide is
``q(z|x)`` from an LSTM encoder and a posterior head (:mod:`pyro_textvae.posteriors`). Both put the
latent site ``"z"`` inside ``pyro.plate("data", num_data, subsample=...)``, so every Pyro ELBO trains
them and scales a mini-batch to the whole corpus; objectives change nothing here.
"""
from __future__ import annotations

from collections.abc import Callable

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from .config import TextVAEConfig
from .distributions import HypersphericalUniform
from .initialisation import initialise_as_paper
from .networks import BagOfWords, LSTMDecoder, LSTMEncoder
from .posteriors import (
    BatchNormGaussianHead,
    DeltaGaussianHead,
    GaussianHead,
    VonMisesFisherHead,
)
from .precision import DEFAULT_PRECISION, autocast, check_precision


class TokenCategorical(dist.Categorical):
    """``Categorical`` over log-probabilities that are already normalised (by a fused ``log_softmax``).

    ``Categorical(logits=...)`` re-normalises with an unfused ``logsumexp`` and a subtraction over
    the ``(..., T, V)`` logits: about 2.4x the cost of ``log_softmax`` and 10-15% of an
    importance-sampling pass. The distribution is the same; only that work is skipped.
    """

    def __init__(self, log_probs: torch.Tensor, validate_args: bool | None = None) -> None:
        self.logits = log_probs
        self._param = log_probs
        self._num_events = log_probs.shape[-1]
        torch.distributions.Distribution.__init__(self, log_probs.shape[:-1], validate_args=validate_args)

    def expand(
        self, batch_shape: torch.Size | tuple[int, ...], _instance: TokenCategorical | None = None
    ) -> TokenCategorical:
        new = self._get_checked_instance(TokenCategorical, _instance)
        return super().expand(batch_shape, _instance=new)


class TextVAE(nn.Module):
    """LSTM sentence VAE with a Pyro ``model`` and ``guide`` sharing the latent site ``"z"``.

    ``model(tokens, mask, num_data=None)`` and ``guide(tokens, mask, num_data=None)`` take a padded
    batch (``tokens[:, 0]`` is ``<s>``, ``mask`` marks real tokens, :class:`pyro_textvae.data.Batch`)
    and the corpus size ``num_data`` used to scale a mini-batch (default: the batch size).

    ``precision`` (``"fp32"`` or ``"bf16"``, :mod:`pyro_textvae.precision`) is how the encoder and
    decoder networks run; their outputs are turned back into float32 before any density is formed.
    It is a setting of the run, not of the parameters: set it on a loaded model at will.
    """

    def __init__(self, config: TextVAEConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        self.encoder = LSTMEncoder(c.vocab_size, c.embed_dim, c.hidden_dim)
        bias = c.has_linear_bias
        if c.latent == "vmf":
            self.posterior = VonMisesFisherHead(c.hidden_dim, c.latent_dim, c.kappa, bias)
        elif c.posterior == "bn":
            self.posterior = BatchNormGaussianHead(c.hidden_dim, c.latent_dim, c.bn_gamma, bias)
        elif c.posterior == "delta":
            self.posterior = DeltaGaussianHead(c.hidden_dim, c.latent_dim, c.delta, bias)
        else:
            self.posterior = GaussianHead(c.hidden_dim, c.latent_dim, bias)
        self.decoder = LSTMDecoder(
            c.vocab_size, c.latent_dim, c.embed_dim, c.hidden_dim, c.dropout_in, c.dropout_out, c.skip, bias
        )
        self.bag_of_words = BagOfWords(c.latent_dim, c.vocab_size) if c.bow else None
        if c.init == "paper":
            initialise_as_paper(self)
        self._precision = DEFAULT_PRECISION

    @property
    def precision(self) -> str:
        """``"fp32"`` or ``"bf16"``: the precision of the encoder and decoder networks."""
        return self._precision

    @precision.setter
    def precision(self, value: str) -> None:
        self._precision = check_precision(value, "precision")

    def encode(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The encoder's last hidden state ``h`` (B, hidden), float32, computed in :attr:`precision`."""
        with autocast(self._precision, tokens.device.type):
            hidden = self.encoder(tokens, mask)
        return hidden.float()

    def token_log_probs(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """``log_softmax`` of the decoder's logits (..., B, L - 1, V) in float32; the decoder runs in
        :attr:`precision`."""
        with autocast(self._precision, tokens.device.type):
            logits = self.decoder(tokens, z)
        return torch.log_softmax(logits.float(), -1)

    def prior(self, batch_size: int, device: torch.device | str = "cpu") -> dist.Distribution:
        """p(z) for a batch: ``N(0, I_d)`` or uniform on ``S^{d-1}``, batch shape ``(batch_size,)``."""
        d = self.config.latent_dim
        if self.config.latent == "vmf":
            return HypersphericalUniform(d, device=device).expand([batch_size])
        zeros = torch.zeros(batch_size, d, device=device)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def posterior_distribution(self, tokens: torch.Tensor, mask: torch.Tensor) -> dist.Distribution:
        """q(z|x) for a batch, outside any Pyro context (batch shape ``(B,)``)."""
        return self.posterior(self.encode(tokens, mask))

    @staticmethod
    def _plate(tokens: torch.Tensor, num_data: int | None) -> pyro.plate:
        batch = tokens.shape[0]
        size = batch if num_data is None else num_data
        if size < batch:
            raise ValueError(f"num_data ({size}) is smaller than the batch ({batch})")
        return pyro.plate("data", size, subsample=torch.arange(batch, device=tokens.device))

    def model(self, tokens: torch.Tensor, mask: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """p(z) p(x|z): sample ``"z"`` and observe the target tokens ``tokens[:, 1:]`` at site ``"x"``."""
        pyro.module("decoder", self.decoder)
        if self.bag_of_words is not None:
            pyro.module("bag_of_words", self.bag_of_words)
        targets, target_mask = tokens[:, 1:], mask[:, 1:]
        with self._plate(tokens, num_data):
            z = pyro.sample("z", self.prior(tokens.shape[0], tokens.device))
            log_probs = self.token_log_probs(tokens, z)
            pyro.sample("x", TokenCategorical(log_probs).mask(target_mask).to_event(1), obs=targets)
            if self.bag_of_words is not None and self.training:
                pyro.factor("bow", self.bag_of_words_log_likelihood(z, targets, target_mask))
        return z

    def guide(self, tokens: torch.Tensor, mask: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
        """q(z|x) at site ``"z"``."""
        pyro.module("encoder", self.encoder)
        pyro.module("posterior", self.posterior)
        with self._plate(tokens, num_data):
            return pyro.sample("z", self.posterior_distribution(tokens, mask))

    def guide_from(self, posterior: dist.Distribution) -> Callable[..., torch.Tensor]:
        """The guide with q(z|x) already computed (``posterior``, batch shape ``(B,)``), for a batch
        scored many times: importance sampling runs the encoder once, not once per chunk of samples."""

        def guide(tokens: torch.Tensor, mask: torch.Tensor, num_data: int | None = None) -> torch.Tensor:
            with self._plate(tokens, num_data):
                return pyro.sample("z", posterior)

        return guide

    def bag_of_words_log_likelihood(
        self, z: torch.Tensor, targets: torch.Tensor, target_mask: torch.Tensor
    ) -> torch.Tensor:
        """Zhao et al. 2017's auxiliary term ``sum_t m_t log softmax(W z)[w_t]``, shape ``z.shape[:-1]``."""
        log_probs = torch.log_softmax(self.bag_of_words(z), -1)
        index = targets.expand(*z.shape[:-2], *targets.shape)
        picked = log_probs.gather(-1, index)
        return (picked * target_mask).sum(-1)
