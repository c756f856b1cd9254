"""Importance-sampled log p(x) on a linear-Gaussian model with an analytic marginal and posterior.

z ~ N(0, I_d), x | z ~ N(W z + b, s^2 I_D):  p(x) = N(b, W W^T + s^2 I),
q*(z | x) = N(Sigma W^T (x - b) / s^2, Sigma),  Sigma = (I + W^T W / s^2)^{-1}.
"""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from evaluation.likelihood import (
    importance_log_likelihood,
    negative_log_likelihood_summary,
    perplexity,
)

LATENT, OBSERVED, NOISE = 2, 3, 0.5
DTYPE = torch.float64


def _params(num_data: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    weight = torch.randn(OBSERVED, LATENT, generator=generator, dtype=DTYPE)
    bias = torch.randn(OBSERVED, generator=generator, dtype=DTYPE)
    z = torch.randn(num_data, LATENT, generator=generator, dtype=DTYPE)
    x = z @ weight.T + bias + NOISE * torch.randn(num_data, OBSERVED, generator=generator, dtype=DTYPE)
    return weight, bias, x


def _model(x, weight, bias, subsample=None):
    with pyro.plate("data", x.size(0), subsample=subsample) as idx:
        z = pyro.sample("z", dist.Normal(torch.zeros(LATENT, dtype=DTYPE), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z @ weight.T + bias, NOISE).to_event(1), obs=x[idx])


def _posterior(x, weight, bias):
    precision = torch.eye(LATENT, dtype=DTYPE) + weight.T @ weight / NOISE**2
    covariance = torch.linalg.inv(precision)
    loc = (x - bias) @ weight @ covariance / NOISE**2
    return loc, covariance


def _exact_guide(x, weight, bias, subsample=None):
    loc, covariance = _posterior(x, weight, bias)
    with pyro.plate("data", x.size(0), subsample=subsample) as idx:
        pyro.sample("z", dist.MultivariateNormal(loc[idx], covariance_matrix=covariance))


def _poor_params(x, weight, bias):
    loc, covariance = _posterior(x, weight, bias)
    scale = covariance.diagonal().sqrt()
    return loc + scale, 1.5 * scale


def _poor_guide(x, weight, bias, subsample=None):
    loc, scale = _poor_params(x, weight, bias)
    with pyro.plate("data", x.size(0), subsample=subsample) as idx:
        pyro.sample("z", dist.Normal(loc[idx], scale).to_event(1))


def _analytic_log_marginal(x, weight, bias):
    covariance = weight @ weight.T + NOISE**2 * torch.eye(OBSERVED, dtype=DTYPE)
    return dist.MultivariateNormal(bias, covariance_matrix=covariance).log_prob(x)


def test_exact_posterior_guide_is_exact_for_one_sample():
    weight, bias, x = _params(8)
    truth = _analytic_log_marginal(x, weight, bias)
    for num_samples, chunk_size in [(1, 1), (5, 2)]:
        estimate = importance_log_likelihood(
            _model, _exact_guide, x, weight, bias, num_samples=num_samples, chunk_size=chunk_size
        )
        assert estimate.shape == (8,)
        torch.testing.assert_close(estimate, truth, atol=1e-10, rtol=0)


def test_poor_guide_is_a_lower_bound_that_tightens_with_more_samples():
    torch.manual_seed(1)
    weight, bias, x = _params(16)
    truth = _analytic_log_marginal(x, weight, bias)

    def mean_gap(num_samples, repeats):
        estimates = torch.stack(
            [
                importance_log_likelihood(_model, _poor_guide, x, weight, bias, num_samples=num_samples, chunk_size=500)
                for _ in range(repeats)
            ]
        )
        return (truth - estimates).mean().item(), (truth - estimates.mean(0)).abs().max().item()

    gap_1, _ = mean_gap(1, 40)
    gap_10, _ = mean_gap(10, 40)
    gap_1000, worst_1000 = mean_gap(1000, 4)
    assert gap_1 > gap_10 > gap_1000 > -0.01
    assert gap_1 > 0.5
    assert gap_1000 < 0.03 and worst_1000 < 0.08


def _hand_log_weights(x, weight, bias, num_samples):
    """log p(x, z) - log q(z | x) for z drawn from the poor guide, written out by hand: (K, B)."""
    loc, scale = _poor_params(x, weight, bias)
    z = loc + scale * torch.randn(num_samples, *loc.shape, dtype=DTYPE)
    log_prior = dist.Normal(0.0, 1.0).log_prob(z).sum(-1)
    log_lik = dist.Normal(z @ weight.T + bias, NOISE).log_prob(x).sum(-1)
    log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
    return log_prior + log_lik - log_q


def test_chunked_and_single_chunk_agree_within_monte_carlo_error():
    torch.manual_seed(2)
    weight, bias, x = _params(6)
    num_samples = 3000
    one_chunk = importance_log_likelihood(
        _model, _poor_guide, x, weight, bias, num_samples=num_samples, chunk_size=num_samples
    )
    chunked = importance_log_likelihood(_model, _poor_guide, x, weight, bias, num_samples=num_samples, chunk_size=37)
    # delta method: sd(log mean w) ~= sd(w) / (sqrt(K) E w), estimated from fresh hand-computed weights
    weights = _hand_log_weights(x, weight, bias, 20000).exp()
    standard_error = weights.std(0) / (weights.mean(0) * math.sqrt(num_samples))
    assert ((one_chunk - chunked).abs() < 5 * math.sqrt(2) * standard_error).all()
    truth = _analytic_log_marginal(x, weight, bias)
    assert ((chunked - truth).abs() < 5 * standard_error + 1e-3).all()


def test_scaled_and_subsampled_model_gives_unscaled_per_datum_values():
    weight, bias, x = _params(12)
    subsample = torch.tensor([1, 4, 5, 9, 11])

    def scaled(fn):
        return poutine.scale(fn, scale=0.1)

    truth = _analytic_log_marginal(x, weight, bias)[subsample]
    exact = importance_log_likelihood(
        scaled(_model), scaled(_exact_guide), x, weight, bias, subsample=subsample, num_samples=3
    )
    torch.testing.assert_close(exact, truth, atol=1e-10, rtol=0)

    torch.manual_seed(3)
    plain = importance_log_likelihood(_model, _poor_guide, x, weight, bias, subsample=subsample, num_samples=20)
    torch.manual_seed(3)
    scaled_values = importance_log_likelihood(
        scaled(_model), scaled(_poor_guide), x, weight, bias, subsample=subsample, num_samples=20
    )
    torch.testing.assert_close(scaled_values, plain, atol=1e-12, rtol=0)


def test_global_latent_is_rejected():
    weight, bias, x = _params(4)

    def model(x):
        shift = pyro.sample("shift", dist.Normal(torch.zeros((), dtype=DTYPE), 1.0))
        with pyro.plate("data", x.size(0)):
            pyro.sample("x", dist.Normal(shift[..., None] * torch.ones(OBSERVED, dtype=DTYPE), 1.0).to_event(1), obs=x)

    def guide(x):
        pyro.sample("shift", dist.Normal(torch.zeros((), dtype=DTYPE), 1.0))

    with pytest.raises(ValueError, match="outside the data plate"):
        importance_log_likelihood(model, guide, x, num_samples=2)


def test_model_latent_missing_from_the_guide_is_rejected():
    weight, bias, x = _params(3)

    def model(x, weight, bias):
        with pyro.plate("data", x.size(0)):
            pyro.sample("extra", dist.Normal(torch.zeros((), dtype=DTYPE), 1.0))
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT, dtype=DTYPE), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ weight.T + bias, NOISE).to_event(1), obs=x)

    with pytest.warns(UserWarning, match="not guide"), pytest.raises(ValueError, match="extra"):
        importance_log_likelihood(model, _poor_guide, x, weight, bias, num_samples=2)


