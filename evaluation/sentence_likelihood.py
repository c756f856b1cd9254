"""Importance-sampled log p(x) of a batch of sentences, from the TextVAE's networks directly.

The estimate of :func:`evaluation.likelihood.importance_log_likelihood` on ``vae.model`` and
``vae.guide`` (``docs/metrics.md#marginal-likelihood``; Burda et al. 2016, eq. 8), written for the sentence VAE
so that what is the same for every sample is done once and the output layer never holds the
``(K, B, T, V)`` logits:

    log p(x_i) ~= logsumexp_k [log p(z_k) + log p(x_i | z_k) - log q(z_k | x_i)] - log K,  z_k ~ q(z | x_i),
    log p(x_i | z) = sum_t m_t (l_t[w_t] - logsumexp_v l_t[v]),  l_t = V h_t + c  (``docs/maths.md#model-and-guide``).

* the encoder runs once, the K samples are drawn in one call (so the estimate does not depend on
  the chunk size) and log p(z) - log q(z | x) is formed once for all of them;
* the decoder's LSTM runs ``chunk`` samples at a time, the most that fit a memory budget and, on
  the CPU, whose state of one time step fits :data:`CPU_STEP_BYTES` (:func:`chunk_for_memory`;
  on the benchmark's CPU, 32 MiB of L3, decoder calls of 400-900 rows ran fastest per row and
  1,700-7,000 rows 1.3-1.6x slower);
* the output layer runs only at the real target positions, in blocks of rows whose logits fit
  :data:`LOGIT_BLOCK_BYTES`: each block's logits (bias fused into the product, in the run's
  precision), their ``log_softmax`` in float32 and the gathered target word, while the block is
  in cache. The logsumexp over the K samples is float32, as every density.

Measured against the Pyro-trace path in ``benchmarks/iw_speed.py``.
"""
from __future__ import annotations

import math

import torch

from pyro_textvae.checks import POSITIVE_INT, check_value
from pyro_textvae.model import TextVAE
from pyro_textvae.precision import autocast

from .evaluate_options import IW_MEMORY

FLOAT_BYTES = 4
LOGIT_BLOCK_BYTES = 16 * 2**20
CPU_STEP_BYTES = 16 * 2**20
BYTES_PER_LOGIT = 3 * FLOAT_BYTES  # a block's logits, their float32 copy and their log_softmax


def position_bytes(embed_dim: int, latent_dim: int, hidden_dim: int, feature_dim: int) -> int:
    """Bytes the decoder holds per decoded position of one sample, in float32 (bf16 holds less):
    the embedding and the input ``[emb; z]`` (``2 E + d``), the input gates and the output of the
    LSTM (``4 H + H``), the output layer's input and its rows at the real positions (``2 F``)."""
    return FLOAT_BYTES * (2 * embed_dim + latent_dim + 5 * hidden_dim + 2 * feature_dim)


def chunk_bytes(chunk: int, num_samples: int, tokens: torch.Tensor, vae: TextVAE) -> int:
    """Estimated peak bytes of :func:`sentence_log_likelihood` decoding ``chunk`` of ``num_samples``
    samples of a ``tokens`` batch (B, L) at a time: ``chunk B (L - 1)`` :func:`position_bytes`, one
    block of logits (:data:`LOGIT_BLOCK_BYTES`) and the K samples with their log-weights (``K B (d + 2)``)."""
    positions = tokens.shape[0] * max(tokens.shape[1] - 1, 1)
    samples = FLOAT_BYTES * num_samples * tokens.shape[0] * (vae.config.latent_dim + 2)
    return chunk * positions * _position_bytes(vae) + LOGIT_BLOCK_BYTES + samples


def step_bytes(chunk: int, tokens: torch.Tensor, vae: TextVAE) -> int:
    """Bytes of one time step of a decoder call on ``chunk`` samples: ``chunk B`` :func:`position_bytes`."""
    return chunk * tokens.shape[0] * _position_bytes(vae)


