"""Log densities of mixtures of diagonal Normals at many points, with analytic backward passes: the
inner loop of the density-gap estimator (:mod:`inference.density_gap`) for Gaussian posteriors.

Both compute, for sample rows z_r and components j (``docs/maths.md#density-gap-estimator``),

    logsumexp_j [ log N(z_r | mu_j, diag s_j^2) + a_rj ],

``a`` the log weights of the mixture (``None``: 0; ``-inf`` leaves a component out), one coordinate at a
time (:class:`GaussianLogMixture`) or jointly over the d coordinates (:class:`GaussianJointLogMixture`).
Only the inputs and the result are kept for the backward pass, which recomputes the (rows, G) log
densities; autograd through the same formulas would keep several arrays of that size or larger.

:func:`per_coordinate_log_mixture` picks the per-coordinate kernel: ``"eager"``, :class:`GaussianLogMixture`
(a dozen passes of PyTorch operations over each (rows, G, d) array, forward and backward), or
``"compiled"``, the same formula fused into one loop by ``torch.compile`` (a C++ compiler is needed; the
first call of a process compiles it, about 10 s). Fusing pays where the mixture is large, a memory of
thousands of posteriors (``docs/benchmarks.md``).
"""
from __future__ import annotations

import functools
import os
import shutil
from typing import Callable

import torch


class GaussianLogMixture(torch.autograd.Function):
    """Per coordinate: ``z`` ``(k, *lead, 1, d)`` against components ``(*lead, G, d)``, result ``(k, *lead, d)``.

    With ``t = (z - mu_j) / s_j``, ``l_j = -t^2 / 2 + c_j``, ``c_j = -log s_j - log sqrt(2 pi)`` and
    ``w_j = softmax_j (l_j + a_rj)``: ``d/dz = -sum_j w_j t / s_j``, ``d/dmu_j = w_j t / s_j``,
    ``d/d(1/s_j) = -w_j t (z - mu_j)``, ``d/dc_j = w_j``. Inputs: ``z``, ``loc``, ``1 / scale``, ``c`` and
    the log weights ``(k, *lead, G, 1)`` or None.
    """

    @staticmethod
    def _log_density(z, loc, inv_scale, bias, log_weight):
        diff = z - loc
        scaled = diff * inv_scale
        log_density = bias - 0.5 * scaled.square()
        if log_weight is not None:
            log_density = log_density + log_weight
        return diff, scaled, log_density

    @staticmethod
    def forward(ctx, z, loc, inv_scale, bias, log_weight):  # noqa: D102
        _, _, log_density = GaussianLogMixture._log_density(z, loc, inv_scale, bias, log_weight)
        result = torch.logsumexp(log_density, dim=-2)
        ctx.save_for_backward(z, loc, inv_scale, bias, result)
        ctx.log_weight = log_weight
        return result

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        z, loc, inv_scale, bias, result = ctx.saved_tensors
        diff, scaled, log_density = GaussianLogMixture._log_density(z, loc, inv_scale, bias, ctx.log_weight)
        weight = (log_density - result.unsqueeze(-2)).exp() * grad.unsqueeze(-2)
        pull = weight * scaled
        grad_z = -(pull * inv_scale).sum(-2, keepdim=True)
        grad_loc = (pull * inv_scale).sum(0)
        grad_inv_scale = -(pull * diff).sum(0)
        return grad_z, grad_loc, grad_inv_scale, weight.sum(0), None


