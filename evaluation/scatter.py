"""The collapse-against-holes scatter of an experiment: MI and AU against joint-KL, one point per
method (the mean over its seeds), labels moved apart where methods sit together.

``plot_collapse_against_holes(results, fig=None) -> Figure`` (ArviZ's API style, see
:mod:`evaluation.figures`; saving is the caller's). joint-KL is drawn on a log axis whose ticks
read as plain decimals (:func:`evaluation.figures.plain_log_axis`); a method whose mean joint-KL
is <= 0 (a Monte-Carlo estimate of a KL near 0) is drawn at the axis' left end as a left-pointing
triangle.
"""
from __future__ import annotations

import math
import statistics
from typing import Any

from matplotlib.axes import Axes
from matplotlib.backend_bases import RendererBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.text import Text
from matplotlib.transforms import Bbox

from .figures import plain_log_axis
from .tables import metric_value

PANELS = (("MI (nats)", ("mi",)), ("active units", ("active_units", "au")))
X_LABEL = "joint-KL = E_p[log p(z) - log q_D(z)] (holes; log scale)"


def _mean(values: list[Any]) -> float | None:
    """The mean of the numbers among ``values``; None when there is none or one is not finite (a
    diverged run: the method is left out of the scatter)."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers or not all(math.isfinite(v) for v in numbers):
        return None
    return statistics.fmean(numbers)


def _points(results: dict[str, list[dict]], keys: tuple[str, ...]) -> list[tuple[float, float, str]]:
    points = []
    for name, runs in results.items():
        x = _mean([metric_value(r, ("holes", "joint_kl")) for r in runs])
        y = _mean([metric_value(r, keys) for r in runs])
        if x is not None and y is not None:
            points.append((x, y, name))
    return points


def _x_range(xs: list[float]) -> tuple[float, float]:
    positive = [x for x in xs if x > 0] or [1.0]
    low, high = min(positive), max(positive)
    return low / 1.6, high * 1.6


def plot_collapse_against_holes(results: dict[str, list[dict]], fig: Figure | None = None) -> Figure:
    """MI and AU against joint-KL, one point per method (mean over seeds): collapse sits at the
    bottom (MI, AU near 0), holes to the right (large joint-KL); DG-VAE should sit top-left.
    Labels of methods that sit close together are moved apart (:func:`_label_apart`)."""
    fig = fig if fig is not None else Figure(figsize=(10.0, 4.5))
    canvas = fig.canvas if hasattr(fig.canvas, "get_renderer") else FigureCanvasAgg(fig)  # keep a figure's own
    renderer = canvas.get_renderer()
    panels = []
    for ax, (label, keys) in zip(fig.subplots(1, len(PANELS)), PANELS):
        points = _points(results, keys)
        low, high = _x_range([x for x, _, _ in points])
        points = [(x if x > 0 else low, y, name) for x, y, name in points]
        for (x, y, _), raw in zip(points, _points(results, keys)):
            ax.scatter([x], [y], s=40, marker="o" if raw[0] > 0 else "<")
        plain_log_axis(ax, low, high)
        ax.set_xlabel(X_LABEL)
        ax.set_ylabel(label + " (collapse when 0)")
        ax.grid(alpha=0.3)
        panels.append((ax, points))
    fig.tight_layout()
    for ax, points in panels:
        _label_apart(ax, points, renderer)
    return fig


_LINE = 11  # points: a label's height at fontsize 8, plus a gap
_LABEL_OFFSETS = [(dx, dy) for step in range(8) for dy in (4 + step * _LINE, 4 - (step + 1) * _LINE) for dx in (4, -4)]


def _label_apart(ax: Axes, points: list[tuple[float, float, str]], renderer: RendererBase) -> None:
    """Label each point at the first offset (right or left of it, then a line higher or lower, and
    so on) where its text overlaps no label placed before it and stays inside the axes (failing
    that, the first with no overlap); a label off its first line gets a leader line to its point."""
    ax.set_xlim(ax.get_xlim())
    ax.set_ylim(ax.get_ylim())
    frame = ax.get_window_extent(renderer)
    placed: list[Bbox] = []
    for x, y, name in points:
        boxes = {}
        for offset in _LABEL_OFFSETS:
            probe = _label(ax, name, (x, y), offset)
            boxes[offset] = probe.get_window_extent(renderer)
            probe.remove()
        free = [o for o, box in boxes.items() if not any(box.overlaps(other) for other in placed)]
        inside = [o for o in free
                  if frame.contains(boxes[o].x0, boxes[o].y0) and frame.contains(boxes[o].x1, boxes[o].y1)]
        offset = (inside or free or _LABEL_OFFSETS[-1:])[0]
        _label(ax, name, (x, y), offset, leader=abs(offset[1]) > _LINE)
        placed.append(boxes[offset])


def _label(ax: Axes, name: str, point: tuple[float, float], offset: tuple[int, int], leader: bool = False) -> Text:
    return ax.annotate(name, point, textcoords="offset points", xytext=offset, fontsize=8,
                       ha="left" if offset[0] > 0 else "right", va="bottom",
                       arrowprops={"arrowstyle": "-", "color": "0.5", "lw": 0.5} if leader else None)
