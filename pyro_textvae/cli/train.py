"""``textvae train``: train a sentence VAE into a run folder, or continue one (``--resume``).

``textvae train`` with no ``--data`` trains on the embedded synthetic corpus
(:mod:`pyro_textvae.demo`), so the bare command runs anywhere in a few minutes. A ``--param``
with a comma list trains one run per value. Every option is checked before torch is imported.
"""
from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from pathlib import Path

from evaluation.evaluate_options import CURVE_PRIOR_SAMPLES
from inference.objective_configs import (
    CONFIGS,
    config_class,
    configure_from_text,
    describe_parameters,
    shortcut_options,
)
from inference.train_config import (
    DEFAULT_LR,
    OPTIMIZER_NAMES,
    SYNTHETIC_DEFAULTS,
    SYNTHETIC_EPOCHS,
    TrainConfig,
)
from pyro_textvae.config import DEFAULT_MAX_LENGTH, INITS, LATENTS, PRECISIONS, TextVAEConfig
from pyro_textvae.demo import SYNTHETIC_MODEL, SYNTHETIC_OPTIMIZER

from .options import Parser, at_least


def _add_objective_arguments(group: argparse._ArgumentGroup) -> None:
    """``--objective``, ``--param`` and the shortcut options, from the objectives' configs
    (:mod:`inference.objective_configs`): what ``textvae objectives`` lists."""
    listing = "; ".join(f"{name}: {describe_parameters(name)}" for name in CONFIGS)
    group.add_argument("--objective", default="elbo", help="training objective")
    group.add_argument("--param", action="append", default=[], metavar="NAME=VALUE[,VALUE...]",
                       help="objective parameter (repeatable); a comma list trains one run per value. "
                            f"The parameters and their defaults: {listing}")
    for flag, item in shortcut_options().items():
        wanted = item.metadata["range"]
        options = {"choices": wanted.choices} if wanted.choices else {"type": wanted.kind, "metavar": item.name.upper()}
        group.add_argument(flag, dest=flag[2:].replace("-", "_"), **options,
                           help=f"sets {item.name}: {item.metadata['help']} (default: the objective's)")


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
    """Every option of ``textvae train``, in its help's groups."""
    _add_data_arguments(p.add_argument_group("data"))
    _add_model_arguments(p.add_argument_group("model"))
    _add_objective_arguments(p.add_argument_group(
        "objective (`textvae objectives` lists each one's parameters and defaults)"))
    _add_training_arguments(p.add_argument_group("training"))
    p.add_argument("--seed", type=int, default=TrainConfig.seed,
                   help="seed of the parameters, the batches and the synthetic corpus")
    p.add_argument("--out", default="runs/textvae", metavar="RUN", help="run folder")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="RUN",
                   help="continue RUN from last.pt (other options come from RUN, except --epochs, --device and "
                        "--precision)")


def _add_data_arguments(data: argparse._ArgumentGroup) -> None:
    data.add_argument("--data", metavar="DIR", help="corpus folder with train.txt, valid.txt, test.txt "
                                                    "(default: the embedded synthetic corpus)")
    data.add_argument("--synthetic", action="store_true", help="use the embedded synthetic corpus (the default)")
    data.add_argument("--synthetic-train", type=at_least(1), default=SYNTHETIC_DEFAULTS["num_train"], metavar="N",
                      help="training sentences of the synthetic corpus")
    data.add_argument("--labels", choices=["auto", "yes", "no"], default="auto",
                      help="whether lines start with label<TAB> (auto: detected)")
    data.add_argument("--min-count", type=at_least(1), default=1, metavar="N",
                      help="keep words seen at least N times in the training split")
    data.add_argument("--max-vocab", type=at_least(1), metavar="N",
                      help="keep the N most frequent words (default: all)")
    data.add_argument("--max-length", type=at_least(1), default=DEFAULT_MAX_LENGTH, metavar="N",
                      help="drop (and count) sentences longer than N tokens")


