"""Start-up time of the ``textvae`` command line: how long a user waits for ``--help``, for an option
error, and for the first command that needs torch.

Each case runs as a fresh process (``python -m pyro_textvae.cli ...``, as the console script does),
the cases interleaved, ``--repeats`` times each; the script prints the median wall time and the
median CPU time of the child process (user + system, from ``resource.getrusage``) per case. Python's
own start-up (``python -c pass``) is measured the same way for reference.

Goal: ``--help`` and option errors under 1 s (the parser imports no torch, Pyro or ArviZ; each
command imports what it needs when it runs).

Usage: ``python benchmarks/startup.py [--repeats 5] [--seed 0]`` (the seed only orders the cases).
"""
from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time

CASES = {
    "python -c pass": ["-c", "pass"],
    "textvae --help": ["-m", "pyro_textvae.cli", "--help"],
    "textvae train --help": ["-m", "pyro_textvae.cli", "train", "--help"],
    "option error (sample -n 0)": ["-m", "pyro_textvae.cli", "sample", "RUN", "-n", "0"],
    "option error (train --epochs 0)": ["-m", "pyro_textvae.cli", "train", "--epochs", "0", "--out", "/nonexistent/x"],
    "model option (train --latent vmf --latent-dim 1)": ["-m", "pyro_textvae.cli", "train", "--latent", "vmf",
                                                         "--latent-dim", "1", "--out", "/nonexistent/x"],
    "missing run folder (evaluate RUN)": ["-m", "pyro_textvae.cli", "evaluate", "/nonexistent/run"],
    "textvae objectives": ["-m", "pyro_textvae.cli", "objectives"],
}


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_once(argv: list[str]) -> tuple[float, float]:
    cpu = _child_cpu()
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], capture_output=True, check=False)
    return time.perf_counter() - start, _child_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="runs of each case")
    parser.add_argument("--seed", type=int, default=0, help="seed of the order of the cases in each round")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    wall: dict[str, list[float]] = {name: [] for name in CASES}
    cpu: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):
        names = list(CASES)
        rng.shuffle(names)
        for name in names:
            w, c = _time_once(CASES[name])
            wall[name].append(w)
            cpu[name].append(c)
    print(f"{'case':50s} {'wall s (median)':>16s} {'CPU s (median)':>15s}")
    for name in CASES:
        print(f"{name:50s} {statistics.median(wall[name]):16.3f} {statistics.median(cpu[name]):15.3f}")


if __name__ == "__main__":
    main()
