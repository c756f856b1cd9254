"""How each run of an experiment trained, read from its ``metrics.jsonl`` alone (no checkpoint).

:func:`training_summary` condenses one history (the lines of a run's ``metrics.jsonl``, one an
epoch) into what a reader of a comparison asks first: how many epochs ran, which epoch was kept
(the last line marked ``improved``, with its selection loss: ``valid_objective_loss`` where the
objective keeps its own loss, else ``valid_elbo_loss``; ``docs/maths.md#training-schedule``), after
which epochs the learning rate was halved, why training stopped, and how long it took.

"stopped by" is ``plateau`` when the last line says ``early_stop`` (the plateau after the last
allowed halving ended the run), ``epoch limit`` otherwise. Times are the lines' ``seconds``
(training only, without validation), so they depend on how busy the machine was.
"""
from __future__ import annotations

import csv
import io
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyro_textvae.io import atomic_write_bytes

from .tables import markdown_table

TRAINING_COLUMNS = ("method", "seed", "epochs", "best epoch", "kept on", "best valid loss", "halved after",
                    "stopped by", "training min", "s / epoch (median)")


def training_summary(history: Sequence[dict]) -> dict[str, Any]:
    """The schedule's course of one run: ``epochs``, ``best_epoch``, ``criterion`` ("-ELBO" or
    "own loss"), ``best_loss``, ``halving_epochs``, ``stopped_by``, ``training_seconds`` (summed)
    and ``median_epoch_seconds``. An empty history is refused."""
    if not history:
        raise ValueError("training_summary needs at least one metrics.jsonl line")
    own = "valid_objective_loss" in history[-1]
    key = "valid_objective_loss" if own else "valid_elbo_loss"
    improved = [record for record in history if record.get("improved")]
    seconds = [float(record["seconds"]) for record in history if "seconds" in record]
    return {
        "epochs": int(history[-1]["epoch"]),
        "best_epoch": int(improved[-1]["epoch"]) if improved else None,
        "criterion": "own loss" if own else "-ELBO",
        "best_loss": float(improved[-1][key]) if improved else None,
        "halving_epochs": [int(record["epoch"]) for record in history if record.get("halved")],
        "stopped_by": "plateau" if history[-1].get("early_stop") else "epoch limit",
        "training_seconds": sum(seconds),
        "median_epoch_seconds": statistics.median(seconds) if seconds else None,
    }


def training_rows(histories: dict[str, Sequence[tuple[int, Sequence[dict]]]]) -> list[list[Any]]:
    """A row of :data:`TRAINING_COLUMNS` per run of ``{method: [(seed, history), ...]}``; runs with
    an empty history are left out."""
    rows = []
    for method, runs in histories.items():
        for seed, history in runs:
            if not history:
                continue
            s = training_summary(history)
            rows.append([method, seed, s["epochs"], s["best_epoch"], s["criterion"], s["best_loss"],
                         ", ".join(map(str, s["halving_epochs"])) or "-", s["stopped_by"],
                         s["training_seconds"] / 60, s["median_epoch_seconds"]])
    return rows


def write_training_table(out: Path, histories: dict[str, Sequence[tuple[int, Sequence[dict]]]]) -> None:
    """``training.md`` (loss 2 decimals, times 1) and ``training.csv`` (full precision) in ``out``."""
    rows = training_rows(histories)
    decimals = {"best valid loss": 2, "training min": 1, "s / epoch (median)": 1}
    shown = [[f"{value:.{decimals[column]}f}" if isinstance(value, float) else value
              for column, value in zip(TRAINING_COLUMNS, row)] for row in rows]
    atomic_write_bytes(out / "training.md", markdown_table(TRAINING_COLUMNS, shown).encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(TRAINING_COLUMNS)
    writer.writerows([["" if value is None else value for value in row] for row in rows])
    atomic_write_bytes(out / "training.csv", buffer.getvalue().encode())
