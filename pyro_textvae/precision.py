"""Numerical precision of the networks: ``fp32`` or ``bf16`` mixed precision.

``bf16`` runs the encoder and decoder networks under ``torch.autocast(dtype=torch.bfloat16)``
(matrix products and LSTMs in bfloat16, on the CPU and on CUDA) while everything else stays in
float32: the parameters (master weights), their gradients and the optimiser state, the posterior
heads and their distributions, ``log_softmax`` and the gathered token log-probabilities, the
density-gap log densities and their logsumexp, the Bessel functions of the vMF, and every metric.
Checkpoints therefore hold float32 parameters whatever the precision, and a run trained in one
precision is resumed or evaluated in the other.

A CPU without native bfloat16 dot products (AVX-512 BF16 or AMX) would emulate them, slower than
float32: there ``bf16`` is refused once with a warning and float32 is used.
"""
from __future__ import annotations

import contextlib
import warnings

import torch

from .config import DEFAULT_PRECISION, PRECISIONS, check_precision

__all__ = ["DEFAULT_PRECISION", "PRECISIONS", "autocast", "bf16_supported", "check_precision", "effective_precision"]
_warned: set[str] = set()


def cpu_supports_bf16() -> bool:
    """True when this CPU has native bfloat16 dot products (AVX-512 BF16 or AMX tiles) for oneDNN."""
    if not torch.backends.mkldnn.is_available():
        return False
    probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
    return any(probe is not None and bool(probe()) for probe in probes)


def bf16_supported(device_type: str) -> bool:
    """Whether bfloat16 autocast is fast on ``device_type`` (``"cpu"``, ``"cuda"``; others: False)."""
    if device_type == "cpu":
        return cpu_supports_bf16()
    if device_type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return False


def effective_precision(precision: str, device: torch.device | str) -> str:
    """``precision`` on ``device``, or ``"fp32"`` (said once per device type) where bf16 is not supported."""
    check_precision(precision)
    device_type = torch.device(device).type
    if precision == "bf16" and not bf16_supported(device_type):
        if device_type not in _warned:
            _warned.add(device_type)
            warnings.warn(f"bf16 is not supported on this {device_type} device; running in fp32", stacklevel=2)
        return "fp32"
    return precision


def autocast(precision: str, device_type: str) -> contextlib.AbstractContextManager:
    """``torch.autocast(device_type, bfloat16)`` for ``"bf16"``, a no-op context for ``"fp32"``."""
    if check_precision(precision) == "fp32" or device_type not in ("cpu", "cuda"):
        return contextlib.nullcontext()
    return torch.autocast(device_type=device_type, dtype=torch.bfloat16)
