"""Cost of the density-gap KL against the analytic per-datum KL (Zhang et al. 2022, sec. 3).

For each batch size b, random posteriors q(z|x_i) = N(mu_i, diag sigma_i^2), i = 1..b, in d
dimensions, one forward + backward pass of

* ``b * density_gap_kl(q, N(0, I), M)``: the DG term, O(b^2 M d) work, and
* ``sum_i KL(q(z|x_i) || N(0, I)) = sum_i,k (mu_ik^2 + sigma_ik^2 - 1 - 2 log sigma_ik) / 2``:
  the analytic KL of TraceMeanField_ELBO, O(b d), and
* the DG term through the estimator's generic path (autograd through ``log_prob``, chunks
  recomputed in the backward pass above 2^22 numbers), which Normal posteriors used before the
  analytic-backward mixture of :mod:`inference.density_gap`,

timed in CPU time (median of up to ``--repeats`` alternating rounds after one warm-up, within
``--budget`` seconds a step) and
profiled for peak memory: the largest total of live bytes allocated during the pass, from the
allocation events of ``torch.profiler.profile(profile_memory=True)`` (its raw Kineto results).
All ratios come from one run of this script; CPU timings on a shared machine are noisy.

Usage: ``python benchmarks/dg_cost.py [--seed 0] [--batch-sizes 32 128 512] [--mode marginal]``
"""
from __future__ import annotations

import argparse
import itertools
import statistics
import time
from functools import partial
from typing import Callable

import pyro.distributions as dist
import torch
from torch.profiler import ProfilerActivity, profile

from inference import density_gap
from inference.density_gap import MODES, density_gap_kl


def density_gap_step(loc: torch.Tensor, log_scale: torch.Tensor, num_samples: int, mode: str) -> None:
    """Forward and backward of ``b * KL_DG(q_B || p)``."""
    prior = dist.Normal(torch.zeros_like(loc[0]), 1.0).to_event(1)
    posterior = dist.Normal(loc, log_scale.exp()).to_event(1)
    (loc.shape[0] * density_gap_kl(posterior, prior, num_samples, mode=mode)).backward()


def generic_density_gap_step(loc: torch.Tensor, log_scale: torch.Tensor, num_samples: int, mode: str) -> None:
    """:func:`density_gap_step` with the Normal fast path turned off."""
    fast, density_gap._gaussian_parts = density_gap._gaussian_parts, lambda aggregate: None
    try:
        density_gap_step(loc, log_scale, num_samples, mode)
    finally:
        density_gap._gaussian_parts = fast


def analytic_step(loc: torch.Tensor, log_scale: torch.Tensor) -> None:
    """Forward and backward of ``sum_i KL(N(mu_i, sigma_i^2) || N(0, I))`` in closed form."""
    (0.5 * (loc**2 + (2 * log_scale).exp() - 1 - 2 * log_scale)).sum().backward()


def median_seconds(steps: list[Callable[[], None]], repeats: int, budget_s: float) -> list[float]:
    """Median CPU time (``time.process_time``) of each step over up to ``repeats`` rounds after a
    warm-up round, the steps run alternately in each round; stops once a round has taken more
    than ``budget_s`` per step (the first-call costs of PyTorch are paid by a tiny run in
    :func:`main` beforehand)."""
    times: list[list[float]] = [[] for _ in steps]
    for round_index in range(repeats + 1):
        for step, record in zip(steps, times):
            start = time.process_time()
            step()
            record.append(time.process_time() - start)
        if round_index and sum(record[-1] for record in times) > budget_s * len(steps):
            break
    return [statistics.median(record[1:] or record) for record in times]


def peak_bytes(step: Callable[[], None]) -> int:
    """Peak of the running total of CPU allocations and frees recorded while ``step`` runs."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        step()
    events = sorted(
        (event for event in prof.profiler.kineto_results.events() if event.name() == "[memory]"),
        key=lambda event: event.start_ns(),
    )
    return max(itertools.accumulate((event.nbytes() for event in events), initial=0))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[32, 128, 512])
    parser.add_argument("--num-samples", type=int, default=32, help="M, samples per datum")
    parser.add_argument("--dim", type=int, default=32, help="latent dimension d")
    parser.add_argument("--mode", choices=MODES, default="marginal")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement, at most")
    parser.add_argument("--budget", type=float, default=2.0, help="seconds per timing before it stops early")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.budget <= 0:
        parser.error("--repeats must be >= 1 and --budget > 0")

    torch.manual_seed(args.seed)
    tiny = (torch.zeros(4, args.dim, requires_grad=True), torch.zeros(4, args.dim, requires_grad=True))
    density_gap_step(*tiny, args.num_samples, args.mode)
    threads = torch.get_num_threads()
    print(f"M = {args.num_samples}, d = {args.dim}, mode = {args.mode}, torch threads = {threads}")
    header = ("b", "DG ms", "KL ms", "time ratio", "DG peak MB", "KL peak MB", "memory ratio", "generic ms",
              "generic MB", "generic/DG")
    print(" | ".join(f"{title:>12}" for title in header))
    for batch in args.batch_sizes:
        loc = torch.randn(batch, args.dim, requires_grad=True)
        log_scale = (0.5 * torch.randn(batch, args.dim)).requires_grad_()
        steps = (
            partial(density_gap_step, loc, log_scale, args.num_samples, args.mode),
            partial(analytic_step, loc, log_scale),
            partial(generic_density_gap_step, loc, log_scale, args.num_samples, args.mode),
        )
        seconds = median_seconds(list(steps), args.repeats, args.budget)
        memory = [peak_bytes(step) for step in steps]
        row = (
            f"{batch:>12d}",
            *(f"{1e3 * value:>12.2f}" for value in seconds[:2]),
            f"{seconds[0] / seconds[1]:>12.0f}",
            *(f"{value / 2**20:>12.3f}" for value in memory[:2]),
            f"{memory[0] / max(memory[1], 1):>12.0f}",
            f"{1e3 * seconds[2]:>12.2f}",
            f"{memory[2] / 2**20:>12.3f}",
            f"{seconds[2] / seconds[0]:>12.2f}",
        )
        print(" | ".join(row))


if __name__ == "__main__":
    main()
