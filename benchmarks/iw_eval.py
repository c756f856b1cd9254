"""Throughput of the importance-sampled log p(x) (``docs/metrics.md#marginal-likelihood``): Pyro traces vs a plain loop.

Both estimate, for every sentence x of a batch,

    log p(x) ~= logsumexp_k [log p(x|z_k) + log p(z_k) - log q(z_k|x)] - log K,   z_k ~ q(z|x),

with the same paper-size TextVAE (embedding 128, LSTM 512, d = 32; random weights: only speed is
measured) in eval mode:

* Pyro: :func:`evaluation.likelihood.importance_log_likelihood` on ``vae.model`` / ``vae.guide``,
  with Pyro's validation off as ``evaluation.report.evaluate_run`` calls it (``--validate``: on);
* plain: encoder once -> (mu, sigma) -> z = mu + sigma eps -> decoder logits -> masked
  ``log_softmax`` gather -> the Gaussian log densities by their formulas -> ``logsumexp``.

Sentences come from ``shared/data/short_yelp/test.txt`` (vocabulary from its train split) when
present, else from the synthetic corpus. The two are timed alternately, ``--repeats`` times each;
the script prints sentences x samples per second of each (median wall time) and the ratios of the
median wall and CPU (``time.process_time``) times: on a machine shared with other jobs the CPU
time of this process is the steadier of the two.

Usage: ``python benchmarks/iw_eval.py [--seed 0] [--sentences 64] [--samples 500] [--chunk 50]``
"""
from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

from evaluation.likelihood import importance_log_likelihood
from pyro_textvae.data import Corpus, EncodedSplit, iterate_batches, synthetic_corpus
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


@torch.no_grad()
def plain_log_likelihood(vae: TextVAE, tokens: torch.Tensor, mask: torch.Tensor, num_samples: int,
                         chunk_size: int) -> torch.Tensor:
    """The same estimate as importance_log_likelihood, by hand in PyTorch: shape (B,)."""
    loc, scale = vae.posterior.parameters_of(vae.encoder(tokens, mask))
    targets, target_mask = tokens[:, 1:], mask[:, 1:]
    log_scale_sum = scale.log().sum(-1)
    dim = loc.shape[-1]
    pieces = []
    for start in range(0, num_samples, chunk_size):
        size = min(chunk_size, num_samples - start)
        eps = torch.randn((size, *loc.shape), device=loc.device)
        z = loc + scale * eps
        log_probs = torch.log_softmax(vae.decoder(tokens, z), -1)
        picked = log_probs.gather(-1, targets.expand(size, *targets.shape).unsqueeze(-1)).squeeze(-1)
        log_px_z = (picked * target_mask).sum(-1)
        log_pz = -0.5 * z.square().sum(-1) - dim * HALF_LOG_TWO_PI
        log_qz = -0.5 * eps.square().sum(-1) - log_scale_sum - dim * HALF_LOG_TWO_PI
        pieces.append(log_px_z + log_pz - log_qz)
    return torch.logsumexp(torch.cat(pieces), 0) - math.log(num_samples)


def pyro_estimator(validate: bool):
    """importance_log_likelihood on the model and guide of a TextVAE, Pyro's checks on or off."""

    def estimate(vae: TextVAE, tokens: torch.Tensor, mask: torch.Tensor, num_samples: int,
                 chunk_size: int) -> torch.Tensor:
        return importance_log_likelihood(vae.model, vae.guide, tokens, mask, num_samples=num_samples,
                                         chunk_size=chunk_size, validate=validate)

    return estimate


def load_corpus(seed: int) -> tuple[Corpus, str]:
    """short_yelp when it is there, else the synthetic corpus; and its name."""
    if SHORT_YELP.is_dir():
        return Corpus.from_folder(SHORT_YELP), "short_yelp"
    return synthetic_corpus(num_train=2000, num_valid=100, num_test=500, seed=seed), "synthetic"


def timed(estimator, vae, batches, samples: int, chunk: int, device: str) -> tuple[float, float, float]:
    """(wall seconds, CPU seconds, mean log p(x)) of one pass of ``estimator`` over ``batches``."""
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start, cpu_start = time.perf_counter(), time.process_time()
    values = [estimator(vae, batch.tokens, batch.mask, samples, chunk) for batch in batches]
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, time.process_time() - cpu_start, float(torch.cat(values).mean())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sentences", type=int, default=64, help="test sentences scored")
    parser.add_argument("--samples", type=int, default=500, help="importance samples K")
    parser.add_argument("--chunk", type=int, default=50, help="samples evaluated at a time")
    parser.add_argument("--batch-size", type=int, default=32, help="sentences per batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed passes of each estimator")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--validate", action="store_true", help="keep Pyro's validation on in the Pyro estimate")
    args = parser.parse_args(argv)
    for name in ("sentences", "samples", "chunk", "batch_size", "repeats"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1")

    torch.manual_seed(args.seed)
    corpus, corpus_name = load_corpus(args.seed)
    test = corpus.splits["test"]
    chosen = torch.randperm(len(test), generator=torch.Generator().manual_seed(args.seed))[: args.sentences]
    picked = EncodedSplit([test.sentences[i] for i in chosen], [test.ids[i] for i in chosen])
    batches = [batch.to(args.device) for batch in iterate_batches(picked, args.batch_size, shuffle=False)]
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab))).to(args.device).eval()
    estimators = {"pyro": pyro_estimator(args.validate), "plain": plain_log_likelihood}
    for estimator in estimators.values():  # warm-up at full chunk size (first allocations are slow)
        timed(estimator, vae, batches[:1], args.chunk, args.chunk, args.device)
    seconds: dict[str, list[float]] = {name: [] for name in estimators}
    cpu_seconds: dict[str, list[float]] = {name: [] for name in estimators}
    means: dict[str, list[float]] = {name: [] for name in estimators}
    for _ in range(args.repeats):
        for name, estimator in estimators.items():
            elapsed, cpu, mean = timed(estimator, vae, batches, args.samples, args.chunk, args.device)
            seconds[name].append(elapsed)
            cpu_seconds[name].append(cpu)
            means[name].append(mean)
    tokens = sum(batch.num_tokens for batch in batches)
    print(f"{corpus_name}: {len(picked)} sentences ({tokens} tokens), vocabulary {len(corpus.vocab)}, "
          f"K = {args.samples}, chunk {args.chunk}, batch {args.batch_size}, device {args.device}, "
          f"torch threads {torch.get_num_threads()}, Pyro validation {'on' if args.validate else 'off'}, "
          f"{args.repeats} interleaved repeats")
    for name in estimators:
        median = statistics.median(seconds[name])
        print(f"{name:>6}: {len(picked) * args.samples / median:10.1f} sentence-samples/s "
              f"(median {median:.3f} s, runs {', '.join(f'{s:.3f}' for s in seconds[name])}; CPU s "
              f"{', '.join(f'{s:.3f}' for s in cpu_seconds[name])}; mean log p(x) {statistics.mean(means[name]):.3f})")
    for label, times in (("wall", seconds), ("CPU", cpu_seconds)):
        ratio = statistics.median(times["pyro"]) / statistics.median(times["plain"])
        print(f"{label} time ratio pyro / plain: {ratio:.3f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
