"""Decoding from latent codes: greedy, sampled and beam search against exhaustive search."""
from __future__ import annotations

import itertools

import pytest
import torch

from evaluation.generation import decode
from pyro_textvae.data import BOS_ID, EOS_ID, make_batch
from pyro_textvae.model import TextVAE, TextVAEConfig


@pytest.fixture
def small_vocab_vae():
    torch.manual_seed(1)
    vae = TextVAE(TextVAEConfig(vocab_size=7, embed_dim=8, hidden_dim=16, latent_dim=3))
    with torch.no_grad():
        vae.decoder.output.weight.mul_(8.0)
    return vae.eval()


def _sequence_log_prob(vae, words, z):
    """log p(words </s> | z), normalised over the tokens a decoder may emit (not <pad>, <s>)."""
    batch = make_batch([words])
    with torch.no_grad():
        logits = vae.decoder(batch.tokens, z.unsqueeze(0))
    logits[..., :2] = float("-inf")
    return float(torch.log_softmax(logits, -1).gather(-1, batch.tokens[:, 1:, None]).sum())


def test_greedy_takes_the_argmax_over_words_at_every_step(small_vocab_vae):
    z = torch.randn(4, 3)
    for row, words in zip(z, decode(small_vocab_vae, z, "greedy", max_length=6)):
        prefix = [BOS_ID]
        for target in words + [EOS_ID]:
            if len(prefix) > 6:
                break
            tokens = torch.tensor([prefix + [EOS_ID]])
            logits = small_vocab_vae.decoder(tokens, row.unsqueeze(0))[0, -1]
            assert int(logits[2:].argmax()) + 2 == target
            prefix.append(target)


def test_beam_of_width_one_is_greedy(small_vocab_vae):
    z = torch.randn(5, 3)
    assert decode(small_vocab_vae, z, "beam", beam_width=1) == decode(small_vocab_vae, z, "greedy")


def test_wide_beam_finds_the_most_probable_finished_sentence(small_vocab_vae):
    words = range(3, 7)
    max_length = 3
    candidates = [list(s) for k in range(max_length) for s in itertools.product(words, repeat=k)]
    for z in torch.randn(3, 3):
        best = max(candidates, key=lambda s: _sequence_log_prob(small_vocab_vae, s, z))
        found = decode(small_vocab_vae, z.unsqueeze(0), "beam", max_length=max_length, beam_width=64)[0]
        best_log_prob = _sequence_log_prob(small_vocab_vae, best, z)
        assert _sequence_log_prob(small_vocab_vae, found, z) == pytest.approx(best_log_prob)


def test_sampling_is_reproducible_with_a_generator_and_differs_across_seeds(small_vocab_vae):
    z = torch.randn(16, 3)
    first = decode(small_vocab_vae, z, "sample", generator=torch.Generator().manual_seed(0))
    again = decode(small_vocab_vae, z, "sample", generator=torch.Generator().manual_seed(0))
    other = decode(small_vocab_vae, z, "sample", generator=torch.Generator().manual_seed(1))
    assert first == again and first != other


def test_unknown_strategy_is_named(small_vocab_vae):
    with pytest.raises(ValueError, match="unknown decoding strategy 'nucleus'"):
        decode(small_vocab_vae, torch.zeros(1, 3), "nucleus")


def test_a_generator_on_another_device_than_z_is_named(small_vocab_vae):
    """A CPU generator cannot drive sampling of a GPU z (``meta`` stands in for the GPU)."""
    with pytest.raises(ValueError, match="the generator is on cpu but z on meta"):
        decode(small_vocab_vae, torch.zeros(2, 3, device="meta"), "sample", generator=torch.Generator())
