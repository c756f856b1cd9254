"""Targets stated before a comparison runs, and where each method stands against them.

An experiment's ``[targets]`` table bounds result columns (:data:`evaluation.tables.COLUMNS`), each with
``{at_least = x}`` or ``{at_most = x}``::

    [targets]
    AU = {at_least = 16}
    "joint-KL" = {at_most = 0.5}

:func:`write_targets` writes ``targets.md``: a row per method, each bounded column's mean over the
method's seeds (± the sample standard deviation), whether the mean meets the bound, and how many of
the bounds it meets. The mean is compared as the table prints it (rounded to the column's decimals,
:data:`evaluation.tables.DECIMALS`), so a cell never reads "4.80 missed" against a bound of 4.8; a mean
that is missing or not finite (a diverged run) misses its bound.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pyro_textvae.io import atomic_write_bytes

from .tables import COLUMNS, DECIMALS, format_mean_std, markdown_table, results_table

BOUNDS = {"at_least": "≥", "at_most": "≤"}


def check_targets(targets: Any, where: str = "targets") -> dict[str, tuple[str, float]]:
    """``{column: (bound, value)}`` from a ``[targets]`` table; ``ValueError`` naming ``where`` and the
    column when a column is not one of the results table's, or its bound is not exactly one of
    :data:`BOUNDS` with a finite number."""
    if not isinstance(targets, dict) or not targets:
        raise ValueError(f"{where} must be a table of column = {{at_least = x}} or {{at_most = x}}")
    columns = [name for name, _ in COLUMNS]
    checked = {}
    for column, bound in targets.items():
        if column not in columns:
            raise ValueError(f"{where}: {column!r} is not a results column; valid: {columns}")
        if not isinstance(bound, dict) or len(bound) != 1 or next(iter(bound)) not in BOUNDS:
            raise ValueError(f"{where}: {column} must be {{at_least = x}} or {{at_most = x}}, got {bound!r}")
        (kind, value), = bound.items()
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{where}: {column} {kind} must be a finite number, got {value!r}")
        checked[column] = (kind, float(value))
    return checked


def meets(column: str, mean: float | None, kind: str, value: float) -> bool:
    """Whether ``mean``, rounded to ``column``'s decimals, satisfies the bound (``>= value`` for
    at_least, ``<= value`` for at_most)."""
    if mean is None or not math.isfinite(mean):
        return False
    printed = round(mean, DECIMALS.get(column, 2))
    return printed >= value if kind == "at_least" else printed <= value


def targets_table(results: dict[str, list[dict]], targets: dict[str, tuple[str, float]]
                  ) -> tuple[list[str], list[list[str]]]:
    """Columns and rows of ``targets.md``: method, seeds, a ``mean ± std met|missed`` cell per target
    (headed ``AU ≥ 16``), and ``k of n`` targets met."""
    all_columns, all_rows = results_table(results)
    index = {name: all_columns.index(name) for name in targets}
    header = ["method", "seeds"] + [f"{name} {BOUNDS[kind]} {value:g}" for name, (kind, value) in targets.items()]
    rows = []
    for row in all_rows:
        cells, met = [], 0
        for name, (kind, value) in targets.items():
            mean, std = row[index[name]]
            ok = meets(name, mean, kind, value)
            met += ok
            cells.append(f"{format_mean_std(name, mean, std)} {'met' if ok else 'missed'}")
        rows.append([row[0], str(row[2]), *cells, f"{met} of {len(targets)}"])
    return header + ["met"], rows


def write_targets(out: Path, results: dict[str, list[dict]], targets: dict[str, tuple[str, float]]) -> None:
    """``out/targets.md``: :func:`targets_table` as Markdown."""
    columns, rows = targets_table(results, targets)
    note = ("Each cell: the mean over the seeds (± their standard deviation) and whether the mean, "
            "as printed, meets the bound.\n")
    atomic_write_bytes(Path(out) / "targets.md", (markdown_table(columns, rows) + "\n" + note).encode())
