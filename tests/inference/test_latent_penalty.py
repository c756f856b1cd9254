"""The one particle loop of :class:`inference.latent_penalty.LatentPenaltyELBO` (under every
penalty ELBO and ``DensityGapELBO``): with the single-sample ``log q - log p`` as its penalty it is
``Trace_ELBO`` itself, subsampling scales included; the score-function reward of a discrete site
leaves the penalised site's term out (tests/inference/test_density_gap_elbo.py checks that gradient by hand);
and with another penalty the loss is the NLL plus the site's scale times it, a mask or a bad site refused."""
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

OBSERVED = torch.tensor([0.3, -1.2, 2.0])
POSTERIOR_LOC = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.5, 1.5]])


class SquaredMeanELBO(LatentPenaltyELBO):
    """R = sum of the squared posterior means (summed over any particle dim), and the prior seen."""

    term_name = "squared_mean"

    def penalty(self, posterior, prior, value):
        self.seen = (posterior, prior, value)
        return posterior.mean.square().sum()


def penalised_model(num_data=3):
    with pyro.plate("data", num_data, subsample=torch.arange(3)):
        pyro.sample("z", dist.Normal(torch.zeros(3, 2), 1.0).to_event(1))
        pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=OBSERVED)


def penalised_guide(num_data=3):
    with pyro.plate("data", num_data, subsample=torch.arange(3)):
        pyro.sample("z", dist.Normal(POSTERIOR_LOC, 0.5).to_event(1))
        pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))  # q = p: its log p - log q is exactly 0


OBSERVED_NLL = -float(dist.Normal(0.0, 1.0).log_prob(OBSERVED).sum())
SQUARED_MEANS = float(POSTERIOR_LOC.square().sum())


def test_loss_is_the_nll_plus_the_penalty_and_publishes_both_terms():
    elbo = SquaredMeanELBO()
    assert elbo.loss(penalised_model, penalised_guide) == pytest.approx(OBSERVED_NLL + SQUARED_MEANS, rel=1e-6)
    assert elbo.last_terms == pytest.approx({"reconstruction": OBSERVED_NLL, "squared_mean": SQUARED_MEANS}, rel=1e-6)
    posterior, prior, value = elbo.seen
    torch.testing.assert_close(posterior.mean, POSTERIOR_LOC)
    assert prior.event_shape == (2,) and value.shape == (3, 2)


def test_the_penalty_takes_the_sites_scale_subsampling_and_weight_alike():
    """N = 12 of which 3 in the batch (factor 4), weight 0.25: s = 1, the NLL x 4."""
    elbo = SquaredMeanELBO()
    loss = elbo.loss(scale_latent(penalised_model, 0.25), scale_latent(penalised_guide, 0.25), num_data=12)
    assert loss == pytest.approx(4 * OBSERVED_NLL + SQUARED_MEANS, rel=1e-6)


def test_a_masked_site_contributes_nothing():
    elbo = SquaredMeanELBO()
    loss = elbo.loss(scale_latent(penalised_model, 0.0), scale_latent(penalised_guide, 0.0))
    assert loss == pytest.approx(OBSERVED_NLL, rel=1e-6)


def test_gradients_of_the_penalty_reach_the_guides_parameters():
    loc = POSTERIOR_LOC.clone().requires_grad_()

    def learnable_guide(num_data=3):
        with pyro.plate("data", num_data, subsample=torch.arange(3)):
            pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))
            pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))

    SquaredMeanELBO().differentiable_loss(penalised_model, learnable_guide).backward()
    torch.testing.assert_close(loc.grad, 2 * POSTERIOR_LOC)


def test_vectorised_particles_average_to_the_same_loss():
    elbo = SquaredMeanELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    assert elbo.loss(penalised_model, penalised_guide) == pytest.approx(OBSERVED_NLL + SQUARED_MEANS, rel=1e-6)
    assert elbo.seen[2].shape == (4, 3, 2)


def test_a_site_that_the_guide_does_not_sample_is_refused():
    with pytest.raises(ValueError, match="'u' is not a latent sample site of the guide"):
        SquaredMeanELBO(sites=("u",)).loss(penalised_model, penalised_guide)


def test_a_penalised_site_outside_a_batch_plate_is_refused():
    def flat_model():
        pyro.sample("z", dist.Normal(torch.zeros(2), 1.0).to_event(1))

    def flat_guide():
        pyro.sample("z", dist.Normal(torch.ones(2), 1.0).to_event(1))

    with pytest.raises(ValueError, match="vectorised batch plate"):
        SquaredMeanELBO().loss(flat_model, flat_guide)


def test_a_partial_mask_is_refused():
    def masked(fn):
        def program(num_data=3):
            with pyro.poutine.mask(mask=torch.tensor([True, False, True])):
                fn(num_data)
        return program

    with pytest.raises(ValueError, match="partial mask"):
        SquaredMeanELBO().loss(masked(penalised_model), masked(penalised_guide))


def test_a_site_name_string_instead_of_a_sequence_is_refused():
    with pytest.raises(TypeError, match="sequence of site names"):
        SquaredMeanELBO(sites="z")


def test_the_base_class_has_no_penalty_of_its_own():
    with pytest.raises(NotImplementedError):
        LatentPenaltyELBO().loss(penalised_model, penalised_guide)
