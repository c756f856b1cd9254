"""The ``textvae`` command line, the application layer: the parser, ``main`` and one module a
command (``train``, ``reconstruct`` and ``sample`` in :mod:`.decode`, ``objectives``, ``evaluate``,
``compare``, ``explore``, ``toy``, ``experiment``).

It alone imports all three packages (:mod:`pyro_textvae`, :mod:`inference`, :mod:`evaluation`);
no library module imports it (the import contract in ``pyproject.toml``). Every command takes
``--seed``; a run writes its config, metrics and checkpoints into one folder (``--out``). The
parser is built without importing torch, Pyro or ArviZ (each handler imports what it needs), so
``--help`` and option errors answer at once.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

from pyro_textvae.errors import CheckpointError, NonFiniteError, OptionError

from .compare import add_compare_command
from .decode import add_decode_commands
from .evaluate import add_evaluate_commands
from .experiment import add_experiment_commands
from .explore import add_explore_commands
from .objectives import add_objectives_command
from .options import Parser
from .toy import add_toy_command
from .train import add_train_command

DESCRIPTION = """Sentence VAEs in Pyro without posterior collapse or holes: DG-VAE and its baselines.

Train a run folder with `textvae train`, then evaluate, sample, reconstruct or explore it;
`textvae experiment` trains and evaluates a list of objectives from a TOML file.
`textvae COMMAND --help` lists a command's options and their defaults."""


def build_parser() -> argparse.ArgumentParser:
    """The ``textvae`` argument parser with one sub-command per task (no torch imported)."""
    parser = Parser(prog="textvae", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    add_train_command(sub)
    add_decode_commands(sub)
    add_objectives_command(sub)
    add_evaluate_commands(sub)
    add_compare_command(sub)
    add_explore_commands(sub)
    add_toy_command(sub)
    add_experiment_commands(sub)
    return parser


INTERRUPTED = 130  # the exit status of a process ended by SIGINT (128 + 2), as shells report it


def interrupted_line(args: argparse.Namespace) -> str:
    """What a Ctrl-C kept of the command's work and how to go on: every file is written whole or not at
    all, so a run folder keeps its last checkpoint and an evaluation its previous files."""
    if args.command == "train":
        folder = Path(args.resume or args.out)
        if not folder.is_dir():  # a sweep's folders are --out with -NAME=VALUE added
            return f"interrupted; continue each run folder {folder}-* with `textvae train --resume FOLDER`"
        if (folder / "last.pt").is_file():
            return f"interrupted; {folder / 'last.pt'} keeps the last checkpoint; continue with " \
                   f"`textvae train --resume {folder}`"
        return f"interrupted before the first checkpoint of {folder}; `textvae train --resume {folder}` starts it again"
    if args.command == "evaluate":
        return (f"interrupted; {args.run} keeps its previous evaluation files (written only at the end); "
                "run the same command again")
    if args.command == "experiment":
        return ("interrupted; the runs trained and evaluated so far and the last checkpoint of the one in training "
                "are kept; run the same `textvae experiment` command again to go on from there")
    return "interrupted; every file written so far is complete, nothing was left half written"


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``textvae`` console script; errors in input end with one clear message, and
    a Ctrl-C with one line saying what was kept (:func:`interrupted_line`) and status 130."""
    parser = build_parser()
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="Encountered NaN")  # Pyro's; the trainer names the step and term
    try:
        args.func(args)
    except OptionError as error:  # the library names its options; the user typed flags
        print(f"textvae {args.command}: error: {parser.commands.choices[args.command].explain(error)}", file=sys.stderr)
        return 2
    except (CheckpointError, FileExistsError, ValueError, NonFiniteError) as error:  # a CorpusError is a ValueError
        print(f"textvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a file or folder the system refused (str names it); no traceback
        print(f"textvae {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"textvae {args.command}: {interrupted_line(args)}", file=sys.stderr)
        return INTERRUPTED
    return 0
