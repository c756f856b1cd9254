"""Commands that write into folders besides ``train`` (evaluate, explore): they hold the folder's lock
and remove the temporaries that a write killed halfway left there."""
from __future__ import annotations

import shutil

import pytest

from pyro_textvae.cli import main
from pyro_textvae.lock import FolderLock
from tests.cli.test_run_files import TINY, refused

EVALUATE = ["--iw-samples", "2", "--iw-subset", "4", "--prior-samples", "50", "--num-generate", "2",
            "--num-interpolations", "1", "--no-progress"]
EXPLORE = ["--sentences", "2", "--draws", "2", "--chains", "1", "--prior-samples", "20", "--dpi", "20"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    out = tmp_path_factory.mktemp("writers") / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--seed", "3", "--curve-samples", "0", *TINY]) == 0
    return out


@pytest.fixture
def run(trained, tmp_path):
    return shutil.copytree(trained, tmp_path / "run")


def test_evaluate_removes_the_temporaries_of_a_killed_write(run, capsys):
    (run / ".eval.json.k1ll3d.tmp").write_bytes(b"half an eval.json")
    assert main(["evaluate", str(run), *EVALUATE]) == 0
    assert (run / "eval.json").is_file() and not list(run.glob(".*.tmp"))


def test_explore_removes_the_temporaries_of_killed_writes_in_the_run_and_its_out(run, tmp_path):
    out = tmp_path / "pictures"
    (out / "sub").mkdir(parents=True)
    left = [run / ".inference_data.nc.k1ll3d.tmp", out / ".hole.png.k1ll3d.tmp", out / "sub" / ".forest.png.x.tmp"]
    for path in left:
        path.write_bytes(b"half a file")
    assert main(["explore", str(run), "--out", str(out), *EXPLORE]) == 0
    assert (out / "hole.png").is_file() and not any(path.exists() for path in left)


def test_explore_refuses_a_run_folder_another_process_writes(run, tmp_path, capsys):
    out = tmp_path / "pictures"
    before = sorted(path.name for path in run.iterdir())
    with FolderLock(run):
        line = refused(capsys, "explore", str(run), "--out", str(out), *EXPLORE)
    assert line.startswith(f"textvae explore: error: folder '{run}' is in use by ") and not out.exists()
    assert sorted(path.name for path in run.iterdir()) == before


def test_explore_into_its_own_run_folder_locks_it_once(run):
    assert main(["explore", str(run), "--out", str(run), *EXPLORE]) == 0
    assert (run / "hole.png").is_file()
