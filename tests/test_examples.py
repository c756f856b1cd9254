"""Every script under ``examples/`` runs at a tiny size, in a temporary folder, and writes what it says.

The Python scripts run as the user runs them (``python examples/NAME.py ...``, this checkout first on
``PYTHONPATH``) on a few dozen synthetic sentences or a committed results file. The shell scripts call
``textvae``: ``dg_joint_probes.sh`` runs the real command (a tiny corpus and network appended to its
options); the two protocol scripts, whose runs take hours, get a command that records its arguments,
and every recorded call is then parsed by the real ``textvae`` parser and checked against the
experiment file it names (each method it asks for exists there, and the script asks for all of them).
"""
from __future__ import annotations

import csv
import importlib.util
import json
import os
import re
import runpy
import subprocess
import sys
from pathlib import Path

import pytest

from evaluation.arviz_data import load_inference_data
from pyro_textvae.cli import build_parser
from pyro_textvae.cli.experiment_file import load_experiment, select_methods
from pyro_textvae.data import write_synthetic

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
PNG = b"\x89PNG\r\n\x1a\n"
TINY_MODEL = ["--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "4"]
# every script under examples/ and the test that runs it (a new script fails the first test until it has one)
COVERED = {
    "compare_objectives.py": "test_compare_objectives_trains_evaluates_and_tabulates",
    "dg_factors.py": "test_dg_factors_records_the_norms_and_measures_a_checkpoint",
    "explore_posteriors.py": "test_explore_posteriors_writes_inference_data_and_pictures",
    "plot_sweep.py": "test_plot_sweep_draws_and_tabulates_the_named_rows",
    "redraw_scatter.py": "test_redraw_scatter_draws_the_committed_results",
    "results_table.py": "test_results_table_prints_the_named_columns",
    "swap_elbo.py": "test_swap_elbo_reports_both_objectives",
    "toy_holes.py": "test_toy_holes_draws_the_grid",
    "dg_joint_probes.sh": "test_dg_joint_probes_trains_every_variant",
    "short_yelp_protocol.sh": "test_protocol_script_asks_for_every_method_of_its_file",
    "short_yelp_protocol_paper_init.sh": "test_paper_init_streams_ask_for_every_method_of_their_file",
}


def _environment(**extra: str) -> dict[str, str]:
    env = {**os.environ, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1", **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return env


def _run(command: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run(command, cwd=cwd, env=env or _environment(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, f"{command} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    return result


def _python(script: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    return _run([sys.executable, str(EXAMPLES / script), *map(str, args)], cwd)


def _is_png(path: Path) -> bool:
    return path.is_file() and path.read_bytes()[:8] == PNG


@pytest.fixture
def tiny_corpus_folder(tmp_path) -> Path:
    return write_synthetic(tmp_path / "corpus", num_train=64, num_valid=32, num_test=32, seed=0)


def test_every_example_script_has_a_test():
    scripts = sorted(p.name for p in EXAMPLES.iterdir() if p.suffix in (".py", ".sh"))
    assert scripts == sorted(COVERED)
    assert set(COVERED.values()) <= set(globals())


def test_swap_elbo_reports_both_objectives(tmp_path):
    out = _python("swap_elbo.py", "--epochs", 1, "--warmup-epochs", 1, "--hidden-dim", 16, cwd=tmp_path).stdout
    line = re.compile(r"^(\S+)\s+KL\s+(\S+)\s+AU\s+(\d+)/(\d+)\s+Rec\s+(\S+)\s+DG-KL\(q_D \|\| p\)\s+(\S+)$")
    rows = [line.match(text) for text in out.splitlines()]
    assert [row.group(1) for row in rows] == ["Trace_ELBO", "DensityGapELBO"], out
    for row in rows:
        kl, au, dim, rec = float(row.group(2)), int(row.group(3)), int(row.group(4)), float(row.group(5))
        assert kl >= 0 and 0 <= au <= dim == 32 and rec > 0, out


def test_toy_holes_draws_the_grid(tmp_path):
    out = _python("toy_holes.py", "--out", "toy", "--steps", 12, cwd=tmp_path).stdout
    assert [line.split()[0] for line in out.splitlines()[:-1]] == ["elbo", "ae", "aae", "wae-mmd", "dg"], out
    assert _is_png(tmp_path / "toy" / "toy_grid.png")


def test_toy_holes_refuses_a_step_count_below_one(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # in this process: the refusal comes before any work, and the imports are done
    monkeypatch.setattr(sys, "argv", ["toy_holes.py", "--steps", "0"])
    with pytest.raises(SystemExit) as exit_:
        runpy.run_path(str(EXAMPLES / "toy_holes.py"), run_name="__main__")
    assert exit_.value.code == 2 and "--steps must be >= 1, got 0" in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_explore_posteriors_writes_inference_data_and_pictures(tmp_path):
    _python("explore_posteriors.py", "--out", "explore", "--epochs", 1, "--seed", 0, cwd=tmp_path)
    out = tmp_path / "explore"
    runs = [out / "runs" / name for name in ("elbo", "dg")]
    assert json.loads((out / "explore_config.json").read_text()) == {
        "runs": [str(run.resolve()) for run in runs], "epochs": 1, "seed": 0}
    for run in runs:
        assert load_inference_data(run).posterior["z"].sizes["sentence"] == 8
        pictures = ("hole", "posteriors", "forest", "dimensions", "ppc_length")
        assert all(_is_png(out / run.name / f"{picture}.png") for picture in pictures)
    assert _is_png(out / "hole_comparison.png")


def test_compare_objectives_trains_evaluates_and_tabulates(tmp_path, tiny_corpus_folder):
    config = tmp_path / "tiny.toml"
    config.write_text(f"""out = "results"
seeds = [0]
[data]
path = "{tiny_corpus_folder.name}"
[model]
embed_dim = 8
hidden_dim = 16
latent_dim = 4
[train]
epochs = 1
[evaluate]
iw_samples = 2
prior_samples = 64
num_generate = 4
num_interpolations = 2
[[methods]]
name = "VAE"
objective = "elbo"
[[methods]]
name = "DG-VAE"
objective = "dg"
""")
    printed = _python("compare_objectives.py", config, cwd=tmp_path).stdout
    results = tmp_path / "results"
    assert printed.endswith((results / "results.md").read_text())  # after a line per epoch of each run
    with open(results / "results.csv", newline="") as handle:
        assert [row["method"] for row in csv.DictReader(handle)] == ["VAE", "DG-VAE"]


def test_compare_objectives_quick_comparison_is_a_valid_experiment(tmp_path):
    spec = importlib.util.spec_from_file_location("compare_objectives", EXAMPLES / "compare_objectives.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    path = tmp_path / "quick.toml"
    path.write_text(module.QUICK.format(seed=3, out=tmp_path / "quick"))
    config = load_experiment(path)
    assert config["seeds"] == [3] and [m["name"] for m in config["methods"]] == ["VAE", "AE", "DG-VAE"]


def test_dg_factors_records_the_norms_and_measures_a_checkpoint(tmp_path, tiny_corpus_folder):
    _python("dg_factors.py", "--data", tiny_corpus_folder, "--variant", "dg", "--epochs", 1, "--measure-every", 1,
            "--out", "factors", cwd=tmp_path)
    run = tmp_path / "factors" / "dg-s0"
    factors = json.loads((run / "factors.json").read_text())
    assert factors["variant"] == "dg" and [epoch["epoch"] for epoch in factors["epochs"]] == [1]
    steps = [json.loads(line) for line in (run / "steps.jsonl").read_text().splitlines()]
    assert [step["step"] for step in steps] == [0, 1] and all("total/all" in step for step in steps)
    printed = _python("dg_factors.py", "--measure", run / "last.pt", "--batches", 1, cwd=tmp_path).stdout
    measured = json.loads(printed.splitlines()[-1])
    assert measured["measure"] == str(run / "last.pt") and 0 <= measured["clipped_share"] <= 1


def test_redraw_scatter_draws_the_committed_results(tmp_path):
    printed = _python("redraw_scatter.py", ROOT / "results" / "short_yelp" / "results.csv", "scatter.png",
                      cwd=tmp_path).stdout
    assert printed.strip() == "wrote scatter.png" and _is_png(tmp_path / "scatter.png")


def test_plot_sweep_draws_and_tabulates_the_named_rows(tmp_path):
    """Its table holds the rows named, in order of their values, each cell as results_table.py prints it."""
    results = ROOT / "results" / "short_yelp" / "results.csv"
    with open(results, newline="") as handle:
        methods = [row["method"] for row in csv.DictReader(handle)]
    printed = _python("plot_sweep.py", results, "sweep.png", "--point", "8", methods[0], "--point", "0.5", methods[1],
                      "--columns", "MI", "NLL", cwd=tmp_path).stdout.splitlines()
    assert printed[0] == "| b | seeds | MI | NLL |" and printed[-1] == "wrote sweep.png"
    table = _python("results_table.py", results, "MI", "NLL", "--row", methods[1], "--row", methods[0],
                    cwd=tmp_path).stdout.splitlines()
    assert [line.split(" | ", 1)[1] for line in printed[2:4]] == [line.split(" | ", 1)[1] for line in table[2:4]]
    assert [line.split(" | ")[0] for line in printed[2:4]] == ["| 0.5", "| 8"] and _is_png(tmp_path / "sweep.png")
    refused = subprocess.run([sys.executable, str(EXAMPLES / "plot_sweep.py"), str(results), "out.png",
                              "--point", "two", methods[0]], cwd=tmp_path, env=_environment(),
                             capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr == "plot_sweep: --point VALUE must be a number, got 'two'\n"
    assert not (tmp_path / "out.png").exists()


def test_results_table_prints_the_named_columns(tmp_path):
    results = ROOT / "results" / "short_yelp" / "results.csv"
    lines = _python("results_table.py", results, "NLL", "MI", cwd=tmp_path).stdout.splitlines()
    assert lines[0] == "| method | seeds | NLL | MI |"
    with open(results, newline="") as handle:
        methods = [row["method"] for row in csv.DictReader(handle)]
    assert [line.split(" | ")[0].lstrip("| ") for line in lines[2:]] == methods
    picked = _python("results_table.py", results, "NLL", "--row", methods[2], "--row", methods[0],
                     cwd=tmp_path).stdout.splitlines()
    assert [line.split(" | ")[0].lstrip("| ") for line in picked[2:]] == [methods[2], methods[0]]
    assert picked[2] == next(line for line in lines if line.startswith(f"| {methods[2]} |")).rsplit(" | ", 1)[0] + " |"
    refused = subprocess.run([sys.executable, str(EXAMPLES / "results_table.py"), str(results), "--row", "VAR"],
                             cwd=tmp_path, env=_environment(), capture_output=True, text=True)
    assert refused.returncode == 1 and refused.stderr.startswith(f"results_table: {results}: no method(s) ['VAR']")
    assert "Traceback" not in refused.stderr


def _shims(folder: Path) -> Path:
    """A folder with ``textvae`` (this checkout's CLI) and ``python`` (this interpreter), for PATH."""
    folder.mkdir()
    for name, command in (("textvae", f'"{sys.executable}" -m pyro_textvae.cli'), ("python", f'"{sys.executable}"')):
        (folder / name).write_text(f'#!/bin/sh\nexec {command} "$@"\n')
        (folder / name).chmod(0o755)
    return folder


def test_dg_joint_probes_trains_every_variant(tmp_path, tiny_corpus_folder):
    shims = _shims(tmp_path / "bin")
    env = _environment(PATH=f"{shims}{os.pathsep}{os.environ['PATH']}")
    extra = ["--data", str(tiny_corpus_folder), "--epochs", "1", *TINY_MODEL]
    printed = _run(["bash", str(EXAMPLES / "dg_joint_probes.sh"), "probes", *extra], tmp_path, env).stdout
    variants = ["b128", "lr5e-4", "m128", "warm6"]
    rows = [line for line in printed.splitlines() if line.startswith("| ")]
    assert [row.split(" | ")[0][2:] for row in rows] == variants, printed
    for name in variants:  # the appended options won over the script's own
        config = json.loads((tmp_path / "probes" / name / "config.json").read_text())
        assert config["model"]["hidden_dim"] == 16
        assert Path(config["data"]["path"]).resolve() == tiny_corpus_folder.resolve()
        assert len((tmp_path / "probes" / name / "metrics.jsonl").read_text().splitlines()) == 1


def _recorder(path: Path, log: Path) -> Path:
    """A stand-in for ``textvae`` that appends its arguments to ``log`` as a JSON line."""
    path.write_text(f'#!{sys.executable}\nimport json, sys\n'
                    f'with open({str(log)!r}, "a") as f:\n    f.write(json.dumps(sys.argv[1:]) + "\\n")\n')
    path.chmod(0o755)
    return path


def _replay(log: Path) -> list[tuple[str, int]]:
    """Parse every recorded call with the real parser and check it against its experiment file;
    returns the (method, seed) pairs in call order."""
    parser, calls = build_parser(), []
    for line in log.read_text().splitlines():
        args = parser.parse_args(json.loads(line))
        assert args.command == "experiment" and args.no_progress and args.out
        config = load_experiment(args.config)
        select_methods(config, args.method)  # refuses a name the file does not have
        assert set(args.seed) <= set(config["seeds"]), args.seed
        calls += [(method, seed) for method in args.method for seed in args.seed]
    return calls


def _methods(config: str) -> set[str]:
    return {method["name"] for method in load_experiment(EXAMPLES / config)["methods"]}


def test_protocol_script_asks_for_every_method_of_its_file(tmp_path):
    log = tmp_path / "calls.jsonl"
    _run(["bash", str(EXAMPLES / "short_yelp_protocol.sh"), "out", str(_recorder(tmp_path / "tv", log))], tmp_path)
    calls = _replay(log)
    assert len(calls) == len(set(calls)) and {method for method, _ in calls} == _methods("short_yelp_protocol.toml")
    assert calls[:2] == [("VAE", 0), ("DG-VAE", 0)]


def test_paper_init_streams_ask_for_every_method_of_their_file(tmp_path):
    log = tmp_path / "calls.jsonl"
    recorder = str(_recorder(tmp_path / "tv", log))
    script = str(EXAMPLES / "short_yelp_protocol_paper_init.sh")
    for stream in ("a", "b"):
        _run(["bash", script, f"out-{stream}", stream, recorder], tmp_path)
    calls = _replay(log)
    assert len(calls) == len(set(calls))
    assert {method for method, _ in calls} == _methods("short_yelp_protocol_paper_init.toml")
    refused = subprocess.run(["bash", script, "out", "c", recorder], cwd=tmp_path, capture_output=True, text=True)
    assert refused.returncode == 2 and "STREAM must be a or b, got 'c'" in refused.stderr
