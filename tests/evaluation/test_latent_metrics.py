"""MI, AU, hole metrics and per-dimension KL against analytic, quadrature and hand-computed values."""

import math

import numpy as np
import pyro.distributions as dist
import pytest
import torch
from scipy import integrate, special, stats

from evaluation.latent_metrics import (
    active_units,
    hole_metrics,
    mutual_information,
    posterior_kl_per_dim,
)
from pyro_textvae.distributions import HypersphericalUniform, VonMisesFisher


def _gaussian(loc, scale):
    return dist.Normal(loc, scale).to_event(1)


def _standard_prior(dim):
    return dist.Normal(torch.zeros(dim), 1.0).to_event(1)


def _as_full_covariance(loc, scale):
    """The same diagonal Gaussians as a MultivariateNormal: takes the generic log_prob path."""
    return dist.MultivariateNormal(loc, scale_tril=torch.diag_embed(scale))


# ---------------------------------------------------------------- mutual information


def test_mi_is_zero_when_posteriors_ignore_x():
    torch.manual_seed(0)
    loc, scale = torch.full((300, 2), 0.3), torch.full((300, 2), 0.5)
    for posterior in [_gaussian(loc, scale), _as_full_covariance(loc, scale)]:
        # log q_D(z) = log q(z|x) exactly; what remains is the MC noise of E log q(z|x) against -H:
        # sd sqrt(d / 2) per draw, standard error 0.011 with 9000 draws
        assert abs(mutual_information(posterior, num_samples=30)) < 0.05


def test_mi_of_two_separated_clusters_is_log_two():
    torch.manual_seed(1)
    loc = torch.cat([torch.full((100, 2), -10.0), torch.full((100, 2), 10.0)])
    posterior = _gaussian(loc, torch.full_like(loc, 0.1))
    # MC standard error of E log q(z|x) about sqrt(d / 2 / 6000) = 0.013
    assert mutual_information(posterior, num_samples=30, chunk_size=97, posterior_chunk_size=33) == pytest.approx(
        math.log(2), abs=0.06
    )


def test_mi_of_distinct_point_masses_reaches_log_n():
    torch.manual_seed(2)
    loc = 20.0 * torch.arange(50.0).unsqueeze(-1).expand(50, 3)
    posterior = _gaussian(loc, torch.full_like(loc, 0.05))
    # MC standard error about sqrt(d / 2 / 5000) = 0.017
    assert mutual_information(posterior, num_samples=100) == pytest.approx(math.log(50), abs=0.08)


def test_mi_matches_hand_computation_on_the_same_draws_for_any_chunking():
    loc = torch.randn(40, 3, generator=torch.Generator().manual_seed(3))
    scale = 0.3 + torch.rand(40, 3, generator=torch.Generator().manual_seed(4))
    posterior = _gaussian(loc, scale)

    torch.manual_seed(5)
    z = posterior.sample((2,))  # (M, N, d)
    log_q_given_x = torch.distributions.Normal(loc, scale).log_prob(z.unsqueeze(2)).sum(-1)  # (M, N_z, N_post)
    log_aggregate = torch.logsumexp(log_q_given_x, dim=-1) - math.log(40)
    expected = (-posterior.entropy().mean() - log_aggregate.mean()).item()

    for chunk_size, posterior_chunk_size in [(1000, 1000), (7, 6), (1, 1)]:
        torch.manual_seed(5)
        got = mutual_information(
            posterior, num_samples=2, chunk_size=chunk_size, posterior_chunk_size=posterior_chunk_size
        )
        assert got == pytest.approx(expected, abs=1e-5)


def test_mi_generic_path_without_entropy_for_two_clusters_on_the_sphere():
    # ProjectedNormal has no entropy(): the MC fallback E log q(z|x) is used
    torch.manual_seed(6)
    pole = torch.tensor([0.0, 0.0, 40.0])
    posterior = dist.ProjectedNormal(torch.cat([pole.expand(60, 3), -pole.expand(60, 3)]))
    assert mutual_information(posterior, num_samples=5) == pytest.approx(math.log(2), abs=1e-3)


