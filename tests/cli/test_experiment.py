"""A miniature of the paper's comparison: two objectives, the synthetic corpus, one epoch."""
from __future__ import annotations

import csv
import importlib.util
import itertools
import re
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from evaluation.scatter import plot_collapse_against_holes
from evaluation.tables import COLUMNS, write_results
from pyro_textvae.cli import main
from pyro_textvae.cli.experiment_file import load_experiment
from pyro_textvae.io import load_json
from pyro_textvae.lock import FolderLock

CONFIG = """
out = "results"
seeds = [0]
[data]
synthetic = {num_train = 64, num_valid = 16, num_test = 24, seed = 4}
[model]
embed_dim = 8
hidden_dim = 16
latent_dim = 3
[train]
epochs = 1
batch_size = 16
optimizer = "adam"
[evaluate]
iw_samples = 4
prior_samples = 400
num_generate = 8
num_interpolations = 2
[targets]
AU = {at_least = 1}
NLL = {at_most = 1000}
[[methods]]
name = "VAE"
objective = "elbo"
[[methods]]
name = "DG-VAE"
objective = "dg"
params = {num_samples = 4}
"""


def _png_size(path):
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n"
    return struct.unpack(">II", header[16:24])


@pytest.mark.slow
def test_miniature_experiment_fills_every_column_and_draws_the_scatter(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    assert main(["experiment", str(config), "--no-progress"]) == 0
    out = tmp_path / "results"
    assert (out / "experiment.toml").read_bytes() == config.read_bytes()
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == ["VAE", "DG-VAE"]
    for row in rows:
        for name, _ in COLUMNS:
            assert row[f"{name} mean"] != "", (row["method"], name)
    assert _png_size(out / "mi_vs_joint_kl.png") == (1000, 450)
    assert _png_size(out / "holes.png")[0] > 0
    targets = (out / "targets.md").read_text().splitlines()
    assert targets[0] == "| method | seeds | AU ≥ 1 | NLL ≤ 1000 | met |"
    for row, line in zip(rows, targets[2:4]):
        au = float(row["AU mean"])
        assert line == (f"| {row['method']} | 1 | {au:.1f} {'met' if au >= 1 else 'missed'} | "
                        f"{float(row['NLL mean']):.2f} met | {1 + (au >= 1)} of 2 |")
    table = (out / "results.md").read_text()
    assert table in capsys.readouterr().out and "DG-VAE" in table
    before = (out / "runs" / "VAE-seed0" / "eval.json").stat().st_mtime_ns
    assert main(["experiment", str(config), "--no-progress"]) == 0
    assert (out / "runs" / "VAE-seed0" / "eval.json").stat().st_mtime_ns == before
    (out / "results.csv").unlink()
    assert main(["experiment", str(config), "--report-only"]) == 0
    with open(out / "results.csv") as handle:
        assert list(csv.DictReader(handle)) == rows


@pytest.mark.parametrize(
    "text, message",
    [("seeds = [0]", "[[methods]]"), ("colour = 1\n[[methods]]\nname='a'\nobjective='elbo'", "unknown section"),
     ("[[methods]]\nname='a'\nobjective='elbo'\n[[methods]]\nname='a'\nobjective='dg'", "unique"),
     ("seeds = [", "not valid TOML"),
     ("[[methods]]\nname='a'\nobjective='elbo'\nparam={beta=1}", "method 'a' has unknown key(s) ['param']"),
     ("[[methods]]\nname='a'\nobjective='dgvae'", "method 'a': unknown objective 'dgvae'"),
     ("[[methods]]\nname='a'\nobjective='dg'\nparams={mdoe='joint'}", "objective 'dg' has no parameter 'mdoe'"),
     ("[train]\nepoch=3\n[[methods]]\nname='a'\nobjective='elbo'", "method 'a': [train]: unknown option(s) ['epoch']"),
     ("[[methods]]\nname='a'\nobjective='elbo'\nmodel={latent_dim='8'}", "[model]: option latent_dim must be int"),
     ("[[methods]]\nname='a'\nobjective='elbo'\ntrain=3", "method 'a': train must be a table"),
     ("[model]\ninit='xavier'\n[[methods]]\nname='a'\nobjective='elbo'", "model option init must be one of"),
     ("[model]\nlinear_bias='no'\n[[methods]]\nname='a'\nobjective='elbo'", "option linear_bias must be bool or"),
     ("[evaluate]\niw_sample=3\n[[methods]]\nname='a'\nobjective='elbo'",
      "[evaluate]: unknown evaluation option(s) ['iw_sample']"),
     ("[evaluate]\nseed=3\n[[methods]]\nname='a'\nobjective='elbo'", "[evaluate]: seed and checkpoint are"),
     ("[evaluate]\ndevice='cpu'\n[[methods]]\nname='a'\nobjective='elbo'", "unknown evaluation option(s) ['device']"),
     ("[data]\npth='corpus'\nmin_cnt=3\n[[methods]]\nname='a'\nobjective='elbo'",
      "bad.toml: [data]: unknown key(s) ['min_cnt', 'pth']; valid: ['labels', 'max_length', 'max_vocab', 'min_count'"),
     ("[data]\nmin_count=0\n[[methods]]\nname='a'\nobjective='elbo'", "[data]: min_count must be an integer >= 1"),
     ("[plots]\nlabel_name={0='negative'}\n[[methods]]\nname='a'\nobjective='elbo'", "[plots] takes only label_names"),
     ("[targets]\nau={at_least=1}\n[[methods]]\nname='a'\nobjective='elbo'",
      "bad.toml: [targets]: 'au' is not a results column"),
     ("[plots]\nlabel_names={0=1}\n[[methods]]\nname='a'\nobjective='elbo'", "[plots] label_names must map labels")],
)
def test_bad_experiment_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_experiment(path)


def test_seeds_run_apart_and_the_table_joins_them(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG.split("[[methods]]")[0] + '[[methods]]\nname = "VAE"\nobjective = "elbo"\n')
    out = tmp_path / "results"
    assert main(["experiment", str(config), "--no-progress", "--seed", "1"]) == 0
    assert not (out / "runs" / "VAE-seed0").exists()
    with open(out / "results.csv") as handle:
        assert [row["seeds"] for row in csv.DictReader(handle)] == ["1"]
    capsys.readouterr()
    assert main(["experiment", str(config), "--no-progress", "--seed", "1"]) == 0
    skipped = [line for line in capsys.readouterr().out.splitlines() if "skipped" in line]
    run = out / "runs" / "VAE-seed1"
    assert skipped == [f"VAE seed 1: trained and evaluated with the file's settings, skipped ({run})"]
    assert main(["experiment", str(config), "--no-progress"]) == 0
    assert main(["experiment", str(config), "--report-only", "--seed", "1"]) == 0
    with open(out / "results.csv") as handle:
        (row,) = csv.DictReader(handle)
    nll = [load_json(out / "runs" / f"VAE-seed{s}" / "eval.json")["likelihood"]["nll"] for s in (0, 1)]
    assert row["seeds"] == "2" and nll[0] != nll[1]
    assert float(row["NLL mean"]) == pytest.approx(statistics.fmean(nll))
    assert float(row["NLL std"]) == pytest.approx(statistics.stdev(nll))


def test_two_seeds_run_at_once_into_one_results_folder(tmp_path):
    """README's seeds side by side: `experiment FILE --seed 0 &` and `--seed 1 &` into one results folder.
    Each run folder is locked while it trains and is evaluated; the results folder only while a process
    writes its files, so both finish (started while the folder is busy, they wait for it), and the
    table then joins both seeds."""
    config = tmp_path / "mini.toml"
    head = CONFIG.split("[[methods]]")[0].replace("seeds = [0]", "seeds = [0, 1]")
    config.write_text(head + '[[methods]]\nname = "VAE"\nobjective = "elbo"\n')
    out = tmp_path / "results"
    out.mkdir()
    (out / ".results.md.k1ll3d.tmp").write_text("half a table")  # a report killed halfway
    with FolderLock(out):  # busy when both start
        processes = [subprocess.Popen([sys.executable, "-m", "pyro_textvae.cli", "experiment", str(config),
                                       "--no-progress", "--seed", seed], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE, text=True) for seed in ("0", "1")]
        time.sleep(2)
    errors = [process.communicate(timeout=600)[1] for process in processes]
    assert [process.returncode for process in processes] == [0, 0], errors
    assert main(["experiment", str(config), "--report-only"]) == 0
    with open(out / "results.csv") as handle:
        (row,) = csv.DictReader(handle)
    assert row["seeds"] == "2" and not list(out.glob(".*.tmp"))


def test_a_run_folder_that_disagrees_with_the_file_is_not_reused(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    assert main(["experiment", str(config), "--no-progress"]) == 0
    capsys.readouterr()
    config.write_text(CONFIG.replace("params = {num_samples = 4}", "params = {num_samples = 8}"))
    assert main(["experiment", str(config), "--no-progress"]) == 2
    assert re.search(r"DG-VAE-seed0/config.json: objective.params.num_samples is 4 .* 8", capsys.readouterr().err)
    config.write_text(CONFIG.replace('objective = "dg"', 'objective = "dg"\ntrain = {batch_size = 8}'))
    assert main(["experiment", str(config), "--no-progress"]) == 2
    assert "train.batch_size is 16 but the experiment asks for 8" in capsys.readouterr().err
    config.write_text(CONFIG.replace("num_train = 64", "num_train = 48"))
    assert main(["experiment", str(config), "--no-progress"]) == 2
    assert re.search(r"VAE-seed0/config.json: data.synthetic is \{.*'num_train': 64.*\} but the experiment asks "
                     r"for \{.*'num_train': 48", capsys.readouterr().err)
    config.write_text(CONFIG.replace("[data]", "[data]\nmin_count = 2"))
    assert main(["experiment", str(config), "--no-progress"]) == 2
    assert "VAE-seed0/config.json: data.min_count is None but the experiment asks for 2" in capsys.readouterr().err
    assert (tmp_path / "results" / "experiment.toml").read_text() == CONFIG


@pytest.mark.slow
def test_an_evaluation_made_with_other_settings_is_redone_without_retraining(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    assert main(["experiment", str(config), "--no-progress"]) == 0
    run = tmp_path / "results" / "runs" / "VAE-seed0"
    trained = {name: (run / name).read_bytes() for name in ("last.pt", "best.pt", "metrics.jsonl")}
    assert load_json(run / "eval.json")["likelihood"]["iw_samples"] == 4
    capsys.readouterr()
    config.write_text(CONFIG.replace("iw_samples = 4", "iw_samples = 6"))
    assert main(["experiment", str(config), "--report-only"]) == 2
    err = capsys.readouterr().err
    assert "VAE-seed0/eval.json: made with other [evaluate] settings (iw_samples 4 -> 6); left out" in err
    assert "no evaluated run" in err
    assert main(["experiment", str(config), "--no-progress"]) == 0
    assert "iw_samples 4 -> 6); evaluating again" in capsys.readouterr().err
    evaluation = load_json(run / "eval.json")
    assert evaluation["likelihood"]["iw_samples"] == 6 and evaluation["settings"]["iw_samples"] == 6
    assert {name: (run / name).read_bytes() for name in trained} == trained


@pytest.mark.parametrize("name", ["short_yelp.toml", "short_yelp_budget.toml", "short_yelp_protocol.toml",
                                  "short_yelp_protocol_paper_init.toml", "short_yelp_data_aggregate.toml",
                                  "synthetic_data_aggregate.toml"])
def test_the_shipped_experiment_files_are_valid(name):
    path = Path(__file__).resolve().parents[2] / "examples" / name
    config = load_experiment(path)
    corpus = config["data"].get("synthetic", {}).get("num_train") or Path(config["data"]["path"]).name
    assert corpus in ("short_yelp", 10000) and len(config["methods"]) >= 6


def test_the_second_corpus_check_runs_the_screenings_estimators_from_its_start():
    """synthetic_data_aggregate.toml: the screening's network, start, optimiser, schedule and evaluation,
    and its data-aggregate methods with the screening's parameters."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    synthetic = load_experiment(examples / "synthetic_data_aggregate.toml")
    screening = load_experiment(examples / "short_yelp_data_aggregate.toml")
    for section in ("model", "schedule", "train", "evaluate"):
        assert synthetic.get(section) == screening.get(section), section
    screened = {m["name"]: m for m in screening["methods"]}
    new = [m for m in synthetic["methods"] if "aggregate" in m.get("params", {})]
    assert new and all(m == screened[m["name"]] for m in new)


def test_the_paper_init_protocol_starts_every_run_there_and_its_script_runs_every_row():
    """Every method of short_yelp_protocol_paper_init.toml is built with init = "paper", the other options
    as in short_yelp_protocol.toml; its script names each method of the file (and nothing else)."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    config = load_experiment(examples / "short_yelp_protocol_paper_init.toml")
    protocol = load_experiment(examples / "short_yelp_protocol.toml")
    assert config["model"] == {**protocol["model"], "init": "paper"}
    assert all("init" not in method.get("model", {}) for method in config["methods"])
    assert (config["schedule"], config["train"], config["evaluate"]) == (
        protocol["schedule"], protocol["train"], protocol["evaluate"])
    script = (examples / "short_yelp_protocol_paper_init.sh").read_text()
    names = {method["name"] for method in config["methods"]}
    assert all(script.count(f'"{name}"') == 1 for name in names) and {"DG-VAE b=1", "DG-VAE b=16"} <= names


def test_the_longer_cap_file_is_the_paper_init_file_with_the_papers_cap():
    """short_yelp_protocol_paper_init_100.toml: its runs continue the paper-init runs of the same name, so
    everything but the cap (100 epochs against 40) is that file's, each method included."""
    examples = Path(__file__).resolve().parents[2] / "examples"
    longer = load_experiment(examples / "short_yelp_protocol_paper_init_100.toml")
    config = load_experiment(examples / "short_yelp_protocol_paper_init.toml")
    assert (longer["train"]["epochs"], config["train"]["epochs"]) == (100, 40)
    assert {**longer["train"], "epochs": 40} == config["train"]
    for section in ("data", "model", "evaluate"):
        assert longer[section] == config[section], section
    same_name = {m["name"]: m for m in config["methods"]}
    assert longer["methods"] and all(m == same_name[m["name"]] for m in longer["methods"])


def test_labels_of_methods_that_sit_together_do_not_overlap():
    """Collapsed methods share one spot of the scatter (MI 0, joint-KL about 0): their labels are
    moved apart, in both panels."""
    together = {f"method {i}": [{"mi": 0.001 * i, "active_units": {"au": 0}, "holes": {"joint_kl": 0.003}}]
                for i in range(6)}
    apart = {"DG-VAE": [{"mi": 3.0, "active_units": {"au": 16}, "holes": {"joint_kl": 0.15}}]}
    figure = plot_collapse_against_holes({**together, **apart})
    FigureCanvasAgg(figure).draw()
    renderer = figure.canvas.get_renderer()
    for ax in figure.axes:
        boxes = [Text.get_window_extent(label, renderer) for label in ax.texts]  # the text, not its leader line
        assert len(boxes) == 7
        assert not any(a.overlaps(b) for a, b in itertools.combinations(boxes, 2))


def _tick_labels(ax):
    """The x tick labels inside the view, as drawn."""
    FigureCanvasAgg(ax.figure).draw()
    low, high = ax.get_xlim()
    return [t.get_text() for t in ax.get_xticklabels() if low <= t.get_position()[0] <= high and t.get_text()]


@pytest.mark.parametrize("joint_kl, expected", [
    ((0.0384595, 0.0391, 0.0399), None),               # within one 1-2-5 step: evenly spaced ticks
    ((0.003, 0.1, 2.2, 396.0), ["0.01", "0.1", "1", "10", "100"]),   # decades
    ((0.15, 0.4, 0.9), ["0.1", "0.2", "0.5", "1"]),  # less than two decades: 1-2-5 steps
])
def test_scatter_x_ticks_are_several_plain_decimals(joint_kl, expected):
    """joint-KL ticks read as plain numbers (no 3.84595x10^-2, no 1e-02), at least three of them."""
    runs = {f"m{i}": [{"mi": 1.0, "active_units": {"au": 3}, "holes": {"joint_kl": x}}] for i, x in enumerate(joint_kl)}
    for ax in plot_collapse_against_holes(runs).axes:
        labels = _tick_labels(ax)
        assert len(labels) >= 3
        assert all(re.fullmatch(r"\d+(\.\d+)?", text) for text in labels), labels
        if expected is not None:
            assert labels == expected
        values = [float(text) for text in labels]
        assert min(values) <= max(joint_kl) and max(values) >= min(joint_kl)


def test_scatter_draws_a_nonpositive_joint_kl_at_the_left_end():
    runs = {"collapsed": [{"mi": 0.0, "active_units": {"au": 0}, "holes": {"joint_kl": -0.001}}],
            "DG-VAE": [{"mi": 3.0, "active_units": {"au": 16}, "holes": {"joint_kl": 0.15}}]}
    ax = plot_collapse_against_holes(runs).axes[0]
    (x, _), = ax.collections[0].get_offsets()
    assert x == pytest.approx(ax.get_xlim()[0]) and ax.get_xscale() == "log"


def test_the_scatter_draws_into_a_given_figure_and_keeps_its_canvas():
    import matplotlib.pyplot as plt

    runs = {"VAE": [{"mi": 0.5, "active_units": {"au": 2}, "holes": {"joint_kl": 0.2}}]}
    fig = plt.figure()
    canvas = fig.canvas
    try:
        assert plot_collapse_against_holes(runs, fig=fig) is fig
        assert fig.canvas is canvas and len(fig.axes) == 2 and [t.get_text() for t in fig.axes[0].texts] == ["VAE"]
    finally:
        plt.close(fig)


def test_the_scatter_redrawn_from_results_csv_shows_the_means_over_seeds(tmp_path):
    """examples/redraw_scatter.py reads back from results.csv the means that the scatter of the
    evaluations shows (MI, AU, joint-KL over the seeds of each method)."""
    spec = importlib.util.spec_from_file_location(
        "redraw_scatter", Path(__file__).resolve().parents[2] / "examples" / "redraw_scatter.py")
    redraw = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(redraw)
    runs = {"A": [{"mi": 1.0, "active_units": {"au": 3}, "holes": {"joint_kl": 0.5}},
                  {"mi": 2.0, "active_units": {"au": 6}, "holes": {"joint_kl": 1.5}}],
            "B": [{"mi": 0.25, "active_units": {"au": 0}, "holes": {"joint_kl": 0.01}}]}
    write_results(tmp_path, runs)
    read_back = redraw.results_from_csv(tmp_path / "results.csv")
    assert read_back == {"A": [{"mi": 1.5, "active_units": {"au": 4.5}, "holes": {"joint_kl": 1.0}}],
                         "B": [{"mi": 0.25, "active_units": {"au": 0.0}, "holes": {"joint_kl": 0.01}}]}


def test_one_method_into_another_folder(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    other = tmp_path / "other"
    assert main(["experiment", str(config), "--no-progress", "--method", "DG-VAE", "--out", str(other)]) == 0
    assert [p.name for p in (other / "runs").iterdir()] == ["DG-VAE-seed0"]
    assert not (tmp_path / "results").exists()
    with open(other / "results.csv") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == ["DG-VAE"]
    capsys.readouterr()
    assert main(["experiment", str(config), "--method", "DG", "--report-only"]) == 2
    assert "--method: no method ['DG'] in the file; its methods: ['VAE', 'DG-VAE']" in capsys.readouterr().err


@pytest.mark.parametrize("stored, asked", [("gamma", "bn_gamma"), ("bn_gamma", "gamma")])
def test_a_run_folder_matches_a_parameter_by_its_old_or_new_spelling(tmp_path, stored, asked):
    """A run written before the rename (gamma) is reused by a file that says bn_gamma, and the other way round."""
    from pyro_textvae.cli.experiment_runner import _check_run_matches
    from pyro_textvae.io import save_json

    save_json(tmp_path / "config.json", {"objective": {"name": "bn", "params": {stored: 0.7, "warmup_epochs": 2.0}}})
    _check_run_matches(tmp_path, {"objective": "bn", "params": {asked: 0.7}}, {}, {}, {})
    with pytest.raises(ValueError, match=r"objective\.params\.bn_gamma is 0\.7 but the experiment asks for 0\.5"):
        _check_run_matches(tmp_path, {"objective": "bn", "params": {asked: 0.5}}, {}, {}, {})


@pytest.mark.slow
def test_an_experiment_killed_between_eval_json_and_eval_md_writes_eval_md_on_its_rerun(tmp_path, capsys,
                                                                                      monkeypatch):
    import evaluation.report as report
    from evaluation.tables import evaluation_markdown

    config = tmp_path / "mini.toml"
    config.write_text(CONFIG.replace('[[methods]]\nname = "DG-VAE"\nobjective = "dg"\nparams = {num_samples = 4}\n',
                                     ""))
    real_write = report.atomic_write_bytes

    class Killed(BaseException):
        """The process ends (SIGKILL) right after eval.json was replaced."""

    def killed(path, data):
        if Path(path).name == "eval.md":
            raise Killed
        real_write(path, data)

    monkeypatch.setattr(report, "atomic_write_bytes", killed)
    with pytest.raises(Killed):
        main(["experiment", str(config), "--no-progress"])
    run = tmp_path / "results" / "runs" / "VAE-seed0"
    assert (run / "eval.json").is_file() and not (run / "eval.md").exists()
    monkeypatch.setattr(report, "atomic_write_bytes", real_write)
    before = (run / "eval.json").read_bytes()
    assert main(["experiment", str(config), "--no-progress"]) == 0
    assert (run / "eval.json").read_bytes() == before  # skipped as evaluated, not evaluated again
    assert (run / "eval.md").read_text() == evaluation_markdown(load_json(run / "eval.json"))
    assert "eval.md: rewritten from" in capsys.readouterr().err
