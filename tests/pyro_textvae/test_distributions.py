"""Tests for pyro_textvae.distributions: the vMF and uniform distributions on S^{d-1}."""

import math

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import scipy.integrate as integrate
import scipy.special as special
import scipy.stats as stats
import torch
from pyro.infer import Trace_ELBO, TraceMeanField_ELBO
from torch.distributions import kl_divergence

from pyro_textvae.distributions import (
    HypersphericalUniform,
    VonMisesFisher,
    log_bessel_iv,
    log_sphere_surface_area,
    log_vmf_normalizer,
    mean_resultant_length,
)

DIMS = [2, 3, 5, 16, 32, 64, 128]
KAPPAS = [1e-3, 0.1, 1.0, 13.0, 50.0, 200.0, 1e3, 1e4]


def _random_unit(d, seed, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(d, generator=g, dtype=dtype)
    return x / x.norm()


def _scipy_log_iv(order, x):
    return np.log(special.ive(order, x)) + x


def _scipy_log_normalizer(d, kappa):
    v = d / 2 - 1
    return v * np.log(kappa) - d / 2 * np.log(2 * np.pi) - _scipy_log_iv(v, kappa)


def _scipy_mean_length(d, kappa):
    return special.ive(d / 2, kappa) / special.ive(d / 2 - 1, kappa)


# ---------------------------------------------------------------- mean resultant length (log I_v: test_bessel.py)


def test_mean_resultant_length_matches_scipy_and_float32_agrees():
    x64 = torch.tensor(KAPPAS, dtype=torch.float64)
    for d in DIMS:
        ref = _scipy_mean_length(d, x64.numpy())
        np.testing.assert_allclose(mean_resultant_length(d, x64).numpy(), ref, rtol=1e-10)
        np.testing.assert_allclose(mean_resultant_length(d, x64.float()).numpy(), ref, rtol=1e-6)


def test_bad_order_and_dimension_raise():
    with pytest.raises(ValueError, match="order"):
        log_bessel_iv(-0.5, torch.ones(1))
    with pytest.raises(ValueError, match="dimension"):
        log_sphere_surface_area(1)


# ---------------------------------------------------------------- normaliser, log_prob


@pytest.mark.parametrize("d", [2, 5, 16, 32, 128])
def test_normalizer_integrates_marginal_of_angle_to_one(d):
    """int_{S^{d-1}} exp(kappa <mu,x>) dx = |S^{d-2}| int_0^pi exp(kappa cos t) sin^{d-2} t dt = 1 / C_d."""
    log_area_below = np.log(2) + (d - 1) / 2 * np.log(np.pi) - special.gammaln((d - 1) / 2)
    for kappa in [1e-3, 1.0, 13.0, 50.0, 1e3, 1e4]:
        def shifted_density(t):
            return np.exp(kappa * (np.cos(t) - 1) + (d - 2) * np.log(np.sin(t)))

        mode = np.arccos((-(d - 2) + np.sqrt((d - 2) ** 2 + 4 * kappa**2)) / (2 * kappa))
        points = [mode] if 0 < mode < np.pi else None
        integral, _ = integrate.quad(shifted_density, 0, np.pi, points=points, limit=200, epsabs=0, epsrel=1e-12)
        log_c = log_vmf_normalizer(d, torch.tensor(kappa, dtype=torch.float64)).item()
        assert np.log(integral) + kappa + log_area_below + log_c == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("kappa", [0.1, 2.0, 13.0, 50.0])
def test_log_prob_integrates_to_one_on_s2(kappa):
    """Gauss-Legendre in cos(theta) times the periodic trapezoid rule in phi."""
    nodes, weights = np.polynomial.legendre.leggauss(200)
    phi = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    cos_t, ph = np.meshgrid(nodes, phi, indexing="ij")
    sin_t = np.sqrt(1 - cos_t**2)
    x = torch.tensor(np.stack([sin_t * np.cos(ph), sin_t * np.sin(ph), cos_t], -1))
    q = VonMisesFisher(_random_unit(3, seed=int(kappa)), torch.tensor(kappa, dtype=torch.float64))
    density = q.log_prob(x).exp().numpy()
    total = (weights[:, None] * density).sum() * (2 * np.pi / phi.size)
    assert total == pytest.approx(1.0, abs=1e-9)


@pytest.mark.parametrize("kappa", [1.0, 13.0, 200.0])
def test_log_prob_integrates_to_one_on_circle(kappa):
    angle = np.linspace(0, 2 * np.pi, 4000, endpoint=False)
    x = torch.tensor(np.stack([np.cos(angle), np.sin(angle)], -1))
    q = VonMisesFisher(_random_unit(2, seed=3), torch.tensor(kappa, dtype=torch.float64))
    assert q.log_prob(x).exp().sum().item() * 2 * np.pi / angle.size == pytest.approx(1.0, abs=1e-9)


def test_log_prob_equals_pyro_vonmises3d():
    torch.manual_seed(0)
    loc = torch.nn.functional.normalize(torch.randn(4, 3, dtype=torch.float64), dim=-1)
    kappa = torch.tensor([0.05, 1.0, 13.0, 300.0], dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(7, 4, 3, dtype=torch.float64), dim=-1)
    ours = VonMisesFisher(loc, kappa).log_prob(x)
    pyros = dist.VonMises3D(kappa[:, None] * loc).log_prob(x)
    torch.testing.assert_close(ours, pyros, rtol=1e-10, atol=1e-10)


# ---------------------------------------------------------------- sampling


@pytest.mark.parametrize("d", [3, 10, 32])
@pytest.mark.parametrize("kappa", [1.0, 13.0, 100.0])
def test_samples_have_mean_resultant_length_and_direction(d, kappa):
    torch.manual_seed(d + int(kappa))
    n = 20000
    loc = _random_unit(d, seed=d)
    x = VonMisesFisher(loc, torch.tensor(kappa, dtype=torch.float64)).sample((n,))
    a = mean_resultant_length(d, torch.tensor(kappa, dtype=torch.float64)).item()
    w = x @ loc
    assert abs(w.mean().item() - a) < 5 * w.std().item() / math.sqrt(n)
    x_bar = x.mean(0)
    unbiased_sq_length = (n * x_bar.norm() ** 2 - 1) / (n - 1)  # E|x_bar|^2 = A^2 + (1 - A^2)/n
    sd = 2 * a * w.std().item() / math.sqrt(n) + math.sqrt(2 / (d - 1)) / n
    assert abs(unbiased_sq_length.item() - a**2) < 5 * sd
    orthogonal = x_bar - (x_bar @ loc) * loc
    scaled = (n * orthogonal.norm() ** 2 / (1 - w**2).mean()).item()  # ~ chi^2_{d-1} / (d-1) * (d-1)
    assert scaled < stats.chi2.ppf(0.9999, d - 1)


@pytest.mark.parametrize("d, kappa", [(2, 1.0), (3, 13.0), (10, 1.0), (32, 100.0), (128, 13.0), (5, 1e4)])
def test_angle_to_mean_follows_exact_marginal(d, kappa):
    """theta = arccos <mu, x> has density prop. to exp(kappa cos t) sin^{d-2} t on [0, pi]: KS test."""
    torch.manual_seed(1)
    loc = -torch.eye(d, dtype=torch.float64)[0] if d == 5 else _random_unit(d, seed=2)
    x = VonMisesFisher(loc, torch.tensor(kappa, dtype=torch.float64)).sample((4000,))
    theta = torch.arccos((x @ loc).clamp(-1, 1)).numpy()
    grid = np.linspace(0, np.pi, 200001)
    sin = np.sin(grid)
    log_sin = np.log(sin, out=np.full_like(grid, -np.inf), where=sin > 0)
    density = np.exp(kappa * (np.cos(grid) - 1) + (d - 2) * log_sin) if d > 2 else np.exp(kappa * (np.cos(grid) - 1))
    cdf = integrate.cumulative_trapezoid(density, grid, initial=0)
    cdf /= cdf[-1]
    assert stats.kstest(theta, lambda t: np.interp(t, grid, cdf)).pvalue > 1e-3


@pytest.mark.parametrize("loc_sign", [1.0, -1.0])
def test_samples_centre_on_plus_and_minus_e1(loc_sign):
    """Both Householder branches (mu_1 > 0 and mu_1 <= 0), at the degenerate points mu = +-e_1."""
    torch.manual_seed(5)
    loc = loc_sign * torch.eye(4, dtype=torch.float64)[0]
    x = VonMisesFisher(loc, torch.tensor(13.0, dtype=torch.float64)).sample((20000,))
    a = mean_resultant_length(4, torch.tensor(13.0, dtype=torch.float64))
    torch.testing.assert_close(x.mean(0), a * loc, atol=0.01, rtol=0)
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(20000, dtype=torch.float64))


