"""What every ``textvae`` sub-command shares on its command line: checked number types, a help
formatter that shows each option's default, and a parser whose errors are one line.

Nothing here imports torch, so ``textvae --help`` and a mistyped option answer at once.
"""
from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import NoReturn

from inference.objective_configs import best_checkpoint_rule
from pyro_textvae.errors import OptionError

CHECKPOINT_HELP = f"best.pt ({best_checkpoint_rule()}; `textvae train` says its epoch) or last.pt"


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type``: an integer >= ``minimum`` (argparse names the option in the error)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expects an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
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


class Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` (and, through ``add_subparsers``, every sub-parser) that shows defaults
    in ``--help`` and reports a bad command line in one line, ``PROG: error: MESSAGE``, exit 2."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)
        self.aliases: dict[str, str] = {}  # library option -> destination, where they differ

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

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

