"""Run files that are well-formed but wrong, or not files at all: each refused in one line naming it."""
from __future__ import annotations

import json
import os

import pytest
import torch

from pyro_textvae.cli import main
from pyro_textvae.io import load_checkpoint, save_checkpoint
from tests.cli import test_run_files
from tests.cli.test_experiment import CONFIG
from tests.cli.test_run_files import TINY, refused

trained, run = test_run_files.trained, test_run_files.run  # the fixtures: a small trained run, a copy of it

RESUME = ["train", "--resume"]


@pytest.mark.parametrize("name, command", [
    ("config.json", ["sample", "{run}", "-n", "1"]), ("vocab.json", ["sample", "{run}", "-n", "1"]),
    ("best.pt", ["sample", "{run}", "-n", "1"]), ("metrics.jsonl", [*RESUME, "{run}", "--epochs", "3"]),
    ("last.pt", [*RESUME, "{run}", "--epochs", "3"]), ("config.json", [*RESUME, "{run}", "--epochs", "3"]),
    ("eval.json", ["evaluate", "{run}", "--iw-samples", "2", "--no-progress"])])
def test_a_fifo_in_place_of_a_run_file_is_refused_naming_it(run, capsys, deadline, name, command):
    path = run / name
    path.unlink(missing_ok=True)
    os.mkfifo(path)
    message = refused(capsys, *(part.format(run=run) for part in command))
    assert f"{path}: refused" in message and "FIFO" in message
    assert not path.is_file() and not path.is_symlink()  # not replaced either


