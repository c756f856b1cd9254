"""``scale_latent`` scales (or at 0 masks) exactly the named latent sites, in model and guide alike."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine

from inference.handlers import LatentScaleMessenger, scale_latent


def _program(data=torch.tensor([0.3, -1.2])):
    with pyro.plate("data", 2):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z + w, 1.0), obs=data)


def _trace(program):
    trace = poutine.trace(program).get_trace()
    trace.compute_log_prob()
    return trace


def test_only_the_named_latent_site_is_scaled():
    trace = _trace(scale_latent(_program, 0.3))
    assert trace.nodes["z"]["scale"] == pytest.approx(0.3)
    assert trace.nodes["w"]["scale"] == 1.0
    assert trace.nodes["x"]["scale"] == 1.0
    plain = _trace(poutine.replay(_program, trace=trace))
    torch.testing.assert_close(trace.nodes["z"]["log_prob_sum"], 0.3 * plain.nodes["z"]["log_prob_sum"])


def test_all_latent_sites_when_sites_is_none_and_never_an_observed_one():
    trace = _trace(scale_latent(_program, 0.5, sites=None))
    assert [trace.nodes[name]["scale"] for name in ("z", "w", "x")] == [0.5, 0.5, 1.0]


def test_scales_multiply_with_an_enclosing_poutine_scale():
    trace = _trace(poutine.scale(scale_latent(_program, 0.5), scale=4.0))
    assert trace.nodes["z"]["scale"] == pytest.approx(2.0)
    assert trace.nodes["w"]["scale"] == pytest.approx(4.0)


def test_a_scale_of_zero_masks_the_site_but_still_draws_it():
    trace = _trace(scale_latent(_program, 0.0))
    assert trace.nodes["z"]["mask"] is False
    assert trace.nodes["z"]["value"].shape == (2,)
    assert float(trace.nodes["z"]["log_prob_sum"]) == 0.0


def test_both_sides_scaled_give_a_weighted_kl_in_the_elbo():
    """With model and guide wrapped, the ELBO's latent term is beta (log p - log q) at the same draw."""
    data = torch.tensor([0.3, -1.2])

    def model():
        with pyro.plate("data", 2):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=data)

    def guide():
        with pyro.plate("data", 2):
            pyro.sample("z", dist.Normal(torch.tensor([0.5, -0.5]), 0.7))

    beta = 0.25
    guide_trace = poutine.trace(scale_latent(guide, beta)).get_trace()
    model_trace = poutine.trace(poutine.replay(scale_latent(model, beta), trace=guide_trace)).get_trace()
    value = guide_trace.nodes["z"]["value"]
    log_p = dist.Normal(0.0, 1.0).log_prob(value).sum()
    log_q = dist.Normal(torch.tensor([0.5, -0.5]), 0.7).log_prob(value).sum()
    log_lik = dist.Normal(value, 1.0).log_prob(data).sum()
    elbo = model_trace.log_prob_sum() - guide_trace.log_prob_sum()
    torch.testing.assert_close(elbo, log_lik + beta * (log_p - log_q))


def test_the_context_manager_form_scales_what_runs_inside():
    with poutine.trace() as tracer, scale_latent(scale=0.2):
        _program()
    assert tracer.trace.nodes["z"]["scale"] == pytest.approx(0.2)


def test_a_negative_scale_is_refused():
    with pytest.raises(ValueError, match=">= 0"):
        LatentScaleMessenger(-0.1)
