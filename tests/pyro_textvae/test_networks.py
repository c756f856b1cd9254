"""The LSTM encoder and decoder: the padded encoder equals the packed one it replaced, the decoder is a causal
language model conditioned on z through its initial state and every step, for any leading sample dims."""
from __future__ import annotations

import pytest
import torch
from torch.nn.utils.rnn import pack_padded_sequence

from pyro_textvae.data import make_batch
from pyro_textvae.networks import BagOfWords, LSTMDecoder, LSTMEncoder


def _packed_last_state(encoder: LSTMEncoder, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    packed = pack_padded_sequence(encoder.embed(tokens), mask.sum(-1), batch_first=True, enforce_sorted=False)
    _, (h_n, _) = encoder.lstm(packed)
    return h_n[-1]


def test_padded_encoder_equals_packed_values_and_gradients():
    torch.manual_seed(0)
    encoder = LSTMEncoder(30, embed_dim=8, hidden_dim=16)
    batch = make_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13], [], [14, 15]])
    padded = encoder(batch.tokens, batch.mask)
    packed = _packed_last_state(encoder, batch.tokens, batch.mask)
    assert torch.allclose(padded, packed, atol=1e-6)
    full_width = encoder.lstm(encoder.embed(batch.tokens))[1][0][-1]
    assert not torch.allclose(full_width[1], packed[1], atol=1e-3)  # reading the end of the padding is wrong
    weights = torch.randn_like(padded)
    grads = [torch.autograd.grad((out * weights).sum(), encoder.lstm.weight_hh_l0)[0]
             for out in (encoder(batch.tokens, batch.mask), _packed_last_state(encoder, batch.tokens, batch.mask))]
    assert torch.allclose(grads[0], grads[1], atol=1e-6)


def _decoder(skip: bool = False) -> LSTMDecoder:
    torch.manual_seed(1)
    return LSTMDecoder(vocab_size=11, latent_dim=3, embed_dim=6, hidden_dim=7, skip=skip).eval()


TOKENS = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0]])


def test_decoder_initial_state_is_tanh_of_a_linear_map_of_z():
    decoder = _decoder()
    z = torch.randn(2, 3)
    h0, c0 = decoder.initial_state(z)
    torch.testing.assert_close(c0[0], decoder.init_state(z))
    torch.testing.assert_close(h0, torch.tanh(c0))


@pytest.mark.parametrize("skip", [False, True])
def test_leading_sample_dims_decode_each_sample_as_alone(skip):
    decoder = _decoder(skip)
    z = torch.randn(4, 2, 3)
    logits = decoder(TOKENS, z)
    assert logits.shape == (4, 2, 4, 11)
    for sample in range(4):
        torch.testing.assert_close(logits[sample], decoder(TOKENS, z[sample]))


def test_decoder_is_causal_a_later_token_changes_no_earlier_logit():
    decoder = _decoder()
    z = torch.randn(2, 3)
    changed = TOKENS.clone()
    changed[:, 3] = 9
    before, after = decoder(TOKENS, z), decoder(changed, z)
    torch.testing.assert_close(before[:, :3], after[:, :3])
    assert not torch.allclose(before[:, 3], after[:, 3])


def test_skip_decoder_output_layer_reads_z_at_every_step():
    decoder = _decoder(skip=True)
    assert decoder.output.in_features == 7 + 3
    z = torch.randn(1, 3)
    inputs = TOKENS[:1, :-1]
    out, _ = decoder.lstm(torch.cat([decoder.embed(inputs), z.unsqueeze(1).expand(-1, 4, -1)], -1),
                          decoder.initial_state(z))
    expected = decoder.output(torch.cat([out, z.unsqueeze(1).expand(-1, 4, -1)], -1))
    torch.testing.assert_close(decoder(TOKENS[:1], z), expected)


def test_bag_of_words_predicts_one_distribution_over_the_vocabulary_per_code():
    bag = BagOfWords(latent_dim=3, vocab_size=11)
    z = torch.randn(5, 2, 3)
    torch.testing.assert_close(bag(z), bag.output(z))
    assert bag(z).shape == (5, 2, 11)
