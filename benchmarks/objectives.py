"""Training-step time of every registered objective relative to ``elbo`` (``docs/maths.md#baselines``).

For each objective one :class:`~inference.trainer.Trainer` (its own model, same seed, the
objective's model options) takes ``Trainer.step`` on the same batches: real ``short_yelp``
sentences when ``../shared/data/short_yelp`` exists next to the repository, otherwise the
synthetic corpus. The schedule is placed after the 10-epoch warm-up, so every latent term is
active at its full weight (``ae`` keeps its weight 0). Steps are interleaved -- batch t is run by
every objective, in an order rotated each batch -- so drift of a shared machine falls on all of
them alike; one untimed step each comes first. Printed: the median step time and the median over
batches of its ratio to ``elbo``'s time on the same batch. The target: at most 1.15x, except AAE
and WAE-MMD (their extra passes are the method).

Usage: ``python benchmarks/objectives.py [--seed 0] [--steps 10] [--batch-size 32] [--small]
[--objectives elbo dg ...] [--device cpu] [--no-validate-args] [--clock wall|process] [--threads N]``
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import pyro
import torch

from inference.objectives import OBJECTIVES, get_objective
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.data import Corpus, iterate_batches
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.run_folder import load_corpus

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"
PAPER_SIZES = {"embed_dim": 128, "hidden_dim": 512, "latent_dim": 32}
SMALL_SIZES = {"embed_dim": 32, "hidden_dim": 64, "latent_dim": 8}
WARMUP_EPOCHS = 10


def benchmark_corpus(seed: int) -> tuple[Corpus, str]:
    """``short_yelp`` when present, else the synthetic corpus; and a line saying which."""
    if SHORT_YELP.is_dir():
        return load_corpus({"path": str(SHORT_YELP)}), f"short_yelp ({SHORT_YELP})"
    return load_corpus({"synthetic": {"num_train": 2000, "seed": seed}}), "synthetic (short_yelp not found)"


def build_trainer(name: str, corpus: Corpus, sizes: dict, config: TrainConfig, run_dir: Path) -> Trainer:
    """A trainer for objective ``name`` with its default parameters, placed after the warm-up."""
    objective = get_objective(name)
    params = objective.configure()
    options = {**sizes, **objective.model_options(params), "vocab_size": len(corpus.vocab)}
    model_config = TextVAEConfig.from_dict(options)
    torch.manual_seed(config.seed)
    trainer = Trainer(TextVAE(model_config), corpus, objective, params, config, run_dir / name)
    trainer.vae.train()
    trainer.state["step"] = WARMUP_EPOCHS * trainer.steps_per_epoch
    return trainer


CLOCKS = {"wall": time.perf_counter, "process": time.process_time}


def timed_step(trainer: Trainer, tokens: torch.Tensor, mask: torch.Tensor, device: str, clock: str) -> float:
    """Seconds of one ``Trainer.step`` (the model's own parameters in a fresh param store) by the
    wall clock or by this process's CPU time (steadier on a machine shared with other jobs)."""
    pyro.clear_param_store()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = CLOCKS[clock]()
    trainer.step(tokens, mask)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return CLOCKS[clock]() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per objective")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--small", action="store_true", help=f"small sizes {SMALL_SIZES} instead of the paper's")
    parser.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), help="names (elbo is always added)")
    parser.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--no-validate-args", action="store_true", help="turn Pyro's checks off")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall", help="process: CPU time of this process")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.batch_size < 2:
        parser.error("--steps must be >= 1 and --batch-size >= 2")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    names = ["elbo"] + [name for name in dict.fromkeys(args.objectives) if name != "elbo"]
    for name in names:
        try:
            get_objective(name)
        except ValueError as error:
            parser.error(str(error))

    pyro.enable_validation(not args.no_validate_args)
    torch.manual_seed(args.seed)
    corpus, source = benchmark_corpus(args.seed)
    sizes = SMALL_SIZES if args.small else PAPER_SIZES
    config = TrainConfig(batch_size=args.batch_size, optimizer=args.optimizer, seed=args.seed,
                         validate_args=not args.no_validate_args, device=args.device, progress=False)
    batches = iterate_batches(corpus.splits["train"], args.batch_size, shuffle=True, seed=args.seed, drop_last=True)
    batches = [batch.to(args.device) for _, batch in zip(range(args.steps + 1), batches)]
    if len(batches) < args.steps + 1:
        parser.error(f"the training split has only {len(batches)} full batches; lower --steps")

    print(f"data: {source}, vocabulary {len(corpus.vocab)}; sizes {sizes}; batch {args.batch_size}; "
          f"{args.steps} timed steps; device {args.device}; torch threads {torch.get_num_threads()}; "
          f"Pyro validation {'off' if args.no_validate_args else 'on'}; {args.clock} clock")
    with tempfile.TemporaryDirectory() as folder:
        trainers = {name: build_trainer(name, corpus, sizes, config, Path(folder)) for name in names}
        for trainer in trainers.values():
            timed_step(trainer, batches[0].tokens, batches[0].mask, args.device, args.clock)
        times: dict[str, list[float]] = {name: [] for name in names}
        for index, batch in enumerate(batches[1:]):
            shift = index % len(names)
            for name in names[shift:] + names[:shift]:
                times[name].append(timed_step(trainers[name], batch.tokens, batch.mask, args.device, args.clock))

    print(f"{'objective':>20} | {'weight':>6} | {'median ms':>9} | {'ratio to elbo':>13}")
    for name in names:
        ratio = statistics.median(t / e for t, e in zip(times[name], times["elbo"]))
        median_ms = 1e3 * statistics.median(times[name])
        print(f"{name:>20} | {trainers[name].weight:>6.2f} | {median_ms:>9.1f} | {ratio:>13.2f}")


if __name__ == "__main__":
    main()
