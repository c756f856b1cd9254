"""Pictures: each writes a PNG of figsize x dpi pixels and draws the data it is given (points, bar
heights, densities, sentence labels); the explore and toy commands write every file."""

import argparse
import dataclasses
import json
import math
import shutil
import struct

import arviz as az
import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.transforms import Bbox

from evaluation.arviz_data import (
    NETCDF_NAME,
    SplitPosteriors,
    dimension_statistics,
    encode_split,
    load_inference_data,
    to_inference_data,
)
from evaluation.plots import (
    aggregate_density_grid,
    most_active_dims,
    plot_dimension_bars,
    plot_hole_comparison,
    plot_hole_picture,
    plot_length_ppc,
    plot_sentence_forest,
    plot_sentence_posteriors,
    plot_toy_grid,
    prior_radii,
    save_figure,
    shared_active_dims,
)
from evaluation.sentence_plots import PPC_NAMES
from evaluation.toy import (
    TOY_KL_COLUMNS,
    ToyConfig,
    ToyRun,
    ToySnapshot,
    aggregate_log_density,
    toy_kl_records,
    train_toy_objectives,
)
from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.cli.explore import EXPLORE_CONFIG, add_explore_commands
from pyro_textvae.cli.toy import add_toy_command
from pyro_textvae.io import CheckpointError
from pyro_textvae.run_folder import open_run
from tests.conftest import SMALL


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


def test_shared_active_dims_sums_each_runs_relative_activity():
    """Run a: variances (4, 1, 0, 2) -> relative (1, .25, 0, .5); run b: (0, 9, 0, 9) -> (0, 1, 0, 1);
    a collapsed run (variances below 0.01) is left out: the sums (1, 1.25, 0, 1.5) pick dims 3 and 1."""
    rng = np.random.default_rng(0)

    def centers(variances):
        z = rng.normal(size=(400, 4))
        z = (z - z.mean(0)) / z.std(0)
        return z * np.sqrt(variances)

    runs = [centers([4.0, 1.0, 0.0, 2.0]), centers([0.0, 9.0, 0.0, 9.0]), centers([0.009, 0.0, 0.0, 0.0])]
    assert shared_active_dims(runs) == [3, 1]
    assert shared_active_dims(runs[2:]) == [0, 1]  # no run active: all runs count
    with pytest.raises(ValueError, match="one d"):
        shared_active_dims([np.zeros((3, 4)), np.zeros((3, 5))])


def test_aggregate_density_grid_is_the_mixture_of_the_posteriors_marginals():
    posteriors = _posteriors(n=5)
    axis = np.linspace(-3.0, 3.0, 13)
    density = aggregate_density_grid(posteriors, [2, 0], axis)
    g, h = 4, 9  # z[0] = axis[g] (row), z[2] = axis[h] (column)
    expected = np.mean([math.exp(-0.5 * ((axis[h] - c[2]) / s[2]) ** 2 - 0.5 * ((axis[g] - c[0]) / s[0]) ** 2)
                        / (2 * math.pi * s[0] * s[2]) for c, s in zip(posteriors.center, posteriors.scale)])
    assert density[g, h] == pytest.approx(expected, rel=1e-12)
    wide = np.linspace(-12.0, 12.0, 241)
    assert aggregate_density_grid(posteriors, [2, 0], wide).sum() * 0.1**2 == pytest.approx(1.0, abs=1e-3)
    histogram = aggregate_density_grid(posteriors, [2, 0], axis, point="center")
    c = posteriors.center[0]
    cell = (np.abs(axis - c[0]).argmin(), np.abs(axis - c[2]).argmin())
    assert histogram[cell] >= 1 / (5 * 0.5**2)  # a fifth of the mass in one cell of 0.5 x 0.5
    assert histogram.sum() * 0.5**2 == pytest.approx(1.0)
    with pytest.raises(ValueError, match="point"):
        aggregate_density_grid(posteriors, [2, 0], axis, point="mode")


