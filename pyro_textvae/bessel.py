"""Modified Bessel functions of the first kind for the vMF density, differentiable in x.

``log I_v(x)`` in float64 for real order v >= 0 and x > 0: the power series

    I_v(x) = sum_m (x/2)^{2m+v} / (m! Gamma(m+v+1))

for small arguments, and Debye's uniform asymptotic expansion (DLMF 10.41)
where sqrt(v^2 + x^2) is large, so it stays accurate for x up to 1e4 and beyond and for v up to
several hundred; d/dx log I_v(x) = I_{v+1}(x)/I_v(x) + v/x gives the gradients.
"""

from __future__ import annotations

import math
from fractions import Fraction

import torch

from .checks import NON_NEGATIVE

__all__ = ["bessel_iv_ratio", "log_bessel_iv", "log_bessel_ive"]

_DEBYE_MIN_RADIUS = 25.0  # Debye's expansion is used where sqrt(v^2 + x^2) >= this
_DEBYE_TERMS = 8
_SERIES_TERMS = 100  # enough for x < _DEBYE_MIN_RADIUS in float64


def _debye_polynomials(num_terms: int) -> list[list[float]]:
    """Coefficients of Debye's polynomials u_k(t), k = 1..num_terms, shifted by t^k.

    Recurrence (DLMF 10.41.9): u_0 = 1,
    u_{k+1}(t) = t^2 (1 - t^2) u_k'(t) / 2 + (1/8) int_0^t (1 - 5 s^2) u_k(s) ds.
    u_k has powers t^k .. t^{3k}; entry k-1 lists the coefficients of u_k(t) / t^k, lowest first.
    """
    current = {0: Fraction(1)}
    shifted = []
    for k in range(num_terms):
        following: dict[int, Fraction] = {}
        for power, coef in current.items():
            if power > 0:
                following[power + 1] = following.get(power + 1, 0) + coef * power / 2
                following[power + 3] = following.get(power + 3, 0) - coef * power / 2
            following[power + 1] = following.get(power + 1, 0) + coef / (8 * (power + 1))
            following[power + 3] = following.get(power + 3, 0) - 5 * coef / (8 * (power + 3))
        current = following
        shifted.append([float(current.get(k + 1 + j, 0)) for j in range(2 * (k + 1) + 1)])
    return shifted


_DEBYE_COEFFICIENTS = _debye_polynomials(_DEBYE_TERMS)


def _log_iv_series(order: float, x: torch.Tensor) -> torch.Tensor:
    """log I_v(x) = log sum_k (x/2)^{2k+v} / (k! Gamma(k+v+1)) (DLMF 10.25.2), in log space."""
    k = torch.arange(_SERIES_TERMS, dtype=x.dtype, device=x.device)
    log_half_x = torch.log(x / 2).unsqueeze(-1)
    terms = (2 * k + order) * log_half_x - torch.lgamma(k + 1) - torch.lgamma(k + order + 1)
    return torch.logsumexp(terms, dim=-1)


def _log_ive_debye(order: float, x: torch.Tensor) -> torch.Tensor:
    """Debye's uniform expansion (DLMF 10.41.3) of log I_v(x) - x, written with s = sqrt(v^2 + x^2):

    log I_v(x) - x ~ v^2 / (s + x) + v log(x / (v + s)) - log(2 pi s) / 2 + log(1 + sum_k u_k(v/s) / v^k),

    using s - x = v^2 / (s + x) and u_k(t) / v^k = (u_k(t) / t^k) / s^k, which also holds at v = 0
    (Hankel's expansion).
    """
    s = torch.sqrt(order**2 + x**2)
    t = order / s
    correction = torch.zeros_like(x)
    for k, coefficients in enumerate(_DEBYE_COEFFICIENTS, start=1):
        polynomial = torch.zeros_like(x)
        for coef in reversed(coefficients):
            polynomial = polynomial * t + coef
        correction = correction + polynomial / s**k
    log_prefactor = order**2 / (s + x) + order * torch.log(x / (order + s)) - 0.5 * torch.log(2 * math.pi * s)
    return log_prefactor + torch.log1p(correction)


def _log_ive_float64(order: float, x: torch.Tensor) -> torch.Tensor:
    """log I_v(x) - x for x > 0 in float64: series near the origin, Debye's expansion elsewhere.

    Scaling by e^{-x} keeps the values small, so differences of them (Bessel ratios, log C_d + kappa)
    stay accurate to ~1e-15 absolute even for x ~ 1e4.
    """
    x = x.to(torch.float64)
    use_debye = order**2 + x**2 >= _DEBYE_MIN_RADIUS**2
    series = _log_iv_series(order, torch.where(use_debye, torch.ones_like(x), x)) - x
    debye = _log_ive_debye(order, torch.where(use_debye, x, torch.full_like(x, _DEBYE_MIN_RADIUS)))
    return torch.where(use_debye, debye, series)


def _check_order(order: float) -> float:
    return NON_NEGATIVE.check("Bessel order", order)


class _BesselIvRatio(torch.autograd.Function):
    """R_v(x) = I_{v+1}(x) / I_v(x); dR_v/dx = 1 - R_v^2 - (2v + 1) R_v / x (from DLMF 10.29.2)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: float) -> torch.Tensor:
        ratio = torch.exp(_log_ive_float64(order + 1, x) - _log_ive_float64(order, x)).to(x.dtype)
        ctx.save_for_backward(x, ratio)
        ctx.order = order
        return ratio

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        x, ratio = ctx.saved_tensors
        if ctx.needs_input_grad[0] and torch.is_grad_enabled():
            ratio = _BesselIvRatio.apply(x, ctx.order)
        derivative = 1 - ratio**2 - (2 * ctx.order + 1) * ratio / x
        return grad_output * derivative, None


class _LogBesselIve(torch.autograd.Function):
    """log(I_v(x) e^{-x}); its derivative is I_{v+1}(x) / I_v(x) + v / x - 1 (DLMF 10.29.2)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, order: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.order = order
        return _log_ive_float64(order, x).to(x.dtype)

    @staticmethod
    def backward(ctx, grad_output: torch.Tensor):
        (x,) = ctx.saved_tensors
        return grad_output * (_BesselIvRatio.apply(x, ctx.order) + ctx.order / x - 1), None


def log_bessel_ive(order: float, x: torch.Tensor) -> torch.Tensor:
    """log(I_v(x) e^{-x}), the exponentially scaled log Bessel function, for real v >= 0 and x > 0.

    Computed in float64 (power series DLMF 10.25.2 where sqrt(v^2 + x^2) < 25, Debye's uniform
    expansion DLMF 10.41.3 with 8 terms elsewhere) and returned in ``x``'s dtype. Twice
    differentiable in x through d/dx log I_v = I_{v+1}/I_v + v/x.
    """
    return _LogBesselIve.apply(x, _check_order(order))


def log_bessel_iv(order: float, x: torch.Tensor) -> torch.Tensor:
    """log I_v(x) = log_bessel_ive(v, x) + x, for real order v >= 0 and x > 0 (see log_bessel_ive)."""
    return log_bessel_ive(order, x) + x


def bessel_iv_ratio(order: float, x: torch.Tensor) -> torch.Tensor:
    """I_{v+1}(x) / I_v(x) for real v >= 0 and x > 0, differentiable in x (see log_bessel_ive)."""
    return _BesselIvRatio.apply(x, _check_order(order))
