"""Validation curves, epoch by epoch: MI and joint-KL added to every ``metrics.jsonl`` line, and
the picture of an experiment's curves.

:func:`curve_metrics` is a :attr:`inference.trainer.Trainer.epoch_metrics` hook: after each epoch
it encodes the validation split (eval mode) and adds, next to the trainer's own -ELBO, KL and AU,

* ``valid_mi``: I_q(x; z) of the N validation posteriors (one z per sentence, ``docs/metrics.md#mutual-information``),
* ``valid_joint_kl``: E_{z~p}[log p(z) - log q_D(z)] from :data:`CURVE_PRIOR_SAMPLES` prior draws
  (the test-split evaluation uses 1000 x 128; a tenth of that keeps an epoch's curve cost at a few
  seconds, and the Monte-Carlo error well below the differences between methods),

both drawn from torch's RNG reseeded with a fixed seed inside :func:`torch.random.fork_rng`, so
the curves are reproducible and training draws the same numbers with or without them.
:func:`plot_curves` draws a panel per quantity and a line per method: the mean over its seeds at
each epoch (over the seeds that reached it) with the seeds' range as a band.
"""
from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, MaxNLocator, NullFormatter

from inference.train_config import CURVE_PRIOR_SAMPLES
from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.data import EncodedSplit
from pyro_textvae.model import TextVAE
from pyro_textvae.run_folder import read_history

from .figures import MIN_TICKS, plain_number
from .latent_metrics import hole_metrics, mutual_information
from .split_posteriors import collect_posteriors, latent_prior

CURVE_SEED = 0
CURVE_SYMLOG = frozenset({"valid_kl", "valid_joint_kl"})
MARKED_POINTS = 10  # a line of fewer epochs marks each of them (one epoch is a single point)
CURVE_QUANTITIES: tuple[tuple[str, str], ...] = (
    ("valid_elbo_loss", "-ELBO (nats)"),
    ("valid_kl", "KL (nats)"),
    ("valid_mi", "MI (nats)"),
    ("valid_active_units", "AU"),
    ("valid_joint_kl", "joint-KL (nats)"),
)


def curve_metrics(
    prior_samples: int = CURVE_PRIOR_SAMPLES, seed: int = CURVE_SEED
) -> Callable[[TextVAE, EncodedSplit], dict[str, float]]:
    """The hook adding ``mi``, ``joint_kl`` and ``joint_kl_prior_samples`` (the trainer prefixes
    ``valid_``) for a model and the validation split."""
    POSITIVE_INT.check("curve prior samples", prior_samples)

    def metrics(vae: TextVAE, split: EncodedSplit) -> dict[str, float]:
        device = next(vae.parameters()).device
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            posteriors = collect_posteriors(vae, split, device=device)
            mi = mutual_information(posteriors)
            holes = hole_metrics(posteriors, latent_prior(vae, device), prior_samples, marginal=False)
        return {"mi": mi, "joint_kl": holes["joint_kl"], "joint_kl_prior_samples": prior_samples}

    return metrics


def read_histories(run_dirs: dict[str, Sequence[str | Path]]) -> dict[str, list[list[dict]]]:
    """``metrics.jsonl`` of each method's run folders (:func:`pyro_textvae.run_folder.read_history`;
    a missing file gives an empty history)."""
    return {name: [read_history(run) for run in runs] for name, runs in run_dirs.items()}


