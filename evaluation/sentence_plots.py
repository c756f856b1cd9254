"""Pictures of single sentences' posteriors and of decoded lengths, in ArviZ's API style
(``ax=``/``fig=`` in, the Axes or Figure out, no file written; see :mod:`evaluation.plots`).

* :func:`plot_sentence_posteriors`: the density of q(z_k|x) (``az.plot_kde`` of its draws) with its
  94% HDI over a histogram of p(z_k), one panel a sentence; collapse puts every curve on the prior;
* :func:`plot_sentence_forest`: per sentence the 94% HDI, quartiles and median of q(z_k|x), one
  row a sentence and one panel a dimension, over the prior's 94% interval drawn once a panel;
* :func:`plot_length_ppc` (``az.plot_ppc``): lengths of sentences decoded from prior samples
  against the chosen sentences of the split.
"""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from matplotlib.ticker import AutoLocator, ScalarFormatter

from pyro_textvae.checks import POSITIVE_INT

from .figures import check_size

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

HDI_PROB = 0.94
Q_COLOR = "C0"
PRIOR_COLOR = "0.5"
LABEL_WIDTH = 45


def _short(text: str, width: int = LABEL_WIDTH) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def _most_active_in(idata: az.InferenceData, count: int) -> list[int]:
    """The ``count`` latent dimensions whose posterior means vary most across the sentences."""
    means = idata.posterior["z"].mean(("chain", "draw")).values
    variance = means.var(0)
    order = sorted(range(variance.size), key=lambda k: (-variance[k], k))[:count]
    return [int(idata.posterior["latent_dim"].values[k]) for k in order]


def _draws(group, sentence=None, latent_dim: int = 0) -> np.ndarray:
    values = group["z"].sel(latent_dim=latent_dim)
    if sentence is not None:
        values = values.sel(sentence=sentence)
    return values.values.ravel()


def _new_figure(fig: Figure | None, figsize: Sequence[float]) -> Figure:
    if fig is not None:
        return fig
    check_size(figsize)
    return Figure(figsize=tuple(figsize))


