"""Pictures of posterior collapse and of holes, one function per picture.

The functions follow ArviZ's plotting API: a single-panel picture takes ``ax=`` (a matplotlib
Axes; a new Figure of ``figsize`` when None) and returns the Axes it drew on, a many-panel one
takes ``fig=`` and returns the Figure. They keep no pyplot state (any backend, Agg included) and
never write files: saving is the caller's, with :func:`save_figure` (atomic PNG) or ``savefig``.
Legends sit outside the data panels, so they never cover data or the prior's circle labels.

* :func:`plot_hole_picture` / :func:`plot_hole_comparison`: the density of the aggregated posterior
  q_D on two latent dimensions against the circles holding 50/90/99% of the prior's mass, with the
  region holding half of each label's q_D outlined (Zhang et al. 2022, Figure 1); every panel of a
  comparison shows the same two dimensions (:func:`shared_active_dims`);
* :func:`plot_sentence_posteriors` and :func:`plot_sentence_forest` (in
  :mod:`evaluation.sentence_plots`): per-sentence posteriors against the prior;
* :func:`plot_dimension_bars`: per dimension, E_x KL(q(z_k|x) || p), Var_x E[z_k|x] (active
  units) and marginal-KL_k (holes), ``docs/metrics.md#pictures``;
* :func:`plot_length_ppc` (in :mod:`evaluation.sentence_plots`): lengths of sentences decoded from
  prior samples against the split's;
* :func:`plot_toy_grid`: the 2-D toy's aggregated posterior per objective and step.
"""
from __future__ import annotations

import math
import textwrap
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.config import ACTIVE_UNIT_THRESHOLD

from .arviz_data import SplitPosteriors
from .figures import check_size, new_axes, save_figure
from .sentence_plots import (
    plot_length_ppc,
    plot_sentence_forest,
    plot_sentence_posteriors,
)
from .toy import ToyRun, aggregate_log_density, grid_kl, grid_points

__all__ = [
    "aggregate_density_grid",
    "most_active_dims",
    "plot_dimension_bars",
    "plot_hole_comparison",
    "plot_hole_picture",
    "plot_length_ppc",
    "plot_sentence_forest",
    "plot_sentence_posteriors",
    "plot_toy_grid",
    "prior_radii",
    "save_figure",
    "shared_active_dims",
]

PRIOR_MASSES = (0.5, 0.9, 0.99)
AU_THRESHOLD = ACTIVE_UNIT_THRESHOLD
CU_TAU = 0.03
POINTS = ("draw", "center")
GRID_POINTS = 121
PANEL_LABEL_INCHES = 0.6  # a hole panel's title above it and its tick and axis labels below, 9-10 point text
LABEL_MASS = 0.5
PRIOR_COLOR = "tab:red"
LABEL_COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive",
                "tab:cyan", "tab:gray")


def prior_radii(family: str, latent_dim: int, masses: Sequence[float] = PRIOR_MASSES) -> list[float]:
    """Radii of the circles holding ``masses`` of the prior's 2-D marginal (its density contours):
    N(0, I): r^2 ~ chi^2_2, r = sqrt(-2 log(1 - m)); uniform on S^{d-1}: r^2 ~ Beta(1, (d - 2) / 2),
    r = sqrt(1 - (1 - m)^(2 / (d - 2))), and the unit circle for d = 2."""
    if family == "normal":
        return [math.sqrt(-2.0 * math.log(1.0 - m)) for m in masses]
    if family == "vmf":
        if latent_dim == 2:
            return [1.0]
        return [math.sqrt(1.0 - (1.0 - m) ** (2.0 / (latent_dim - 2))) for m in masses]
    raise ValueError(f"family must be 'normal' or 'vmf', got {family!r}")


def most_active_dims(center: np.ndarray, count: int = 2) -> list[int]:
    """The ``count`` dimensions with the largest Var_x of the posterior centers (ties: lower index)."""
    return shared_active_dims([center], count)


def shared_active_dims(centers: Sequence[np.ndarray], count: int = 2) -> list[int]:
    """One choice of dimensions for every panel of a comparison: the ``count`` dimensions with the
    largest relative activity summed over the runs, sum_r v_rk / max_j v_rj with
    v_rk = Var_x E[z_k|x] of run r, over the runs with an active unit (max_j v_rj >= 0.01; all runs
    when none has one), so every such run counts equally whatever its scale. Ties: lower index."""
    arrays = [np.asarray(c, dtype=float) for c in centers]
    if not arrays or any(a.ndim != 2 or a.shape[1] != arrays[0].shape[1] for a in arrays) \
            or not 1 <= count <= arrays[0].shape[1]:
        raise ValueError(f"need centers (N, d) of one d >= count={count}, got shapes {[a.shape for a in arrays]}")
    variances = [a.var(0) for a in arrays]
    active = [v for v in variances if v.max() >= AU_THRESHOLD] or variances
    score = sum(v / v.max() if v.max() > 0 else v for v in active)
    return sorted(range(score.size), key=lambda k: (-score[k], k))[:count]


