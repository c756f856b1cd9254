"""The neural networks of the sentence VAE: an LSTM encoder and an LSTM language-model decoder.

Both follow Zhang et al. 2022 (DG-VAE), sec. 5 / ``docs/maths.md#model-and-guide``, itself the setting of
Bowman et al. 2016 and He et al. 2019:

* encoder: embeddings -> LSTM -> last hidden state ``h`` (a posterior head maps ``h`` to the
  parameters of q(z|x); see :mod:`pyro_textvae.posteriors`);
* decoder: ``c_0 = W z``, ``h_0 = tanh(c_0)``; input at step t is ``[emb(w_{t-1}); z]`` with
  dropout on the embeddings and on the LSTM outputs; ``logits_t = V h_t`` (``V [h_t; z]`` for the
  skip-VAE of Dieng et al. 2019).

Every module accepts latent codes with leading sample dimensions ``(..., B, d)`` so that
vectorised particles and importance sampling reuse one batch of tokens.
"""
from __future__ import annotations

import torch
from torch import nn

from .data import PAD_ID


class LSTMEncoder(nn.Module):
    """Reads ``<s> w_1 .. w_n </s>`` and returns the LSTM's last hidden state, shape ``(B, hidden)``.

    The LSTM runs over the padded batch and the state is read at each row's last real token,
    ``h_i = out[i, n_i - 1]`` with ``n_i = sum_t mask[i, t]``: the LSTM is causal, so padding after
    that token cannot change it, and this equals the last state of the packed sequence. Unpacked,
    the LSTM stays on its fused kernel (packing falls back to a loop of per-step products).
    """

    def __init__(self, vocab_size: int, embed_dim: int = 128, hidden_dim: int = 512) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.lstm = nn.LSTM(embed_dim, hidden_dim, batch_first=True)
        self.hidden_dim = hidden_dim

    def forward(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        out, _ = self.lstm(self.embed(tokens))
        last = mask.sum(-1) - 1
        return out[torch.arange(tokens.shape[0], device=tokens.device), last]


class LSTMDecoder(nn.Module):
    """LSTM language model conditioned on ``z`` through its initial state and every input step.

    ``bias=False`` drops the biases of ``W`` and ``V`` (the paper's code has none there).
    ``forward(tokens, z)`` returns the logits of ``p(w_t | w_<t, z)`` for the targets
    ``tokens[:, 1:]`` (teacher forcing), shape ``(..., B, L - 1, V)`` for ``z`` of shape ``(..., B, d)``.
    """

    def __init__(
        self,
        vocab_size: int,
        latent_dim: int,
        embed_dim: int = 128,
        hidden_dim: int = 512,
        dropout_in: float = 0.5,
        dropout_out: float = 0.5,
        skip: bool = False,
        bias: bool = True,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, embed_dim, padding_idx=PAD_ID)
        self.init_state = nn.Linear(latent_dim, hidden_dim, bias=bias)
        self.lstm = nn.LSTM(embed_dim + latent_dim, hidden_dim, batch_first=True)
        self.drop_in = nn.Dropout(dropout_in)
        self.drop_out = nn.Dropout(dropout_out)
        self.skip = skip
        self.output = nn.Linear(hidden_dim + (latent_dim if skip else 0), vocab_size, bias=bias)

    def initial_state(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h_0, c_0) = (tanh(W z), W z)`` for ``z`` of shape ``(n, d)``."""
        c0 = self.init_state(z).unsqueeze(0)
        return torch.tanh(c0), c0

    def step_features(
        self, inputs: torch.Tensor, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The inputs of the output layer, ``h_t`` (``[h_t; z]`` with ``skip``), of one or more
        teacher-forced steps for flat ``z`` ``(n, d)`` and ``inputs`` ``(n, t)``, and the new state."""
        emb = self.drop_in(self.embed(inputs))
        z_steps = z.unsqueeze(1).expand(-1, inputs.shape[1], -1)
        out, state = self.lstm(torch.cat([emb, z_steps], -1), state)
        out = self.drop_out(out)
        if self.skip:
            out = torch.cat([out, z_steps], -1)
        return out, state

    def step(
        self, inputs: torch.Tensor, z: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """The logits ``V h_t`` of :meth:`step_features`' steps, and the new state."""
        out, state = self.step_features(inputs, z, state)
        return self.output(out), state

    def features(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """The output layer's inputs for the targets ``tokens[:, 1:]`` (teacher forcing), shape
        ``(..., B, L - 1, F)`` for ``z`` of shape ``(..., B, d)``: ``forward`` is ``output(features)``."""
        batch, length = tokens.shape
        lead = z.shape[:-2]
        z_flat = z.reshape(-1, z.shape[-1])
        copies = z_flat.shape[0] // batch
        inputs = tokens[:, :-1].repeat(copies, 1) if copies > 1 else tokens[:, :-1]
        out, _ = self.step_features(inputs, z_flat, self.initial_state(z_flat))
        return out.reshape(*lead, batch, length - 1, -1)

    def forward(self, tokens: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.output(self.features(tokens, z))


class BagOfWords(nn.Module):
    """Predicts a sentence's bag of words from ``z`` (the auxiliary loss of Zhao et al. 2017)."""

    def __init__(self, latent_dim: int, vocab_size: int) -> None:
        super().__init__()
        self.output = nn.Linear(latent_dim, vocab_size)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.output(z)
