"""Crash safety and determinism: SIGKILL at any moment, resume, bit-identical parameters."""
from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.io import append_jsonl, load_checkpoint, read_jsonl
from tests.conftest import SMALL

ARGS = ["--synthetic-train", "480", "--embed-dim", "16", "--hidden-dim", "32", "--latent-dim", "4",
        "--batch-size", "16", "--optimizer", "adam", "--no-progress", "--seed", "5", "--epochs", "3"]


def _textvae(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pyro_textvae.cli", *args],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


@pytest.mark.slow
def test_sigkill_then_resume_matches_an_uninterrupted_run(tmp_path):
    straight = _textvae("train", "--out", str(tmp_path / "straight"), *ARGS)
    assert straight.wait(timeout=300) == 0, straight.stderr.read().decode()
    victim = _textvae("train", "--out", str(tmp_path / "killed"), "--checkpoint-every", "2", *ARGS)
    last = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while not last.exists() and time.time() < deadline and victim.poll() is None:
        time.sleep(0.01)
    time.sleep(random.Random(os.getpid()).uniform(0.0, 0.2))
    victim.send_signal(signal.SIGKILL)
    assert victim.wait(timeout=60) == -signal.SIGKILL, "training finished before it could be killed"
    assert len(read_jsonl(tmp_path / "killed" / "metrics.jsonl")) < 3
    resumed = _textvae("train", "--resume", str(tmp_path / "killed"), "--no-progress")
    assert resumed.wait(timeout=300) == 0, resumed.stderr.read().decode()
    a = load_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    history = read_jsonl(tmp_path / "killed" / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [1, 2, 3]


def test_same_seed_gives_bit_identical_parameters_after_an_epoch(tmp_path):
    """Two runs of seed 11 agree to the bit, and a run of seed 12 differs (the seed is used)."""
    data = {"synthetic": {"num_train": 64, "num_valid": 16, "num_test": 16, "seed": 2}}
    states = []
    for name, seed in (("first", 11), ("second", 11), ("other", 12)):
        config = TrainConfig(epochs=1, batch_size=16, optimizer="sgd", progress=False, seed=seed)
        new_trainer(tmp_path / name, data, SMALL, "elbo", {}, config).fit()
        states.append(load_checkpoint(tmp_path / name / "last.pt")["model"])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert not all(torch.equal(states[0][k], states[2][k]) for k in states[0])


def test_metrics_reader_drops_a_torn_last_line(tmp_path):
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, {"epoch": 1})
    with open(path, "ab") as handle:
        handle.write(b'{"epoch": 2, "lo')
    assert read_jsonl(path) == [{"epoch": 1}]


def test_no_temporary_files_are_left_after_training(tmp_path):
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False, checkpoint_every=1)
    data = {"synthetic": {"num_train": 32, "num_valid": 16, "num_test": 16, "seed": 2}}
    new_trainer(tmp_path / "run", data, SMALL, "elbo", {}, config).fit()
    assert not [p for p in os.listdir(tmp_path / "run") if p.endswith(".tmp")]