def _add_model_arguments(model: argparse._ArgumentGroup) -> None:
    model.add_argument("--embed-dim", type=int, default=TextVAEConfig.embed_dim, help="word embedding size")
    model.add_argument("--hidden-dim", type=int, help=f"LSTM state size (default: {TextVAEConfig.hidden_dim} with "
                       f"--data, {SYNTHETIC_MODEL['hidden_dim']} on the synthetic corpus)")
    model.add_argument("--latent-dim", type=int, default=TextVAEConfig.latent_dim, help="dimension d of z")
    model.add_argument("--dropout-in", type=float, default=TextVAEConfig.dropout_in,
                       help="dropout on the decoder's input embeddings")
    model.add_argument("--dropout-out", type=float, default=TextVAEConfig.dropout_out,
                       help="dropout on the decoder's LSTM outputs")
    model.add_argument("--latent", choices=LATENTS, default=TextVAEConfig.latent,
                       help="Gaussian z with a N(0, I) prior, or von Mises-Fisher z with a uniform prior on the sphere")
    model.add_argument("--kappa", type=float, default=TextVAEConfig.kappa, help="vMF concentration (--latent vmf)")
    model.add_argument("--init", choices=INITS, default=TextVAEConfig.init,
                       help="how the parameters are drawn: PyTorch's defaults, or as the DG-VAE paper's code "
                            "(every parameter U(-0.01, 0.01), embeddings U(-0.1, 0.1), bias-free heads)")
    model.add_argument("--linear-bias", choices=("on", "off"),
                       help="biases on the posterior head, the z-to-state map and the output layer "
                            "(default: off with --init paper, on otherwise)")


def _add_training_arguments(train: argparse._ArgumentGroup) -> None:
    train.add_argument("--schedule", metavar="NAME", help="a named schedule (inference/protocol.py; 'paper': "
                       "warm-up 10, halve lr after 5 bad epochs, at most 5 times, 100 epochs); the options "
                       "below override its fields")
    train.add_argument("--epochs", type=int, metavar="N", help=f"epochs to train (default: {TrainConfig.epochs} "
                       f"with --data, {SYNTHETIC_EPOCHS} on the synthetic corpus; with --schedule: its max_epochs)")
    train.add_argument("--batch-size", type=int, default=TrainConfig.batch_size, help="sentences per step and process")
    train.add_argument("--optimizer", choices=OPTIMIZER_NAMES, help=f"optimiser (default: {TrainConfig.optimizer} "
                       f"with --data, {SYNTHETIC_OPTIMIZER} on the synthetic corpus)")
    train.add_argument("--lr", type=float, help="learning rate (default: "
                       + ", ".join(f"{lr:g} with {name}" for name, lr in DEFAULT_LR.items()) + ")")
    train.add_argument("--clip-norm", type=float, default=TrainConfig.clip_norm, help="global gradient-norm clip")
    train.add_argument("--decay-patience", type=int, metavar="N",
                       help="halve the learning rate after N epochs without a better validation -ELBO "
                       f"(default: {TrainConfig.decay_patience}, or the --schedule's)")
    train.add_argument("--lr-decay", type=float, metavar="F",
                       help=f"the factor of each halving (default: {TrainConfig.lr_decay}, or the --schedule's)")
    train.add_argument("--max-decays", type=int, metavar="N", help="stop at the plateau after N halvings "
                       f"(default: {TrainConfig.max_decays}, or the --schedule's)")
    train.add_argument("--checkpoint-every", type=int, default=TrainConfig.checkpoint_every, metavar="N",
                       help="also checkpoint every N steps (0: at the end of each epoch only)")
    train.add_argument("--checkpoint-minutes", type=float, default=TrainConfig.checkpoint_minutes, metavar="M",
                       help="also checkpoint once M minutes of training have passed since the last checkpoint (0: off)")
    train.add_argument("--skip-nonfinite", type=int, default=TrainConfig.skip_nonfinite, metavar="N",
                       help="skip up to N batches with a non-finite loss or gradient instead of stopping")
    train.add_argument("--no-validate-args", action="store_true", help="turn Pyro's argument checks off (faster)")
    train.add_argument("--device", help=f"cpu, cuda or cuda:K (cuda: one GPU per local rank) (default: "
                                        f"{TrainConfig.device}; with --resume: the run's own device)")
    train.add_argument("--threads", type=at_least(1), metavar="N", help="torch threads (default: torch's, the "
                       "number of cores or OMP_NUM_THREADS; recorded in config.json and used again by --resume)")
    train.add_argument("--precision", choices=PRECISIONS, help="the networks in fp32 or bf16 mixed precision "
                       f"(default: {TrainConfig.precision}; with --resume: the run's own)")
    train.add_argument("--distributed", action="store_true",
                       help="train with torch.distributed (automatic under torchrun with > 1 process)")
    train.add_argument("--no-progress", action="store_true", help="no progress bar")
    train.add_argument("--curve-samples", type=int, metavar="S",
                       help=f"prior draws of the per-epoch validation joint-KL (default: {CURVE_PRIOR_SAMPLES}; "
                            "0: no MI and joint-KL curves)")


