"""The one particle loop of :class:`inference.latent_penalty.LatentPenaltyELBO` (under every
penalty ELBO and ``DensityGapELBO``): with the single-sample ``log q - log p`` as its penalty it is
``Trace_ELBO`` itself, subsampling scales included; the score-function reward of a discrete site
leaves the penalised site's term out (tests/test_density_gap_elbo.py checks that gradient by hand)."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO

from inference.density_gap_elbo import DensityGapELBO
from inference.handlers import scale_latent
from inference.latent_penalty import LatentPenaltyELBO


class SingleSampleKL(LatentPenaltyELBO):
    """``R = sum_i [log q(z_i|x_i) - log p(z_i)]``: what Trace_ELBO has at the site."""

    def penalty(self, posterior, prior, value):
        return (posterior.log_prob(value) - prior.log_prob(value)).sum()


DATA = torch.tensor([[0.5, -1.0], [2.0, 0.3], [-0.7, 0.1], [1.2, 1.5]], dtype=torch.float64)


def model(discrete: bool = True):
    c = pyro.sample("c", dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64))) if discrete else 0.0
    with pyro.plate("data", 8, subsample_size=4):
        z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=torch.float64), 1.0).to_event(1))
        pyro.sample("x", dist.Normal(z + c, 1.0).to_event(1), obs=DATA)


def guide(discrete: bool = True):
    if discrete:
        probs = pyro.param("probs", torch.tensor(0.3, dtype=torch.float64), constraint=dist.constraints.unit_interval)
        pyro.sample("c", dist.Bernoulli(probs))
    loc = pyro.param("loc", torch.full((4, 2), 0.2, dtype=torch.float64))
    with pyro.plate("data", 8, subsample_size=4):
        pyro.sample("z", dist.Normal(loc, 0.8).to_event(1))


def _loss_and_grads(elbo, scale: float):
    pyro.clear_param_store()
    torch.manual_seed(3)
    loss = elbo.loss_and_grads(poutine.scale(model, scale), poutine.scale(guide, scale), discrete=False)
    return loss, {name: value.unconstrained().grad.clone() for name, value in pyro.get_param_store().items()}


@pytest.mark.parametrize("scale", [1.0, 0.25])
def test_the_log_ratio_as_penalty_is_trace_elbo(scale):
    loss, grads = _loss_and_grads(SingleSampleKL(), scale)
    expected_loss, expected = _loss_and_grads(Trace_ELBO(), scale)
    assert loss == pytest.approx(expected_loss, rel=1e-12)
    assert grads.keys() == expected.keys() and expected["loc"].abs().sum().item() > 0
    for name in grads:
        assert torch.allclose(grads[name], expected[name], rtol=1e-12, atol=0), name


def test_a_masked_site_drops_its_penalty_as_trace_elbo_drops_its_log_ratio():
    masked_model, masked_guide = scale_latent(model, 0.0), scale_latent(guide, 0.0)
    elbo = SingleSampleKL()
    torch.manual_seed(3)
    loss = elbo.loss(masked_model, masked_guide)
    torch.manual_seed(3)
    assert loss == pytest.approx(Trace_ELBO().loss(masked_model, masked_guide), rel=1e-12)
    assert elbo.last_terms["penalty"] == 0.0


def test_the_density_gap_loss_is_its_reconstruction_penalty_and_the_other_sites_log_ratio():
    """Nothing counted twice or dropped: loss = NLL(x) + density gap + log q(c) - log p(c)."""
    pyro.clear_param_store()
    torch.manual_seed(3)
    elbo = DensityGapELBO(num_samples=1, agg_size=1, mode="joint", sites=["z"])
    loss = elbo.loss(model, guide)
    assert loss == pytest.approx(elbo.last_terms["reconstruction"] + elbo.last_terms["density_gap"]
                                 - _bernoulli_log_ratio(), rel=1e-12)


def _bernoulli_log_ratio() -> float:
    """``log p(c) - log q(c)`` of the c drawn by the guide after ``torch.manual_seed(3)``."""
    torch.manual_seed(3)
    probs = torch.tensor(0.3, dtype=torch.float64)
    c = dist.Bernoulli(probs).sample()
    return float(dist.Bernoulli(torch.tensor(0.5, dtype=torch.float64)).log_prob(c) - dist.Bernoulli(probs).log_prob(c))
