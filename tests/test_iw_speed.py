"""Importance sampling of a split: encoder once a batch, chunks sized to a memory budget, bf16 passes."""
from __future__ import annotations

import pytest
import torch

from evaluation.distributed_eval import BYTES_PER_LOGIT, chunk_for_memory, sharded_log_likelihood
from evaluation.likelihood import importance_log_likelihood
from pyro_textvae.data import make_batch
from pyro_textvae.precision import bf16_supported


def test_guide_from_a_computed_posterior_gives_the_same_estimate(tiny_vae):
    tiny_vae.eval()
    batch = make_batch([[5, 6, 7], [8], [9, 10, 11, 12]])
    estimates = []
    for guide in (tiny_vae.guide, tiny_vae.guide_from(tiny_vae.posterior_distribution(batch.tokens, batch.mask))):
        torch.manual_seed(4)
        estimates.append(importance_log_likelihood(tiny_vae.model, guide, batch.tokens, batch.mask,
                                                   num_samples=12, chunk_size=5))
    assert torch.equal(estimates[0], estimates[1])


def test_split_scoring_runs_the_encoder_once_a_batch(tiny_vae, tiny_corpus):
    calls = []
    tiny_vae.encoder.register_forward_hook(lambda module, inputs, output: calls.append(1))
    split = tiny_corpus.splits["valid"]
    sharded_log_likelihood(tiny_vae, split, num_samples=30, batch_size=16, chunk_size=7)
    assert len(calls) == -(-len(split) // 16)


def test_chunk_fits_the_memory_budget():
    tokens = torch.zeros(4, 6, dtype=torch.long)
    per_sample = 4 * 5 * 10 * BYTES_PER_LOGIT
    assert chunk_for_memory(500, tokens, 10, budget=7 * per_sample + per_sample - 1) == 7
    assert chunk_for_memory(5, tokens, 10, budget=7 * per_sample) == 5
    assert chunk_for_memory(500, tokens, 10, budget=1) == 1


def test_automatic_chunk_draws_the_same_gaussian_samples_as_fixed_chunks(tiny_vae, tiny_corpus):
    split = tiny_corpus.splits["valid"]
    assert chunk_for_memory(200, torch.zeros(16, 12, dtype=torch.long), tiny_vae.config.vocab_size) == 200
    fixed = sharded_log_likelihood(tiny_vae, split, num_samples=200, batch_size=16, chunk_size=50)
    automatic = sharded_log_likelihood(tiny_vae, split, num_samples=200, batch_size=16, chunk_size=None)
    assert torch.allclose(fixed, automatic, rtol=0, atol=1e-6)


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16")
def test_bf16_estimate_is_float32_and_close_to_fp32(tiny_vae, tiny_corpus):
    split = tiny_corpus.splits["valid"]
    exact = sharded_log_likelihood(tiny_vae, split, num_samples=40, batch_size=16)
    tiny_vae.precision = "bf16"
    mixed = sharded_log_likelihood(tiny_vae, split, num_samples=40, batch_size=16)
    assert torch.isfinite(mixed).all() and not torch.equal(mixed, exact)
    assert float((mixed - exact).abs().max()) < 0.05 * float(exact.abs().mean())
