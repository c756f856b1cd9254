"""The training table: each run's schedule read back from its metrics.jsonl lines."""
from __future__ import annotations

import csv

import pytest

from evaluation.training_table import TRAINING_COLUMNS, training_summary, write_training_table
from inference.protocol import PlateauSchedule, PlateauState, simulate


def _history(losses, key="valid_elbo_loss", seconds=10.0):
    """metrics.jsonl lines as the trainer writes them, the course decided by a plateau rule
    (patience 2, one halving allowed, at most as many epochs as ``losses``)."""
    schedule = PlateauSchedule(decay_patience=2, max_decays=1, max_epochs=len(losses))
    state, lines = PlateauState(), []
    for epoch, loss in enumerate(losses, 1):
        decision = schedule.after_epoch(state, epoch, loss)
        state = decision.state
        lines.append({"epoch": epoch, key: loss, "improved": decision.improved, "halved": decision.halve,
                      "early_stop": state.decays > schedule.max_decays, "stop": decision.stop,
                      "seconds": seconds + epoch})
        if decision.stop:
            break
    return lines


def test_a_run_stopped_by_the_plateau_rule():
    losses = [5.0, 4.0, 4.5, 4.6, 3.9, 4.0, 4.1, 4.2, 4.3]
    lines = _history(losses)
    summary = training_summary(lines)
    course = simulate(PlateauSchedule(decay_patience=2, max_decays=1, max_epochs=len(losses)), losses)
    assert (course["stop_epoch"], course["halving_epochs"], course["best_epoch"]) == (7, [4], 5)
    assert summary == {"epochs": 7, "best_epoch": 5, "criterion": "-ELBO", "best_loss": 3.9, "halving_epochs": [4],
                       "stopped_by": "plateau", "training_seconds": 10.0 * 7 + 28, "median_epoch_seconds": 14.0}


def test_the_objectives_own_loss_is_the_criterion_where_it_was_kept():
    lines = _history([3.0, 2.0, 1.0], key="valid_objective_loss")
    for line in lines:
        line["valid_elbo_loss"] = 100.0 - line["epoch"]
    summary = training_summary(lines)
    assert (summary["criterion"], summary["best_epoch"], summary["best_loss"]) == ("own loss", 3, 1.0)
    assert (summary["stopped_by"], summary["halving_epochs"]) == ("epoch limit", [])


def test_an_empty_history_is_refused():
    with pytest.raises(ValueError, match="at least one metrics.jsonl line"):
        training_summary([])


def test_the_tables_round_numbers_in_markdown_and_keep_them_in_csv(tmp_path):
    lines = _history([5.0, 4.0, 4.5, 4.6, 3.9, 4.0, 4.1, 4.2, 4.3], seconds=61.234)
    write_training_table(tmp_path, {"VAE": [(1, lines), (2, [])]})
    rows = (tmp_path / "training.md").read_text().splitlines()
    assert rows[0] == "| " + " | ".join(TRAINING_COLUMNS) + " |" and len(rows) == 3
    assert rows[2] == "| VAE | 1 | 7 | 5 | -ELBO | 3.90 | 4 | plateau | 7.6 | 65.2 |"
    with open(tmp_path / "training.csv") as handle:
        (row,) = list(csv.DictReader(handle))
    assert float(row["training min"]) == pytest.approx((61.234 * 7 + 28) / 60)
