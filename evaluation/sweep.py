"""Metrics against a method's parameter (an ablation such as the aggregation size b of the density
gap): the points of a ``results.csv`` and their picture, one panel a metric.

:func:`read_sweep` takes the rows of a ``results.csv`` (as :func:`evaluation.tables.write_results`
writes it) that a parameter value names, :func:`plot_sweep` draws each metric's mean against the value
on a log-2 axis, with the spread over seeds as error bars where a row has more than one seed.
"""
from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .figures import check_size, plain_number

SWEEP_COLUMNS = ("MI", "AU", "joint-KL", "NLL")  # collapse, units, holes, fit: the trade an ablation moves


def read_sweep(path: str | Path, points: Sequence[tuple[float, str]],
               columns: Sequence[str] = SWEEP_COLUMNS) -> dict[str, np.ndarray]:
    """``{"value": x, "seeds": n, COLUMN: means, "COLUMN std": spreads}``, arrays in order of the
    parameter value, from the methods of ``points`` (``(value, method)`` pairs) in the ``results.csv``
    at ``path``; an unknown method or column, a value that is not positive, or one given twice raises
    ``ValueError`` naming the file. A spread is NaN where a row has one seed."""
    with open(path, newline="") as handle:
        by_method = {record["method"]: record for record in csv.DictReader(handle)}
    missing = [method for _, method in points if method not in by_method]
    if missing:
        raise ValueError(f"{path}: no method(s) {missing}; it has {list(by_method)}")
    values = [float(value) for value, _ in points]
    if not points or min(values) <= 0 or len(set(values)) != len(values):
        raise ValueError(f"{path}: the parameter values must be positive and distinct, got {values}")
    known = {key[: -len(" mean")] for record in by_method.values() for key in record if key.endswith(" mean")}
    unknown = [column for column in columns if column not in known]
    if unknown:
        raise ValueError(f"{path}: no column(s) {unknown}; it has {sorted(known)}")
    ordered = sorted(zip(values, (method for _, method in points)))

    def number(text: str) -> float:
        return float(text) if text != "" else math.nan

    sweep = {"value": np.array([value for value, _ in ordered]),
             "seeds": np.array([int(by_method[method]["seeds"]) for _, method in ordered])}
    for column in columns:
        sweep[column] = np.array([number(by_method[method][f"{column} mean"]) for _, method in ordered])
        sweep[f"{column} std"] = np.array([number(by_method[method][f"{column} std"]) for _, method in ordered])
    return sweep


def plot_sweep(sweep: dict[str, np.ndarray], columns: Sequence[str] = SWEEP_COLUMNS, parameter: str = "b",
               fig: Figure | None = None, figsize: Sequence[float] = (10.0, 2.6)) -> Figure:
    """A panel per column of :func:`read_sweep`'s ``sweep``: its means against the parameter value
    (log-2 axis, a tick at each value), error bars of one standard deviation over seeds where there
    is one; a new Figure of ``figsize`` inches unless ``fig`` is given; returns the Figure."""
    if fig is None:
        check_size(figsize)
        fig = Figure(figsize=tuple(figsize), layout="constrained")
    axes = fig.subplots(1, len(columns), squeeze=False)[0]
    for ax, column in zip(axes, columns):
        spread = sweep[f"{column} std"]
        ax.errorbar(sweep["value"], sweep[column], yerr=None if np.isnan(spread).all() else spread,
                    marker="o", capsize=3)
        ax.set_xscale("log", base=2)
        ax.set_xticks(sweep["value"], [plain_number(value) for value in sweep["value"]])
        ax.minorticks_off()
        ax.set_xlabel(parameter)
        ax.set_title(column)
    return fig
