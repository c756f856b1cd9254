"""Targets stated in advance: a method's seed mean against each bound, and the bounds a file may state."""
from __future__ import annotations

import math

import pytest

from evaluation.targets import check_targets, meets, targets_table, write_targets


def _run(au, mi, joint_kl, nll):
    return {"objective": "dg", "active_units": {"au": au}, "mi": mi, "holes": {"joint_kl": joint_kl},
            "likelihood": {"nll": nll}}


TARGETS = check_targets({"AU": {"at_least": 16}, "MI": {"at_least": 4.8}, "joint-KL": {"at_most": 0.5},
                         "NLL": {"at_most": 40.98}})


def test_the_mean_over_seeds_decides_and_a_bound_reached_exactly_is_met():
    results = {
        # AU 14 and 20: one seed misses, the mean 17 meets; joint-KL exactly at its bound
        "stratified": [_run(14, 4.7, 0.5, 40.90), _run(20, 5.0, 0.5, 41.00)],
        # every seed of MI above 4.8 but NLL's mean 41.0 above 40.98
        "memory": [_run(30, 6.0, 0.1, 40.99), _run(30, 6.0, 0.1, 41.01)],
    }
    columns, rows = targets_table(results, TARGETS)
    assert columns == ["method", "seeds", "AU ≥ 16", "MI ≥ 4.8", "joint-KL ≤ 0.5", "NLL ≤ 40.98", "met"]
    assert rows[0] == ["stratified", "2", "17.0 ± 4.2 met", "4.85 ± 0.21 met", "0.50 ± 0.00 met",
                       "40.95 ± 0.07 met", "4 of 4"]
    assert rows[1][-2:] == ["41.00 ± 0.01 missed", "3 of 4"]


def test_a_mean_is_compared_as_the_table_prints_it():
    # BN-VAE's MI 4.7997 prints as 4.80 and meets MI >= 4.8; AU's one decimal: 15.96 prints 16.0
    assert meets("MI", 4.7997, "at_least", 4.8) and not meets("MI", 4.794, "at_least", 4.8)
    assert meets("AU", 15.96, "at_least", 16) and not meets("AU", 15.94, "at_least", 16)
    assert meets("joint-KL", 0.5049, "at_most", 0.5) and not meets("joint-KL", 0.5051, "at_most", 0.5)


def test_a_diverged_or_missing_mean_misses_its_bound(tmp_path):
    results = {"diverged": [_run(32, 9.0, 0.1, math.nan)], "no probe": [{"objective": "elbo"}]}
    _, rows = targets_table(results, TARGETS)
    assert rows[0][-2:] == ["diverged missed", "3 of 4"]
    assert rows[1][-1] == "0 of 4" and rows[1][2] == "- missed"
    assert not meets("NLL", None, "at_most", 1.0) and not meets("MI", math.inf, "at_least", 0.0)
    write_targets(tmp_path, results, TARGETS)
    text = (tmp_path / "targets.md").read_text()
    assert "| diverged | 1 | 32.0 met |" in text and text.count("\n|") == 3


@pytest.mark.parametrize("targets, message", [
    ({}, "must be a table"),
    ([1], "must be a table"),
    ({"au": {"at_least": 1}}, "'au' is not a results column"),
    ({"AU": 16}, "AU must be {at_least = x} or {at_most = x}, got 16"),
    ({"AU": {"at_least": 1, "at_most": 2}}, "AU must be {at_least = x}"),
    ({"AU": {"above": 1}}, "AU must be {at_least = x}"),
    ({"AU": {"at_least": "16"}}, "AU at_least must be a finite number, got '16'"),
    ({"AU": {"at_least": True}}, "must be a finite number, got True"),
    ({"NLL": {"at_most": math.inf}}, "must be a finite number, got inf"),
])
def test_bad_targets_are_refused_by_name(targets, message):
    with pytest.raises(ValueError, match="x.toml: \\[targets\\]") as error:
        check_targets(targets, "x.toml: [targets]")
    assert message in str(error.value)
