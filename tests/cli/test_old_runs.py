"""Run folders written by an older ``textvae train`` (tests/data/old_runs, see its README) still
resume, evaluate and sample, and their objective parameters load with the values they were saved with."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from inference.objectives import get_objective
from pyro_textvae.cli import main
from tests.same_numbers import assert_same_numbers

OLD_RUNS = Path(__file__).resolve().parents[1] / "data" / "old_runs"
NAMES = ("dg-vmf-latent", "bn", "aae", "wae-mmd")
EVALUATE = ["--checkpoint", "last", "--iw-samples", "2", "--iw-subset", "4", "--prior-samples", "50",
            "--num-generate", "2", "--num-interpolations", "1", "--no-progress"]


@pytest.fixture
def old_run(request, tmp_path) -> Path:
    copy = tmp_path / request.param
    shutil.copytree(OLD_RUNS / request.param, copy)
    return copy


@pytest.mark.parametrize("old_run", NAMES, indirect=True)
def test_an_old_run_folder_resumes_evaluates_and_samples(old_run, capsys):
    assert main(["train", "--resume", str(old_run), "--epochs", "2", "--no-progress", "--curve-samples", "0"]) == 0
    records = [json.loads(line) for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2]
    assert main(["evaluate", str(old_run), *EVALUATE]) == 0
    assert json.loads((old_run / "eval.json").read_text())["likelihood"]["iw_samples"] == 2
    capsys.readouterr()
    assert main(["sample", str(old_run), "-n", "3", "--max-length", "5"]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 3


@pytest.mark.parametrize("old_run", ["bn"], indirect=True)
def test_an_old_run_resumes_with_the_curves_it_ran_with(old_run):
    """config.json before curve_samples: the count its metrics.jsonl shows (no curves: 0), not the default."""
    assert main(["train", "--resume", str(old_run), "--epochs", "2", "--no-progress"]) == 0
    records = [json.loads(line) for line in (old_run / "metrics.jsonl").read_text().splitlines()]
    assert [record["epoch"] for record in records] == [1, 2] and not any("valid_mi" in record for record in records)


RENAMED = {"gamma": "bn_gamma", "disc_hidden": "hidden_dim", "disc_lr": "lr", "lambda": "weight"}  # old: current


@pytest.mark.parametrize("name", NAMES)
def test_an_old_config_loads_its_objective_parameters_with_the_saved_values(name):
    """The saved values by their current names; parameters added since (e.g. the density gap's
    aggregate and memory_size) take their defaults, which behave as the code that wrote the run did."""
    saved = json.loads((OLD_RUNS / name / "config.json").read_text())
    objective = get_objective(saved["objective"]["name"])
    config = objective.configure(saved["objective"]["params"], latent=saved["model"]["latent"])
    stored = {RENAMED.get(key, key): value for key, value in saved["objective"]["params"].items()}
    added = {key: value for key, value in objective.config_class.defaults(saved["model"]["latent"]).items()
             if key not in stored}  # the parameters an objective gained since, at their defaults
    assert config.to_dict() == {**stored, **added}


def test_a_run_folder_of_the_code_before_the_init_option_resumes_and_evaluates_unchanged(tmp_path):
    """``dg-93d588b`` (written before ``init`` and ``linear_bias`` existed) resumes to the same epoch-2
    line and evaluates to the same numbers as the code that wrote it printed (``expected/``)."""
    run = tmp_path / "dg"
    shutil.copytree(OLD_RUNS / "dg-93d588b", run)
    expected = json.loads((OLD_RUNS / "expected" / "dg-93d588b.json").read_text())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress", "--curve-samples", "0"]) == 0
    line = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    line.pop("seconds")
    assert_same_numbers(line, expected["epoch2"], "metrics.jsonl")
    assert main(["evaluate", str(run), *EVALUATE, "--seed", "0"]) == 0
    evaluation = json.loads((run / "eval.json").read_text())
    assert_same_numbers({key: evaluation[key] for key in expected["eval"]}, expected["eval"])
