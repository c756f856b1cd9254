"""Cost of the density gap against the data set's aggregate (``docs/maths.md#the-data-sets-aggregate``)
relative to the batch's: one forward and backward pass of the DG term of a training step.

For a batch of b random posteriors q(z|x_i) = N(mu_i, diag sigma_i^2) in d dimensions, with M samples
each, the step is ``b * KL^`` through :class:`inference.density_gap_elbo.DensityGapELBO`'s penalty with

* ``aggregate="batch"``: q_B, the paper's estimate, O(b^2 M d);
* ``aggregate="stratified"``: the same mixture with stratified weights (N = 10,000), O(b^2 M d);
* ``aggregate="memory"`` with K = 1,024 and 8,192 (the memory full of other random posteriors):
  b + K components, O(b M (b + K) d);
* with ``--compiled``, each memory step again with ``kernel="compiled"`` (the per-dimension mixture fused by
  ``torch.compile``; ``--mode marginal`` only, the joint estimate does not use it), compiled in the untimed
  warm-up round.

The steps run alternately, round after round (``benchmarks/dg_cost.py``'s ``median_seconds``); the
script prints the median CPU time (``time.process_time``) and wall time of each, their ratios to the
batch's, and each step's peak memory (``dg_cost.peak_bytes``). All ratios come from one run; CPU
timings on a shared machine are noisy, the CPU clock less than the wall clock.

Usage: ``python benchmarks/data_aggregate_cost.py [--seed 0] [--batch 32] [--mode marginal] [--compiled]``
"""
from __future__ import annotations

import argparse
import statistics
import time
from typing import Callable

import pyro.distributions as dist
import torch

from inference.density_gap import MODES
from inference.density_gap_elbo import DensityGapELBO

try:
    from dg_cost import peak_bytes
except ImportError:  # run from the repository root
    from benchmarks.dg_cost import peak_bytes

NUM_DATA = 10_000
MEMORY_SIZES = (1024, 8192)


def make_step(elbo: DensityGapELBO, loc: torch.Tensor, log_scale: torch.Tensor, num_data: int) -> Callable[[], None]:
    """Forward and backward of ``b * KL^`` for the ELBO's aggregate."""

    def step() -> None:
        posterior = dist.Normal(loc, log_scale.exp()).to_event(1)
        prior = dist.Normal(torch.zeros_like(loc), 1.0).to_event(1)
        stratified = num_data if elbo.aggregate == "stratified" else None
        elbo.penalty(posterior, prior, posterior.mean, stratified).backward()

    return step


def timed(steps: list[Callable[[], None]], repeats: int) -> tuple[list[float], list[float]]:
    """Median CPU and wall seconds of each step over ``repeats`` alternating rounds after a warm-up."""
    cpu: list[list[float]] = [[] for _ in steps]
    wall: list[list[float]] = [[] for _ in steps]
    for _ in range(repeats + 1):
        for step, cpu_times, wall_times in zip(steps, cpu, wall):
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            step()
            cpu_times.append(time.process_time() - start_cpu)
            wall_times.append(time.perf_counter() - start_wall)
    return [statistics.median(t[1:]) for t in cpu], [statistics.median(t[1:]) for t in wall]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch", type=int, default=32, help="b, posteriors in the batch")
    parser.add_argument("--num-samples", type=int, default=32, help="M, samples per datum")
    parser.add_argument("--dim", type=int, default=32, help="latent dimension d")
    parser.add_argument("--mode", choices=MODES, default="marginal")
    parser.add_argument("--repeats", type=int, default=7, help="timed rounds")
    parser.add_argument("--compiled", action="store_true", help="the memory steps with the compiled kernel too")
    args = parser.parse_args(argv)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.compiled and args.mode != "marginal":
        parser.error("--compiled needs --mode marginal (the joint estimate is matrix products whatever the kernel)")
    torch.manual_seed(args.seed)
    loc = torch.randn(args.batch, args.dim, requires_grad=True)
    log_scale = (0.5 * torch.randn(args.batch, args.dim)).requires_grad_()
    elbos = {"batch": DensityGapELBO(args.num_samples, mode=args.mode),
             "stratified": DensityGapELBO(args.num_samples, mode=args.mode, aggregate="stratified")}
    for size in MEMORY_SIZES:
        others = dist.Normal(torch.randn(size, args.dim), (0.5 * torch.randn(size, args.dim)).exp()).to_event(1)
        for kernel in ("eager", "compiled") if args.compiled else ("eager",):
            elbo = DensityGapELBO(args.num_samples, mode=args.mode, aggregate="memory", memory_size=size,
                                  kernel=kernel)
            elbo.memory.push(others)
            elbos[f"memory K={size}" + (" compiled" if kernel == "compiled" else "")] = elbo
    steps = [make_step(elbo, loc, log_scale, NUM_DATA) for elbo in elbos.values()]
    cpu, wall = timed(steps, args.repeats)
    memory = [peak_bytes(step) for step in steps]
    print(f"b = {args.batch}, M = {args.num_samples}, d = {args.dim}, mode = {args.mode}, "
          f"torch threads = {torch.get_num_threads()}, rounds = {args.repeats}")
    print("| aggregate | CPU ms | wall ms | CPU / batch | wall / batch | peak MB |")
    print("|---|---|---|---|---|---|")
    for name, cpu_s, wall_s, peak in zip(elbos, cpu, wall, memory):
        print(f"| {name} | {1e3 * cpu_s:.1f} | {1e3 * wall_s:.1f} | {cpu_s / cpu[0]:.2f} | {wall_s / wall[0]:.2f} | "
              f"{peak / 2**20:.1f} |")


if __name__ == "__main__":
    main()
