"""Importance-sampled log p(x) at K = 500: the evaluation's way before and now, fp32 and bf16.

    log p(x) ~= logsumexp_k [log p(x, z_k) - log q(z_k | x)] - log K,   z_k ~ q(z | x)

Three sides score the same batch of short_yelp test sentences with the same random numbers:

* ``before``: :func:`evaluation.likelihood.importance_log_likelihood` on ``vae.guide`` (the encoder
  run again for every chunk) in chunks of 50 samples, fp32;
* ``now fp32``: the guide built once from q(z|x) (:meth:`pyro_textvae.model.TextVAE.guide_from`),
  chunks of :func:`evaluation.distributed_eval.chunk_for_memory` (the most that fit 1 GiB), fp32;
* ``now bf16``: the same with the networks in bf16 (the logsumexp and every density stay fp32).

They run alternately ``--repeats`` times (rotating order, one thread); the script prints each side's
median CPU (``time.process_time``) and wall time, sentence-samples per second, the speed-ups over
``before`` and the largest difference of the estimates from ``before`` (nats).

Usage: ``python benchmarks/iw_speed.py --samples 500 --repeats 3 --seed 0``
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import pyro
import torch

from evaluation.distributed_eval import chunk_for_memory
from evaluation.likelihood import importance_log_likelihood
from pyro_textvae.data import Corpus, iterate_batches
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"


def estimate(vae: TextVAE, batch, samples: int, side: str, seed: int) -> torch.Tensor:
    """One side's estimate for ``batch`` (module docstring), from torch's RNG seeded with ``seed``."""
    vae.precision = "bf16" if side == "now bf16" else "fp32"
    torch.manual_seed(seed)
    with torch.no_grad():
        if side == "before":
            guide, chunk = vae.guide, 50
        else:
            guide = vae.guide_from(vae.posterior_distribution(batch.tokens, batch.mask))
            chunk = chunk_for_memory(samples, batch.tokens, vae.config.vocab_size)
        return importance_log_likelihood(vae.model, guide, batch.tokens, batch.mask, num_samples=samples,
                                         chunk_size=chunk, validate=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=500)
    parser.add_argument("--sentences", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    corpus = Corpus.from_folder(SHORT_YELP)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab))).eval()
    batches = list(iterate_batches(corpus.splits["test"], args.sentences, shuffle=False))
    batch = batches[len(batches) // 2]
    sides = ["before", "now fp32", "now bf16"]
    cpu = {side: [] for side in sides}
    wall = {side: [] for side in sides}
    values = {}
    for repeat in range(args.repeats):
        for side in sides[repeat % 3:] + sides[: repeat % 3]:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            values[side] = estimate(vae, batch, args.samples, side, args.seed + repeat)
            cpu[side].append(time.process_time() - start_cpu)
            wall[side].append(time.perf_counter() - start_wall)
    work = args.samples * len(batch)
    chunk = chunk_for_memory(args.samples, batch.tokens, vae.config.vocab_size)
    print(f"short_yelp test, {len(batch)} sentences of {batch.tokens.shape[1] - 2} words, K = {args.samples}, "
          f"paper sizes, chunk 50 before and {chunk} now, {args.repeats} rounds, 1 thread")
    for side in sides:
        c, w = statistics.median(cpu[side]), statistics.median(wall[side])
        difference = float((values[side] - values["before"]).abs().max())
        print(f"{side:9s} CPU {c:7.2f} s  wall {w:7.2f} s  {work / c:7.0f} sentence-samples/s (CPU)  "
              f"speed-up CPU {statistics.median(cpu['before']) / c:.3f} wall {statistics.median(wall['before']) / w:.3f}  "
              f"max |difference| {difference:.2e} nats")


if __name__ == "__main__":
    pyro.enable_validation(False)
    main()