def chunk_for_memory(num_samples: int, tokens: torch.Tensor, vae: TextVAE, budget: int = IW_MEMORY,
                     cpu_step_budget: int = CPU_STEP_BYTES) -> int:
    """The chunk of samples decoded at a time: the largest whose :func:`chunk_bytes` fit ``budget``
    and, for a batch on the CPU, whose :func:`step_bytes` also fit ``cpu_step_budget`` (the LSTM is
    fastest per row when one step's state stays in cache); between 1 and ``num_samples``."""
    fixed = chunk_bytes(0, num_samples, tokens, vae)
    chunk = (budget - fixed) // (chunk_bytes(1, num_samples, tokens, vae) - fixed)
    if tokens.device.type == "cpu":
        chunk = min(chunk, cpu_step_budget // step_bytes(1, tokens, vae))
    return max(1, min(num_samples, chunk))


def _position_bytes(vae: TextVAE) -> int:
    c = vae.config
    return position_bytes(c.embed_dim, c.latent_dim, c.hidden_dim, c.hidden_dim + (c.latent_dim if c.skip else 0))


def block_rows(vocab_size: int, block_bytes: int = LOGIT_BLOCK_BYTES) -> int:
    """Rows of logits per block of the output layer: ``block_bytes // (V BYTES_PER_LOGIT)``, at least 1."""
    return max(1, block_bytes // (vocab_size * BYTES_PER_LOGIT))


def _token_log_likelihood(vae: TextVAE, tokens: torch.Tensor, mask: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """``log p(x_i | z_k)`` for ``z`` (k, B, d): shape (k, B), float32 (module docstring)."""
    device_type = tokens.device.type
    with autocast(vae.precision, device_type):
        features = vae.decoder.features(tokens, z)
        on = torch.is_autocast_enabled(device_type)
        dtype = torch.get_autocast_dtype(device_type) if on else torch.float32
    targets, target_mask = tokens[:, 1:], mask[:, 1:]
    rows = features[:, target_mask].reshape(-1, features.shape[-1]).to(dtype)
    words = targets[target_mask].repeat(z.shape[0]).unsqueeze(-1)
    output = vae.decoder.output
    weight = output.weight.t().to(dtype)
    bias = None if output.bias is None else output.bias.to(dtype)
    per_token = torch.empty(rows.shape[0], device=tokens.device)
    step = block_rows(weight.shape[1])
    for start in range(0, rows.shape[0], step):
        block = rows[start : start + step]
        logits = block @ weight if bias is None else torch.addmm(bias, block, weight)
        picked = torch.log_softmax(logits.float(), -1).gather(-1, words[start : start + step])
        per_token[start : start + step] = picked.squeeze(-1)
    sentence = torch.arange(tokens.shape[0], device=tokens.device).unsqueeze(-1).expand_as(target_mask)[target_mask]
    totals = torch.zeros(z.shape[0], tokens.shape[0], device=tokens.device)
    return totals.index_add_(1, sentence, per_token.view(z.shape[0], -1))


@torch.no_grad()
def sentence_log_likelihood(
    vae: TextVAE, tokens: torch.Tensor, mask: torch.Tensor, num_samples: int = 500, chunk_size: int | None = None
) -> torch.Tensor:
    """Importance-sampled log p(x_i) of every sentence of a padded batch, shape (B,), float32:
    ``logsumexp_k [log p(z_k) + log p(x_i | z_k) - log q(z_k | x_i)] - log K`` (module docstring;
    ``docs/metrics.md#marginal-likelihood``). The model must be in eval mode (dropout off, no bag-of-words term):
    the estimate is that of ``vae.model`` / ``vae.guide`` in eval mode. Randomness: torch's global
    RNG, the same draws as ``importance_log_likelihood`` with one chunk of ``num_samples``.
    ``chunk_size``: samples decoded at a time (None: :func:`chunk_for_memory`); it does not change
    the draws, only the rounding."""
    POSITIVE_INT.check("sentence_log_likelihood: num_samples", num_samples)
    check_value("sentence_log_likelihood: chunk_size", chunk_size, int, minimum=1, optional=True)
    if vae.training:
        raise ValueError("sentence_log_likelihood: the model is in training mode (dropout on); call vae.eval() first")
    posterior = vae.posterior_distribution(tokens, mask)
    shape = torch.Size([num_samples])
    z = posterior.rsample(shape) if posterior.has_rsample else posterior.sample(shape)
    log_weight = vae.prior(tokens.shape[0], tokens.device).log_prob(z) - posterior.log_prob(z)
    chunk = chunk_size or chunk_for_memory(num_samples, tokens, vae)
    for start in range(0, num_samples, chunk):
        log_weight[start : start + chunk] += _token_log_likelihood(vae, tokens, mask, z[start : start + chunk])
    return torch.logsumexp(log_weight, dim=0) - math.log(num_samples)
