"""log I_v, its scaled form and the ratio I_{v+1}/I_v against scipy.special and exact identities."""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special as special
import torch

from pyro_textvae.bessel import bessel_iv_ratio, log_bessel_iv, log_bessel_ive
from tests.pyro_textvae.test_distributions import DIMS, KAPPAS, _scipy_log_iv

ORDERS = (0.0, 0.5, 3.0, 15.0, 99.0, 255.0)
X = np.array([1e-3, 0.1, 1.0, 7.5, 24.9, 25.1, 80.0, 1e3, 1e4])


@pytest.mark.parametrize("order", ORDERS)
def test_scaled_log_bessel_matches_scipy_over_six_decades(order):
    with np.errstate(divide="ignore"):
        reference = np.log(special.ive(order, X))
    finite = np.isfinite(reference)  # scipy underflows where log I_v(x) is far below -700
    got = log_bessel_ive(order, torch.tensor(X)).numpy()
    np.testing.assert_allclose(got[finite], reference[finite], rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("order", ORDERS)
def test_ratio_matches_scipy(order):
    with np.errstate(divide="ignore", invalid="ignore"):
        reference = special.ive(order + 1, X) / special.ive(order, X)
    finite = np.isfinite(reference) & (special.ive(order, X) > 1e-290)
    got = bessel_iv_ratio(order, torch.tensor(X)).numpy()
    np.testing.assert_allclose(got[finite], reference[finite], rtol=1e-9, atol=1e-300)


def test_half_order_has_its_closed_form():
    """I_{1/2}(x) = sqrt(2 / (pi x)) sinh x, so log I_{1/2}(x) - x = log(2 / (pi x)) / 2 + log(1 - e^{-2x}) - log 2."""
    x = torch.tensor([0.01, 0.7, 5.0, 30.0, 400.0], dtype=torch.float64)
    exact = 0.5 * torch.log(2 / (math.pi * x)) + torch.log(-torch.expm1(-2 * x)) - math.log(2)
    torch.testing.assert_close(log_bessel_ive(0.5, x), exact, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("order", [1.0, 7.5, 40.0])
def test_recurrence_between_neighbouring_orders(order):
    """I_{v-1}(x) - I_{v+1}(x) = (2 v / x) I_v(x) (DLMF 10.29.1), on both sides of the series/Debye switch."""
    x = torch.tensor([0.5, 10.0, 24.0, 26.0, 200.0], dtype=torch.float64)
    below, here, above = (log_bessel_ive(order + shift, x).exp() for shift in (-1.0, 0.0, 1.0))
    torch.testing.assert_close((below - above) * x / (2 * order), here, rtol=1e-10, atol=0.0)


def test_the_two_expansions_agree_where_they_meet():
    """The power series and Debye's expansion meet at sqrt(v^2 + x^2) = 25: values just inside and outside agree
    with a smooth function (no step larger than the local slope allows)."""
    x = torch.tensor([25.0 - 1e-9, 25.0 + 1e-9], dtype=torch.float64)
    values = log_bessel_iv(0.0, x)
    slope = bessel_iv_ratio(0.0, x[:1])
    assert abs(float(values[1] - values[0])) < 2e-9 * float(slope) + 1e-13


def test_float32_input_gives_float32_values_of_the_float64_computation():
    x = torch.tensor([0.2, 30.0, 5e3])
    got = log_bessel_iv(12.0, x)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), log_bessel_iv(12.0, x.double()), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("order", [-1.0, True, "2"])
def test_a_bad_order_is_refused_by_every_function(order):
    for function in (log_bessel_ive, log_bessel_iv, bessel_iv_ratio):
        with pytest.raises(ValueError, match="order"):
            function(order, torch.ones(2))


@pytest.mark.parametrize("d", DIMS)
def test_log_bessel_iv_matches_scipy(d):
    x = np.array(KAPPAS)
    for order in (d / 2 - 1, d / 2):
        got = log_bessel_iv(order, torch.tensor(x)).numpy()
        np.testing.assert_allclose(got, _scipy_log_iv(order, x), rtol=1e-11, atol=1e-11)
        scaled = log_bessel_ive(order, torch.tensor(x)).numpy()
        np.testing.assert_allclose(scaled, np.log(special.ive(order, x)), rtol=1e-11, atol=1e-11)


def test_log_bessel_iv_gradient_is_ratio_plus_order_over_x():
    x = torch.tensor(KAPPAS, dtype=torch.float64, requires_grad=True)
    for d in DIMS:
        v = d / 2 - 1
        (grad,) = torch.autograd.grad(log_bessel_iv(v, x).sum(), x)
        ref = special.ive(v + 1, x.detach().numpy()) / special.ive(v, x.detach().numpy()) + v / x.detach().numpy()
        np.testing.assert_allclose(grad.numpy(), ref, rtol=1e-9)


@pytest.mark.parametrize("order", [0.0, 0.5, 7.0, 63.0])
def test_bessel_functions_pass_finite_difference_checks(order):
    x = torch.tensor([0.3, 4.0, 24.0, 26.0, 300.0], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: log_bessel_iv(order, t), (x,))
    assert torch.autograd.gradgradcheck(lambda t: log_bessel_iv(order, t), (x,))
    assert torch.autograd.gradcheck(lambda t: log_bessel_ive(order, t), (x,))
    assert torch.autograd.gradcheck(lambda t: bessel_iv_ratio(order, t), (x,))
