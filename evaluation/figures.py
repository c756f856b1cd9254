"""What every picture shares, without ArviZ (so the experiment runner imports it cheaply): saving a
figure atomically, a new Axes when none is given, and a log axis whose ticks read as plain decimals.

The picture functions follow ArviZ's plotting API: a single-panel picture takes ``ax=`` and returns
the Axes it drew on, a many-panel one takes ``fig=`` and returns the Figure; saving is the caller's.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, LogLocator, MaxNLocator, NullFormatter

from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.io import atomic_write_bytes

MIN_TICKS = 3


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as a PNG of its size in inches times ``dpi`` pixels, atomically (temporary
    file, fsync, rename); returns the path."""
    POSITIVE_INT.check("dpi", dpi)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return atomic_write_bytes(path, buffer.getvalue())


def check_size(figsize: Sequence[float]) -> None:
    """Refuse a figure size that is not two positive numbers of inches."""
    if len(figsize) != 2 or not all(v > 0 for v in figsize):
        raise ValueError(f"figsize must be two positive numbers, got {figsize!r}")


def new_axes(ax: Axes | None, figsize: Sequence[float]) -> Axes:
    """``ax``, or the single Axes of a new Figure of ``figsize`` inches."""
    if ax is not None:
        return ax
    check_size(figsize)
    return Figure(figsize=tuple(figsize)).add_subplot()


def plain_number(value: float, _position: object = None) -> str:
    """``value`` to three significant digits as a plain decimal: 0.0385, 0.1, 1, 250 (never 3.85e-02
    or a x10^k)."""
    return np.format_float_positional(float(f"{value:.3g}"), trim="-")


def plain_log_axis(ax: Axes, low: float, high: float) -> None:
    """A log-scaled x axis from ``low`` to ``high`` (both > 0) with at least ``MIN_TICKS`` major ticks
    labelled as plain decimals: the decades when the range spans two or more, else 1-2-5 steps,
    else evenly spaced values (a range within one step), and no minor tick labels."""
    if not 0 < low < high:
        raise ValueError(f"a log axis needs 0 < low < high, got {low}, {high}")
    ax.set_xscale("log")
    ax.set_xlim(low, high)
    for locator in (LogLocator(base=10.0, numticks=12), LogLocator(base=10.0, subs=(1.0, 2.0, 5.0), numticks=12),
                    MaxNLocator(nbins=4, min_n_ticks=MIN_TICKS)):
        ticks = [t for t in locator.tick_values(low, high) if low <= t <= high]
        if len(ticks) >= MIN_TICKS:
            break
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.xaxis.set_minor_formatter(NullFormatter())
