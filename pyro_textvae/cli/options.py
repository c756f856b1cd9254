"""What every ``textvae`` sub-command shares on its command line: checked number types, a help
formatter that shows each option's default, and a parser whose errors are one line.

Nothing here imports torch, so ``textvae --help`` and a mistyped option answer at once.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

from inference.objective_configs import best_checkpoint_rule
from pyro_textvae.errors import CheckpointError, OptionError

CHECKPOINT_HELP = f"best.pt ({best_checkpoint_rule()}; `textvae train` says its epoch) or last.pt"


def at_least(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` and, where given, <= ``maximum`` (argparse names
    the option in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        if maximum is not None and value > maximum:
            raise argparse.ArgumentTypeError(f"must be <= {maximum:,}, got {value:,}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def positive_float(text: str) -> float:
    """An argparse ``type``: a finite float > 0."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def fraction(text: str) -> float:
    """An argparse ``type``: a number in [0, 1) (a dropout probability)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects a number, got {text!r}") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


def path_text(text: str) -> str:
    """An argparse ``type``: a path that is not empty (an unset shell variable reads as ``""``)."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expects a path, got {text!r} (an unset shell variable?)")
    return text


def check_folder(path: str, what: str, kind: str = "run folder") -> None:
    """Refuse, before anything heavy is imported, an empty ``path`` (``ValueError`` naming ``what``, the
    flag or argument) and one that is not a folder (``CheckpointError`` naming the ``kind`` of folder)."""
    if not path.strip():
        raise ValueError(f"{what}: expects a path, got {path!r} (an unset shell variable?)")
    if not Path(path).is_dir():
        named = f"{what}: " if what.startswith("-") else ""
        raise CheckpointError(f"{named}{kind} {path!r} does not exist or is not a folder")


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Appends ``(default: X)`` to an option's help unless it has no default (None, a flag's False)
    or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        help_text = action.help or ""
        default = action.default
        if "%(default)" in help_text or default in (None, False, argparse.SUPPRESS) or default == []:
            return help_text
        if not action.option_strings and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return help_text
        return f"{help_text} (default: %(default)s)"


GIVEN = "options_given"  # the namespace attribute of :meth:`Parser.parse_known_args`


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, every sub-parser) that shows defaults
    in ``--help`` and reports a bad command line in one line, ``PROG: error: MESSAGE``, exit 2.
    A parser without sub-commands records which options the command line gave (a value equal to
    the default counts as given) in the namespace's :data:`GIVEN`."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}  # library option -> destination, where they differ

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):
        """``ArgumentParser.parse_known_args``, plus :data:`GIVEN`: the destinations given in ``args``."""
        parsed, extras = super().parse_known_args(args, namespace)
        if not hasattr(self, "commands"):
            setattr(parsed, GIVEN, self._given(args))
        return parsed, extras

    def _given(self, args) -> frozenset[str]:
        """The destinations that ``args`` sets: those of a parse with no defaults."""
        defaults = [(action, action.default) for action in self._actions]
        try:
            for action, _ in defaults:
                action.default = argparse.SUPPRESS
            bare, _ = super().parse_known_args(args, argparse.Namespace())
        finally:
            for action, default in defaults:
                action.default = default
        return frozenset(vars(bare)) - set(self._defaults)

    def add_subparsers(self, **kwargs) -> argparse._SubParsersAction:
        """``add_subparsers``, the action kept as :attr:`commands` (its ``choices``: name -> parser)."""
        self.commands = super().add_subparsers(**kwargs)
        return self.commands

    def flag_of(self, option: str) -> str:
        """The flag of the library option ``option`` (a parameter or config field) on this command
        line, the option whose destination is ``option`` or its :attr:`aliases` entry (``batch_size``
        -> ``--batch-size``); the name itself where the command has no such flag."""
        dest = self.aliases.get(option, option)
        flags = [action.option_strings[-1] for action in self._actions if action.dest == dest and action.option_strings]
        return flags[0] if flags else option

    def explain(self, error: OptionError) -> str:
        """``error``'s message naming this command line's flags instead of the library's options."""
        return error.naming(self.flag_of)

