"""Importance-weighted log-likelihood of a large split, sharded over ``torch.distributed`` ranks.

Every rank walks the same batches of ``N x batch_size`` sentences (length-sorted,
:func:`pyro_textvae.data.iterate_batches` without shuffling), scores its contiguous slice of each
(:func:`inference.distributed.shard_batch`) with

    log p(x_i) ~= logsumexp_k [log p(x_i, z_k) - log q(z_k | x_i)] - log K,   z_k ~ q(z | x_i)

(:func:`evaluation.likelihood.importance_log_likelihood`; Burda et al. 2016, eq. 8; ``dg-vae.md``
sec. 5), and the per-sentence values are all-gathered at the end, so every rank returns the
whole split's vector. Without a process group it is the single-process evaluation.
"""
from __future__ import annotations

import math

import torch
import torch.distributed as dist

from inference.distributed import gather_rows, is_distributed, shard_batch
from pyro_textvae.data import EncodedSplit, iterate_batches
from pyro_textvae.model import TextVAE

from .likelihood import importance_log_likelihood, negative_log_likelihood_summary


@torch.no_grad()
def sharded_log_likelihood(
    vae: TextVAE,
    split: EncodedSplit,
    num_samples: int = 500,
    batch_size: int = 32,
    chunk_size: int = 50,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Importance-sampled log p(x_i) of every sentence of ``split``, float64, in the split's order,
    on every rank; each rank scores about ``1/N`` of the sentences (dropout off while scoring)."""
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    rank, world_size = (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)
    scored = [torch.zeros(0, 2, dtype=torch.float64, device=device)]
    was_training = vae.training
    vae.eval()
    try:
        for batch in iterate_batches(split, batch_size * world_size, shuffle=False):
            local = shard_batch(batch, rank, world_size, equal=False)
            if local is None:
                continue
            local = local.to(device)
            log_px = importance_log_likelihood(
                vae.model, vae.guide, local.tokens, local.mask, num_samples=num_samples, chunk_size=chunk_size
            )
            scored.append(torch.stack([local.index.double(), log_px.double()], -1))
    finally:
        vae.train(was_training)
    everything, _ = gather_rows(torch.cat(scored))
    result = torch.full((len(split),), math.nan, dtype=torch.float64)
    result[everything[:, 0].long().cpu()] = everything[:, 1].cpu()
    return result


def sharded_likelihood_summary(
    vae: TextVAE,
    split: EncodedSplit,
    num_samples: int = 500,
    batch_size: int = 32,
    chunk_size: int = 50,
    device: torch.device | str = "cpu",
) -> dict:
    """NLL per sentence and PPL (``dg-vae.md`` sec. 5) from :func:`sharded_log_likelihood`;
    tokens count the words and ``</s>`` of every sentence."""
    log_px = sharded_log_likelihood(vae, split, num_samples, batch_size, chunk_size, device)
    tokens = sum(len(ids) + 1 for ids in split.ids)
    return negative_log_likelihood_summary(log_px, tokens)
