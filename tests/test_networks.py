"""The encoder read padded equals the packed-sequence encoder it replaced."""
from __future__ import annotations

import torch
from torch.nn.utils.rnn import pack_padded_sequence

from pyro_textvae.data import make_batch
from pyro_textvae.networks import LSTMEncoder


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