def _legend_clear_of_panels(fig, legend):
    """The legend's box overlaps no panel's box with its ticks and axis labels (so neither data,
    the circle labels nor the x label)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    box = legend.get_window_extent(renderer)
    parts = [[ax.get_window_extent(renderer), ax.xaxis.get_tightbbox(renderer),
              ax.yaxis.get_tightbbox(renderer)] for ax in fig.axes]
    panels = [Bbox.union([box for box in boxes if box is not None]) for boxes in parts]
    return all(not box.overlaps(panel) for panel in panels)


@pytest.mark.parametrize("labels", [True, False])
def test_hole_picture_shows_the_aggregate_density_label_contours_and_an_outside_legend(tmp_path, labels):
    posteriors = _posteriors(labels)
    names = {"c0": "negative", "c1": "positive"}
    ax = plot_hole_picture(posteriors, label_names=names, figsize=(6, 4))
    save_figure(ax.figure, tmp_path / "hole.png", dpi=50)
    assert png_size(tmp_path / "hole.png") == (300, 200)
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("z[2]", "z[0]")
    [image] = ax.images
    low, high = ax.get_xlim()
    axis = np.linspace(low, high, image.get_array().shape[0])
    np.testing.assert_allclose(image.get_array(), aggregate_density_grid(posteriors, [2, 0], axis))
    legend = ax.get_legend()
    texts = [t.get_text() for t in legend.get_texts()]
    assert texts[0].startswith("p(z)")
    assert texts[1:] == (["negative: 50% of its q_D", "positive: 50% of its q_D", "c2: 50% of its q_D"]
                         if labels else [])
    assert _legend_clear_of_panels(ax.figure, legend)
    centers = plot_hole_picture(posteriors, dims=[1, 3], point="center")
    assert (centers.get_xlabel(), centers.get_ylabel()) == ("z[1]", "z[3]")
    with pytest.raises(ValueError, match="dims"):
        plot_hole_picture(posteriors, dims=[1, 1])
    with pytest.raises(ValueError, match="point"):
        plot_hole_picture(posteriors, point="mode")


def test_hole_picture_leaves_a_hole_white():
    """Two clusters of narrow posteriors at (+-2, 0): the density is ~0 at the prior's center,
    where p(z) is largest, and the label contours sit around the clusters."""
    n = 40
    center = np.zeros((n, 2))
    center[:, 0] = np.where(np.arange(n) % 2 == 0, -2.0, 2.0)
    posteriors = SplitPosteriors(center=center, scale=np.full((n, 2), 0.2), draw=center.copy(),
                                 labels=["0" if i % 2 == 0 else "1" for i in range(n)], family="normal")
    ax = plot_hole_picture(posteriors, dims=[0, 1])
    density = ax.images[0].get_array()
    middle = density.shape[0] // 2
    assert density[middle, middle] < 1e-12 < density.max()
    for contour, side in zip(ax.collections, (-2.0, 2.0)):
        vertices = np.concatenate([path.vertices for path in contour.get_paths()])
        assert np.all(np.abs(vertices[:, 0] - side) < 0.5)


@pytest.mark.parametrize("family", ["normal", "vmf"])
def test_hole_picture_draws_the_prior_circles_of_the_family(family):
    posteriors = _posteriors()
    posteriors.family = family
    if family == "vmf":
        posteriors.scale = None
    ax = plot_hole_picture(posteriors)
    radii = [float(np.hypot(*line.get_xydata().T).mean()) for line in ax.lines]
    np.testing.assert_allclose(radii, prior_radii(family, 4), rtol=1e-6)


def test_hole_comparison_shows_the_same_dims_in_every_panel_and_one_legend_below(tmp_path):
    runs = [("a", _posteriors()), ("b", _posteriors(seed=1)), ("c", _posteriors(labels=False))]
    runs[1][1].center[:, 1] *= 40.0  # b's most active dimension alone would be 1
    fig = plot_hole_comparison(runs, panel_size=2.0)
    save_figure(fig, tmp_path / "cmp.png", dpi=40)
    width, height = png_size(tmp_path / "cmp.png")
    assert width == 240 and height > 80  # three 2-inch panels a row, plus room for the legend and title
    assert [ax.get_title() for ax in fig.axes] == ["a", "b", "c"]
    expected = shared_active_dims([p.center for _, p in runs])
    assert {(ax.get_xlabel(), ax.get_ylabel()) for ax in fig.axes} == {(f"z[{expected[0]}]", f"z[{expected[1]}]")}
    assert f"on z[{expected[0]}], z[{expected[1]}]\n(the same two dimensions in every panel" in fig.get_suptitle()
    [legend] = fig.legends
    assert _legend_clear_of_panels(fig, legend)
    chosen = plot_hole_comparison(runs, dims=[1, 3], panel_size=2.0, columns=2)
    assert len(chosen.axes) == 3 and {ax.get_xlabel() for ax in chosen.axes} == {"z[1]"}
    with pytest.raises(ValueError, match="at least one"):
        plot_hole_comparison([])
    with pytest.raises(ValueError, match="columns must be an integer >= 1"):
        plot_hole_comparison(runs, columns=0)


def test_hole_comparison_title_fits_a_single_narrow_panel():
    fig = plot_hole_comparison([("only", _posteriors())], panel_size=3.2)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    title = fig._suptitle.get_window_extent(canvas.get_renderer())
    frame = fig.bbox
    assert frame.x0 <= title.x0 and title.x1 <= frame.x1 and title.y1 <= frame.y1
    [panel] = fig.axes
    assert title.y0 >= panel.get_window_extent().y1  # above the panel, not over it


@pytest.mark.parametrize("panel_size", [2.0, 3.2])
def test_hole_comparison_rows_leave_room_for_the_titles_and_axis_labels(panel_size):
    runs = [(name, _posteriors(seed=seed)) for seed, name in enumerate(["a", "b", "c", "d", "e"])]
    fig = plot_hole_comparison(runs, panel_size=panel_size, columns=3)
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    top_row, bottom_row = fig.axes[:3], fig.axes[3:]
    lowest_label = min(ax.xaxis.get_tightbbox(renderer).y0 for ax in top_row)
    highest_title = max(ax.title.get_window_extent(renderer).y1 for ax in bottom_row)
    assert highest_title < lowest_label  # the second row's titles sit below the first row's x labels


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
    fig = plot_dimension_bars(stats, figsize=(6, 5))
    save_figure(fig, tmp_path / "bars.png", dpi=30)
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


def _span(rectangle):
    """(left, right) of an ``axvspan`` rectangle."""
    return rectangle.get_x(), rectangle.get_x() + rectangle.get_width()


def test_sentence_posteriors_have_a_legend_entry_for_q_and_p_a_y_axis_and_no_text_on_the_curves(idata, tmp_path):
    fig = plot_sentence_posteriors(idata, max_sentences=3, figsize=(6, 4))
    save_figure(fig, tmp_path / "post.png", dpi=40)
    assert png_size(tmp_path / "post.png") == (240, 160)
    texts = idata.posterior["sentence_text"].values[:3]
    assert len(fig.axes) == 3
    [legend] = fig.legends
    assert [t.get_text() for t in legend.get_texts()] == [
        "q(z|x) (KDE of its draws)", "94% HDI of q(z|x)", "p(z) (histogram of its draws)"]
    assert _legend_clear_of_panels(fig, legend)
    k = int(fig.get_suptitle().split("z[")[1].split("]")[0])
    for ax, text, sentence in zip(fig.axes, texts, idata.posterior["sentence"].values):
        assert text[:20] in ax.get_title() and ax.get_ylabel() == "density" and ax.get_xlabel() == f"z[{k}]"
        assert ax.yaxis.get_visible() and len(ax.get_yticks()) >= 2
        assert len(ax.texts) == 0
        draws = idata.posterior["z"].sel(sentence=sentence, latent_dim=k).values.ravel()
        [band] = [p for p in ax.patches if p.get_alpha() == pytest.approx(0.15)]
        np.testing.assert_allclose(_span(band), az.hdi(draws, hdi_prob=0.94))
    with pytest.raises(ValueError, match="latent_dim"):
        plot_sentence_posteriors(idata, latent_dim=99)
    with pytest.raises(ValueError, match="max_sentences"):
        plot_sentence_posteriors(idata, max_sentences=0)


def _forest_rows(ax):
    """{y: (HDI low, Q1, median, Q3, HDI high)} of a forest panel: per row a thin line (the HDI), a
    thick one (the quartiles) and a marker (the median)."""
    rows = {}
    for line in ax.lines:
        x, y = line.get_xdata(), line.get_ydata()
        rows.setdefault(float(y[0]), {})[len(x) if line.get_linewidth() < 2 else "thick"] = x
    return {y: (p[2][0], p["thick"][0], p[1][0], p["thick"][1], p[2][1]) for y, p in rows.items()}


def test_sentence_forest_has_a_row_per_sentence_the_prior_once_and_plain_labels(idata, tmp_path):
    fig = plot_sentence_forest(idata, latent_dims=[1, 2])
    save_figure(fig, tmp_path / "forest.png", dpi=40)
    texts = idata.posterior["sentence_text"].values
    assert len(fig.axes) == 2
    labels = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert labels == [str(t)[:45] if len(t) <= 45 else str(t)[:42] + "..." for t in texts]
    for ax, k in zip(fig.axes, (1, 2)):
        assert ax.get_xlabel() == f"z[{k}]"
        rows = _forest_rows(ax)
        assert len(rows) == len(texts)
        for index, y in enumerate(sorted(rows, reverse=True)):
            draws = idata.posterior["z"].isel(sentence=index).sel(latent_dim=k).values.ravel()
            q1, median, q3 = np.percentile(draws, [25, 50, 75])
            low, high = az.hdi(draws, hdi_prob=0.94)
            np.testing.assert_allclose(rows[y], (low, q1, median, q3, high), rtol=1e-6)
        [band] = ax.patches  # the prior's interval, drawn once
        prior = idata.prior["z"].sel(latent_dim=k).values.ravel()
        np.testing.assert_allclose(_span(band), az.hdi(prior, hdi_prob=0.94))
    [legend] = fig.legends
    assert _legend_clear_of_panels(fig, legend)
    with pytest.raises(ValueError, match="latent_dims"):
        plot_sentence_forest(idata, latent_dims=[99])


def test_length_ppc_plots_observed_and_prior_predictive_with_a_y_axis_and_named_legend(idata, tmp_path):
    """Every step line is a histogram density: its ``y[1:]`` is the density of the data on its edges
    ``x``. The observed line is that of ``observed_data["length"]``, the dashed mean that of every
    prior-predictive length, and each thin curve that of one prior-predictive draw."""
    rng = np.random.default_rng(0)
    predictive = idata.prior_predictive["length"]
    predictive.values[...] = rng.integers(1, 15, size=predictive.shape)
    ax = plot_length_ppc(idata, figsize=(5, 3))
    save_figure(ax.figure, tmp_path / "ppc.png", dpi=40)
    assert png_size(tmp_path / "ppc.png") == (200, 120)
    lines = {line.get_label(): line for line in ax.lines}

    def assert_histogram_of(line, values):
        edges, density = line.get_xdata(), line.get_ydata()
        assert edges[0] <= values.min() and values.max() <= edges[-1] and density[0] == density[1]
        np.testing.assert_allclose(density[1:], np.histogram(values, bins=edges, density=True)[0])

    assert_histogram_of(lines["Observed"], idata.observed_data["length"].values)
    assert_histogram_of(lines["Prior predictive mean"], predictive.values.ravel())
    draws = predictive.values.reshape(-1, predictive.sizes["sentence"])
    curves = [line for line in ax.lines if line.get_label().startswith("_child")]
    assert len(curves) == len(draws)
    for curve in curves:
        edges, density = curve.get_xdata(), curve.get_ydata()
        assert any(edges[0] <= draw.min() and draw.max() <= edges[-1]
                   and np.allclose(density[1:], np.histogram(draw, bins=edges, density=True)[0]) for draw in draws)
    assert ax.get_ylabel() and ax.yaxis.get_visible()
    assert len([t for t in ax.get_yticklabels() if t.get_text()]) >= 2
    legend = ax.get_legend()
    n, total = predictive.sizes["sentence"], len(draws)  # the sentences drawn, not "the split"
    assert sorted(t.get_text() for t in legend.get_texts()) == sorted(name.format(n=n) for name in PPC_NAMES.values())
    assert f"the {n} chosen sentences of the split" in [t.get_text() for t in legend.get_texts()]
    assert ax.get_title().endswith(f"{total} x {n} decoded prior samples vs {n} sentences of the split")
    assert min(t.get_fontsize() for t in legend.get_texts()) >= 9
    default = plot_length_ppc(idata)  # at its default size the legend fits beside the axes
    assert _legend_clear_of_panels(default.figure, default.get_legend())


def test_toy_grid_shows_the_aggregated_posterior_density(tmp_path):
    rng = np.random.default_rng(0)
    snapshots = [ToySnapshot(s, rng.normal(size=(6, 2)), rng.uniform(0.3, 1.0, size=(6, 2))) for s in (0, 5, 10)]
    runs = {"x": ToyRun("x", np.zeros(6), snapshots), "y": ToyRun("y", np.zeros(6), snapshots[:2])}
    fig = plot_toy_grid(runs, limit=3.0, points=31, panel_size=2.0)
    save_figure(fig, tmp_path / "toy.png", dpi=30)
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
    commands = parser.add_subparsers(dest="command", required=True)
    add_explore_commands(commands)
    add_toy_command(commands)
    return parser


def _quick_run(path, objective):
    data = {"synthetic": {"num_train": 48, "num_valid": 16, "num_test": 16, "seed": 1}}
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False)
    new_trainer(path, data, SMALL, objective, {}, config).fit()
    return path


@pytest.mark.slow
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
    assert png_size(tmp_path / "one" / "hole.png") == (150, 100)
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
        "point": "draw", "label_names": None, "prior_samples": 500, "checkpoint": "best", "device": "cpu", "dpi": 20,
        "seed": 0}
    assert len((tmp_path / "one" / "summary.csv").read_text().splitlines()) == 1 + 3 * SMALL["latent_dim"]

    args = parser.parse_args(["explore", str(first), str(second), "--out", str(tmp_path / "two"), "--sentences",
                              "2", "--draws", "3", "--prior-samples", "200", "--dpi", "20", "--dims", "0,1",
                              "--label-names", "topic0-pos=first, topic1-neg = second"])
    args.func(args)
    assert png_size(tmp_path / "two" / "hole_comparison.png")[0] == 128  # two panels of 3.2 inches
    options = json.loads((tmp_path / "two" / EXPLORE_CONFIG).read_text())
    assert options["runs"] == [str(first.resolve()), str(second.resolve())] and options["dims"] == [0, 1]
    assert options["label_names"] == {"topic0-pos": "first", "topic1-neg": "second"}
    assert (tmp_path / "two" / "elbo" / "hole.png").is_file() and (tmp_path / "two" / "copy" / "forest.png").is_file()

    with pytest.raises(SystemExit):
        parser.parse_args(["explore", str(first), "--out", str(tmp_path / "x"), "--draws", "0"])
    with pytest.raises(CheckpointError):
        args = parser.parse_args(["explore", str(tmp_path / "missing"), "--out", str(tmp_path / "x")])
        args.func(args)
    with pytest.raises(SystemExit):
        parser.parse_args(["explore", str(first), "--out", "x", "--dims", "0"])
    with pytest.raises(SystemExit):
        parser.parse_args(["explore", str(first), "--out", "x", "--label-names", "0=negative,1"])


@pytest.mark.slow
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
