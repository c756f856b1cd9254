"""Metrics against a parameter: each point is its row's mean (and spread over seeds) of the results.csv,
in order of the value, drawn where it is; a row, column or value that cannot be plotted is refused."""
from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from evaluation.sweep import plot_sweep, read_sweep
from evaluation.tables import write_results


def _evaluation(mi: float, au: float, joint_kl: float, nll: float) -> dict:
    return {"objective": "dg", "mi": mi, "active_units": {"au": au}, "holes": {"joint_kl": joint_kl},
            "likelihood": {"nll": nll}}


@pytest.fixture
def results_csv(tmp_path):
    write_results(tmp_path, {
        "DG-VAE": [_evaluation(8.2, 32, 27.6, 50.5), _evaluation(7.8, 31, 25.0, 49.5)],
        "DG-VAE b=1": [_evaluation(0.0, 0, 0.01, 41.3)],
        "DG-VAE b=4": [_evaluation(1.5, 12, 0.4, 41.0)],
    })
    return tmp_path / "results.csv"


def test_the_points_are_the_rows_means_in_order_of_the_value(results_csv):
    sweep = read_sweep(results_csv, [(32, "DG-VAE"), (1, "DG-VAE b=1"), (4, "DG-VAE b=4")])
    assert sweep["value"].tolist() == [1, 4, 32] and sweep["seeds"].tolist() == [1, 1, 2]
    assert sweep["MI"].tolist() == pytest.approx([0.0, 1.5, 8.0])
    assert sweep["joint-KL"].tolist() == pytest.approx([0.01, 0.4, 26.3])
    assert sweep["NLL std"][2] == pytest.approx(statistics.stdev([50.5, 49.5]))
    assert np.isnan(sweep["AU std"][:2]).all()


@pytest.mark.parametrize(("points", "columns", "message"), [
    ([(1, "DG-VAE b=1"), (2, "DG-VAE b=2")], ("MI",), r"no method\(s\) \['DG-VAE b=2'\]"),
    ([(1, "DG-VAE b=1")], ("MI", "BLEU"), r"no column\(s\) \['BLEU'\]"),
    ([(0, "DG-VAE b=1")], ("MI",), "positive and distinct"),
    ([(4, "DG-VAE b=1"), (4, "DG-VAE b=4")], ("MI",), "positive and distinct"),
    ([], ("MI",), "positive and distinct"),
])
def test_a_point_that_cannot_be_plotted_is_refused_naming_the_file(results_csv, points, columns, message):
    with pytest.raises(ValueError, match=f"results.csv: .*{message}"):
        read_sweep(results_csv, points, columns)


def test_each_panel_draws_its_metric_at_the_values_with_the_spread_where_there_is_one(results_csv):
    sweep = read_sweep(results_csv, [(1, "DG-VAE b=1"), (4, "DG-VAE b=4"), (32, "DG-VAE")])
    figure = plot_sweep(sweep, ("MI", "NLL"), parameter="b")
    axes = figure.axes
    assert [ax.get_title() for ax in axes] == ["MI", "NLL"]
    for ax, column in zip(axes, ("MI", "NLL")):
        line = ax.get_lines()[0]
        assert line.get_xdata().tolist() == [1, 4, 32]
        assert line.get_ydata().tolist() == pytest.approx(sweep[column].tolist())
        assert [tick.get_text() for tick in ax.get_xticklabels()] == ["1", "4", "32"]
        assert ax.get_xscale() == "log" and ax.get_xlabel() == "b"
    segments = [s for c in axes[1].collections for s in c.get_segments() if len(s)]
    assert len(segments) == 1  # the two-seed row alone has a spread
    (x, low), (_, high) = segments[0]
    assert x == 32 and (high - low) / 2 == pytest.approx(statistics.stdev([50.5, 49.5]))
    single = plot_sweep(read_sweep(results_csv, [(1, "DG-VAE b=1"), (4, "DG-VAE b=4")], ("MI",)), ("MI",))
    assert not [s for c in single.axes[0].collections for s in c.get_segments() if len(s)]
    assert math.isclose(single.get_size_inches()[0], 10.0)
