"""Importance sampling of sentences (evaluation/sentence_likelihood.py): the estimate of the
Pyro-trace path, the chunk sized to its memory rule, bf16 passes."""
from __future__ import annotations

import math

import pytest
import torch

from evaluation.distributed_eval import sharded_log_likelihood
from evaluation.evaluate_options import IW_MEMORY
from evaluation.likelihood import importance_log_likelihood
from evaluation.report import evaluation_settings
from evaluation.sentence_likelihood import (
    CPU_STEP_BYTES,
    block_rows,
    chunk_bytes,
    chunk_for_memory,
    sentence_log_likelihood,
    step_bytes,
)
from pyro_textvae.data import make_batch
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.precision import bf16_supported
from tests.conftest import SMALL

MIXED = [[5, 6, 7], [8], [9, 10, 11, 12, 13, 14], [15, 16]]
VARIANTS = [{}, {"skip": True}, {"latent": "vmf"}, {"posterior": "bn"}, {"posterior": "delta"}]


def _vae(tiny_corpus, **options) -> TextVAE:
    torch.manual_seed(0)
    return TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), **SMALL, **options)).eval()


def _pyro_trace_estimate(vae, batch, num_samples, seed):
    torch.manual_seed(seed)
    return importance_log_likelihood(vae.model, vae.guide, batch.tokens, batch.mask, num_samples=num_samples,
                                     chunk_size=num_samples)


def _estimate(vae, batch, num_samples, seed, chunk=None):
    torch.manual_seed(seed)
    return sentence_log_likelihood(vae, batch.tokens, batch.mask, num_samples, chunk)


@pytest.mark.parametrize("options", VARIANTS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "gaussian")
def test_fp32_estimate_equals_the_pyro_trace_path(tiny_corpus, options):
    vae, batch = _vae(tiny_corpus, **options), make_batch(MIXED)
    expected = _pyro_trace_estimate(vae, batch, 40, seed=3)
    actual = _estimate(vae, batch, 40, seed=3, chunk=7)
    torch.testing.assert_close(actual, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("latent", ["normal", "vmf"])
def test_the_chunk_changes_only_the_rounding(tiny_corpus, latent):
    vae, batch = _vae(tiny_corpus, latent=latent), make_batch(MIXED)
    whole = _estimate(vae, batch, 30, seed=5, chunk=30)
    for chunk in (1, 4, 29, None):
        torch.testing.assert_close(_estimate(vae, batch, 30, seed=5, chunk=chunk), whole, rtol=0, atol=2e-5)


def test_a_decoder_blind_to_z_with_q_equal_to_p_gives_its_exact_log_likelihood(tiny_corpus):
    """With q(z|x) = p(z) every weight is p(x|z) = p(x): the estimate is exact for any K, and equals
    sum_t log softmax(V h_t)[w_t] of the language model left when z has no way in."""
    vae, batch = _vae(tiny_corpus), make_batch(MIXED)
    with torch.no_grad():
        for layer in (vae.posterior.linear, vae.decoder.init_state):
            layer.weight.zero_()
            layer.bias.zero_()
        vae.decoder.lstm.weight_ih_l0[:, SMALL["embed_dim"]:].zero_()
        log_probs = torch.log_softmax(vae.decoder(batch.tokens, torch.zeros(len(MIXED), SMALL["latent_dim"])), -1)
        picked = log_probs.gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)
        exact = (picked * batch.mask[:, 1:]).sum(-1)
    for num_samples in (1, 9):
        torch.testing.assert_close(_estimate(vae, batch, num_samples, seed=1, chunk=4), exact, rtol=0, atol=1e-5)


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16")
def test_bf16_estimate_is_within_bf16_rounding_of_fp32_and_of_the_pyro_trace_path(tiny_corpus):
    vae, batch = _vae(tiny_corpus), make_batch(MIXED)
    exact = _estimate(vae, batch, 40, seed=2)
    vae.precision = "bf16"
    mixed, traced = _estimate(vae, batch, 40, seed=2), _pyro_trace_estimate(vae, batch, 40, seed=2)
    assert mixed.dtype == torch.float32 and not torch.equal(mixed, exact)
    tokens = batch.mask[:, 1:].sum(-1)
    # bf16 keeps 8 bits of mantissa: a logit of size ~1 is off by up to 2^-8, per token
    assert ((mixed - exact).abs() <= tokens * 2**-7).all()
    assert ((mixed - traced).abs() <= tokens * 2**-7).all()


