"""Run folders with bad files: every command refuses them with one line naming the file."""
from __future__ import annotations

import errno
import json
import os
import shutil

import pytest
import torch

import pyro_textvae.io as io_module
from pyro_textvae.cli import main
from pyro_textvae.io import load_checkpoint, save_checkpoint

TINY = ["--synthetic-train", "64", "--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "3",
        "--batch-size", "16", "--optimizer", "adam", "--no-progress"]


def cli(capsys, *argv: str) -> tuple[int, list[str]]:
    """Run ``textvae argv`` in this process; the exit status and the lines it wrote on stderr."""
    status = main(list(argv))
    err = capsys.readouterr().err.splitlines()
    assert not any("Traceback" in line for line in err)
    return status, err


def refused(capsys, *argv: str) -> str:
    status, err = cli(capsys, *argv)
    assert status != 0 and len(err) == 1, err
    return err[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    assert main(["train", "--epochs", "2", "--out", str(out), "--seed", "3", *TINY]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(trained, copy)
    return copy


def test_a_vocabulary_with_one_word_inserted_is_refused(run, capsys):
    path = run / "vocab.json"
    words = json.loads(path.read_text())
    path.write_text(json.dumps(words[:6] + ["intruder"] + words[6:]))
    message = refused(capsys, "sample", str(run), "-n", "2")
    assert str(path) in message and "vocab_size" in message
    assert str(path) in refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")


@pytest.mark.parametrize("name", ["config.json", "vocab.json", "metrics.jsonl", "eval.json"])
def test_deeply_nested_json_is_one_line_naming_the_file(run, capsys, name, tmp_path):
    nested = "[" * 100_000 + "]" * 100_000
    (run / name).write_text(nested + ("\n" if name.endswith("jsonl") else ""))
    if name == "eval.json":
        message = refused(capsys, "compare", str(run), "--out", str(tmp_path / "table"))
    elif name == "metrics.jsonl":
        message = refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")
    else:
        message = refused(capsys, "sample", str(run), "-n", "1")
    assert str(run / name) in message and "nested too deeply" in message


def test_a_json_file_over_the_size_cap_is_refused_before_parsing(run, capsys, monkeypatch):
    path = run / "config.json"
    monkeypatch.setattr(io_module, "MAX_JSON_BYTES", path.stat().st_size - 1)
    message = refused(capsys, "sample", str(run), "-n", "1")
    assert str(path) in message and f"larger than {path.stat().st_size - 1} bytes" in message


@pytest.mark.parametrize("name, command", [("best.pt", ["sample", "-n", "2"]),
                                           ("last.pt", ["evaluate", "--checkpoint", "last"])])
def test_a_checkpoint_with_a_nan_is_refused_naming_the_tensor(run, capsys, name, command):
    state = load_checkpoint(run / name)
    key = sorted(state["model"])[0]
    state["model"][key].view(-1)[0] = float("nan")
    save_checkpoint(run / name, state)
    message = refused(capsys, command[0], str(run), *command[1:])
    assert str(run / name) in message and f"model.{key}" in message


def test_resume_with_a_nan_in_last_pt_is_refused_naming_the_tensor(run, capsys):
    state = load_checkpoint(run / "last.pt")
    state["optim"][sorted(state["optim"])[0]]["state"][0]["exp_avg"].view(-1)[0] = float("inf")
    save_checkpoint(run / "last.pt", state)
    message = refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")
    assert str(run / "last.pt") in message and "exp_avg" in message


def test_resume_from_a_checkpoint_of_another_size_names_the_shapes(run, capsys, tmp_path):
    other = tmp_path / "wide"
    assert main(["train", "--epochs", "1", "--out", str(other), "--seed", "3", *TINY, "--hidden-dim", "24"]) == 0
    shutil.copy(other / "last.pt", run / "last.pt")
    message = refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")
    assert str(run / "last.pt") in message and "encoder.lstm.weight_hh_l0 (96, 24) (model: (64, 16))" in message


def test_resume_from_best_pt_copied_over_last_pt_says_it_is_not_a_training_checkpoint(run, capsys):
    shutil.copy(run / "best.pt", run / "last.pt")
    message = refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")
    assert str(run / "last.pt") in message and "optim" in message


def test_a_full_disk_is_one_line_naming_the_file_and_keeps_the_last_checkpoint(run, capsys, monkeypatch):
    before = load_checkpoint(run / "last.pt")
    real_fsync = os.fsync

    def full(fd):
        if os.fstat(fd).st_size > 10_000:  # the checkpoint, not a metrics line
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(io_module.os, "fsync", full)
    message = refused(capsys, "train", "--resume", str(run), "--epochs", "3", "--no-progress")
    assert f"{run / 'best.pt'}: cannot write ({os.strerror(errno.ENOSPC)})" in message
    after = load_checkpoint(run / "last.pt")
    assert after["trainer"]["epoch"] == before["trainer"]["epoch"] == 2
    assert all(torch.equal(after["model"][k], before["model"][k]) for k in before["model"])
    assert not [p for p in os.listdir(run) if p.endswith(".tmp")]
