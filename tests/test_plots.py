"""Pictures: each writes a PNG of figsize x dpi pixels and draws the data it is given (points, bar
heights, densities, sentence labels); the explore and toy commands write every file."""

import argparse
import dataclasses
import json
import math
import re
import shutil
import struct

import arviz as az
import numpy as np
import pytest
import torch

from evaluation.arviz_data import (
    NETCDF_NAME,
    SplitPosteriors,
    dimension_statistics,
    encode_split,
    load_inference_data,
    to_inference_data,
)
from evaluation.explore_command import EXPLORE_CONFIG, add_explore_commands
from evaluation.plots import (
    most_active_dims,
    plot_dimension_bars,
    plot_hole_comparison,
    plot_hole_picture,
    plot_length_ppc,
    plot_sentence_forest,
    plot_sentence_posteriors,
    plot_toy_grid,
    prior_radii,
)
from evaluation.toy import (
    TOY_KL_COLUMNS,
    ToyConfig,
    ToyRun,
    ToySnapshot,
    aggregate_log_density,
    toy_kl_records,
    train_toy_objectives,
)
from inference.run import new_trainer, open_run
from inference.trainer import TrainConfig
from pyro_textvae.io import CheckpointError

from .conftest import SMALL


def png_size(path):
    """(width, height) from the PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", data[16:24])


def _posteriors(labels=True, n=60, d=4, seed=0):
    rng = np.random.default_rng(seed)
    center = rng.normal(size=(n, d)) * np.array([0.5, 0.1, 2.0, 0.2])[:d]
    return SplitPosteriors(
        center=center,
        scale=np.full((n, d), 0.5),
        draw=center + 0.5 * rng.normal(size=(n, d)),
        labels=[f"c{i % 3}" for i in range(n)] if labels else None,
        family="normal",
    )


def test_most_active_dims_orders_by_variance_of_the_centers():
    assert most_active_dims(_posteriors().center) == [2, 0]
    with pytest.raises(ValueError):
        most_active_dims(np.zeros((5, 1)))


@pytest.mark.parametrize("labels", [True, False])
def test_hole_picture_scatters_one_point_per_sentence_on_the_chosen_dims(tmp_path, labels):
    posteriors = _posteriors(labels)
    fig = plot_hole_picture(posteriors, path=tmp_path / "hole.png", figsize=(4, 3), dpi=50)
    assert png_size(tmp_path / "hole.png") == (200, 150)
    points = np.concatenate([c.get_offsets() for c in fig.axes[0].collections])
    expected = posteriors.draw[:, [2, 0]]
    assert points.shape == expected.shape
    np.testing.assert_allclose(np.sort(points, 0), np.sort(expected, 0))
    assert len(fig.axes[0].collections) == (3 if labels else 1)
    centers = plot_hole_picture(posteriors, dims=[1, 3], point="center")
    points = np.concatenate([c.get_offsets() for c in centers.axes[0].collections])
    np.testing.assert_allclose(np.sort(points, 0), np.sort(posteriors.center[:, [1, 3]], 0))
    with pytest.raises(ValueError, match="dims"):
        plot_hole_picture(posteriors, dims=[1, 1])
    with pytest.raises(ValueError, match="point"):
        plot_hole_picture(posteriors, point="mode")


@pytest.mark.parametrize("family", ["normal", "vmf"])
def test_hole_picture_draws_the_prior_circles_of_the_family(family):
    posteriors = _posteriors()
    posteriors.family = family
    fig = plot_hole_picture(posteriors)
    radii = [float(np.hypot(*line.get_xydata().T).mean()) for line in fig.axes[0].lines]
    np.testing.assert_allclose(radii, prior_radii(family, 4), rtol=1e-6)


def test_hole_comparison_has_one_panel_per_run(tmp_path):
    runs = [("a", _posteriors()), ("b", _posteriors(seed=1)), ("c", _posteriors(labels=False))]
    fig = plot_hole_comparison(runs, path=tmp_path / "cmp.png", panel_size=2.0, dpi=40)
    assert png_size(tmp_path / "cmp.png") == (240, 80)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["a", "b", "c"]
    fig = plot_hole_comparison(runs, path=tmp_path / "grid.png", panel_size=2.0, dpi=40, columns=2)
    assert png_size(tmp_path / "grid.png") == (160, 160)
    assert [ax.get_title().split()[0] for ax in fig.axes] == ["a", "b", "c"]
    with pytest.raises(ValueError, match="at least one"):
        plot_hole_comparison([])
    with pytest.raises(ValueError, match="columns must be an int >= 1"):
        plot_hole_comparison(runs, columns=0)


@pytest.mark.parametrize("family, d", [("normal", 32), ("vmf", 3), ("vmf", 8)])
def test_prior_circles_hold_their_mass(family, d):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(200_000, d, generator=generator, dtype=torch.float64)
    if family == "vmf":
        z = z / z.norm(dim=-1, keepdim=True)
    radius = z[:, :2].norm(dim=-1).numpy()
    for r, mass in zip(prior_radii(family, d), (0.5, 0.9, 0.99)):
        # binomial standard error at most 0.0011
        assert np.mean(radius <= r) == pytest.approx(mass, abs=0.006)
    assert prior_radii("vmf", 2) == [1.0]


def _bar_heights(ax):
    return np.array([patch.get_height() for patch in ax.patches])


def test_dimension_bars_draw_the_statistics(tmp_path):
    stats = {"kl": np.array([0.5, 0.0, 2.0]), "mean_variance": np.array([0.1, 0.02, 1.0]),
             "marginal_kl": np.array([0.0, 0.3, 0.01])}
    fig = plot_dimension_bars(stats, path=tmp_path / "bars.png", figsize=(6, 5), dpi=30)
    assert png_size(tmp_path / "bars.png") == (180, 150)
    for ax, key in zip(fig.axes, ("kl", "mean_variance", "marginal_kl")):
        np.testing.assert_array_equal(_bar_heights(ax), stats[key])
    vmf = plot_dimension_bars({"kl": None, "mean_variance": stats["mean_variance"], "marginal_kl": None})
    assert "not defined" in vmf.axes[0].texts[0].get_text() and len(vmf.axes[0].patches) == 0
    with pytest.raises(ValueError, match="marginal_kl"):
        plot_dimension_bars({"kl": stats["kl"]})


def test_collapsed_model_bars_show_zero_kl_and_zero_variance(tiny_vae, tiny_corpus):
    """A guide that returns the prior: posterior head zeroed, so q(z|x) = N(0, I) for every x."""
    with torch.no_grad():
        tiny_vae.posterior.linear.weight.zero_()
        tiny_vae.posterior.linear.bias.zero_()
    stats = dimension_statistics(encode_split(tiny_vae, tiny_corpus), num_prior_samples=1000)
    fig = plot_dimension_bars(stats)
    np.testing.assert_array_equal(_bar_heights(fig.axes[0]), 0.0)
    np.testing.assert_array_equal(_bar_heights(fig.axes[1]), 0.0)
    np.testing.assert_allclose(_bar_heights(fig.axes[2]), 0.0, atol=1e-9)


@pytest.fixture
def idata(tiny_vae, tiny_corpus):
    return to_inference_data(tiny_vae, tiny_corpus, sentences=4, draws=30, chains=2, max_length=8)


def test_sentence_posteriors_plot_one_panel_per_sentence(idata, tmp_path):
    fig = plot_sentence_posteriors(idata, max_sentences=3, path=tmp_path / "post.png", figsize=(6, 4), dpi=40)
    assert png_size(tmp_path / "post.png") == (240, 160)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    texts = idata.posterior["sentence_text"].values[:3]
    assert len(visible) == 3
    for ax, text in zip(visible, texts):
        assert text[:20] in ax.get_title()
    with pytest.raises(ValueError, match="latent_dim"):
        plot_sentence_posteriors(idata, latent_dim=99)
    with pytest.raises(ValueError, match="max_sentences"):
        plot_sentence_posteriors(idata, max_sentences=0)


def _forest_rows(ax):
    """{(model, sentence label): (HDI low, Q1, median, Q3, HDI high)} of an ``az.plot_forest`` axis:
    per row a thin line (the HDI), a thick one (the quartiles) and a marker (the median)."""
    by_y = {}
    for collection in ax.collections:
        for segment in collection.get_segments():
            (low, y), (high, _) = segment
            by_y.setdefault(round(y, 6), []).append((collection.get_linewidth()[0], low, high))
    medians = {round(line.get_ydata()[0], 6): line.get_xdata()[0] for line in ax.lines}
    rows = {}
    for tick, label in zip(ax.get_yticks(), ax.get_yticklabels()):
        model, text = re.fullmatch(r"(q\(z\|x\)|p\(z\)): z?\[(.*?)(?:\.\.\.)?\]", label.get_text()).groups()
        (_, q1, q3), (_, low, high) = sorted(by_y[round(tick, 6)], reverse=True)
        rows[model, text] = (low, q1, medians[round(tick, 6)], q3, high)
    return rows


def test_sentence_forest_shows_each_sentences_hdi_quartiles_and_median(idata, tmp_path):
    fig = plot_sentence_forest(idata, latent_dims=[1], path=tmp_path / "forest.png", figsize=(5, 6), dpi=40)
    assert png_size(tmp_path / "forest.png") == (200, 240)
    rows = _forest_rows(fig.axes[0])
    texts = idata.posterior["sentence_text"].values
    assert len(rows) == 2 * len(texts)
    for (model, label), plotted in rows.items():
        [index] = [i for i, text in enumerate(texts) if text.startswith(label)]
        group = idata.posterior if model == "q(z|x)" else idata.prior
        draws = group["z"].isel(sentence=index).sel(latent_dim=1).values.ravel()
        q1, median, q3 = np.percentile(draws, [25, 50, 75])
        low, high = az.hdi(draws, hdi_prob=0.94)
        assert np.mean((draws >= low) & (draws <= high)) >= 0.94
        np.testing.assert_allclose(plotted, (low, q1, median, q3, high), rtol=1e-6)


def test_length_ppc_plots_observed_and_prior_predictive(idata, tmp_path):
    """Every step line is a histogram density: its ``y[1:]`` is the density of the data on its edges
    ``x``. The observed line is that of ``observed_data["length"]``, the dashed mean that of every
    prior-predictive length, and each thin curve that of one prior-predictive draw."""
    rng = np.random.default_rng(0)
    predictive = idata.prior_predictive["length"]
    predictive.values[...] = rng.integers(1, 15, size=predictive.shape)
    fig = plot_length_ppc(idata, path=tmp_path / "ppc.png", figsize=(5, 3), dpi=40)
    assert png_size(tmp_path / "ppc.png") == (200, 120)
    lines = {line.get_label(): line for line in fig.axes[0].lines}

    def assert_histogram_of(line, values):
        edges, density = line.get_xdata(), line.get_ydata()
        assert edges[0] <= values.min() and values.max() <= edges[-1] and density[0] == density[1]
        np.testing.assert_allclose(density[1:], np.histogram(values, bins=edges, density=True)[0])

    assert_histogram_of(lines["Observed"], idata.observed_data["length"].values)
    assert_histogram_of(lines["Prior predictive mean"], predictive.values.ravel())
    draws = predictive.values.reshape(-1, predictive.sizes["sentence"])
    curves = [line for line in fig.axes[0].lines if line.get_label().startswith("_child")]
    assert len(curves) == len(draws)
    for curve in curves:
        edges, density = curve.get_xdata(), curve.get_ydata()
        assert any(edges[0] <= draw.min() and draw.max() <= edges[-1]
                   and np.allclose(density[1:], np.histogram(draw, bins=edges, density=True)[0]) for draw in draws)


def test_toy_grid_shows_the_aggregated_posterior_density(tmp_path):
    rng = np.random.default_rng(0)
    snapshots = [ToySnapshot(s, rng.normal(size=(6, 2)), rng.uniform(0.3, 1.0, size=(6, 2))) for s in (0, 5, 10)]
    runs = {"x": ToyRun("x", np.zeros(6), snapshots), "y": ToyRun("y", np.zeros(6), snapshots[:2])}
    fig = plot_toy_grid(runs, limit=3.0, points=31, path=tmp_path / "toy.png", panel_size=2.0, dpi=30)
    assert png_size(tmp_path / "toy.png") == (180, 120)
    axes = np.array(fig.axes).reshape(2, 3)
    assert not axes[1, 2].get_visible()
    axis = np.linspace(-3, 3, 31)
    grid = np.stack(np.meshgrid(axis, axis), -1)
    expected = np.exp(aggregate_log_density(snapshots[1].loc, snapshots[1].scale, grid))
    np.testing.assert_allclose(axes[0, 1].images[0].get_array(), expected)
    assert axes[0, 1].get_title() == "step 5" and axes[1, 0].get_ylabel() == "y"


def _parser():
    parser = argparse.ArgumentParser()
    add_explore_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def _quick_run(path, objective):
    data = {"synthetic": {"num_train": 48, "num_valid": 16, "num_test": 16, "seed": 1}}
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False)
    new_trainer(path, data, SMALL, objective, {}, config).fit()
    return path


def test_explore_command_writes_every_picture_and_compares_runs(tmp_path):
    first = _quick_run(tmp_path / "elbo", "elbo")
    second = shutil.copytree(first, tmp_path / "copy")
    parser = _parser()
    args = parser.parse_args(["explore", str(first), "--out", str(tmp_path / "one"), "--sentences", "3",
                              "--draws", "5", "--prior-samples", "500", "--dpi", "20"])
    args.func(args)
    names = {"hole.png", "posteriors.png", "forest.png", "dimensions.png", "ppc_length.png", "summary.csv",
             "dimensions.csv"}
    assert names <= {p.name for p in (tmp_path / "one").iterdir()}
    assert png_size(tmp_path / "one" / "hole.png") == (100, 100)
    idata = load_inference_data(first / NETCDF_NAME)
    assert idata.posterior["z"].shape == (2, 5, 3, SMALL["latent_dim"])
    rows = (tmp_path / "one" / "dimensions.csv").read_text().splitlines()
    assert rows[0] == "latent_dim,kl,mean_variance,marginal_kl" and len(rows) == 1 + SMALL["latent_dim"]
    stats = dimension_statistics(encode_split(open_run(first), split="test", seed=0), num_prior_samples=500, seed=0)
    table = np.array([[float(v) for v in row.split(",")] for row in rows[1:]])
    np.testing.assert_array_equal(table[:, 0], np.arange(SMALL["latent_dim"]))
    for column, key in enumerate(("kl", "mean_variance", "marginal_kl"), start=1):
        np.testing.assert_allclose(table[:, column], stats[key], rtol=1e-12)
    assert json.loads((tmp_path / "one" / EXPLORE_CONFIG).read_text()) == {
        "runs": [str(first.resolve())], "split": "test", "sentences": 3, "draws": 5, "chains": 2, "dims": None,
        "point": "draw", "prior_samples": 500, "checkpoint": "best", "device": "cpu", "dpi": 20, "seed": 0}
    assert len((tmp_path / "one" / "summary.csv").read_text().splitlines()) == 1 + 3 * SMALL["latent_dim"]

    args = parser.parse_args(["explore", str(first), str(second), "--out", str(tmp_path / "two"), "--sentences",
                              "2", "--draws", "3", "--prior-samples", "200", "--dpi", "20", "--dims", "0,1"])
    args.func(args)
    assert png_size(tmp_path / "two" / "hole_comparison.png") == (160, 80)
    options = json.loads((tmp_path / "two" / EXPLORE_CONFIG).read_text())
    assert options["runs"] == [str(first.resolve()), str(second.resolve())] and options["dims"] == [0, 1]
    assert (tmp_path / "two" / "elbo" / "hole.png").is_file() and (tmp_path / "two" / "copy" / "forest.png").is_file()

    with pytest.raises(SystemExit):
        parser.parse_args(["explore", str(first), "--out", str(tmp_path / "x"), "--draws", "0"])
    with pytest.raises(CheckpointError):
        args = parser.parse_args(["explore", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["explore", str(first), "--out", "x", "--dims", "0"])


def test_toy_command_writes_the_grid_the_kl_table_its_config_and_metrics(tmp_path):
    args = _parser().parse_args(["toy", "--out", str(tmp_path), "--objectives", "elbo,ae", "--steps", "24",
                                 "--dpi", "20", "--seed", "2"])
    args.func(args)
    columns = 4  # steps 0, 2, 8, 24
    width, height = png_size(tmp_path / "toy_grid.png")
    assert (width, height) == (round(2.2 * columns * 20), round(2.2 * 2 * 20))
    rows = (tmp_path / "toy_kl.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * columns and rows[1].startswith("elbo,0,")
    assert math.isclose(float(rows[1].split(",")[2]), 0.0, abs_tol=1e-9)
    config = ToyConfig(steps=24, seed=2)
    expected = {"objectives": ["elbo", "ae"], "params": {"elbo": {}, "ae": {}}, "dpi": 20,
                **dataclasses.asdict(config)}
    assert json.loads((tmp_path / "config.json").read_text()) == json.loads(json.dumps(expected))
    metrics = json.loads((tmp_path / "metrics.json").read_text())["kl"]
    assert metrics == toy_kl_records(train_toy_objectives(("elbo", "ae"), config))
    assert [[record[key] for key in TOY_KL_COLUMNS] for record in metrics] == [
        [name, int(step), float(kl), float(reverse)] for name, step, kl, reverse in (r.split(",") for r in rows[1:])]
    with pytest.raises(ValueError, match="unknown objective"):
        args = _parser().parse_args(["toy", "--out", str(tmp_path), "--objectives", "nope"])
        args.func(args)
    with pytest.raises(SystemExit):
        _parser().parse_args(["toy", "--out", str(tmp_path), "--steps", "0"])
