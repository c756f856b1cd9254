"""``init="paper"``: the parameters drawn as the DG-VAE paper's code draws them, and its bias-free heads."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from pyro_textvae.config import TextVAEConfig
from pyro_textvae.data import iterate_batches
from pyro_textvae.initialisation import PAPER_EMBEDDING_BOUND, PAPER_PARAMETER_BOUND
from pyro_textvae.model import TextVAE

SIZES = {"embed_dim": 16, "hidden_dim": 32, "latent_dim": 4}
VARIANTS = {
    "gaussian": {},
    "bn": {"posterior": "bn"},
    "delta": {"posterior": "delta"},
    "vmf": {"latent": "vmf"},
    "skip": {"skip": True},
    "bow": {"bow": True},
}


def _paper_vae(vocab_size: int, **options) -> TextVAE:
    torch.manual_seed(0)
    return TextVAE(TextVAEConfig(vocab_size=vocab_size, init="paper", **SIZES, **options))


def _embeddings(vae: TextVAE) -> list[nn.Embedding]:
    return [layer for layer in vae.modules() if isinstance(layer, nn.Embedding)]


def _assert_uniform(values: torch.Tensor, bound: float) -> None:
    """Inside [-bound, bound], with the mean 0 and the variance bound^2 / 3 of U(-bound, bound) within
    five standard errors (Var X^2 = 4 bound^4 / 45 for that uniform)."""
    assert values.abs().max() <= bound
    n = values.numel()
    assert abs(float(values.mean())) < 5 * bound / math.sqrt(3 * n)
    second_moment = float(values.square().mean())
    assert abs(second_moment - bound**2 / 3) < 5 * math.sqrt(4 / 45) * bound**2 / math.sqrt(n)


@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_init_draws_every_parameter_from_its_uniform(variant, tiny_corpus):
    vae = _paper_vae(len(tiny_corpus.vocab), **VARIANTS[variant])
    embedding_weights = {id(layer.weight) for layer in _embeddings(vae)}
    others = torch.cat([p.detach().flatten() for p in vae.parameters() if id(p) not in embedding_weights])
    _assert_uniform(others, PAPER_PARAMETER_BOUND)
    for layer in _embeddings(vae):
        rows = [i for i in range(layer.num_embeddings) if i != layer.padding_idx]
        _assert_uniform(layer.weight.detach()[rows], PAPER_EMBEDDING_BOUND)
        assert torch.all(layer.weight[layer.padding_idx] == 0)


@pytest.mark.parametrize("variant", VARIANTS)
def test_paper_init_has_no_bias_on_the_heads_unless_asked(variant, tiny_corpus):
    vae = _paper_vae(len(tiny_corpus.vocab), **VARIANTS[variant])
    heads = (vae.posterior.linear, vae.decoder.init_state, vae.decoder.output)
    assert all(head.bias is None for head in heads)
    with_bias = _paper_vae(len(tiny_corpus.vocab), linear_bias=True, **VARIANTS[variant])
    heads = (with_bias.posterior.linear, with_bias.decoder.init_state, with_bias.decoder.output)
    biases = [head.bias for head in heads]
    assert all(bias is not None and bias.abs().max() <= PAPER_PARAMETER_BOUND for bias in biases)
    assert TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), **SIZES)).decoder.output.bias is not None


def test_the_pytorch_init_is_left_as_it_was(tiny_corpus):
    """``init="pytorch"`` (the default) draws the same parameters as a model built without the option."""
    torch.manual_seed(0)
    default = TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), **SIZES))
    torch.manual_seed(0)
    named = TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), init="pytorch", linear_bias=True, **SIZES))
    assert default.state_dict().keys() == named.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(default.state_dict().values(), named.state_dict().values()))


@pytest.mark.parametrize(("init", "collapsed"), [("paper", True), ("pytorch", False)])
def test_the_paper_start_gives_every_sentence_almost_the_same_posterior_mean(init, collapsed, tiny_corpus):
    """At the paper's start the posterior means of different sentences differ by less than 1e-3 in every
    coordinate (the run starts collapsed); PyTorch's defaults spread them from the first step."""
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), init=init, **SIZES)).eval()
    batch = next(iterate_batches(tiny_corpus.splits["train"], 64, shuffle=False, bucket=False))
    with torch.no_grad():
        means = vae.posterior_distribution(batch.tokens, batch.mask).mean
    spread = float((means.max(0).values - means.min(0).values).max())
    assert (spread < 1e-3) == collapsed


def test_an_unknown_init_is_refused():
    with pytest.raises(ValueError, match="model option init must be one of"):
        TextVAEConfig(vocab_size=10, init="xavier")
