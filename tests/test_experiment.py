"""A miniature of the paper's comparison: two objectives, the synthetic corpus, one epoch."""
from __future__ import annotations

import csv
import re
import struct

import pytest

from evaluation.experiment import load_experiment
from evaluation.tables import COLUMNS
from pyro_textvae.cli import main

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


def test_miniature_experiment_fills_every_column_and_draws_the_scatter(tmp_path, capsys):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG)
    assert main(["experiment", str(config), "--no-progress"]) == 0
    out = tmp_path / "results"
    with open(out / "results.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["method"] for row in rows] == ["VAE", "DG-VAE"]
    for row in rows:
        for name, _ in COLUMNS:
            assert row[f"{name} mean"] != "", (row["method"], name)
    assert _png_size(out / "mi_vs_joint_kl.png") == (1000, 450)
    assert _png_size(out / "holes.png")[0] > 0
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
     ("seeds = [", "not valid TOML")],
)
def test_bad_experiment_files_are_named(tmp_path, text, message):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=re.escape(message)):
        load_experiment(path)