def plot_sentence_posteriors(
    idata: az.InferenceData,
    latent_dim: int | None = None,
    max_sentences: int = 4,
    fig: Figure | None = None,
    figsize: tuple[float, float] = (10.0, 6.5),
) -> Figure:
    """For the first ``max_sentences`` sentences of ``idata``, one panel each: the density of
    q(z_k|x) (``az.plot_kde`` of its draws), its 94% HDI (shaded) and a histogram of the prior's
    draws of z_k, on one dimension k (default: the one whose posterior means vary most across the
    sentences). One legend for the figure. Collapse: every curve equals the prior. The draws are
    independent guide samples, so no sampling diagnostic is shown."""
    POSITIVE_INT.check("max_sentences", max_sentences)
    if latent_dim is None:
        latent_dim = _most_active_in(idata, 1)[0]
    if latent_dim not in idata.posterior["latent_dim"].values:
        raise ValueError(f"latent_dim {latent_dim!r} is not a latent dimension of the data")
    fig = _new_figure(fig, figsize)
    sentences = idata.posterior["sentence"].values[:max_sentences]
    cols = min(2, len(sentences))
    axes = fig.subplots(math.ceil(len(sentences) / cols), cols, squeeze=False).ravel()
    for ax in axes[len(sentences):]:
        fig.delaxes(ax)
    texts = idata.posterior["sentence_text"].sel(sentence=list(sentences)).values
    for ax, sentence, text in zip(axes, sentences, texts):
        draws = _draws(idata.posterior, sentence, latent_dim)
        ax.hist(_draws(idata.prior, sentence, latent_dim), bins=30, density=True, histtype="step", color=PRIOR_COLOR)
        low, high = az.hdi(draws, hdi_prob=HDI_PROB)
        ax.axvspan(low, high, color=Q_COLOR, alpha=0.15, lw=0)
        az.plot_kde(draws, ax=ax, plot_kwargs={"color": Q_COLOR}, legend=False)
        ax.set_title(_short(str(text)), fontsize=8)
        ax.set_xlabel(f"z[{latent_dim}]", fontsize=8)
        ax.set_ylabel("density", fontsize=8)
        ax.tick_params(labelsize=7)
    handles = [Line2D([], [], color=Q_COLOR, label="q(z|x) (KDE of its draws)"),
               Patch(color=Q_COLOR, alpha=0.15, label=f"{HDI_PROB:.0%} HDI of q(z|x)"),
               Line2D([], [], color=PRIOR_COLOR, label="p(z) (histogram of its draws)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=9, frameon=False)
    fig.suptitle(f"posterior of z[{latent_dim}] per sentence against the prior", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.45 / fig.get_figheight(), 1.0, 1.0))
    return fig


def _interval_row(ax: Axes, y: float, draws: np.ndarray, color: str) -> None:
    """One forest row: the 94% HDI (thin), the quartiles (thick) and the median (marker)."""
    low, high = az.hdi(draws, hdi_prob=HDI_PROB)
    q1, median, q3 = np.percentile(draws, [25, 50, 75])
    ax.plot([low, high], [y, y], color=color, lw=1.0, solid_capstyle="butt")
    ax.plot([q1, q3], [y, y], color=color, lw=3.0, solid_capstyle="butt")
    ax.plot([median], [y], "o", color=color, markersize=3.5, markerfacecolor="white")


def plot_sentence_forest(
    idata: az.InferenceData,
    latent_dims: Sequence[int] | None = None,
    fig: Figure | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """One panel per dimension of ``latent_dims`` (default: the two whose posterior means vary
    most), one row per sentence labelled with its text: the 94% HDI, quartiles and median of
    q(z_k|x); behind them, once a panel, the prior's 94% interval of z_k (from its draws of every
    sentence). Collapse: every row spans the prior's band. Legend below the panels."""
    if latent_dims is None:
        dims = _most_active_in(idata, min(2, idata.posterior.sizes["latent_dim"]))
    else:
        dims = [int(k) for k in latent_dims]
    unknown = [k for k in dims if k not in idata.posterior["latent_dim"].values]
    if unknown or not dims:
        raise ValueError(f"latent_dims {unknown or dims} are not latent dimensions of the data")
    sentences = idata.posterior["sentence"].values
    texts = [_short(str(t)) for t in idata.posterior["sentence_text"].values]
    fig = _new_figure(fig, figsize or (3.0 + 3.2 * len(dims), 1.4 + 0.3 * len(sentences)))
    axes = fig.subplots(1, len(dims), sharey=True, squeeze=False)[0]
    rows = np.arange(len(sentences))[::-1]
    for ax, k in zip(axes, dims):
        low, high = az.hdi(_draws(idata.prior, None, k), hdi_prob=HDI_PROB)
        ax.axvspan(low, high, color=PRIOR_COLOR, alpha=0.2, lw=0)
        for y, sentence in zip(rows, sentences):
            _interval_row(ax, y, _draws(idata.posterior, sentence, k), Q_COLOR)
        ax.set_xlabel(f"z[{k}]", fontsize=9)
        ax.tick_params(labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(rows, texts, fontsize=8)
    axes[0].set_ylim(-0.7, len(sentences) - 0.3)
    handles = [Line2D([], [], color=Q_COLOR, lw=1.0, label=f"q(z|x): {HDI_PROB:.0%} HDI"),
               Line2D([], [], color=Q_COLOR, lw=3.0, label="q(z|x): quartiles"),
               Line2D([], [], color=Q_COLOR, marker="o", markerfacecolor="white", ls="", label="q(z|x): median"),
               Patch(color=PRIOR_COLOR, alpha=0.2, label=f"p(z): {HDI_PROB:.0%} interval")]
    fig.legend(handles=handles, loc="lower center", ncol=4, fontsize=8, frameon=False)
    fig.suptitle("per-sentence posteriors against the prior", fontsize=10)
    fig.tight_layout(rect=(0.0, 0.35 / fig.get_figheight(), 1.0, 1.0))
    return fig


PPC_NAMES = {"Prior predictive": "decoded prior samples (one line a draw of {n})",
             "Observed": "the {n} chosen sentences of the split",
             "Prior predictive mean": "decoded prior samples (all draws)"}


def plot_length_ppc(
    idata: az.InferenceData,
    ax: Axes | None = None,
    figsize: tuple[float, float] = (9.0, 4.5),
) -> Axes:
    """``az.plot_ppc`` of sentence length: sentences greedily decoded from z ~ p(z) (the
    ``prior_predictive`` group, every draw one curve over the chosen sentences' slots) against the
    chosen sentences of the split (``observed_data``), their number in the title and legend. Holes show as
    decoded prior samples whose lengths miss the data's."""
    if ax is None:
        ax = _new_figure(None, figsize).add_subplot()
    total = idata.prior_predictive.sizes["chain"] * idata.prior_predictive.sizes["draw"]
    n = idata.observed_data.sizes["sentence"]
    az.plot_ppc(idata, group="prior", var_names=["length"], observed=True, num_pp_samples=total, ax=ax,
                textsize=9, legend=False)
    ax.yaxis.set_visible(True)
    ax.yaxis.set_major_locator(AutoLocator())
    ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.tick_params(axis="y", left=True, labelleft=True, labelsize=8)
    ax.set_ylabel("share of sentences per word", fontsize=9)
    ax.set_xlabel("sentence length (words)", fontsize=9)
    ax.set_title(f"sentence length: {total} x {n} decoded prior samples vs {n} sentences of the split", fontsize=10)
    handles = [line for line in ax.lines if line.get_label() in PPC_NAMES]
    ax.legend(handles, [PPC_NAMES[h.get_label()].format(n=n) for h in handles], fontsize=9, loc="upper left",
              bbox_to_anchor=(1.02, 1.0), frameon=False)
    ax.figure.tight_layout()
    return ax
