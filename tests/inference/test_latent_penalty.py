"""``LatentPenaltyELBO``: Trace_ELBO with the penalised site's log p - log q replaced by scale x penalty."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from inference.handlers import scale_latent
from inference.latent_penalty import LatentPenaltyELBO

DATA = torch.tensor([0.3, -1.2, 2.0])
LOC = torch.tensor([[0.5, -1.0], [2.0, 0.0], [-0.5, 1.5]])


class SquaredMeanELBO(LatentPenaltyELBO):
    """R = sum of the squared posterior means (summed over any particle dim), and the prior seen."""

    term_name = "squared_mean"

    def penalty(self, posterior, prior, value):
        self.seen = (posterior, prior, value)
        return posterior.mean.square().sum()


def model(num_data=3):
    with pyro.plate("data", num_data, subsample=torch.arange(3)):
        pyro.sample("z", dist.Normal(torch.zeros(3, 2), 1.0).to_event(1))
        pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))
        pyro.sample("x", dist.Normal(0.0, 1.0), obs=DATA)


def guide(num_data=3):
    with pyro.plate("data", num_data, subsample=torch.arange(3)):
        pyro.sample("z", dist.Normal(LOC, 0.5).to_event(1))
        pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))  # q = p: its log p - log q is exactly 0


NLL = -float(dist.Normal(0.0, 1.0).log_prob(DATA).sum())
PENALTY = float(LOC.square().sum())


def test_loss_is_the_nll_plus_the_penalty_and_publishes_both_terms():
    elbo = SquaredMeanELBO()
    assert elbo.loss(model, guide) == pytest.approx(NLL + PENALTY, rel=1e-6)
    assert elbo.last_terms == pytest.approx({"reconstruction": NLL, "squared_mean": PENALTY}, rel=1e-6)
    posterior, prior, value = elbo.seen
    torch.testing.assert_close(posterior.mean, LOC)
    assert prior.event_shape == (2,) and value.shape == (3, 2)


def test_the_penalty_takes_the_sites_scale_subsampling_and_weight_alike():
    """N = 12 of which 3 in the batch (factor 4), weight 0.25: s = 1, the NLL x 4."""
    elbo = SquaredMeanELBO()
    loss = elbo.loss(scale_latent(model, 0.25), scale_latent(guide, 0.25), num_data=12)
    assert loss == pytest.approx(4 * NLL + PENALTY, rel=1e-6)


def test_a_masked_site_contributes_nothing():
    elbo = SquaredMeanELBO()
    assert elbo.loss(scale_latent(model, 0.0), scale_latent(guide, 0.0)) == pytest.approx(NLL, rel=1e-6)


def test_gradients_of_the_penalty_reach_the_guides_parameters():
    loc = LOC.clone().requires_grad_()

    def learnable_guide(num_data=3):
        with pyro.plate("data", num_data, subsample=torch.arange(3)):
            pyro.sample("z", dist.Normal(loc, 0.5).to_event(1))
            pyro.sample("w", dist.Normal(torch.zeros(3), 1.0))

    SquaredMeanELBO().differentiable_loss(model, learnable_guide).backward()
    torch.testing.assert_close(loc.grad, 2 * LOC)


def test_vectorised_particles_average_to_the_same_loss():
    elbo = SquaredMeanELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    assert elbo.loss(model, guide) == pytest.approx(NLL + PENALTY, rel=1e-6)
    assert elbo.seen[2].shape == (4, 3, 2)


def test_a_site_that_the_guide_does_not_sample_is_refused():
    with pytest.raises(ValueError, match="'u' is not a latent sample site of the guide"):
        SquaredMeanELBO(sites=("u",)).loss(model, guide)


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
        SquaredMeanELBO().loss(masked(model), masked(guide))


def test_a_site_name_string_instead_of_a_sequence_is_refused():
    with pytest.raises(TypeError, match="sequence of site names"):
        SquaredMeanELBO(sites="z")


def test_the_base_class_has_no_penalty_of_its_own():
    with pytest.raises(NotImplementedError):
        LatentPenaltyELBO().loss(model, guide)