class GaussianJointLogMixture(torch.autograd.Function):
    """Jointly over the coordinates, as matrix products: with ``A_j = 1 / s_j^2``,

        log N(z | mu_j, s_j) = sum_k [c_jk - z_k^2 A_jk / 2 + z_k mu_jk A_jk - mu_jk^2 A_jk / 2],

    so the (rows, G) log densities are two products of (rows, d) by (d, G) matrices, O(rows G d) in
    BLAS instead of elementwise. The products run in float64: their terms are up to A = 1/s^2 times
    larger than their sum, which float32 would cancel inexactly for sharp posteriors. The backward
    pass, with ``W_rj = softmax_j`` times the incoming gradient, is products too:
    ``d/dz_r = sum_j W_rj A_j (mu_j - z_r)``, ``d/dmu_j = A_j sum_r W_rj (z_r - mu_j)``,
    ``d/d(1/s_j) = -(1/s_j) sum_r W_rj (z_r - mu_j)^2``, ``d/dc_j = sum_r W_rj``.
    Inputs: ``z`` ``(k, *lead, 1, d)``, ``loc``, ``1 / scale``, ``c`` ``(*lead, G, d)``, the log weights
    ``(k, *lead, G)`` (or broadcastable, or None); result ``(k, *lead)``.
    """

    @staticmethod
    def _log_density(z, loc, inv_scale, bias, log_weight):
        """The (k, L, G) float64 log densities (weights added) and the flat float64 inputs."""
        rows, lead = z.shape[0], z.shape[1:-2]
        flat_z = z.reshape(rows, -1, z.shape[-1]).double()
        width = flat_z.shape[1]
        loc, inv_scale, bias = (t.expand(*lead, *t.shape[-2:]).reshape(width, *t.shape[-2:]).double()
                                for t in (loc, inv_scale, bias))
        precision = inv_scale.square()
        constant = (bias - 0.5 * loc.square() * precision).sum(-1)
        log_density = (torch.einsum("kld,lgd->klg", flat_z, loc * precision) + constant
                       - 0.5 * torch.einsum("kld,lgd->klg", flat_z.square(), precision))
        if log_weight is not None:
            log_density = log_density + log_weight.expand(rows, *lead, log_weight.shape[-1]).reshape(
                rows, width, -1)
        return flat_z, loc, inv_scale, precision, log_density

    @staticmethod
    def forward(ctx, z, loc, inv_scale, bias, log_weight):  # noqa: D102
        log_density = GaussianJointLogMixture._log_density(z, loc, inv_scale, bias, log_weight)[-1]
        result = torch.logsumexp(log_density, dim=-1)
        ctx.save_for_backward(z, loc, inv_scale, bias, result)
        ctx.log_weight = log_weight
        return result.to(z.dtype).reshape(z.shape[:-2])

    @staticmethod
    def backward(ctx, grad):  # noqa: D102
        z, loc, inv_scale, bias, result = ctx.saved_tensors
        flat_z, mu, inv, precision, log_density = GaussianJointLogMixture._log_density(
            z, loc, inv_scale, bias, ctx.log_weight)
        weight = (log_density - result.unsqueeze(-1)).exp() * grad.reshape(result.shape).double().unsqueeze(-1)
        total = weight.sum(0).unsqueeze(-1)
        weighted_z = torch.einsum("klg,kld->lgd", weight, flat_z)
        weighted_square = torch.einsum("klg,kld->lgd", weight, flat_z.square())
        grad_z = (torch.einsum("klg,lgd->kld", weight, mu * precision)
                  - flat_z * torch.einsum("klg,lgd->kld", weight, precision))
        grad_loc = precision * (weighted_z - mu * total)
        grad_inv = -inv * (weighted_square - 2 * mu * weighted_z + mu.square() * total)
        shape = loc.shape
        return (grad_z.to(z.dtype).reshape(z.shape), grad_loc.to(loc.dtype).reshape(shape),
                grad_inv.to(inv_scale.dtype).reshape(shape), total.expand_as(grad_loc).to(bias.dtype).reshape(shape),
                None)


def _log_mixture_formula(z, loc, inv_scale, bias, log_weight):
    """:class:`GaussianLogMixture`'s result as plain tensor operations, for ``torch.compile`` to fuse
    (forward and backward)."""
    scaled = (z - loc) * inv_scale
    log_density = bias - 0.5 * scaled.square()
    if log_weight is not None:
        log_density = log_density + log_weight
    return torch.logsumexp(log_density, dim=-2)


CXX_COMPILERS = ("g++", "c++", "clang++")  # what torch.compile's C++ back end can build with, besides $CXX


def check_compiler() -> None:
    """Refuse the compiled kernel, with one line, where no C++ compiler is on PATH (``$CXX`` or one of
    :data:`CXX_COMPILERS`): ``torch.compile`` would fail at the first step with a long traceback."""
    names = ([os.environ["CXX"]] if os.environ.get("CXX") else []) + list(CXX_COMPILERS)
    if not any(shutil.which(name) for name in names):
        raise ValueError(f'kernel="compiled" needs a C++ compiler for torch.compile and none is on PATH '
                         f'(looked for {", ".join(names)}); use kernel="eager"')


@functools.cache
def _compiled_log_mixture() -> Callable:
    check_compiler()
    return torch.compile(_log_mixture_formula, dynamic=True)


def per_coordinate_log_mixture(kernel: str) -> Callable:
    """The per-coordinate mixture ``(z, loc, 1 / scale, c, log_weight) -> logsumexp_j`` of
    :class:`GaussianLogMixture` for ``kernel`` (:data:`inference.objective_configs.KERNELS`): its ``apply``
    (``"eager"``) or the formula compiled once per process (``"compiled"``); both differentiable in every
    input but the weights."""
    return GaussianLogMixture.apply if kernel == "eager" else _compiled_log_mixture()