@pytest.mark.parametrize("option", [{"num_samples": 0}, {"chunk_size": 0}, {"max_plate_nesting": 0}])
def test_bad_options_raise(option):
    weight, bias, x = _params(2)
    with pytest.raises(ValueError, match=next(iter(option))):
        importance_log_likelihood(_model, _exact_guide, x, weight, bias, **option)


def test_perplexity_and_summary_match_hand_values():
    log_likelihoods = torch.tensor([-2.0, -4.0])
    assert perplexity(log_likelihoods, torch.tensor([1, 2])) == pytest.approx(math.exp(2.0))
    assert perplexity(log_likelihoods, 6) == pytest.approx(math.exp(1.0))
    summary = negative_log_likelihood_summary(log_likelihoods, torch.tensor([1, 2]))
    assert summary == pytest.approx({"nll": 3.0, "ppl": math.exp(2.0), "num_sentences": 2, "num_tokens": 3})
    with pytest.raises(ValueError, match="num_tokens"):
        perplexity(log_likelihoods, 0)


def test_chunks_draw_exactly_num_samples_particles():
    weight, bias, x = _params(3)
    drawn = []

    def recording_guide(x, weight, bias):
        loc, scale = _poor_params(x, weight, bias)
        with pyro.plate("data", x.size(0)):
            z = pyro.sample("z", dist.Normal(loc, scale).to_event(1))
        drawn.append(z.shape[0])

    importance_log_likelihood(_model, recording_guide, x, weight, bias, num_samples=23, chunk_size=10)
    assert drawn == [10, 10, 3]


def test_validate_option_controls_pyro_checks_without_changing_the_estimate():
    weight, bias, x = _params(4)

    def half_observed_model(x, weight, bias):
        with pyro.plate("data", x.size(0)):
            z = pyro.sample("z", dist.Normal(torch.zeros(LATENT, dtype=DTYPE), 1.0).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=z @ weight.T + bias).to_event(1), obs=torch.full_like(x, 0.5))

    arguments = (half_observed_model, _poor_guide, x, weight, bias)
    with pyro.validation_enabled(False), pytest.raises(ValueError, match="support"):
        importance_log_likelihood(*arguments, num_samples=2, validate=True)
    estimates = []
    for validate in (True, False):
        torch.manual_seed(4)
        estimates.append(
            importance_log_likelihood(_model, _poor_guide, x, weight, bias, num_samples=6, validate=validate)
        )
    torch.testing.assert_close(estimates[0], estimates[1], atol=0, rtol=0)
    with pyro.validation_enabled(True):
        assert torch.isfinite(importance_log_likelihood(*arguments, num_samples=2, validate=False)).all()