def test_rsample_gradient_in_loc_matches_analytic_and_kappa_gradient_is_finite():
    """d/d mu E<a, x> = A_d(kappa) (I - mu mu^T) a, with loc normalised inside the distribution."""
    torch.manual_seed(2)
    for d, kappa in [(3, 13.0), (10, 1.0), (128, 1e4), (32, 1e-3)]:
        loc = _random_unit(d, seed=d).requires_grad_()
        conc = torch.tensor(kappa, dtype=torch.float64, requires_grad=True)
        a = torch.randn(d, dtype=torch.float64)
        z = VonMisesFisher(loc, conc).rsample((10000,))
        loc_grad, kappa_grad = torch.autograd.grad((z @ a).mean(), (loc, conc))
        mu = loc.detach()
        expected = mean_resultant_length(d, conc.detach()) * (a - (mu @ a) * mu)
        assert torch.isfinite(kappa_grad) and torch.isfinite(loc_grad).all()
        assert loc_grad.norm() > 0
        assert (loc_grad - expected).norm() < 0.05 * a.norm()


def test_sample_has_no_gradient_and_rejection_limit_raises():
    loc = _random_unit(3, seed=0).requires_grad_()
    assert not VonMisesFisher(loc, torch.tensor(2.0, dtype=torch.float64)).sample((3,)).requires_grad

    class NoRounds(VonMisesFisher):
        max_rejection_rounds = 0

    with pytest.raises(RuntimeError, match="max_rejection_rounds"):
        NoRounds(loc, torch.tensor(2.0, dtype=torch.float64)).rsample((3,))


