"""The ``textvae experiment`` sub-command (:mod:`pyro_textvae.cli.experiment_file` reads the file,
:mod:`pyro_textvae.cli.experiment_runner` does the work); register
it with :func:`add_experiment_commands`. Nothing heavy is imported until the command runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from pyro_textvae.config import PRECISIONS

from .options import at_least, path_text

EXAMPLE = """\
out = "results/short_yelp"             # the results folder (paths are relative to this file)
seeds = [0, 1]

[data]
path = "../shared/data/short_yelp"     # or: synthetic = {num_train = 2000}

[model]                                # TextVAEConfig options shared by every method
hidden_dim = 512

[schedule]                             # optional: inference.protocol.named_schedule and overrides
name = "paper"
max_epochs = 40

[train]                                # TrainConfig options shared by every method
batch_size = 32

[evaluate]                             # options of evaluation.report.evaluate_run
iw_samples = 500
iw_subset = 1000

[plots]                                # optional: label names in holes.png
label_names = {"0" = "negative", "1" = "positive"}

[targets]                              # optional: bounds stated in advance; writes targets.md
AU = {at_least = 16}
"joint-KL" = {at_most = 0.5}

[[methods]]
name = "VAE"
objective = "elbo"

[[methods]]
name = "DG-VAE"
objective = "dg"
params = {mode = "joint"}              # the objective's parameters (textvae objectives)
train = {optimizer = "sgd", lr = 0.5}  # optional per-method [train] and [model] overrides
"""  # the experiment file shown by ``textvae experiment --help`` (a test reads it as an experiment)


def add_experiment_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae experiment CONFIG.toml``."""
    parser = subparsers.add_parser("experiment", help="train and evaluate several objectives from a TOML file",
                                   description="Train and evaluate the methods of a TOML file into one results "
                                               "folder (a table and pictures); a rerun skips what is done.",
                                   epilog="An experiment file:\n\n" + EXAMPLE)
    parser.add_argument("config", type=path_text, help="experiment TOML file (its form: below)")
    parser.add_argument("--seed", type=at_least(0), nargs="+", metavar="S",
                        help="train and evaluate only these seeds (default: the file's seeds)")
    parser.add_argument("--method", action="append", metavar="NAME",
                        help="only this method of the file (repeatable); the table then has only these")
    parser.add_argument("--out", metavar="DIR", help="results folder instead of the file's out")
    parser.add_argument("--precision", choices=PRECISIONS,
                        help="train and evaluate in this precision (default: the file's [train] precision)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--report-only", action="store_true",
                        help="only write the table and pictures of the runs evaluated so far")
    parser.set_defaults(func=_experiment_command)


def _experiment_command(args: argparse.Namespace) -> None:
    """Handler of ``textvae experiment``: train, evaluate and report the file's methods."""
    if not Path(args.config).is_file():  # before the imports below (torch): at once
        raise ValueError(f"{args.config}: experiment file not found")
    from .experiment_file import load_experiment, select_methods
    from .experiment_runner import report_experiment, run_experiment

    config = load_experiment(args.config)
    if args.method:
        config = select_methods(config, args.method)
    if args.out:
        config = {**config, "out": str(Path(args.out).resolve())}
    if args.precision:
        config = {**config, "train": {**config.get("train", {}), "precision": args.precision}}
    if args.report_only:
        report_experiment(config, args.seed)
    else:
        run_experiment(config, progress=not args.no_progress, seeds=args.seed)
    print((Path(config["out"]) / "results.md").read_text(), end="")
