"""Data-parallel scaling on this machine: sentences per second with 1 and N processes, and the
share of a step spent communicating.

Each configuration spawns its processes on localhost (gloo on CPU, the code path ``torchrun``
uses), builds the same model, and times :meth:`inference.trainer.Trainer.step` on its slices of
global batches of ``N x batch`` sentences (weak scaling: the per-process batch stays fixed; each
process gets ``--threads`` torch threads, 1 by default: on a loaded machine intra-op threads
oversubscribe the cores and make the comparison meaningless). Reported per configuration, from rank 0:

* sentences/s = ``N x batch / median step time``;
* all-reduce in step: the median time inside the gradient average (the optimiser's
  ``grad_hook``), which includes waiting for the slower rank;
* pure all-reduce: the median time of the same all-reduce of a gradient-sized buffer with the
  ranks already in step (after a barrier), as a share of the median step.

Usage: ``python benchmarks/scaling.py --procs 1,2 --steps 15 --batch-size 16 --seed 0``
(``--objective dg-global`` for the density gap over the global batch).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import pyro
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from inference.density_gap_elbo import DensityGapELBO
from inference.distributed import average_gradients
from inference.objective_configs import AEConfig
from inference.objectives import Objective, get_objective
from inference.schedules import ConstantSchedule
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.data import Corpus, iterate_batches, synthetic_corpus
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"


def _objective(name: str) -> tuple[Objective, dict]:
    if name == "elbo":
        return get_objective("beta"), {"beta": 1.0}
    agg = name.removeprefix("dg-")
    return Objective(name, "density gap", AEConfig, partial(DensityGapELBO, 32, agg=agg),
                     lambda config, n: ConstantSchedule(1.0)), {}


def _timed(hook, times: list[float]):
    def wrapper(params):
        start = time.perf_counter()
        hook(params)
        times.append(time.perf_counter() - start)
    return wrapper


def _worker(rank: int, world: int, port: int, args: argparse.Namespace, out: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(args.threads)
    corpus = Corpus.from_folder(SHORT_YELP) if SHORT_YELP.is_dir() else synthetic_corpus()
    torch.manual_seed(args.seed)
    sizes = {"embed_dim": args.embed_dim, "hidden_dim": args.hidden_dim, "latent_dim": 32}
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), **sizes))
    objective, params = _objective(args.objective)
    config = TrainConfig(batch_size=args.batch_size, optimizer="adam", progress=False, validate_args=False,
                         distributed=world > 1, seed=args.seed)
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(vae, corpus, objective, params, config, run_dir)
    pyro.clear_param_store()
    pyro.enable_validation(False)
    hook_times: list[float] = []
    if trainer.optim.grad_hook is not None:
        trainer.optim.grad_hook = _timed(trainer.optim.grad_hook, hook_times)
    batches = iterate_batches(corpus.splits["train"], trainer.global_batch_size, shuffle=True, seed=args.seed)
    step_times = []
    for index, batch in zip(range(args.warmup + args.steps), batches):
        local = trainer.local_batch(batch)
        start = time.perf_counter()
        trainer.step(local.tokens, local.mask)
        if index >= args.warmup:
            step_times.append(time.perf_counter() - start)
    hook_times = hook_times[args.warmup:]
    pure = []
    if world > 1:
        params = sorted(pyro.get_param_store().values(), key=pyro.get_param_store().param_name)
        for _ in range(args.steps):
            dist.barrier()
            start = time.perf_counter()
            average_gradients([p.unconstrained() for p in params])
            pure.append(time.perf_counter() - start)
    if rank == 0:
        torch.save({"step": step_times, "hook": hook_times, "pure": pure,
                    "threads": torch.get_num_threads(), "vocab": len(corpus.vocab),
                    "parameters": sum(p.numel() for p in vae.parameters())}, out)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--procs", default="1,2", help="comma list of process counts")
    parser.add_argument("--steps", type=int, default=15)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16, help="sentences per process and step")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--embed-dim", type=int, default=128)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--objective", choices=["elbo", "dg-local", "dg-global"], default="elbo")
    parser.add_argument("--seed", type=int, default=0, help="seed of the model's initialisation and the batch order")
    args = parser.parse_args()
    procs = [int(n) for n in args.procs.split(",")]
    if any(n < 1 for n in procs):
        raise ValueError(f"--procs must be positive counts, got {args.procs!r}")
    if args.threads < 1:
        raise ValueError(f"--threads must be >= 1, got {args.threads}")
    print(f"{os.cpu_count()} cores; objective {args.objective}; batch {args.batch_size} per process; "
          f"embed {args.embed_dim}, hidden {args.hidden_dim}; {args.steps} timed steps after {args.warmup}; "
          f"seed {args.seed}")
    with tempfile.TemporaryDirectory() as folder:
        for world in procs:
            out = str(Path(folder) / f"{world}.pt")
            mp.spawn(_worker, args=(world, _free_port(), args, out), nprocs=world, join=True)
            result = torch.load(out)
            step = statistics.median(result["step"])
            line = (f"{world} process(es), {result['threads']} thread(s) each, {result['parameters']:,} parameters "
                    f"(vocabulary {result['vocab']}): step {1000 * step:.1f} ms, "
                    f"{world * args.batch_size / step:.0f} sentences/s")
            if result["hook"]:
                hook, pure = statistics.median(result["hook"]), statistics.median(result["pure"])
                line += (f"; all-reduce in step {1000 * hook:.1f} ms ({100 * hook / step:.1f}% of the step), "
                         f"pure all-reduce {1000 * pure:.2f} ms ({100 * pure / step:.1f}%)")
            print(line)


if __name__ == "__main__":
    main()