def seed_band(histories: Sequence[list[dict]], key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Epochs, mean, min and max over the seeds' histories of ``key`` at each epoch where at
    least one seed has a finite value."""
    by_epoch: dict[int, list[float]] = {}
    for history in histories:
        for record in history:
            value = record.get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value):
                by_epoch.setdefault(int(record["epoch"]), []).append(float(value))
    epochs = sorted(by_epoch)
    values = [np.asarray(by_epoch[e]) for e in epochs]
    return (np.asarray(epochs), np.asarray([v.mean() for v in values]), np.asarray([v.min() for v in values]),
            np.asarray([v.max() for v in values]))


def plot_curves(
    histories: dict[str, Sequence[list[dict]]],
    quantities: Sequence[tuple[str, str]] = CURVE_QUANTITIES,
    fig: Figure | None = None,
    symlog: Collection[str] = CURVE_SYMLOG,
) -> Figure:
    """A panel per ``(key, label)`` of ``quantities`` and a line per method of ``histories``
    (``{method: [history of each seed]}``, a history the lines of a ``metrics.jsonl``): the mean
    over seeds against the epoch, the seeds' min..max shaded. The panels of ``symlog`` keys have a
    symmetric-log y axis (linear within 0.1 of 0, logarithmic beyond: KL and joint-KL span 0.05 to 40
    nats across methods, and the small values are the ones that tell collapse and holes apart). One
    legend below the panels. Every panel has its y label and whole-epoch x ticks from 1 to the last epoch;
    a line of fewer than :data:`MARKED_POINTS` epochs marks its points (one epoch is one point). Draws into
    ``fig`` (a new one when None) and returns it; saving is the caller's."""
    if not quantities:
        raise ValueError("plot_curves needs at least one quantity")
    own = fig is None
    fig = fig if fig is not None else Figure(figsize=(3.6 * len(quantities), 3.4))
    axes = fig.subplots(1, len(quantities), squeeze=False)[0]
    handles: dict[str, Line2D] = {}
    last = max((int(r["epoch"]) for runs in histories.values() for run in runs for r in run), default=1)
    for ax, (key, label) in zip(axes, quantities):
        for index, (name, runs) in enumerate(histories.items()):
            epochs, mean, low, high = seed_band(runs, key)
            if not len(epochs):
                continue
            color, style = f"C{index % 10}", ("-", "--", ":")[index // 10 % 3]  # ten colours, then dashed
            label_text = f"{name} ({len(runs)} seed{'s' * (len(runs) > 1)})"
            marker = "o" if len(epochs) < MARKED_POINTS else None
            (line,) = ax.plot(epochs, mean, color=color, ls=style, lw=1.2, marker=marker, ms=4, label=label_text)
            handles.setdefault(label_text, line)
            if len(runs) > 1:
                ax.fill_between(epochs, low, high, color=color, alpha=0.2, lw=0)
        if key in symlog:
            _symlog_axis(ax)
        ax.set_xlim(0.5, last + 0.5)
        ax.set_xlabel("epoch")
        ax.set_ylabel(label, fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_title(label + (" (symlog)" if key in symlog else ""), fontsize=9)
        ax.grid(alpha=0.3)
    ncol = max(1, min(len(handles), int(fig.get_figwidth() / 2.6)))
    bottom = 0.45 + 0.2 * -(-len(handles) // ncol)  # inches for the legend, below the x labels
    if own:
        fig.set_figheight(fig.get_figheight() + bottom)
    fig.legend(handles=list(handles.values()), loc="lower center", ncol=ncol, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0.0, bottom / fig.get_figheight(), 1.0, 1.0))
    return fig


def _symlog_axis(ax) -> None:
    """A symmetric-log y axis (linear within 0.1 of 0) labelled with plain decimals, and with at least
    :data:`~evaluation.figures.MIN_TICKS` labelled ticks where the values span less than a decade."""
    ax.set_yscale("symlog", linthresh=0.1)
    low, high = ax.get_ylim()
    if len([t for t in ax.yaxis.get_major_locator().tick_values(low, high) if low <= t <= high]) < MIN_TICKS:
        ax.yaxis.set_major_locator(MaxNLocator(nbins=4, min_n_ticks=MIN_TICKS))
    ax.yaxis.set_major_formatter(FuncFormatter(plain_number))
    ax.yaxis.set_minor_formatter(NullFormatter())
