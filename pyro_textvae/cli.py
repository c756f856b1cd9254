"""The ``textvae`` command line: train, resume, reconstruct, sample, evaluate, compare, explore, toy,
experiment.

``textvae train`` with no ``--data`` trains on the embedded synthetic corpus, so the bare command
runs anywhere in a few minutes. Every command takes ``--seed``; a run writes its config, metrics
and checkpoints into one folder (``--out``).
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from evaluation.evaluate_command import add_evaluate_commands
from evaluation.experiment import add_experiment_commands
from evaluation.explore_command import add_explore_commands
from pyro_textvae.data import CorpusError, make_batch
from pyro_textvae.io import CheckpointError

if TYPE_CHECKING:
    from inference.trainer import TrainConfig

DG_ALIASES = {"dg_samples": "num_samples", "agg_size": "agg_size", "dg_mode": "mode", "dg_agg": "agg",
              "warmup_epochs": "warmup_epochs"}


def _parse_params(pairs: Sequence[str]) -> dict[str, list[str]]:
    params: dict[str, list[str]] = {}
    for pair in pairs:
        if "=" not in pair:
            raise ValueError(f"--param expects NAME=VALUE (or NAME=V1,V2,... for a sweep), got {pair!r}")
        key, value = pair.split("=", 1)
        params[key.strip().replace("-", "_")] = [v.strip() for v in value.split(",")]
    return params


def _sweep(params: dict[str, list[str]]) -> list[dict[str, str]]:
    runs: list[dict[str, str]] = [{}]
    for key, values in params.items():
        runs = [{**run, key: value} for run in runs for value in values]
    return runs


def _add_train_arguments(p: argparse.ArgumentParser) -> None:
    data = p.add_argument_group("data")
    data.add_argument("--data", help="corpus folder with train.txt, valid.txt, test.txt (default: synthetic)")
    data.add_argument("--synthetic", action="store_true", help="use the embedded synthetic corpus (the default)")
    data.add_argument("--synthetic-train", type=int, default=2000, help="synthetic training sentences")
    data.add_argument("--labels", choices=["auto", "yes", "no"], default="auto", help="label<TAB> prefix")
    data.add_argument("--min-count", type=int, default=1)
    data.add_argument("--max-vocab", type=int)
    data.add_argument("--max-length", type=int, help="drop (and count) longer sentences")
    model = p.add_argument_group("model")
    model.add_argument("--embed-dim", type=int, default=128)
    model.add_argument("--hidden-dim", type=int, default=512)
    model.add_argument("--latent-dim", type=int, default=32)
    model.add_argument("--dropout-in", type=float, default=0.5)
    model.add_argument("--dropout-out", type=float, default=0.5)
    model.add_argument("--latent", choices=["normal", "vmf"], default="normal")
    model.add_argument("--kappa", type=float, default=13.0, help="vMF concentration (--latent vmf)")
    objective = p.add_argument_group("objective")
    objective.add_argument("--objective", default="elbo", help="see `textvae objectives`")
    objective.add_argument("--param", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                           help="objective parameter; a comma list trains one run per value")
    objective.add_argument("--dg-samples", type=int, help="DG: samples per posterior M")
    objective.add_argument("--agg-size", type=int, help="DG: aggregation size b (0 = the batch)")
    objective.add_argument("--dg-mode", choices=["marginal", "joint"], help="DG: estimator")
    objective.add_argument("--dg-agg", choices=["local", "global"],
                           help="DG under torchrun: aggregate each process's batch or the global batch")
    objective.add_argument("--warmup-epochs", type=float, help="KL warm-up length in epochs")
    train = p.add_argument_group("training")
    train.add_argument("--schedule", metavar="NAME", help="a named schedule (inference/protocol.py; 'paper': "
                       "warm-up 10, halve lr after 5 bad epochs, at most 5 times, 100 epochs); the options "
                       "below override its fields")
    train.add_argument("--epochs", type=int, help="default 100 with --data, 20 on the synthetic corpus "
                                                  "(with --schedule: its max_epochs)")
    train.add_argument("--batch-size", type=int, default=32)
    train.add_argument("--optimizer", choices=["sgd", "adam"], default="sgd")
    train.add_argument("--lr", type=float, help="default 0.5 (sgd) or 1e-3 (adam)")
    train.add_argument("--clip-norm", type=float, default=5.0)
    train.add_argument("--decay-patience", type=int, help="halve lr after N epochs without a better "
                                                          "validation loss (default: the paper schedule's)")
    train.add_argument("--lr-decay", type=float, help="the factor of each halving")
    train.add_argument("--max-decays", type=int, help="stop at the plateau after N halvings")
    train.add_argument("--checkpoint-every", type=int, default=0, help="also checkpoint every N steps")
    train.add_argument("--skip-nonfinite", type=int, default=0, help="skip up to N non-finite batches")
    train.add_argument("--no-validate-args", action="store_true", help="turn Pyro's checks off (faster)")
    train.add_argument("--device", help="cpu (default), cuda or cuda:K (cuda: one GPU per local rank); "
                                        "with --resume: the run's own device unless given")
    train.add_argument("--distributed", action="store_true",
                       help="train with torch.distributed (automatic under torchrun with > 1 process)")
    train.add_argument("--no-progress", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="runs/textvae", help="run folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN",
                   help="continue RUN from last.pt (other options come from RUN, except --epochs and --device)")


def _train(args: argparse.Namespace) -> None:
    from inference.distributed import close_distributed

    _train_runs(args)
    close_distributed()


def _train_runs(args: argparse.Namespace) -> None:
    from inference.run import new_trainer, resume_trainer

    if args.resume:
        trainer = resume_trainer(args.resume, epochs=args.epochs, distributed=True if args.distributed else None,
                                 device=args.device)
        trainer.config.progress = not args.no_progress
        _report(trainer.fit(resume=True), trainer.run_dir)
        return
    if args.data and args.synthetic:
        raise ValueError("--data and --synthetic exclude each other")
    data = {"min_count": args.min_count, "max_vocab": args.max_vocab, "max_length": args.max_length}
    if args.data:
        data.update(path=str(Path(args.data).resolve()), labels=args.labels)
    else:
        data["synthetic"] = {"num_train": args.synthetic_train, "seed": args.seed}
    model = {k: getattr(args, k) for k in ("embed_dim", "hidden_dim", "latent_dim", "dropout_in", "dropout_out",
                                           "latent", "kappa")}
    params = _parse_params(args.param)
    for flag, name in DG_ALIASES.items():
        if getattr(args, flag) is not None:
            params[name] = [str(getattr(args, flag))]
    if args.latent == "vmf" and args.objective == "dg" and "mode" not in params:
        params["mode"] = ["joint"]
    train, params = _train_config(args, params)
    runs = _sweep(params)
    swept = [k for k, v in params.items() if len(v) > 1]
    for run_params in runs:
        out = args.out + "".join(f"-{k}={run_params[k]}" for k in swept)
        trainer = new_trainer(out, data, model, args.objective, run_params, train, args.overwrite)
        _report(trainer.fit(), trainer.run_dir)


def _train_config(
    args: argparse.Namespace, params: dict[str, list[str]]
) -> tuple[TrainConfig, dict[str, list[str]]]:
    """The run's :class:`~inference.trainer.TrainConfig` and objective parameters: a ``--schedule``
    fills in the plateau options and the warm-up that were not given; without one the unset plateau
    options keep ``TrainConfig``'s defaults (the paper's) and ``--epochs`` is 100 (20 synthetic)."""
    from inference.objectives import get_objective
    from inference.protocol import named_schedule
    from inference.trainer import TrainConfig

    plateau = {"epochs": args.epochs, "decay_patience": args.decay_patience, "lr_decay": args.lr_decay,
               "max_decays": args.max_decays}
    if args.schedule is not None:
        schedule = named_schedule(args.schedule, "--schedule")
        plateau = {**schedule.train_options(), **{k: v for k, v in plateau.items() if v is not None}}
        defaults = get_objective(args.objective).defaults
        params = {**{k: [str(v)] for k, v in schedule.objective_params(defaults).items()}, **params}
    elif args.epochs is None:
        plateau["epochs"] = 100 if args.data else 20
    config = TrainConfig(
        batch_size=args.batch_size, optimizer=args.optimizer, lr=args.lr, clip_norm=args.clip_norm,
        seed=args.seed, checkpoint_every=args.checkpoint_every, skip_nonfinite=args.skip_nonfinite,
        validate_args=not args.no_validate_args, device=args.device or "cpu", progress=not args.no_progress,
        distributed=True if args.distributed else None, **{k: v for k, v in plateau.items() if v is not None},
    )
    return config, params


def _report(record: dict, run_dir: Path) -> None:
    if int(os.environ.get("RANK", "0")) != 0:
        return
    keys = ("epoch", "train_loss", "valid_elbo_loss", "valid_reconstruction", "valid_kl", "valid_active_units")
    print(f"{run_dir}: " + ", ".join(f"{k}={record[k]:.4g}" if isinstance(record.get(k), float) else
                                     f"{k}={record.get(k)}" for k in keys))


def _decoding_generator(args: argparse.Namespace) -> torch.Generator:
    """The generator of ``--strategy sample`` on ``--device``, seeded with ``--seed``."""
    return torch.Generator(device=args.device).manual_seed(args.seed)


def _reconstruct(args: argparse.Namespace) -> None:
    """``textvae reconstruct``: decode each sentence from its posterior center (``mu`` or the vMF
    mean direction); ``--strategy sample`` draws its words from a generator seeded with ``--seed``."""
    from evaluation.generation import decode, posterior_center
    from inference.run import open_run

    run = open_run(args.run, device=args.device)
    vocab = run.corpus.vocab
    generator = _decoding_generator(args)
    for sentence in args.sentences:
        words = sentence.split()
        if not words:
            raise ValueError("reconstruct: an empty sentence")
        batch = make_batch([vocab.encode(words)]).to(args.device)
        with torch.no_grad():
            z = posterior_center(run.vae.posterior_distribution(batch.tokens, batch.mask))
        out = decode(run.vae, z, args.strategy, args.max_length, args.beam_width, generator=generator)
        print(" ".join(vocab.decode(out[0])))


def _sample(args: argparse.Namespace) -> None:
    """``textvae sample``: decode ``-n`` prior draws; the draws (``torch.manual_seed``) and the
    words of ``--strategy sample`` (a generator) both follow ``--seed``."""
    from evaluation.generation import decode
    from inference.run import open_run

    run = open_run(args.run, device=args.device)
    torch.manual_seed(args.seed)
    z = run.vae.prior(args.n, args.device).sample()
    for ids in decode(run.vae, z, args.strategy, args.max_length, args.beam_width, args.temperature,
                      _decoding_generator(args)):
        print(" ".join(run.corpus.vocab.decode(ids)))


def _objectives(args: argparse.Namespace) -> None:
    from inference.objectives import OBJECTIVES

    for objective in OBJECTIVES.values():
        params = ", ".join(f"{k}={v}" for k, v in objective.defaults.items()) or "-"
        print(f"{objective.name:20s} {objective.description}\n{'':20s} parameters: {params}")


def _add_decoding(p: argparse.ArgumentParser) -> None:
    p.add_argument("--strategy", choices=["greedy", "sample", "beam"], default="greedy")
    p.add_argument("--beam-width", type=int, default=5)
    p.add_argument("--max-length", type=int, default=30)
    p.add_argument("--device", default="cpu")
    p.add_argument("--seed", type=int, default=0, help="seed of the prior draws and of --strategy sample")


def build_parser() -> argparse.ArgumentParser:
    """The ``textvae`` argument parser with one sub-command per task."""
    parser = argparse.ArgumentParser(prog="textvae", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a sentence VAE into a run folder")
    _add_train_arguments(train)
    train.set_defaults(func=_train)
    rec = sub.add_parser("reconstruct", help="encode sentences and decode them back")
    rec.add_argument("run")
    rec.add_argument("sentences", nargs="+")
    _add_decoding(rec)
    rec.set_defaults(func=_reconstruct)
    sample = sub.add_parser("sample", help="decode sentences from prior samples")
    sample.add_argument("run")
    sample.add_argument("-n", type=int, default=10)
    sample.add_argument("--temperature", type=float, default=1.0)
    _add_decoding(sample)
    sample.set_defaults(func=_sample)
    objectives = sub.add_parser("objectives", help="list the objectives and their parameters")
    objectives.set_defaults(func=_objectives)
    add_evaluate_commands(sub)
    add_explore_commands(sub)
    add_experiment_commands(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``textvae`` console script; errors in input end with one clear message."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (CorpusError, CheckpointError, FileExistsError, ValueError) as error:
        print(f"textvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
