"""The ``textvae experiment`` sub-command (:mod:`pyro_textvae.cli.experiment_file` reads the file,
:mod:`pyro_textvae.cli.experiment_runner` does the work); register
it with :func:`add_experiment_commands`. Nothing heavy is imported until the command runs."""
from __future__ import annotations

import argparse
from pathlib import Path

from pyro_textvae.config import PRECISIONS

from .options import at_least, path_text


def add_experiment_commands(subparsers: argparse._SubParsersAction) -> None:
    """Register ``textvae experiment CONFIG.toml``."""
    parser = subparsers.add_parser("experiment", help="train and evaluate several objectives from a TOML file",
                                   description="Train and evaluate the methods of a TOML file into one results "
                                               "folder (a table and pictures); a rerun skips what is done.")
    parser.add_argument("config", type=path_text, help="experiment TOML file (see pyro_textvae/cli/experiment_file.py)")
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
