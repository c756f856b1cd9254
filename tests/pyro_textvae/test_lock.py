"""One writer per run folder: a second train, resume or evaluate is refused at once, naming the holder."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from pyro_textvae.cli import main
from pyro_textvae.io import load_checkpoint
from pyro_textvae.run_folder import open_run
from tests.cli import test_run_files
from tests.cli.test_run_files import TINY, refused

trained, run = test_run_files.trained, test_run_files.run  # the fixtures: a small trained run, a copy of it


@pytest.fixture
def training(tmp_path):
    """A ``textvae train`` process writing ``tmp_path/run`` (it runs for minutes), and its folder."""
    out = tmp_path / "run"
    process = subprocess.Popen([sys.executable, "-m", "pyro_textvae.cli", "train", "--out", str(out), *TINY,
                                "--synthetic-train", "4000", "--epochs", "50", "--checkpoint-every", "1"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    while not (out / "last.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, process.stderr.read().decode()
    yield process, out
    process.kill()
    process.wait()


@pytest.mark.slow
def test_a_second_writer_is_refused_naming_the_folder_and_the_holder(training, capsys):
    process, out = training
    config = (out / "config.json").read_bytes()
    attempts = [["train", "--out", str(out), *TINY, "--overwrite", "--seed", "9"],
                ["train", "--out", str(out), *TINY],
                ["train", "--resume", str(out), "--no-progress"],
                ["evaluate", str(out), "--checkpoint", "last", "--iw-samples", "2", "--no-progress"]]
    for argv in attempts:
        message = refused(capsys, *argv)
        assert str(out) in message and f"process {process.pid}" in message
    assert process.poll() is None and (out / "config.json").read_bytes() == config
    assert open_run(out, checkpoint="last") is not None  # a reader needs no lock


@pytest.mark.slow
def test_the_lock_of_a_killed_writer_is_gone_and_its_run_resumes(training):
    process, out = training
    process.send_signal(signal.SIGKILL)
    process.wait()
    step = load_checkpoint(out / "last.pt")["trainer"]["step"]
    assert main(["train", "--resume", str(out), "--epochs", "1", "--no-progress"]) == 0
    assert load_checkpoint(out / "last.pt")["trainer"]["step"] >= step
    assert int((out / ".lock").read_text()) == os.getpid()


@pytest.mark.parametrize("kind", ["symlink", "folder", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused_and_nothing_is_written_through_it(run, capsys, tmp_path,
                                                                                      kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    lock = run / ".lock"
    lock.unlink(missing_ok=True)
    {"symlink": lambda: lock.symlink_to(victim), "folder": lock.mkdir, "fifo": lambda: os.mkfifo(lock)}[kind]()
    attempts = [["train", "--resume", str(run), "--epochs", "3"],
                ["train", "--out", str(run), *TINY, "--overwrite"],
                ["evaluate", str(run), "--iw-samples", "2", "--no-progress"]]
    for argv in attempts:
        message = refused(capsys, *argv)
        assert f"{lock}: refused" in message and "not a regular file" in message
    assert victim.read_text() == "precious\n"
    assert (run / "best.pt").is_file() and (run / "config.json").is_file()


@pytest.mark.slow
def test_sigint_ends_training_with_one_line_and_status_130_and_the_run_resumes(training):
    process, out = training
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=60) == 130
    err = process.stderr.read().decode().splitlines()
    assert "Traceback" not in "\n".join(err)
    assert err[-1] == (f"textvae train: interrupted; {out / 'last.pt'} keeps the last checkpoint; "
                       f"continue with `textvae train --resume {out}`")
    assert main(["train", "--resume", str(out), "--epochs", "1", "--no-progress"]) == 0
