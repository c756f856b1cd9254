"""Validation curves: the per-epoch hook, the picture, TensorBoard scalars, and a report rebuilt
from a run folder's small files alone."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from evaluation.curves import CURVE_QUANTITIES, CURVE_SYMLOG, curve_metrics, plot_curves, seed_band
from evaluation.latent_metrics import hole_metrics, mutual_information
from evaluation.split_posteriors import collect_posteriors, latent_prior
from inference.run import new_trainer
from inference.tensorboard import scalar_tag
from inference.trainer import TrainConfig
from pyro_textvae.cli import main
from pyro_textvae.io import read_jsonl
from tests.cli.test_experiment import CONFIG
from tests.conftest import SMALL
from tests.evaluation.test_plots import _legend_clear_of_panels

DATA = {"synthetic": {"num_train": 48, "num_valid": 24, "num_test": 8, "seed": 2}}


def test_the_hook_gives_mi_and_joint_kl_and_leaves_the_training_rng_alone(tiny_vae, tiny_corpus):
    split = tiny_corpus.splits["valid"]
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    values = curve_metrics(prior_samples=300, seed=2)(tiny_vae, split)
    assert torch.equal(torch.rand(3), expected_next)
    torch.manual_seed(2)
    posteriors = collect_posteriors(tiny_vae, split)
    mi = mutual_information(posteriors)
    joint = hole_metrics(posteriors, latent_prior(tiny_vae), 300, marginal=False)["joint_kl"]
    assert values == {"mi": mi, "joint_kl": joint, "joint_kl_prior_samples": 300}
    with pytest.raises(ValueError, match="integer >= 1"):
        curve_metrics(prior_samples=0)


def test_the_picture_shows_the_mean_over_seeds_and_their_range():
    histories = {"A": [[{"epoch": 1, "valid_mi": 1.0}, {"epoch": 2, "valid_mi": 3.0}],
                       [{"epoch": 1, "valid_mi": 3.0}, {"epoch": 2, "valid_mi": float("nan")}]],
                 "B": [[{"epoch": 1, "valid_mi": 0.5}]]}
    epochs, mean, low, high = seed_band(histories["A"], "valid_mi")
    assert epochs.tolist() == [1, 2] and mean.tolist() == [2.0, 3.0]
    assert low.tolist() == [1.0, 3.0] and high.tolist() == [3.0, 3.0]
    fig = Figure()
    assert plot_curves(histories, [("valid_mi", "MI")], fig=fig) is fig
    ax = fig.axes[0]
    assert [line.get_ydata().tolist() for line in ax.lines] == [[2.0, 3.0], [0.5]]
    (band,) = ax.collections  # one band: B has a single seed
    ys = band.get_paths()[0].vertices[:, 1]
    assert (ys.min(), ys.max()) == (1.0, 3.0)


def test_kl_panels_are_symlog_lines_differ_and_one_legend_sits_below_every_panel():
    history = [{"epoch": e, **{key: 0.05 * 10 ** (e / 2) for key, _ in CURVE_QUANTITIES}} for e in range(1, 5)]
    fig = plot_curves({f"method {i}": [history] for i in range(12)})
    assert [ax.get_yscale() for ax in fig.axes] == [
        "symlog" if key in CURVE_SYMLOG else "linear" for key, _ in CURVE_QUANTITIES]
    assert fig.axes[1].get_yaxis().get_transform().linthresh == 0.1
    [legend] = fig.legends
    assert len(legend.get_texts()) == 12 and all(ax.get_legend() is None for ax in fig.axes)
    looks = {(line.get_color(), line.get_linestyle()) for line in fig.axes[0].lines}
    assert len(looks) == 12  # twelve methods, twelve distinguishable lines
    assert _legend_clear_of_panels(fig, legend)


def test_a_one_epoch_picture_marks_its_points_with_readable_ticks_and_a_y_label_on_every_panel():
    """curves.png of a one-epoch experiment was five empty panels: one point drawn without a marker,
    x ticks 0.945 0.960 ... running together, and the symlog panels without a labelled y tick."""
    record = {"epoch": 1, "valid_elbo_loss": 50.5, "valid_kl": 3.6, "valid_mi": 2.1, "valid_active_units": 32,
              "valid_joint_kl": 0.4}
    fig = plot_curves({"VAE": [[record]], "DG-VAE": [[{**record, "valid_elbo_loss": 52.1, "valid_kl": 18.0}]]})
    fig.canvas.draw()
    for ax, (key, label) in zip(fig.axes, CURVE_QUANTITIES):
        assert ax.get_ylabel() == label, key
        assert all(line.get_marker() == "o" and len(line.get_xdata()) == 1 for line in ax.lines), key
        low, high = ax.get_xlim()
        assert [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high] == ["1"], key
        low, high = ax.get_ylim()
        shown = [t.get_text() for t in ax.get_yticklabels() if t.get_text() and low <= t.get_position()[1] <= high]
        assert len(shown) >= 2 and not any("10^" in text for text in shown), key


def test_long_curves_keep_plain_lines():
    history = [{"epoch": e, "valid_mi": 1.0 + e} for e in range(1, 41)]
    ax = plot_curves({"VAE": [history]}, [("valid_mi", "MI")]).axes[0]
    assert ax.lines[0].get_marker() in ("None", None, "") and ax.get_xlim() == (0.5, 40.5)


def test_metrics_jsonl_and_tensorboard_hold_the_curves(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(epochs=2, batch_size=16, optimizer="adam", progress=False)
    trainer = new_trainer(tmp_path / "run", DATA, SMALL, "elbo", {"warmup_epochs": 1}, config)
    trainer.epoch_metrics.append(curve_metrics(prior_samples=200))
    trainer.fit()
    history = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert all(np.isfinite(r["valid_mi"]) and np.isfinite(r["valid_joint_kl"]) for r in history)
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    for key in ("valid_mi", "valid_joint_kl", "valid_elbo_loss", "train_loss", "lr"):
        scalars = events.Scalars(scalar_tag(key))
        assert [s.step for s in scalars] == [1, 2]
        assert [s.value for s in scalars] == pytest.approx([r[key] for r in history], rel=1e-6)


def test_a_report_is_rebuilt_from_the_small_files_alone(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    assert main(["experiment", str(config), "--no-progress"]) == 0
    source = tmp_path / "results"
    copy = tmp_path / "committed"
    for run in (source / "runs").iterdir():
        (copy / "runs" / run.name).mkdir(parents=True)
        for name in ("config.json", "metrics.jsonl", "eval.json"):
            shutil.copy(run / name, copy / "runs" / run.name / name)
    capsys.readouterr()
    assert main(["experiment", str(config), "--report-only", "--out", str(copy)]) == 0
    assert (copy / "results.md").read_text() == (source / "results.md").read_text()
    assert (copy / "results.csv").read_text() == (source / "results.csv").read_text()
    assert (copy / "training.md").read_text() == (source / "training.md").read_text()
    rows = [line.strip("| ").split(" | ") for line in (copy / "training.md").read_text().splitlines()[2:]]
    assert len(rows) == 2 and all(
        int(epochs) == len(read_jsonl(source / "runs" / f"{method}-seed{seed}" / "metrics.jsonl"))
        for method, seed, epochs, *_ in rows)
    assert (copy / "curves.png").stat().st_size > 0 and (copy / "mi_vs_joint_kl.png").exists()
    assert not (copy / "holes.png").exists()
    assert "no best.pt for ['VAE', 'DG-VAE']; left out of the hole pictures" in capsys.readouterr().err
    assert {p.name for p in (copy / "runs" / "VAE-seed0").iterdir()} == {"config.json", "metrics.jsonl", "eval.json"}
    table = (copy / "results.md").read_text()
    metrics = copy / "runs" / "VAE-seed0" / "metrics.jsonl"
    first, *rest = metrics.read_text().splitlines(keepends=True)
    metrics.write_text(first.replace('"epoch": 1', '"epoch": 7') + "".join(rest))
    assert main(["experiment", str(config), "--report-only", "--out", str(copy)]) == 2
    err = capsys.readouterr().err
    assert f"{metrics}:1: not the line of epoch 1" in err and "Traceback" not in err
    assert (copy / "results.md").read_text() == table