def test_bad_options_and_a_model_in_training_mode_are_refused(tiny_corpus):
    vae, batch = _vae(tiny_corpus), make_batch(MIXED)
    for options in ({"num_samples": 0}, {"num_samples": 2.0}, {"chunk_size": 0}, {"chunk_size": True}):
        with pytest.raises(ValueError, match="sentence_log_likelihood"):
            sentence_log_likelihood(vae, batch.tokens, batch.mask, **options)
    vae.train()
    with pytest.raises(ValueError, match="training mode"):
        sentence_log_likelihood(vae, batch.tokens, batch.mask, 3)


def test_chunk_is_the_largest_whose_estimated_bytes_fit_the_budget(tiny_corpus):
    vae = _vae(tiny_corpus)
    meta = torch.zeros(16, 12, dtype=torch.long, device="meta")  # no CPU step cap off the CPU
    fixed = chunk_bytes(0, 500, meta, vae)
    per_sample = chunk_bytes(1, 500, meta, vae) - fixed
    for budget in (fixed + per_sample, fixed + 15 * per_sample // 2, fixed + 301 * per_sample - 1):
        chunk = chunk_for_memory(500, meta, vae, budget=budget)
        assert chunk_bytes(chunk, 500, meta, vae) <= budget < chunk_bytes(chunk + 1, 500, meta, vae)
    assert chunk_for_memory(500, meta, vae, budget=fixed + per_sample - 1) == 1
    assert chunk_for_memory(5, meta, vae, budget=IW_MEMORY) == 5


def test_on_the_cpu_one_step_of_the_chunk_also_fits_the_step_budget():
    vae = TextVAE(TextVAEConfig(vocab_size=5151))  # the paper's sizes
    tokens = torch.zeros(32, 12, dtype=torch.long)
    chunk = chunk_for_memory(500, tokens, vae)
    assert step_bytes(chunk, tokens, vae) <= CPU_STEP_BYTES < step_bytes(chunk + 1, tokens, vae)
    assert chunk_bytes(chunk, 500, tokens, vae) <= IW_MEMORY
    assert chunk_for_memory(500, tokens.to("meta"), vae) > chunk


def test_a_block_of_logits_fits_its_bytes():
    assert block_rows(5151, 5151 * 12 * 7 + 5) == 7
    assert block_rows(10**9, 1) == 1


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


def test_gaussian_draws_taken_at_once_are_those_of_chunks_of_50(tiny_vae, tiny_corpus):
    """Evaluations made when the samples were drawn 50 at a time keep their numbers."""
    tiny_vae.eval()
    batch = make_batch(MIXED)
    torch.manual_seed(6)
    old = importance_log_likelihood(tiny_vae.model, tiny_vae.guide, batch.tokens, batch.mask, num_samples=200,
                                    chunk_size=50)
    torch.testing.assert_close(_estimate(tiny_vae, batch, 200, seed=6), old, rtol=0, atol=2e-5)


def test_the_chunk_is_not_a_setting_that_decides_the_numbers():
    assert "iw_chunk" not in evaluation_settings(iw_chunk=50)
    assert evaluation_settings(iw_chunk=50) == evaluation_settings(iw_chunk=None)


@pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16")
def test_bf16_split_estimate_is_float32_and_close_to_fp32(tiny_vae, tiny_corpus):
    split = tiny_corpus.splits["valid"]
    exact = sharded_log_likelihood(tiny_vae, split, num_samples=40, batch_size=16)
    tiny_vae.precision = "bf16"
    mixed = sharded_log_likelihood(tiny_vae, split, num_samples=40, batch_size=16)
    assert torch.isfinite(mixed).all() and not torch.equal(mixed, exact)
    assert float((mixed - exact).abs().max()) < 0.05 * float(exact.abs().mean())
    assert math.isfinite(float(mixed.sum()))
