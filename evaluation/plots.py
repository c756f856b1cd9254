"""Pictures of posterior collapse and of holes, one function per picture.

Each function draws on a new ``matplotlib.figure.Figure`` (no pyplot state, so any backend, Agg
included, works), saves it as PNG when ``path`` is given (``figsize`` inches times ``dpi`` pixels,
written atomically) and returns the Figure. ArviZ draws into axes created here.

* :func:`plot_hole_picture` / :func:`plot_hole_comparison`: one z per test sentence on two latent
  dimensions over the prior's density contours, coloured by label (Zhang et al. 2022, Figure 1);
* :func:`plot_sentence_posteriors` (``az.plot_posterior``) and :func:`plot_sentence_forest`
  (``az.plot_forest``): per-sentence posteriors against the prior; collapse puts every sentence
  at the prior;
* :func:`plot_dimension_bars`: per dimension, E_x KL(q(z_k|x) || p), Var_x E[z_k|x] (active
  units) and marginal-KL_k (holes), ``dg-vae.md`` sec. 5;
* :func:`plot_length_ppc` (``az.plot_ppc``): lengths of sentences decoded from prior samples
  against the split's;
* :func:`plot_toy_grid`: the 2-D toy's aggregated posterior per objective and step.
"""
from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from pyro_textvae.io import atomic_write_bytes

from .arviz_data import SplitPosteriors
from .toy import ToyRun, aggregate_log_density, grid_kl, grid_points

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

PRIOR_MASSES = (0.5, 0.9, 0.99)
AU_THRESHOLD = 0.01
CU_TAU = 0.03
POINTS = ("draw", "center")


def _finish(fig: Figure, path: str | Path | None, dpi: int) -> Figure:
    if path is not None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
        atomic_write_bytes(path, buffer.getvalue())
    return fig


def _check_size(figsize: tuple[float, float], dpi: int) -> None:
    if len(figsize) != 2 or not all(v > 0 for v in figsize) or not isinstance(dpi, int) or dpi < 1:
        raise ValueError(f"figsize must be two positive numbers and dpi a positive int, got {figsize!r}, {dpi!r}")


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
    center = np.asarray(center)
    if center.ndim != 2 or not 1 <= count <= center.shape[1]:
        raise ValueError(f"need centers (N, d) with d >= count={count}, got shape {center.shape}")
    variance = center.var(0)
    return sorted(range(center.shape[1]), key=lambda k: (-variance[k], k))[:count]


def _check_dims(dims: Sequence[int] | None, posteriors: SplitPosteriors) -> list[int]:
    if dims is None:
        return most_active_dims(posteriors.center)
    dims = [int(k) for k in dims]
    if len(dims) != 2 or dims[0] == dims[1] or not all(0 <= k < posteriors.latent_dim for k in dims):
        raise ValueError(f"dims must be two distinct dimensions in [0, {posteriors.latent_dim}), got {dims!r}")
    return dims


def _draw_prior_contours(ax, family: str, latent_dim: int, color: str = "0.35", annotate: bool = True) -> float:
    theta = np.linspace(0.0, 2.0 * math.pi, 200)
    radii = prior_radii(family, latent_dim)
    for radius, mass in zip(radii, PRIOR_MASSES):
        ax.plot(radius * np.cos(theta), radius * np.sin(theta), color=color, lw=0.8, ls="--", zorder=1)
        if annotate:
            ax.annotate(f"{mass:.0%}", (radius * 0.71, radius * 0.71), fontsize=7, color=color)
    return max(radii)


def _draw_hole_panel(ax, posteriors: SplitPosteriors, dims: list[int], point: str, title: str | None) -> None:
    values = posteriors.draw if point == "draw" else posteriors.center
    xy = values[:, dims]
    outer = _draw_prior_contours(ax, posteriors.family, posteriors.latent_dim)
    if posteriors.labels is None:
        ax.scatter(xy[:, 0], xy[:, 1], s=6, alpha=0.6, color="C0", zorder=2)
    else:
        names = sorted(set(posteriors.labels))
        labels = np.asarray(posteriors.labels)
        for index, name in enumerate(names):
            chosen = labels == name
            ax.scatter(xy[chosen, 0], xy[chosen, 1], s=6, alpha=0.6, color=f"C{index % 10}", label=name, zorder=2)
        if len(names) <= 10:
            ax.legend(fontsize=7, loc="upper right", markerscale=2)
    limit = max(1.15 * outer, 1.05 * float(np.abs(xy).max()))
    ax.set_xlim(-limit, limit)
    ax.set_ylim(-limit, limit)
    ax.set_aspect("equal")
    ax.set_xlabel(f"z[{dims[0]}]")
    ax.set_ylabel(f"z[{dims[1]}]")
    which = "one draw z ~ q(z|x)" if point == "draw" else "the posterior center"
    ax.set_title(title or f"{which} per sentence vs p(z)", fontsize=9)