@pytest.mark.parametrize("dtype", [torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_a_checkpoint_tensor_of_another_dtype_is_refused_naming_it(run, capsys, dtype):
    state = load_checkpoint(run / "best.pt")
    key = sorted(state["model"])[0]
    state["model"][key] = state["model"][key].to(dtype)
    save_checkpoint(run / "best.pt", state)
    message = refused(capsys, "sample", str(run), "-n", "2")
    assert str(run / "best.pt") in message and f"{key} dtype {str(dtype)[6:]} (model: float32)" in message


def test_zero_bytes_written_into_a_checkpoint_are_refused_by_its_checksum(run, capsys):
    data = bytearray((run / "best.pt").read_bytes())
    weights = load_checkpoint(run / "best.pt")["model"]
    largest = max(weights.values(), key=torch.Tensor.numel)
    start = bytes(data).index(largest.numpy().tobytes()[:256]) + 64
    data[start:start + 64] = bytes(64)
    (run / "best.pt").write_bytes(bytes(data))
    message = refused(capsys, "sample", str(run), "-n", "2")
    assert str(run / "best.pt") in message and "do not match the checksum" in message


def _first_moments(state):
    return state["optim"][sorted(state["optim"])[0]]["state"][0]


MALFORMED = {
    "optim.*.exp_avg": lambda s: _first_moments(s).update(exp_avg=torch.zeros(2, 2)),
    "optim.*.step": lambda s: _first_moments(s).update(step=torch.tensor(-3.0)),
    "optim.": lambda s: s["optim"].update({sorted(s["optim"])[0]: [1, 2]}),
    "optim ": lambda s: s.update(optim=[1]),
    "trainer.batch": lambda s: s["trainer"].update(batch="3"),
    "trainer.best": lambda s: s["trainer"].update(best="low"),
    "trainer.sums": lambda s: s["trainer"].update(sums={"loss": "x"}),
    "trainer.step": lambda s: s["trainer"].pop("step"),
    "trainer.epoch": lambda s: s["trainer"].update(epoch=-1),
    "rng.cpu": lambda s: s["rng"].update(cpu=s["rng"]["cpu"].to(torch.int64)),
    "rng.cpu ": lambda s: s["rng"].update(cpu=s["rng"]["cpu"][:100]),
    "lr": lambda s: s.update(lr=float("nan")),
}


@pytest.mark.parametrize("field", sorted(MALFORMED))
def test_a_malformed_training_checkpoint_is_refused_naming_the_file_and_the_field(run, capsys, field):
    state = load_checkpoint(run / "last.pt")
    MALFORMED[field](state)
    save_checkpoint(run / "last.pt", state)
    message = refused(capsys, *RESUME, str(run), "--epochs", "3", "--no-progress")
    shown = field.strip().replace("*", sorted(state["optim"])[0] + ".state.0") if isinstance(state["optim"], dict) \
        else field.strip()
    assert f"{run / 'last.pt'}: field {shown}" in message


def test_an_empty_last_pt_is_refused_in_one_line(run, capsys):
    (run / "last.pt").write_bytes(b"")
    message = refused(capsys, *RESUME, str(run), "--epochs", "3", "--no-progress")
    assert str(run / "last.pt") in message and "an empty file" in message


def test_train_overwrite_leaves_no_evaluation_of_the_old_run(run, capsys, tmp_path):
    for name in ("eval.json", "eval-valid.json"):
        (run / name).write_text(json.dumps({"objective": "elbo", "elbo": {"neg_elbo": 1.0}}))
    (run / "eval-valid.md").write_text("old numbers")
    (run / "inference_data.nc").write_bytes(b"old")
    assert main(["train", "--out", str(run), *TINY, "--epochs", "1", "--overwrite", "--seed", "5"]) == 0
    capsys.readouterr()
    assert not {"eval.json", "eval-valid.json", "eval-valid.md", "inference_data.nc"} & set(os.listdir(run))
    message = refused(capsys, "compare", str(run), "--split", "valid")
    assert f"{run / 'eval-valid.json'}: not found" in message


@pytest.mark.parametrize("text", ["[1, 2]", '"eval"', "3.5", "null"])
def test_an_eval_json_that_is_not_an_object_is_refused_naming_it(run, capsys, tmp_path, text):
    (run / "eval.json").write_text(text)
    for argv in (["compare", str(run)], ["evaluate", str(run), "--iw-samples", "2", "--no-progress"]):
        message = refused(capsys, *argv)
        assert f"{run / 'eval.json'}: not an evaluation" in message
    assert (run / "eval.json").read_text() == text


def _set(section, key, value):
    def change(config):
        (config[section] if section else config)[key] = value
    return change


BAD_CONFIGS = {
    "unknown key(s) ['extra']": _set(None, "extra", 1),
    "[train]: threads must be in [1, 1024], got 0": _set("train", "threads", 0),
    "[train]: threads must be in [1, 1024], got 1000000": _set("train", "threads", 1_000_000),
    "[train]: option threads must be int or NoneType, got 1000000.0": _set("train", "threads", 1e6),
    "[train]: seed must be >= 0, got -1": _set("train", "seed", -1),
    "[train]: seed must be <= 4294967295, got 1180591620717411303424": _set("train", "seed", 2**70),
    "[train]: lr must be > 0, got nan": _set("train", "lr", float("nan")),
    "[train]: clip_norm must be > 0, got nan": _set("train", "clip_norm", float("nan")),
    "[train]: batch_size must be >= 1, got 0": _set("train", "batch_size", 0),
    "[train]: device must be cpu, cuda or cuda:K, got 'tpu:9'": _set("train", "device", "tpu:9"),
    "[train]: unknown option(s) ['speed']": _set("train", "speed", 2),
    "[objective]: unknown objective 'magic'": _set("objective", "name", "magic"),
    "[objective]: must hold exactly a name and a table of params": _set("objective", "params", [1]),
    "[model]: unknown option(s) ['depth']": _set("model", "depth", 3),
}


@pytest.mark.parametrize("expected", sorted(BAD_CONFIGS))
def test_every_field_of_config_json_is_checked_by_every_command_that_reads_it(run, capsys, expected):
    path = run / "config.json"
    config = json.loads(path.read_text())
    BAD_CONFIGS[expected](config)
    path.write_text(json.dumps(config))
    for argv in (["sample", str(run), "-n", "1"], [*RESUME, str(run), "--epochs", "3", "--no-progress"],
                 ["evaluate", str(run), "--iw-samples", "2", "--no-progress"]):
        message = refused(capsys, *argv)
        assert message.startswith(f"textvae {argv[0]}: error: {path}") and expected in message, message


def test_an_objective_parameter_of_the_wrong_type_is_refused_by_sample(run, capsys):
    path = run / "config.json"
    config = json.loads(path.read_text())
    name = sorted(config["objective"]["params"])[0]
    config["objective"]["params"][name] = "many"
    path.write_text(json.dumps(config))
    message = refused(capsys, "sample", str(run), "-n", "1")
    assert f"{path} [objective]" in message and name in message


def test_an_out_folder_that_cannot_be_created_is_one_line_naming_it(run, capsys, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    attempts = [(blocker, ["train", "--out", str(blocker), *TINY]),
                (blocker / "run", ["train", "--out", str(blocker / "run"), *TINY]),
                ("/proc/nope", ["train", "--out", "/proc/nope", *TINY]),
                ("/proc/nope/results", ["experiment", str(tmp_path / "exp.toml"), "--out", "/proc/nope/results"]),
                ("/proc/nope/pictures", ["explore", str(run), "--out", "/proc/nope/pictures"]),
                ("/proc/nope", ["compare", str(run), "--out", "/proc/nope/table"])]
    (tmp_path / "exp.toml").write_text(CONFIG)
    (run / "eval.json").write_text("{}")
    for folder, argv in attempts:
        message = refused(capsys, *argv)
        assert f"{folder}: cannot create this folder" in message, message
    assert blocker.read_text() == "mine"


def _interrupt(*_, **__):
    raise KeyboardInterrupt


def _interrupted(capsys, *argv: str) -> tuple[int, list[str]]:
    """``textvae argv`` interrupted by Ctrl-C: its status and stderr lines (a KeyboardInterrupt that
    escapes main, the user's traceback, fails the test instead of stopping the session)."""
    try:
        return test_run_files.cli(capsys, *argv)
    except KeyboardInterrupt:
        pytest.fail("KeyboardInterrupt escaped textvae main: the user sees a traceback")


def test_ctrl_c_in_train_says_what_was_kept_and_how_to_resume(run, capsys, monkeypatch):
    from inference.trainer import Trainer

    before = load_checkpoint(run / "last.pt")["trainer"]
    monkeypatch.setattr(Trainer, "_run_epoch", _interrupt)
    status, err = _interrupted(capsys, *RESUME, str(run), "--epochs", "4", "--no-progress")
    assert status == 130 and err == [f"textvae train: interrupted; {run / 'last.pt'} keeps the last checkpoint; "
                                     f"continue with `textvae train --resume {run}`"]
    monkeypatch.undo()
    assert load_checkpoint(run / "last.pt")["trainer"] == before
    assert main([*RESUME, str(run), "--epochs", "3", "--no-progress"]) == 0


def test_ctrl_c_in_evaluate_keeps_the_previous_evaluation(run, capsys, monkeypatch):
    import evaluation.report as report

    (run / "eval.json").write_text('{"settings": {}}')
    monkeypatch.setattr(report, "_measure", _interrupt)
    status, err = _interrupted(capsys, "evaluate", str(run), "--iw-samples", "2", "--overwrite")
    assert status == 130 and len(err) == 1 and "keeps its previous evaluation files" in err[0]
    assert (run / "eval.json").read_text() == '{"settings": {}}' and not list(run.glob(".*.tmp"))


def test_ctrl_c_in_experiment_says_a_rerun_goes_on(tmp_path, capsys, monkeypatch):
    import pyro_textvae.cli.experiment_runner as runner

    (tmp_path / "exp.toml").write_text(CONFIG.replace('out = "results"', f'out = "{tmp_path / "results"}"'))
    monkeypatch.setattr(runner, "_train_and_evaluate", _interrupt)
    status, err = _interrupted(capsys, "experiment", str(tmp_path / "exp.toml"), "--no-progress")
    assert status == 130 and len(err) == 1 and "run the same `textvae experiment` command again" in err[0]
