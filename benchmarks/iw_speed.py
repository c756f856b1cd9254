"""Importance-sampled log p(x) at K = 500: the evaluation as it was against now, fp32 and bf16.

    log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,   z_k ~ q(z | x)

Three sides score the same batch of short_yelp test sentences with the same random numbers:

* ``baseline``: the evaluation when its speed-up was asked for, fp32:
  :func:`evaluation.likelihood.importance_log_likelihood` (Pyro's traces) on ``vae.model`` and
  ``vae.guide``, the encoder run again for every chunk of 50 samples, the (50, B, T, V) logits
  and their ``log_softmax`` held for each chunk. That code is unchanged in the library;
* ``now fp32``: :func:`evaluation.sentence_likelihood.sentence_log_likelihood`, the chunk
  :func:`~evaluation.sentence_likelihood.chunk_for_memory`;
* ``now bf16``: the same with the networks in bf16 (``log_softmax``, every density and the
  logsumexp stay fp32).

They run alternately ``--repeats`` times (rotating order, one thread). The script prints each
side's median CPU (``time.process_time``) and wall time, sentence-samples per CPU second, the
speed-up over ``baseline`` (median of the per-round ratios, with their interquartile range), in
CPU and in wall time, and the largest difference of the estimates from ``baseline`` (nats).

Usage: ``python benchmarks/iw_speed.py --samples 500 --repeats 5 --seed 0``
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyro
import torch

from evaluation.likelihood import importance_log_likelihood
from evaluation.sentence_likelihood import chunk_for_memory, sentence_log_likelihood
from pyro_textvae.data import Corpus, iterate_batches
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"
SIDES = ("baseline", "now fp32", "now bf16")


def estimate(vae: TextVAE, batch, samples: int, side: str, seed: int) -> torch.Tensor:
    """One side's estimate for ``batch`` (module docstring), from torch's RNG seeded with ``seed``."""
    vae.precision = "bf16" if side == "now bf16" else "fp32"
    torch.manual_seed(seed)
    with torch.no_grad():
        if side == "baseline":
            return importance_log_likelihood(vae.model, vae.guide, batch.tokens, batch.mask, num_samples=samples,
                                             chunk_size=50, validate=False)
        return sentence_log_likelihood(vae, batch.tokens, batch.mask, samples)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """Lower quartile, median and upper quartile of ``values``."""
    if len(values) < 2:
        return values[0], values[0], values[0]
    low, middle, high = statistics.quantiles(values, n=4, method="inclusive")
    return low, middle, high


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    corpus = Corpus.from_folder(SHORT_YELP)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab))).eval()
    batches = list(iterate_batches(corpus.splits["test"], args.sentences, shuffle=False))
    batch = batches[len(batches) // 2]
    cpu = {side: [] for side in SIDES}
    wall = {side: [] for side in SIDES}
    values = {}
    for repeat in range(args.repeats):
        for side in SIDES[repeat % 3:] + SIDES[: repeat % 3]:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            values[side] = estimate(vae, batch, args.samples, side, args.seed + repeat)
            cpu[side].append(time.process_time() - start_cpu)
            wall[side].append(time.perf_counter() - start_wall)
    work = args.samples * len(batch)
    print(f"short_yelp test, {len(batch)} sentences of {batch.tokens.shape[1] - 2} words, K = {args.samples}, "
          f"paper sizes, chunk 50 in the baseline and {chunk_for_memory(args.samples, batch.tokens, vae)} now, "
          f"{args.repeats} interleaved rounds, 1 thread")
    for side in SIDES:
        c, w = statistics.median(cpu[side]), statistics.median(wall[side])
        ratios = {clock: quartiles([b / s for b, s in zip(times["baseline"], times[side])])
                  for clock, times in (("CPU", cpu), ("wall", wall))}
        speed = "  ".join(f"{clock} {m:.3f} [IQR {lo:.3f}-{hi:.3f}]" for clock, (lo, m, hi) in ratios.items())
        difference = float((values[side] - values["baseline"]).abs().max())
        print(f"{side:9s} CPU {c:7.2f} s  wall {w:7.2f} s  {work / c:6.0f} sentence-samples/s (CPU)  "
              f"speed-up {speed}  max |difference| {difference:.2e} nats")


if __name__ == "__main__":
    pyro.enable_validation(False)
    main()