def _train(args: argparse.Namespace) -> None:
    _train_runs(args)
    from inference.distributed import close_distributed

    close_distributed()


def _train_runs(args: argparse.Namespace) -> None:
    if args.resume:
        _check_resume_options(args)
        curves = _curve_hooks(args.curve_samples)
        from inference.run import resume_trainer

        trainer = resume_trainer(args.resume, epochs=args.epochs, distributed=True if args.distributed else None,
                                 device=args.device, precision=args.precision)
        trainer.config.progress = not args.no_progress
        trainer.epoch_metrics += curves
        record = trainer.fit(resume=True)
        if trainer.epochs_trained == 0 and int(os.environ.get("RANK", "0")) == 0:
            how = "done, stopped early at the plateau" if record.get("early_stop") else "done"
            print(f"{trainer.run_dir}: nothing to do: {record.get('epoch', 0)} of {trainer.config.epochs} "
                  f"epochs {how} (--epochs N continues a finished run)")
            return
        _report(record, trainer.run_dir)
        return
    if args.data and args.synthetic:
        raise ValueError("--data and --synthetic exclude each other")
    data = {"min_count": args.min_count, "max_vocab": args.max_vocab, "max_length": args.max_length}
    if args.data:
        data.update(path=str(Path(args.data).resolve()), labels=args.labels)
    else:
        data["synthetic"] = {"num_train": args.synthetic_train, "seed": args.seed}
    model = _model_options(args)
    params = _parse_params(args.param)
    for flag, item in shortcut_options().items():
        value = getattr(args, flag[2:].replace("-", "_"))
        if value is not None:
            params[item.name] = [str(value)]
    train, params = _train_config(args, params)
    runs = _sweep(params)
    configs = [configure_from_text(args.objective, run, model["latent"]) for run in runs]  # all checked first
    curves = _curve_hooks(args.curve_samples)
    from inference.run import new_trainer

    swept = [k for k, v in params.items() if len(v) > 1]
    for run_params, config in zip(runs, configs):
        out = args.out + "".join(f"-{k}={run_params[k]}" for k in swept)
        try:
            trainer = new_trainer(out, data, model, args.objective, config, train, args.overwrite)
        except FileExistsError:  # the library's says overwrite=True
            message = f"run folder {str(Path(out))!r} already exists; pass --overwrite or --resume"
            raise FileExistsError(message) from None
        trainer.epoch_metrics += curves
        _report(trainer.fit(), trainer.run_dir)


RESUME_OPTIONS = ("resume", "epochs", "device", "distributed", "no_progress", "precision",
                  "curve_samples")  # what --resume may be given


def _check_resume_options(args: argparse.Namespace) -> None:
    """Refuse options that ``--resume`` would ignore (the run's own come from its config.json)."""
    defaults = Parser()
    _add_train_arguments(defaults)
    given = [name for name, default in vars(defaults.parse_args([])).items()
             if name not in RESUME_OPTIONS and getattr(args, name) != default]
    if given:
        flags = ", ".join(f"--{name.replace('_', '-')}" for name in given)
        raise ValueError(f"--resume {args.resume} takes its options from {args.resume}/config.json; {flags} cannot "
                         "change there (only --epochs, --device, --precision)")


