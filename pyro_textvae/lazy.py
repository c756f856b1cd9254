"""Names of a package imported on first use (PEP 562), so that ``textvae --help`` and an option
error import neither torch nor Pyro: a package's ``__init__`` maps each exported name to the module
that defines it and sets ``__getattr__ = lazy_getattr(__name__, table)``."""
from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
from typing import Any


def lazy_getattr(package: str, table: dict[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` that returns ``package.<table[name]>.<name>``, importing it then."""

    def __getattr__(name: str) -> Any:
        if name in table:
            return getattr(import_module(f".{table[name]}", package), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