def _check_dims(dims: Sequence[int] | None, runs: Sequence[SplitPosteriors]) -> list[int]:
    if dims is None:
        return shared_active_dims([p.center for p in runs])
    dims = [int(k) for k in dims]
    latent_dim = min(p.latent_dim for p in runs)
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= k < latent_dim for k in dims):
        raise ValueError(f"dims must be two distinct dimensions in [0, {latent_dim}), got {dims!r}")
    return dims


def _normal_pdf(x: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """N(x_g; loc_i, scale_i^2) for every point i and grid value g: shape (N, G)."""
    standardized = (x[None, :] - loc[:, None]) / scale[:, None]
    return np.exp(-0.5 * standardized**2) / (scale[:, None] * math.sqrt(2.0 * math.pi))


def aggregate_density_grid(posteriors: SplitPosteriors, dims: Sequence[int], axis: np.ndarray,
                           point: str = "draw", rows: np.ndarray | None = None) -> np.ndarray:
    """Density on the grid ``axis x axis`` (G x G, row g = ``axis[g]`` of ``dims[1]``) of the
    sentences ``rows`` (default all). ``point="draw"`` with a Gaussian posterior: the aggregated
    posterior's exact 2-D marginal q_D(a, b) = (1/N) sum_i N(a; mu_ia, s_ia^2) N(b; mu_ib, s_ib^2);
    otherwise a 2-D histogram of one ``point`` per sentence (a draw of q(z|x), i.e. a sample of
    q_D, or the center), as a density: the count of a cell / (N x cell area)."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    chosen = slice(None) if rows is None else rows
    a, b = dims
    if point == "draw" and posteriors.scale is not None:
        center, scale = posteriors.center[chosen], posteriors.scale[chosen]
        along_a = _normal_pdf(axis, center[:, a], scale[:, a])
        along_b = _normal_pdf(axis, center[:, b], scale[:, b])
        return along_b.T @ along_a / center.shape[0]
    values = (posteriors.draw if point == "draw" else posteriors.center)[chosen]
    step = axis[1] - axis[0]
    edges = np.concatenate([axis - step / 2, axis[-1:] + step / 2])
    counts, _, _ = np.histogram2d(values[:, b], values[:, a], bins=[edges, edges])
    return counts / (values.shape[0] * step * step)


def _mass_level(density: np.ndarray, cell: float, mass: float) -> float:
    """The density level whose super-level set holds ``mass`` of the grid's total mass."""
    ordered = np.sort(density.ravel())[::-1]
    cumulative = np.cumsum(ordered) * cell
    return float(ordered[min(np.searchsorted(cumulative, mass * cumulative[-1]), ordered.size - 1)])


def _draw_prior_circles(ax: Axes, family: str, latent_dim: int, color: str = PRIOR_COLOR,
                        annotate: bool = True, lw: float = 0.9) -> float:
    theta = np.linspace(0.0, 2.0 * math.pi, 200)
    radii = prior_radii(family, latent_dim)
    for radius, mass in zip(radii, PRIOR_MASSES):
        ax.plot(radius * np.cos(theta), radius * np.sin(theta), color=color, lw=lw, ls="--", zorder=3)
        if annotate:
            ax.annotate(f"{mass:.0%}", (radius * 0.71, radius * 0.71), fontsize=7, color=color, zorder=4,
                        bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    return max(radii)


def _panel_limit(posteriors: SplitPosteriors, dims: list[int], outer: float) -> float:
    spread = float(np.quantile(np.abs(posteriors.draw[:, dims]), 0.99))
    return float(np.clip(1.1 * spread, 1.2 * outer, 4.0 * outer))


def _label_names(labels: Sequence[str], names: Mapping[str, str] | None) -> list[tuple[str, str]]:
    return [(label, (names or {}).get(label, label)) for label in sorted(set(labels))]


def _draw_hole_panel(ax: Axes, posteriors: SplitPosteriors, dims: list[int], point: str,
                     label_names: Mapping[str, str] | None) -> list[Line2D]:
    """The density image, the prior's circles and per label the contour holding ``LABEL_MASS`` of
    its q_D; returns the legend handles."""
    outer = prior_radii(posteriors.family, posteriors.latent_dim)[-1]
    limit = _panel_limit(posteriors, dims, outer)
    axis = np.linspace(-limit, limit, GRID_POINTS)
    density = aggregate_density_grid(posteriors, dims, axis, point)
    ax.imshow(density, extent=(-limit, limit, -limit, limit), origin="lower", cmap="Greys", vmin=0.0,
              interpolation="nearest", zorder=1)
    _draw_prior_circles(ax, posteriors.family, posteriors.latent_dim)
    handles = [Line2D([], [], color=PRIOR_COLOR, ls="--", lw=0.9, label="p(z): 50/90/99% circles")]
    if posteriors.labels is not None and len(set(posteriors.labels)) <= len(LABEL_COLORS):
        labels = np.asarray(posteriors.labels)
        cell = (axis[1] - axis[0]) ** 2
        for (label, name), color in zip(_label_names(posteriors.labels, label_names), LABEL_COLORS):
            part = aggregate_density_grid(posteriors, dims, axis, point, rows=np.flatnonzero(labels == label))
            ax.contour(axis, axis, part, levels=[_mass_level(part, cell, LABEL_MASS)], colors=[color],
                       linewidths=1.2, zorder=2)
            handles.append(Line2D([], [], color=color, lw=1.2, label=f"{name}: {LABEL_MASS:.0%} of its q_D"))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    return handles


def _density_title(point: str, posteriors: SplitPosteriors) -> str:
    if point == "center":
        return "density of the posterior centers (grey)"
    return "q_D(z) density (grey)" if posteriors.scale is not None else "histogram of z ~ q(z|x) (grey)"


def plot_hole_picture(
    posteriors: SplitPosteriors,
    dims: Sequence[int] | None = None,
    point: str = "draw",
    title: str | None = None,
    label_names: Mapping[str, str] | None = None,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (7.5, 5.0),
) -> Axes:
    """The hole picture: in grey the density of the aggregated posterior q_D on ``dims`` (default:
    :func:`most_active_dims`) by :func:`aggregate_density_grid`, over dashed circles holding
    50/90/99% of the prior's mass, and per label (shown as ``label_names[label]`` where given) the
    contour holding half of that label's q_D. Collapse: the grey fills the circles and the label
    contours coincide; holes: white regions inside the circles (Zhang et al. 2022, Figure 1).
    The legend sits right of the panel."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    ax = new_axes(ax, figsize)
    handles = _draw_hole_panel(ax, posteriors, _check_dims(dims, [posteriors]), point, label_names)
    ax.set_title(title or _density_title(point, posteriors), fontsize=9)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8, frameon=False)
    ax.figure.tight_layout()
    return ax


def _wrap_to_width(text: str, width_inches: float, chars_per_inch: float = 14.0) -> str:
    """``text`` with each line broken at spaces so that it fits ``width_inches`` of 9-point text
    (about 14 characters an inch)."""
    width = max(20, int(width_inches * chars_per_inch))
    return "\n".join(textwrap.fill(line, width) for line in text.split("\n"))


def plot_hole_comparison(
    runs: Sequence[tuple[str, SplitPosteriors]],
    dims: Sequence[int] | None = None,
    point: str = "draw",
    label_names: Mapping[str, str] | None = None,
    fig: Figure | None = None,
    panel_size: float = 3.2,
    columns: int = 5,
) -> Figure:
    """:func:`plot_hole_picture` of several ``(name, posteriors)`` runs side by side, ``columns``
    panels a row, every panel on the same two dimensions: ``dims``, or by default
    :func:`shared_active_dims` of all runs' centers (named in the figure's title). One legend
    for all panels, below them."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    if not runs:
        raise ValueError("plot_hole_comparison needs at least one run")
    POSITIVE_INT.check("columns", columns)
    chosen = _check_dims(dims, [posteriors for _, posteriors in runs])
    columns = min(columns, len(runs))
    rows = -(-len(runs) // columns)
    own = fig is None
    if own:
        check_size((panel_size, panel_size))
        fig = Figure(figsize=(panel_size * columns, (panel_size + PANEL_LABEL_INCHES) * rows))
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(runs):]:
        fig.delaxes(ax)
    handles: dict[str, Line2D] = {}
    for ax, (name, posteriors) in zip(axes, runs):
        for handle in _draw_hole_panel(ax, posteriors, chosen, point, label_names):
            handles.setdefault(handle.get_label(), handle)
        ax.set_title(name, fontsize=9)
    rule = "as chosen" if dims is not None else "the most active over the runs, by shared_active_dims"
    title = _wrap_to_width(f"{_density_title(point, runs[0][1])} on z[{chosen[0]}], z[{chosen[1]}]\n"
                           f"(the same two dimensions in every panel: {rule})", fig.get_figwidth())
    fig.suptitle(title, fontsize=9)
    ncol = max(1, min(len(handles), int(fig.get_figwidth() / 2.3)))
    legend_rows = -(-len(handles) // ncol)
    bottom = 0.4 + 0.22 * legend_rows  # inches for the legend, below the x labels
    top = 0.2 + 0.17 * (title.count("\n") + 1)  # and for the title, a line of 9-point text each
    if own:
        fig.set_figheight((panel_size + PANEL_LABEL_INCHES) * rows + bottom + top)
    fig.legend(handles=list(handles.values()), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    height = fig.get_figheight()
    fig.tight_layout(rect=(0.0, bottom / height, 1.0, 1.0 - top / height))
    return fig


def plot_dimension_bars(
    stats: Mapping[str, np.ndarray | None],
    fig: Figure | None = None,
    figsize: tuple[float, float] = (10.0, 7.0),
) -> Figure:
    """Bars per latent dimension of :func:`evaluation.arviz_data.dimension_statistics`: E_x KL
    (collapse: all near 0), Var_x E[z_k|x] with the AU threshold 0.01, and marginal-KL_k with the
    CU threshold 0.03 (holes: large bars) (``docs/metrics.md#pictures``)."""
    panels = [
        ("kl", "E_x KL(q(z_k|x) || p(z_k))", None),
        ("mean_variance", "Var_x E[z_k|x] (active units)", AU_THRESHOLD),
        ("marginal_kl", "marginal-KL_k = KL(p(z_k) || q_D(z_k)) (holes)", CU_TAU),
    ]
    missing = [key for key, _, _ in panels if key not in stats]
    if missing:
        raise ValueError(f"stats lacks {missing}; pass the dict of dimension_statistics")
    if fig is None:
        check_size(figsize)
        fig = Figure(figsize=figsize)
    axes = fig.subplots(len(panels), 1, sharex=True)
    for ax, (key, title, threshold) in zip(axes, panels):
        ax.set_title(title, fontsize=9)
        values = stats[key]
        if values is None:
            ax.text(0.5, 0.5, "not defined for this posterior family", ha="center", va="center",
                    transform=ax.transAxes)
            continue
        values = np.asarray(values)
        ax.bar(np.arange(values.size), values, color="C0")
        if threshold is not None:
            ax.axhline(threshold, color="C3", lw=0.8, ls="--", label=f"threshold {threshold}")
            ax.legend(fontsize=7)
    axes[-1].set_xlabel("latent dimension k")
    axes[-1].xaxis.get_major_locator().set_params(integer=True)
    fig.tight_layout()
    return fig


def plot_toy_grid(
    runs: Mapping[str, ToyRun],
    limit: float = 4.5,
    points: int = 151,
    fig: Figure | None = None,
    panel_size: float = 2.2,
) -> Figure:
    """The 2-D toy (:mod:`evaluation.toy`): one row per objective, one column per recorded step,
    each panel the aggregated posterior density q_D(z) = (1/N) sum_i q(z|i) on a grid over the
    circles holding 50/90/99% of p(z), annotated with KL(q_D || p) by quadrature."""
    if not runs:
        raise ValueError("plot_toy_grid needs at least one toy run")
    columns = max(len(run.snapshots) for run in runs.values())
    if fig is None:
        check_size((panel_size, panel_size))
        fig = Figure(figsize=(panel_size * columns, panel_size * len(runs)))
    x, y, _ = grid_points(limit, points)
    grid = np.stack([x, y], -1)
    axes = fig.subplots(len(runs), columns, squeeze=False)
    for row, (name, run) in enumerate(runs.items()):
        for col, ax in enumerate(axes[row]):
            ax.set_xticks([])
            ax.set_yticks([])
            if col >= len(run.snapshots):
                ax.set_visible(False)
                continue
            snap = run.snapshots[col]
            density = np.exp(aggregate_log_density(snap.loc, snap.scale, grid))
            ax.imshow(density, extent=(-limit, limit, -limit, limit), origin="lower", cmap="viridis")
            _draw_prior_circles(ax, "normal", 2, color="0.85", annotate=False, lw=0.8)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            kl = grid_kl(snap.loc, snap.scale)["kl"]
            ax.text(0.03, 0.03, f"KL {kl:.2f}", transform=ax.transAxes, fontsize=7, color="white")
            if row == 0:
                ax.set_title(f"step {snap.step}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return fig