def plot_hole_picture(
    posteriors: SplitPosteriors,
    dims: Sequence[int] | None = None,
    point: str = "draw",
    title: str | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (5.0, 5.0),
    dpi: int = 100,
) -> Figure:
    """The hole picture: one z per sentence (``point="draw"``: z ~ q(z|x), a sample of the
    aggregated posterior q_D; ``"center"``: the posterior mean) on ``dims`` (default: the two with
    the largest Var_x of the centers) over circles holding 50/90/99% of the prior's mass.
    Collapse: every point where the prior is, colours (labels) mixed; holes: prior rings without
    points (Zhang et al. 2022, Figure 1)."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    _check_size(figsize, dpi)
    fig = Figure(figsize=figsize)
    _draw_hole_panel(fig.add_subplot(), posteriors, _check_dims(dims, posteriors), point, title)
    fig.tight_layout()
    return _finish(fig, path, dpi)


def plot_hole_comparison(
    runs: Sequence[tuple[str, SplitPosteriors]],
    dims: Sequence[int] | None = None,
    point: str = "draw",
    path: str | Path | None = None,
    panel_size: float = 4.0,
    dpi: int = 100,
    columns: int = 5,
) -> Figure:
    """:func:`plot_hole_picture` of several ``(name, posteriors)`` runs side by side, one panel
    each, ``columns`` panels a row (each run on its own two most active dimensions unless ``dims``
    is given)."""
    if point not in POINTS:
        raise ValueError(f"point must be one of {POINTS}, got {point!r}")
    if not runs:
        raise ValueError("plot_hole_comparison needs at least one run")
    if not isinstance(columns, int) or isinstance(columns, bool) or columns < 1:
        raise ValueError(f"columns must be an int >= 1, got {columns!r}")
    columns = min(columns, len(runs))
    rows = -(-len(runs) // columns)
    figsize = (panel_size * columns, panel_size * rows)
    _check_size(figsize, dpi)
    fig = Figure(figsize=figsize)
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[len(runs):]:
        fig.delaxes(ax)
    for ax, (name, posteriors) in zip(axes, runs):
        chosen = _check_dims(dims, posteriors)
        _draw_hole_panel(ax, posteriors, chosen, point, f"{name} (dims {chosen[0]}, {chosen[1]})")
    fig.tight_layout()
    return _finish(fig, path, dpi)


def _most_active_in(idata: az.InferenceData, count: int) -> list[int]:
    means = idata.posterior["z"].mean(("chain", "draw")).values
    return [int(idata.posterior["latent_dim"].values[k]) for k in most_active_dims(means, count)]


def _short(text: str, width: int = 40) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def plot_sentence_posteriors(
    idata: az.InferenceData,
    latent_dim: int | None = None,
    max_sentences: int = 4,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (10.0, 6.0),
    dpi: int = 100,
) -> Figure:
    """``az.plot_posterior`` of z_k for the first ``max_sentences`` sentences of ``idata`` (k: the
    dimension whose posterior means vary most across them), each over a histogram of the prior's
    draws of z_k. Collapse: every panel equals the prior. The draws are independent guide
    samples, so no sampling diagnostic is shown."""
    _check_size(figsize, dpi)
    if not isinstance(max_sentences, int) or max_sentences < 1:
        raise ValueError(f"max_sentences must be a positive int, got {max_sentences!r}")
    if latent_dim is None:
        latent_dim = _most_active_in(idata, 1)[0]
    if latent_dim not in idata.posterior["latent_dim"].values:
        raise ValueError(f"latent_dim {latent_dim!r} is not a latent dimension of the data")
    sentences = idata.posterior["sentence"].values[:max_sentences]
    fig = Figure(figsize=figsize)
    cols = min(2, len(sentences))
    axes = fig.subplots(math.ceil(len(sentences) / cols), cols, squeeze=False).ravel()
    for ax in axes[len(sentences):]:
        ax.set_visible(False)
    axes = axes[: len(sentences)]
    coords = {"sentence": list(sentences), "latent_dim": [latent_dim]}
    az.plot_posterior(idata, var_names=["z"], coords=coords, hdi_prob=0.94, ax=axes, textsize=8)
    texts = idata.posterior["sentence_text"].sel(sentence=list(sentences)).values
    prior = idata.prior["z"].sel(latent_dim=latent_dim)
    for ax, sentence, text in zip(axes, sentences, texts):
        ax.hist(prior.sel(sentence=sentence).values.ravel(), bins=30, density=True, histtype="step",
                color="0.5", label="p(z)")
        ax.set_title(f"z[{latent_dim}] | {_short(str(text))}", fontsize=8)
        ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return _finish(fig, path, dpi)


def plot_sentence_forest(
    idata: az.InferenceData,
    latent_dims: Sequence[int] | None = None,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (8.0, 10.0),
    dpi: int = 100,
) -> Figure:
    """``az.plot_forest`` of q(z_k|x) for every sentence of ``idata`` next to p(z_k), for
    ``latent_dims`` (default: the two whose posterior means vary most). Collapse: every interval
    equals the prior's; labels carry the sentence text."""
    _check_size(figsize, dpi)
    if latent_dims is None:
        dims = _most_active_in(idata, min(2, idata.posterior.sizes["latent_dim"]))
    else:
        dims = list(latent_dims)
    unknown = [k for k in dims if k not in idata.posterior["latent_dim"].values]
    if unknown:
        raise ValueError(f"latent_dims {unknown} are not latent dimensions of the data")
    texts = dict(zip(idata.posterior["sentence"].values.tolist(), idata.posterior["sentence_text"].values.tolist()))
    labeller = az.labels.MapLabeller(coord_map={"sentence": {k: _short(str(v), 30) for k, v in texts.items()}})
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    prior = az.InferenceData(posterior=idata.prior)
    az.plot_forest(
        [idata, prior], model_names=["q(z|x)", "p(z)"], var_names=["z"], coords={"latent_dim": dims},
        combined=True, hdi_prob=0.94, labeller=labeller, ax=ax, textsize=7,
    )
    ax.set_title("94% intervals of q(z_k|x) per sentence and of p(z_k)", fontsize=9)
    fig.tight_layout()
    return _finish(fig, path, dpi)