def _model_options(args: argparse.Namespace) -> dict:
    """The model options given, the unset ones (None) from :data:`pyro_textvae.demo.SYNTHETIC_MODEL` on
    the synthetic corpus and from :class:`~pyro_textvae.config.TextVAEConfig` (the paper's) with --data."""
    names = ("embed_dim", "hidden_dim", "latent_dim", "dropout_in", "dropout_out", "latent", "kappa", "init")
    defaults = {} if args.data else SYNTHETIC_MODEL
    options = {k: getattr(args, k) if getattr(args, k) is not None else defaults.get(k, getattr(TextVAEConfig, k))
               for k in names}
    if args.linear_bias is not None:
        options["linear_bias"] = args.linear_bias == "on"
    return options


def _curve_hooks(samples: int | None) -> list:
    """The per-epoch validation MI and joint-KL hook (:func:`evaluation.curves.curve_metrics`), none
    when ``samples`` is 0; a bad count is refused before any run folder exists."""
    from evaluation.curves import curve_metrics

    if samples == 0:
        return []
    try:
        return [curve_metrics(CURVE_PRIOR_SAMPLES if samples is None else samples)]
    except ValueError as error:
        raise ValueError(f"--curve-samples: {error}") from None


def _train_config(
    args: argparse.Namespace, params: dict[str, list[str]]
) -> tuple[TrainConfig, dict[str, list[str]]]:
    """The run's :class:`~inference.train_config.TrainConfig` and objective parameters: a ``--schedule``
    fills in the plateau options and the warm-up that were not given; without one the unset plateau
    options keep ``TrainConfig``'s defaults (the paper's) and ``--epochs`` is ``TrainConfig.epochs``
    (``SYNTHETIC_EPOCHS`` on the synthetic corpus). Checked before torch is imported."""
    from inference.protocol import named_schedule

    plateau = {"epochs": args.epochs, "decay_patience": args.decay_patience, "lr_decay": args.lr_decay,
               "max_decays": args.max_decays}
    if args.schedule is not None:
        schedule = named_schedule(args.schedule, "--schedule")
        plateau = {**schedule.train_options(), **{k: v for k, v in plateau.items() if v is not None}}
        defaults = config_class(args.objective).defaults()
        params = {**{k: [str(v)] for k, v in schedule.objective_params(defaults).items()}, **params}
    elif args.epochs is None:
        plateau["epochs"] = TrainConfig.epochs if args.data else SYNTHETIC_EPOCHS
    optimizer = args.optimizer or (TrainConfig.optimizer if args.data else SYNTHETIC_OPTIMIZER)
    config = TrainConfig(
        batch_size=args.batch_size, optimizer=optimizer, lr=args.lr, clip_norm=args.clip_norm,
        seed=args.seed, checkpoint_every=args.checkpoint_every, checkpoint_minutes=args.checkpoint_minutes,
        skip_nonfinite=args.skip_nonfinite,
        validate_args=not args.no_validate_args, device=args.device or TrainConfig.device,
        progress=not args.no_progress, distributed=True if args.distributed else None, threads=args.threads,
        precision=args.precision or TrainConfig.precision,
        **{k: v for k, v in plateau.items() if v is not None},
    )
    return config, params


def _report(record: dict, run_dir: Path) -> None:
    """The last epoch's line, then :func:`evaluation.probe.run_account_lines`: on the synthetic corpus
    what z holds (probes, active units, reconstructions) per checkpoint; last, which one is best.pt."""
    if int(os.environ.get("RANK", "0")) != 0:
        return
    keys = ("epoch", "train_loss", "valid_elbo_loss", "valid_reconstruction", "valid_kl", "valid_active_units")
    print(f"{run_dir}: " + ", ".join(f"{k}={record[k]:.4g}" if isinstance(record.get(k), float) else
                                     f"{k}={record.get(k)}" for k in keys))
    from evaluation.probe import run_account_lines

    print("\n".join(run_account_lines(run_dir)), flush=True)


def add_train_command(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae train``."""
    train = subparsers.add_parser("train", help="train a sentence VAE into a run folder", description=(
        "Train a sentence VAE into a run folder (config.json, vocab.json, metrics.jsonl, best.pt, last.pt)."))
    _add_train_arguments(train)
    train.aliases = {item.name: flag[2:].replace("-", "_") for flag, item in shortcut_options().items()}
    train.set_defaults(func=_train)
