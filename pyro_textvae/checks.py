"""The one validator of option and parameter values: a type and a range, checked and described.

A :class:`Range` says what a value may be (``Range(int, minimum=1)``: an integer >= 1;
``Range(float, minimum=0, strict=True)``: a number > 0; ``Range(str, choices=("a", "b"))``). Its
:meth:`Range.check` raises one ``ValueError`` that names the option and the value given, so every
caller words the refusal the same way; ``bool`` is never taken for a number, nor a NaN or an infinity.
Importable without torch.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

NAMES = {int: "an integer", float: "a number", str: "a string", bool: "true or false"}


@dataclass(frozen=True)
class Range:
    """The values an option takes: of type ``kind`` (an int is a float), at least ``minimum``
    (greater where ``strict``), one of ``choices`` where given, or ``None`` where ``optional``."""

    kind: type = float
    minimum: float | None = None
    strict: bool = False
    choices: tuple = ()
    optional: bool = False

    def describe(self) -> str:
        """The range in words: ``"an integer >= 1"``, ``"a number > 0"``, ``"one of 'a', 'b'"``."""
        if self.choices:
            words = "one of " + ", ".join(repr(choice) for choice in self.choices)
        else:
            words = NAMES[self.kind]
            if self.minimum is not None:
                words += f" {'>' if self.strict else '>='} {self.minimum:g}"
        return words + (" or None" if self.optional else "")

    def requirement(self, value: Any) -> str:
        """What ``value`` fails: only the bound (``">= 0"``) for a number of the right type, ``"finite"``
        for a NaN or an infinity."""
        numeric = self.kind in (int, float) and not isinstance(value, bool) and not self.choices
        if numeric and isinstance(value, float) and not math.isfinite(value):
            return "finite"
        if numeric and self.minimum is not None and isinstance(value, (int, float) if self.kind is float else int):
            return f"{'>' if self.strict else '>='} {self.minimum:g}"
        return self.describe()

    def contains(self, value: Any) -> bool:
        """Whether ``value`` is of the type and in the range."""
        if value is None:
            return self.optional
        if self.kind in (int, float) and isinstance(value, bool):
            return False
        if not isinstance(value, (int, float) if self.kind is float else self.kind):
            return False
        if isinstance(value, float) and not math.isfinite(value):
            return False
        if self.choices and value not in self.choices:
            return False
        if self.minimum is None or self.kind not in (int, float):
            return True
        return value > self.minimum if self.strict else value >= self.minimum

    def check(self, name: str, value: Any) -> Any:
        """``value`` (an int as a float where the kind is float), or ``ValueError`` naming ``name``."""
        if not self.contains(value):
            raise ValueError(f"{name} must be {self.describe()}, got {value!r}")
        return float(value) if self.kind is float and value is not None else value


def check_value(name: str, value: Any, kind: type = float, minimum: float | None = None, strict: bool = False,
                choices: Sequence = (), optional: bool = False) -> Any:
    """``Range(kind, minimum, strict, choices, optional).check(name, value)``."""
    return Range(kind, minimum, strict, tuple(choices), optional).check(name, value)


POSITIVE_INT = Range(int, minimum=1)
NON_NEGATIVE = Range(float, minimum=0)
POSITIVE = Range(float, minimum=0, strict=True)
