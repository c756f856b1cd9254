"""The options of one evaluation and their defaults, in one place.

``textvae evaluate`` builds its options from :data:`EVALUATE_DEFAULTS` and
:func:`evaluation.report.evaluate_run` takes its keyword defaults from it, so the command line
and the library cannot drift apart. No torch import: the parser reads it before anything heavy
is loaded. The hole metrics use 1000 x 128 prior draws and the NLL K = 500 importance samples,
the classic text-VAE protocol.
"""
from __future__ import annotations

from dataclasses import dataclass

SPLITS = ("train", "valid", "test")
CURVE_PRIOR_SAMPLES = 12_800  # prior draws of the per-epoch validation joint-KL (evaluation.curves)
IW_MEMORY = 2**30  # bytes that importance sampling may hold for one batch (sizes the chunk of samples)


@dataclass(frozen=True)
class EvaluateOptions:
    """Defaults of an evaluation: the split, importance sampling (K samples per sentence, batch and
    chunk sizes; the chunk None: sized to :data:`IW_MEMORY`), prior draws for the hole metrics, draws per
    posterior for the density-gap KL, decoded prior samples, interpolated pairs, and the seed of every random draw."""

    split: str = "test"
    iw_samples: int = 500
    iw_batch_size: int = 32
    iw_chunk: int | None = None
    prior_samples: int = 1000 * 128
    dg_samples: int = 1
    num_generate: int = 1000
    num_interpolations: int = 100
    seed: int = 0


EVALUATE_DEFAULTS = EvaluateOptions()