# ---------------------------------------------------------------- entropy, KL


def test_entropy_and_kl_match_scipy_reference_on_grid():
    kappa = torch.tensor(KAPPAS, dtype=torch.float64)
    for d in DIMS:
        q = VonMisesFisher(_random_unit(d, seed=d).expand(len(KAPPAS), d), kappa)
        k = kappa.numpy()
        log_c = _scipy_log_normalizer(d, k)
        entropy = -k * _scipy_mean_length(d, k) - log_c
        np.testing.assert_allclose(q.entropy().numpy(), entropy, rtol=1e-9, atol=1e-9)
        kl = kl_divergence(q, HypersphericalUniform(d, dtype=torch.float64))
        np.testing.assert_allclose(kl.numpy(), log_sphere_surface_area(d) - entropy, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("d, kappa", [(3, 13.0), (10, 50.0), (32, 13.0)])
def test_kl_to_uniform_matches_monte_carlo_for_any_loc(d, kappa):
    torch.manual_seed(3)
    p = HypersphericalUniform(d, dtype=torch.float64)
    kls = []
    for seed in (0, 1):
        q = VonMisesFisher(_random_unit(d, seed=seed), torch.tensor(kappa, dtype=torch.float64))
        z = q.sample((20000,))
        gap = q.log_prob(z) - p.log_prob(z)
        kl = kl_divergence(q, p)
        assert abs(gap.mean().item() - kl.item()) < 5 * gap.std().item() / math.sqrt(z.shape[0])
        assert abs(-q.log_prob(z).mean().item() - q.entropy().item()) < 5 * gap.std().item() / math.sqrt(z.shape[0])
        kls.append(kl)
    torch.testing.assert_close(kls[0], kls[1])


def test_kl_gradient_in_kappa_passes_finite_differences():
    p = HypersphericalUniform(16, dtype=torch.float64)
    loc = _random_unit(16, seed=0).expand(4, 16)
    kappa = torch.tensor([0.01, 3.0, 30.0, 2e3], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda k: kl_divergence(VonMisesFisher(loc, k), p), (kappa,))
    assert torch.autograd.gradcheck(lambda k: log_vmf_normalizer(16, k), (kappa,))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_large_dimension_and_concentration_are_stable(dtype):
    d = 128
    kappa = torch.tensor([1e-3, 1.0, 13.0, 1e2, 1e3, 1e4], dtype=dtype, requires_grad=True)
    q = VonMisesFisher(_random_unit(d, seed=0, dtype=dtype).expand(6, d), kappa)
    z = q.rsample((50,))
    log_q = q.log_prob(z)
    kl = kl_divergence(q, HypersphericalUniform(d, dtype=dtype))
    for value in (z, log_q, q.entropy(), kl):
        assert torch.isfinite(value).all()
    assert (kl >= 0).all() and (kl[1:] > kl[:-1]).all()
    grads = torch.autograd.grad(log_q.sum() + kl.sum(), kappa)[0]
    assert torch.isfinite(grads).all()
    # float32 log_prob agrees with a float64 evaluation of the same points
    q64 = VonMisesFisher(q.loc.detach().double(), kappa.detach().double())
    reference = q64.log_prob(z.detach().double()).to(dtype)
    torch.testing.assert_close(log_q.detach(), reference, rtol=1e-4, atol=2e-2 if dtype == torch.float32 else 1e-8)


# ---------------------------------------------------------------- uniform distribution


@pytest.mark.parametrize("d, area", [(2, 2 * math.pi), (3, 4 * math.pi), (4, 2 * math.pi**2), (5, 8 * math.pi**2 / 3)])
def test_uniform_log_prob_is_inverse_surface_area(d, area):
    p = HypersphericalUniform(d, batch_shape=(2,), dtype=torch.float64)
    x = torch.nn.functional.normalize(torch.randn(3, 2, d, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(p.log_prob(x), torch.full((3, 2), -math.log(area), dtype=torch.float64))
    torch.testing.assert_close(p.entropy(), torch.full((2,), math.log(area), dtype=torch.float64))


@pytest.mark.parametrize("d", [2, 3, 16])
def test_uniform_samples_are_unit_with_zero_mean_and_isotropic_covariance(d):
    torch.manual_seed(4)
    n = 20000
    x = HypersphericalUniform(d, dtype=torch.float64).rsample((n,))
    torch.testing.assert_close(x.norm(dim=-1), torch.ones(n, dtype=torch.float64))
    assert x.mean(0).abs().max() < 5 / math.sqrt(d * n)
    second_moment = x.T @ x / n  # E[x x^T] = I / d; entries have sd <= 1/sqrt(n)
    assert (second_moment - torch.eye(d, dtype=torch.float64) / d).abs().max() < 5 / math.sqrt(n)


# ---------------------------------------------------------------- shapes, Pyro integration, validation


def test_shapes_with_batch_sample_and_particle_dims():
    loc = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1)
    q = VonMisesFisher(loc, torch.tensor(13.0))
    assert q.batch_shape == (5,) and q.event_shape == (8,)
    z = q.rsample((7,))
    assert z.shape == (7, 5, 8) and q.log_prob(z).shape == (7, 5)
    expanded = q.expand((3, 5))
    z = expanded.rsample((2,))
    assert z.shape == (2, 3, 5, 8) and expanded.log_prob(z).shape == (2, 3, 5)
    torch.testing.assert_close(expanded.log_prob(z), q.log_prob(z))
    assert expanded.mean.shape == (3, 5, 8)
    torch.testing.assert_close(q.mean, mean_resultant_length(8, torch.tensor(13.0)) * q.loc)
    assert HypersphericalUniform(8).expand((3, 5)).rsample((2,)).shape == (2, 3, 5, 8)


def test_pyro_elbo_with_vectorised_particles_equals_analytic_kl():
    """Analytic KL through TraceMeanField_ELBO, Monte Carlo through Trace_ELBO, in plates of size B with P particles."""
    pyro.clear_param_store()
    d, batch = 6, 4
    loc = torch.nn.functional.normalize(torch.randn(batch, d, dtype=torch.float64), dim=-1)
    kappa = torch.tensor([1.0, 5.0, 13.0, 40.0], dtype=torch.float64)

    def model():
        with pyro.plate("data", batch):
            pyro.sample("z", HypersphericalUniform(d, dtype=torch.float64))

    def guide():
        with pyro.plate("data", batch):
            pyro.sample("z", VonMisesFisher(loc, kappa))

    expected = kl_divergence(VonMisesFisher(loc, kappa), HypersphericalUniform(d, dtype=torch.float64)).sum()
    analytic = TraceMeanField_ELBO(num_particles=3, vectorize_particles=True, max_plate_nesting=1)
    torch.testing.assert_close(analytic.differentiable_loss(model, guide), expected)
    torch.manual_seed(6)
    particles = 4000
    monte_carlo = Trace_ELBO(num_particles=particles, vectorize_particles=True, max_plate_nesting=1)
    sd_bound = 3.0 * math.sqrt(batch / particles)  # per-sentence sd of log q - log p is below 3 here
    assert abs(monte_carlo.differentiable_loss(model, guide).item() - expected.item()) < sd_bound


def test_invalid_arguments_raise_clear_errors():
    with pytest.raises(ValueError, match="unit norm"):
        VonMisesFisher(torch.tensor([1.0, 1.0, 0.0]), torch.tensor(1.0), validate_args=True)
    with pytest.raises(ValueError, match="concentration"):
        VonMisesFisher(torch.tensor([1.0, 0.0, 0.0]), torch.tensor(-1.0), validate_args=True)
    with pytest.raises(ValueError, match="dimension"):
        VonMisesFisher(torch.tensor([1.0]), torch.tensor(1.0))
    with pytest.raises(ValueError, match="dimension"):
        HypersphericalUniform(1)
    with pytest.raises(ValueError, match="dimensions differ"):
        kl_divergence(VonMisesFisher(torch.tensor([1.0, 0.0]), 1.0), HypersphericalUniform(3))
    with pytest.raises(ValueError, match="support"):
        VonMisesFisher(torch.tensor([1.0, 0.0, 0.0]), 1.0, validate_args=True).log_prob(torch.tensor([2.0, 0.0, 0.0]))
    # without validation a slightly off-norm loc is normalised
    q = VonMisesFisher(torch.tensor([2.0, 0.0, 0.0]), 1.0, validate_args=False)
    torch.testing.assert_close(q.loc, torch.tensor([1.0, 0.0, 0.0]))
