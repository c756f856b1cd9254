"""The Pyro model and guide of the text VAE against hand computations."""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from torch.distributions import kl_divergence

from pyro_textvae.data import make_batch
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.posteriors import (
    BatchNormGaussianHead,
    DeltaGaussianHead,
    delta_variance_bounds,
)


def _hand_batch():
    return make_batch([[5, 6, 7], [8], [9, 10, 11, 12, 13]])


def test_log_likelihood_is_the_masked_sum_of_token_log_probs(tiny_vae):
    tiny_vae.eval()
    batch = _hand_batch()
    z = torch.randn(3, tiny_vae.config.latent_dim)
    trace = poutine.trace(poutine.condition(tiny_vae.model, data={"z": z})).get_trace(batch.tokens, batch.mask)
    site_log_prob = trace.nodes["x"]["fn"].log_prob(trace.nodes["x"]["value"])
    logits = tiny_vae.decoder(batch.tokens, z)
    per_token = torch.log_softmax(logits, -1).gather(-1, batch.tokens[:, 1:, None]).squeeze(-1)
    lengths = [4, 2, 6]
    expected = torch.stack([per_token[i, :n].sum() for i, n in enumerate(lengths)])
    assert torch.allclose(site_log_prob, expected, atol=1e-5)
    padded = per_token[1, 2:].sum()
    assert padded != 0 and torch.allclose(site_log_prob[1], per_token[1, :2].sum(), atol=1e-5)


def test_trace_elbo_equals_reconstruction_minus_analytic_kl(tiny_vae):
    tiny_vae.eval()
    batch = _hand_batch()
    particles = 4000
    elbo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.loss(tiny_vae.model, tiny_vae.guide, batch.tokens, batch.mask)
    with torch.no_grad():
        q = tiny_vae.posterior_distribution(batch.tokens, batch.mask)
        z = q.sample((particles,))
        logits = tiny_vae.decoder(batch.tokens, z)
        ll = dist.Categorical(logits=logits).log_prob(batch.tokens[:, 1:]) * batch.mask[:, 1:]
        per_sample = ll.sum(-1).sum(-1)
        kl = kl_divergence(q, tiny_vae.prior(3)).sum()
    expected = -per_sample.mean() + kl
    standard_error = per_sample.std() / math.sqrt(particles)
    assert abs(loss - float(expected)) < 5 * float(standard_error) + 1e-3


def test_model_accepts_leading_sample_dims(tiny_vae):
    tiny_vae.eval()
    batch = _hand_batch()
    z = torch.randn(7, 3, tiny_vae.config.latent_dim)
    logits = tiny_vae.decoder(batch.tokens, z)
    assert logits.shape == (7, 3, batch.tokens.shape[1] - 1, tiny_vae.config.vocab_size)
    assert torch.allclose(logits[4], tiny_vae.decoder(batch.tokens, z[4]), atol=1e-5)


def test_subsample_scale_and_site_names(tiny_vae):
    batch = _hand_batch()
    trace = poutine.trace(tiny_vae.guide).get_trace(batch.tokens, batch.mask, num_data=30)
    assert trace.nodes["z"]["scale"] == pytest.approx(10.0)
    assert trace.nodes["z"]["fn"].batch_shape == (3,)


def test_delta_head_keeps_every_dimension_above_delta():
    delta = 0.15
    low, high = delta_variance_bounds(delta)
    for s in (low, high):
        assert math.log(s) - s + 2 * delta + 1 == pytest.approx(0.0, abs=1e-9)
    head = DeltaGaussianHead(8, 5, delta)
    hidden = torch.randn(1000, 8) * 20
    loc, scale = head.parameters_of(hidden)
    kl = kl_divergence(dist.Normal(loc, scale), dist.Normal(0.0, 1.0))
    assert kl.min() >= delta - 1e-5


def test_delta_head_gradient_is_finite_where_the_variance_sits_on_a_bound():
    raw_var = torch.linspace(-25.0, 25.0, 4001)  # the sigmoid saturates; the KL gap hits 0 exactly
    head = DeltaGaussianHead(1, raw_var.numel(), 0.15)
    with torch.no_grad():
        head.linear.weight.zero_()
        head.linear.bias.copy_(torch.cat([torch.full_like(raw_var, 0.3), raw_var]))
    loc, scale = head.parameters_of(torch.zeros(1, 1))
    assert scale.pow(2).min().item() == pytest.approx(head.lower, rel=1e-6)
    assert scale.pow(2).max().item() == pytest.approx(head.upper, rel=1e-6)
    (loc.sum() + scale.sum()).backward()
    assert torch.isfinite(head.linear.bias.grad).all()
    kl = kl_divergence(dist.Normal(loc, scale), dist.Normal(0.0, 1.0))
    assert kl.min() >= 0.15 - 1e-5


def test_bn_head_expected_kl_is_at_least_d_gamma_squared_over_two():
    gamma, d = 0.7, 6
    head = BatchNormGaussianHead(8, d, gamma)
    with torch.no_grad():
        head.shift.normal_()
    q = head(torch.randn(64, 8))
    kl = kl_divergence(q, dist.Normal(torch.zeros(64, d), 1.0).to_event(1)).mean()
    assert kl >= d * gamma**2 / 2
    loc = q.base_dist.loc
    assert torch.allclose((loc - head.shift).pow(2).mean(0), torch.full((d,), gamma**2), rtol=1e-3)


@pytest.mark.parametrize("bad", [{"latent": "cauchy"}, {"posterior": "flow"}, {"hidden_dim": 0}, {"dropout_in": 1.5}])
def test_config_rejects_bad_options(bad):
    with pytest.raises(ValueError, match=next(iter(bad))):
        TextVAEConfig(vocab_size=50, **bad)


def test_config_from_dict_round_trip_and_type_check():
    config = TextVAEConfig(vocab_size=50, latent="vmf", kappa=20.0)
    assert TextVAEConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match="hidden_dim"):
        TextVAEConfig.from_dict({"vocab_size": 50, "hidden_dim": "512"})
    with pytest.raises(ValueError, match="unknown option"):
        TextVAEConfig.from_dict({"vocab_size": 50, "layers": 2})


def test_vmf_latent_runs_under_trace_elbo(tiny_corpus):
    vae = TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), embed_dim=8, hidden_dim=16,
                                latent_dim=5, latent="vmf", kappa=13.0))
    batch = _hand_batch()
    trace = poutine.trace(vae.guide).get_trace(batch.tokens, batch.mask)
    z = trace.nodes["z"]["value"]
    assert torch.allclose(z.norm(dim=-1), torch.ones(3), atol=1e-5)
    loss = Trace_ELBO().differentiable_loss(vae.model, vae.guide, batch.tokens, batch.mask)
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in vae.encoder.parameters() if p.grad is not None)
    pyro.clear_param_store()


def test_token_categorical_equals_categorical_on_normalised_logits():
    from pyro_textvae.model import TokenCategorical

    logits = torch.randn(3, 4, 9)
    values = torch.randint(9, (2, 3, 4))
    fast = TokenCategorical(torch.log_softmax(logits, -1))
    slow = dist.Categorical(logits=logits)
    assert torch.allclose(fast.log_prob(values), slow.log_prob(values), atol=1e-6)
    expanded = fast.expand([5, 3, 4])
    assert isinstance(expanded, TokenCategorical) and expanded.batch_shape == (5, 3, 4)
    assert torch.allclose(expanded.log_prob(values[0]), slow.log_prob(values[0]).expand(5, 3, 4), atol=1e-6)
    assert torch.allclose(fast.probs, slow.probs, atol=1e-6)
