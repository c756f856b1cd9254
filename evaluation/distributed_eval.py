"""Importance-weighted log-likelihood of a large split, sharded over ``torch.distributed`` ranks.

The split is cut into the batches of ``batch_size`` sentences that one process would score
(length-sorted, :func:`pyro_textvae.data.iterate_batches` without shuffling); rank r of W scores
batches r, r + W, r + 2W, ... with

    log p(x_i) ~= logsumexp_k [log p(x_i, z_k) - log q(z_k | x_i)] - log K,   z_k ~ q(z | x_i)

(:func:`evaluation.sentence_likelihood.sentence_log_likelihood`, the estimate of
:func:`evaluation.likelihood.importance_log_likelihood` for the sentence VAE; Burda et al. 2016,
eq. 8; ``docs/metrics.md#marginal-likelihood``), each batch with torch's RNG seeded from
``(seed, batch number)``, and the per-sentence
values are all-gathered at the end. Every rank returns the whole split's vector, and it is the
same vector for any number of ranks (one process included): a batch gets the same sentences and
the same random numbers wherever it is scored.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from inference.distributed import gather_rows, rank_and_world_size
from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.data import EncodedSplit, iterate_batches
from pyro_textvae.model import TextVAE

from .sentence_likelihood import sentence_log_likelihood


def batch_seed(seed: int, batch_number: int) -> int:
    """The seed of one batch: a 64-bit word of numpy's ``SeedSequence([seed, batch_number])``
    (distinct, well-mixed streams for neighbouring seeds and batches)."""
    return int(np.random.SeedSequence([seed, batch_number]).generate_state(1, np.uint64)[0])


def batches_of_rank(num_sentences: int, batch_size: int, rank: int = 0, world_size: int = 1) -> int:
    """How many of the ``ceil(num_sentences / batch_size)`` batches rank ``rank`` of ``world_size`` scores."""
    return len(range(rank, -(-num_sentences // batch_size), world_size))


@torch.no_grad()
def sharded_log_likelihood(
    vae: TextVAE,
    split: EncodedSplit,
    num_samples: int = 500,
    batch_size: int = 32,
    chunk_size: int | None = None,
    device: torch.device | str | None = None,
    seed: int = 0,
    on_batch: Callable[[], object] | None = None,
) -> torch.Tensor:
    """Importance-sampled log p(x_i) of every sentence of ``split``, float64, in the split's order,
    on every rank; each rank scores about ``1/W`` of the batches (dropout off while scoring). The
    encoder runs once a batch and the K samples are drawn at once; ``chunk_size`` samples are
    decoded at a time (None or 0: :func:`~evaluation.sentence_likelihood.chunk_for_memory`), which
    changes only the rounding. ``device``: where batches go (default: the model's); ``on_batch``: called after
    each batch this rank scores (a progress bar's ``update``). Torch's global RNG is left as it was."""
    POSITIVE_INT.check("batch_size", batch_size)
    device = torch.device(device) if device is not None else next(vae.parameters()).device
    rank, world_size = rank_and_world_size()
    scored = [torch.zeros(0, 2, dtype=torch.float64, device=device)]
    was_training = vae.training
    vae.eval()
    try:
        for number, batch in enumerate(iterate_batches(split, batch_size, shuffle=False)):
            if number % world_size != rank:
                continue
            batch = batch.to(device)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(batch_seed(seed, number))
                log_px = sentence_log_likelihood(vae, batch.tokens, batch.mask, num_samples, chunk_size or None)
            scored.append(torch.stack([batch.index.double(), log_px.double()], -1))
            if on_batch is not None:
                on_batch()
    finally:
        vae.train(was_training)
    everything, _ = gather_rows(torch.cat(scored))
    result = torch.full((len(split),), math.nan, dtype=torch.float64)
    result[everything[:, 0].long().cpu()] = everything[:, 1].cpu()
    return result