def plot_dimension_bars(
    stats: Mapping[str, np.ndarray | None],
    path: str | Path | None = None,
    figsize: tuple[float, float] = (10.0, 7.0),
    dpi: int = 100,
) -> Figure:
    """Bars per latent dimension of :func:`evaluation.arviz_data.dimension_statistics`: E_x KL
    (collapse: all near 0), Var_x E[z_k|x] with the AU threshold 0.01, and marginal-KL_k with the
    CU threshold 0.03 (holes: large bars) (``dg-vae.md`` sec. 5)."""
    _check_size(figsize, dpi)
    panels = [
        ("kl", "E_x KL(q(z_k|x) || p(z_k))", None),
        ("mean_variance", "Var_x E[z_k|x] (active units)", AU_THRESHOLD),
        ("marginal_kl", "marginal-KL_k = KL(p(z_k) || q_D(z_k)) (holes)", CU_TAU),
    ]
    missing = [key for key, _, _ in panels if key not in stats]
    if missing:
        raise ValueError(f"stats lacks {missing}; pass the dict of dimension_statistics")
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
    return _finish(fig, path, dpi)


def plot_length_ppc(
    idata: az.InferenceData,
    path: str | Path | None = None,
    figsize: tuple[float, float] = (7.0, 4.5),
    dpi: int = 100,
) -> Figure:
    """``az.plot_ppc`` of sentence length: sentences greedily decoded from z ~ p(z) (the
    ``prior_predictive`` group, every draw one curve over the chosen sentences' slots) against the
    chosen sentences of the split (``observed_data``). Holes show as decoded prior samples whose
    lengths miss the data's."""
    _check_size(figsize, dpi)
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    total = idata.prior_predictive.sizes["chain"] * idata.prior_predictive.sizes["draw"]
    az.plot_ppc(idata, group="prior", var_names=["length"], observed=True, num_pp_samples=total, ax=ax, textsize=8)
    ax.set_title("sentence length: decoded prior samples vs the split", fontsize=9)
    ax.set_xlabel("words")
    fig.tight_layout()
    return _finish(fig, path, dpi)


def plot_toy_grid(
    runs: Mapping[str, ToyRun],
    limit: float = 4.5,
    points: int = 151,
    path: str | Path | None = None,
    panel_size: float = 2.2,
    dpi: int = 100,
) -> Figure:
    """The 2-D toy (:mod:`evaluation.toy`): one row per objective, one column per recorded step,
    each panel the aggregated posterior density q_D(z) = (1/N) sum_i q(z|i) on a grid over the
    circles holding 50/90/99% of p(z), annotated with KL(q_D || p) by quadrature."""
    if not runs:
        raise ValueError("plot_toy_grid needs at least one toy run")
    columns = max(len(run.snapshots) for run in runs.values())
    figsize = (panel_size * columns, panel_size * len(runs))
    _check_size(figsize, dpi)
    x, y, _ = grid_points(limit, points)
    grid = np.stack([x, y], -1)
    fig = Figure(figsize=figsize)
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
            _draw_prior_contours(ax, "normal", 2, color="0.85", annotate=False)
            ax.set_xlim(-limit, limit)
            ax.set_ylim(-limit, limit)
            kl = grid_kl(snap.loc, snap.scale)["kl"]
            ax.text(0.03, 0.03, f"KL {kl:.2f}", transform=ax.transAxes, fontsize=7, color="white")
            if row == 0:
                ax.set_title(f"step {snap.step}", fontsize=9)
            if col == 0:
                ax.set_ylabel(name, fontsize=9)
    fig.tight_layout()
    return _finish(fig, path, dpi)