def test_mi_with_vmf_posteriors_at_separated_directions():
    torch.manual_seed(7)
    directions = torch.eye(4)
    posterior = VonMisesFisher(directions.repeat_interleave(25, dim=0), torch.tensor(200.0))
    assert mutual_information(posterior, num_samples=40) == pytest.approx(math.log(4), abs=0.08)


@pytest.mark.parametrize("option", [{"num_samples": 0}, {"chunk_size": 0}, {"posterior_chunk_size": -1}])
def test_mi_rejects_bad_options(option):
    posterior = _gaussian(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match=next(iter(option))):
        mutual_information(posterior, **option)


def test_mi_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="batch shape"):
        mutual_information(dist.Normal(torch.zeros(4, 2), 1.0))
    with pytest.raises(TypeError, match="posterior"):
        mutual_information(torch.zeros(4, 2))


# ---------------------------------------------------------------- active units and KL


def test_active_units_counts():
    num, dim = 10, 6
    assert active_units(torch.full((num, dim), 0.7))[0] == 0
    strongly_varying = torch.randn(num, dim, generator=torch.Generator().manual_seed(0)) * 5
    assert active_units(strongly_varying)[0] == dim

    # +-a alternating in the first 3 dims: unbiased variance n a^2 / (n - 1) = 0.5
    a = math.sqrt(0.5 * (num - 1) / num)
    loc = torch.zeros(num, dim)
    loc[:, :3] = a * torch.tensor([1.0, -1.0]).repeat(num // 2).unsqueeze(-1)
    count, variances = active_units(loc)
    assert count == 3
    torch.testing.assert_close(variances, torch.tensor([0.5, 0.5, 0.5, 0.0, 0.0, 0.0]))


def test_active_units_uses_the_unbiased_variance():
    loc = torch.tensor([[0.0], [0.2]])  # unbiased variance 0.02, population variance 0.01
    count, variances = active_units(loc, threshold=0.015)
    assert count == 1 and variances.item() == pytest.approx(0.02)
    with pytest.raises(ValueError, match="N >= 2"):
        active_units(torch.zeros(1, 3))


def test_posterior_kl_per_dim_matches_torch_kl():
    generator = torch.Generator().manual_seed(1)
    loc, scale = torch.randn(5, 4, generator=generator), 0.2 + torch.rand(5, 4, generator=generator)
    normal = torch.distributions.Normal
    expected = torch.distributions.kl_divergence(normal(loc, scale), normal(0.0, 1.0))
    torch.testing.assert_close(posterior_kl_per_dim(loc, scale), expected)
    with pytest.raises(ValueError, match="differ"):
        posterior_kl_per_dim(loc, scale[:, :2])


# ---------------------------------------------------------------- hole metrics


def test_no_holes_when_every_posterior_is_the_prior():
    torch.manual_seed(0)
    dim = 4
    posterior = _gaussian(torch.zeros(20, dim), torch.ones(20, dim))
    result = hole_metrics(posterior, _standard_prior(dim), num_prior_samples=2000)
    assert result["joint_kl"] == pytest.approx(0.0, abs=1e-5)
    assert result["marginal_kl"] == pytest.approx([0.0] * dim, abs=1e-5)
    assert result["cu"] == {0.01: dim, 0.03: dim, 0.05: dim, 0.1: dim}
    assert result["num_prior_samples"] == 2000 and result["num_posteriors"] == 20


def test_no_holes_when_the_aggregate_of_many_posteriors_matches_the_prior():
    # mu_i ~ N(0, 1 - s^2), q(z|x_i) = N(mu_i, s^2): the population aggregate is exactly N(0, 1)
    torch.manual_seed(1)
    num, dim, scale = 2000, 4, 0.9
    loc = math.sqrt(1 - scale**2) * torch.randn(num, dim)
    result = hole_metrics(_gaussian(loc, torch.full_like(loc, scale)), _standard_prior(dim), num_prior_samples=4000)
    assert abs(result["joint_kl"]) < 0.02
    assert result["cu"][0.01] == dim


def test_single_shifted_posterior_gives_analytic_kl_and_cu_counts():
    torch.manual_seed(2)
    shift = torch.tensor([0.0, 0.1, 0.2, 0.4, 1.0])  # KL(N(0,1) || N(m,1)) = m^2 / 2 = 0, .005, .02, .08, .5
    loc = shift.expand(10, 5)
    num_samples = 20000
    posterior = _gaussian(loc, torch.ones(10, 5))
    result = hole_metrics(posterior, _standard_prior(5), num_prior_samples=num_samples, chunk_size=3000)
    # log p - log q = m^2 / 2 - m z under p: standard error |m| / sqrt(S) per dimension
    standard_error = shift.abs() / math.sqrt(num_samples)
    error = torch.tensor(result["marginal_kl"]) - shift.square() / 2
    assert (error.abs() <= 4 * standard_error + 1e-5).all()
    joint_error = result["joint_kl"] - (shift.square() / 2).sum().item()
    assert abs(joint_error) <= 4 * shift.norm().item() / math.sqrt(num_samples)
    assert result["cu"] == {0.01: 2, 0.03: 3, 0.05: 3, 0.1: 4}


def test_narrow_shifted_posterior_matches_the_gaussian_kl_formula():
    torch.manual_seed(3)
    mean, scale, dim = 0.5, 0.8, 3
    # KL(N(0,1) || N(m, s^2)) = log s + (1 + m^2) / (2 s^2) - 1/2 per dimension
    per_dim = math.log(scale) + (1 + mean**2) / (2 * scale**2) - 0.5
    posterior = _gaussian(torch.full((7, dim), mean), torch.full((7, dim), scale))
    result = hole_metrics(posterior, _standard_prior(dim), num_prior_samples=20000)
    assert result["joint_kl"] == pytest.approx(dim * per_dim, abs=0.05)
    assert result["marginal_kl"] == pytest.approx([per_dim] * dim, abs=0.03)


def test_posteriors_covering_half_the_space_match_quadrature():
    # dim 1: three components N(1, .7^2), N(2, .7^2), N(3, .7^2); dim 2 matches the prior, so the
    # joint KL equals the dim-1 marginal KL, computed by quadrature
    torch.manual_seed(4)
    means, scale = np.array([1.0, 2.0, 3.0]), 0.7

    def integrand(z):
        log_q = special.logsumexp(stats.norm.logpdf(z, means, scale)) - math.log(3)
        return stats.norm.pdf(z) * (stats.norm.logpdf(z) - log_q)

    quadrature = integrate.quad(integrand, -15, 15)[0]
    loc = torch.tensor([[1.0, 0.0], [2.0, 0.0], [3.0, 0.0]])
    posterior = _gaussian(loc, torch.tensor([[scale, 1.0]]).expand(3, 2))
    result = hole_metrics(
        posterior, _standard_prior(2), num_prior_samples=40000, chunk_size=4096, posterior_chunk_size=2
    )
    # per-sample sd of log p - log q is about 2.4 here: standard error 0.012
    assert quadrature > 1.5
    assert result["marginal_kl"][0] == pytest.approx(quadrature, abs=0.05)
    assert result["marginal_kl"][1] == pytest.approx(0.0, abs=1e-5)
    assert result["joint_kl"] == pytest.approx(quadrature, abs=0.05)
    assert result["cu"][0.1] == 1


def test_chunking_and_the_evaluation_path_do_not_change_the_joint_kl():
    generator = torch.Generator().manual_seed(5)
    loc, scale = torch.randn(30, 3, generator=generator), 0.3 + torch.rand(30, 3, generator=generator)
    prior = _standard_prior(3)
    results = []
    for posterior, sizes in [
        (_gaussian(loc, scale), {"chunk_size": 500, "posterior_chunk_size": 100}),
        (_gaussian(loc, scale), {"chunk_size": 500, "posterior_chunk_size": 7}),
        (_as_full_covariance(loc, scale), {"chunk_size": 500}),
        (_gaussian(loc, scale), {"chunk_size": 500, "posterior_chunk_size": 11, "marginal": False}),
    ]:
        torch.manual_seed(6)
        results.append(hole_metrics(posterior, prior, num_prior_samples=1000, **sizes))
    assert results[0]["joint_kl"] == pytest.approx(results[1]["joint_kl"], abs=1e-5)
    assert results[0]["marginal_kl"] == pytest.approx(results[1]["marginal_kl"], abs=1e-5)
    assert results[2]["joint_kl"] == pytest.approx(results[0]["joint_kl"], abs=1e-4)
    assert results[2]["marginal_kl"] is None and results[2]["cu"] is None
    assert "MultivariateNormal" in results[2]["marginal_skipped"]
    # joint-only Gaussian path (matrix products in float64) against the elementwise one
    assert results[3]["joint_kl"] == pytest.approx(results[0]["joint_kl"], abs=1e-4)
    assert results[3]["marginal_kl"] is None and results[3]["marginal_skipped"] == "marginal=False"


def test_vmf_posteriors_with_uniform_prior_match_the_analytic_joint_kl():
    # every posterior vMF(mu, kappa) on S^2: E_u[log u - log vMF] = -log(4 pi) - log C_3(kappa)
    # = log(sinh(kappa) / kappa), since E_u <mu, z> = 0 and C_3(kappa) = kappa / (4 pi sinh kappa)
    torch.manual_seed(7)
    kappa = 3.0
    loc = torch.tensor([0.0, 0.0, 1.0]).expand(8, 3)
    posterior, prior = VonMisesFisher(loc, kappa), HypersphericalUniform(3)
    result = hole_metrics(posterior, prior, num_prior_samples=40000, chunk_size=5000)
    assert result["joint_kl"] == pytest.approx(math.log(math.sinh(kappa) / kappa), abs=0.03)
    assert result["marginal_kl"] is None and result["cu"] is None
    with pytest.raises(ValueError, match="marginal=True"):
        hole_metrics(posterior, prior, num_prior_samples=10, marginal=True)


def test_hole_metrics_rejects_bad_input():
    posterior = _gaussian(torch.zeros(4, 2), torch.ones(4, 2))
    with pytest.raises(ValueError, match="event shape"):
        hole_metrics(posterior, _standard_prior(3), num_prior_samples=10)
    with pytest.raises(ValueError, match="taus"):
        hole_metrics(posterior, _standard_prior(2), num_prior_samples=10, taus=(0.0,))
    with pytest.raises(ValueError, match="num_prior_samples"):
        hole_metrics(posterior, _standard_prior(2), num_prior_samples=0)


@pytest.mark.parametrize("full_covariance", [False, True])
def test_hole_metrics_ticks_once_a_chunk_of_prior_draws_and_changes_no_number(full_covariance):
    torch.manual_seed(0)
    loc, scale = torch.randn(6, 3), torch.rand(6, 3) + 0.5
    posterior = _as_full_covariance(loc, scale) if full_covariance else _gaussian(loc, scale)
    ticks = []
    torch.manual_seed(1)
    plain = hole_metrics(posterior, _standard_prior(3), 1000, chunk_size=300)
    torch.manual_seed(1)
    ticked = hole_metrics(posterior, _standard_prior(3), 1000, chunk_size=300, on_chunk=ticks.append)
    assert ticks == [300, 300, 300, 100] and ticked == plain
