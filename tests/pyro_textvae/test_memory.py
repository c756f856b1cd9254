"""Sizes that would not fit in memory are refused from their estimate, before any allocation."""
from __future__ import annotations

import json

import pytest

import pyro_textvae.memory as memory
from pyro_textvae.memory import parameter_count, training_estimate
from pyro_textvae.model import TextVAE, TextVAEConfig
from tests.cli.test_run_files import TINY, refused, run, trained  # noqa: F401  (fixtures)


@pytest.mark.parametrize("options", [{"vocab_size": 137}, {"vocab_size": 90, "skip": True, "bow": True},
                                     {"vocab_size": 50, "embed_dim": 7, "hidden_dim": 11, "latent_dim": 3}])
def test_the_parameter_count_formula_matches_the_model_within_a_percent(options):
    config = TextVAEConfig(**options)
    count = sum(p.numel() for p in TextVAE(config).parameters())
    assert abs(parameter_count(config) - count) <= 0.01 * count


def test_training_estimate_adds_adams_moments_and_the_density_gap_samples():
    config = TextVAEConfig(vocab_size=100, embed_dim=8, hidden_dim=16, latent_dim=4)
    sgd = training_estimate(config, 32, 10, "sgd")
    adam = training_estimate(config, 32, 10, "adam", num_samples=1000)
    assert adam["model"] == 2 * sgd["model"] == 16 * parameter_count(config)
    assert adam["density gap"] == 6 * 4 * 1000 * 32 * 4 and "density gap" not in sgd


@pytest.mark.parametrize("command", [["sample", "-n", "1"], ["train", "--resume"]])
def test_a_huge_hidden_dim_in_config_json_is_refused_with_the_estimate(run, capsys, command):  # noqa: F811
    path = run / "config.json"
    config = json.loads(path.read_text())
    config["model"]["hidden_dim"] = 10**9
    path.write_text(json.dumps(config))
    message = refused(capsys, command[0], *command[1:], str(run)) if command[0] == "sample" else \
        refused(capsys, "train", "--resume", str(run), "--no-progress")
    assert "GiB" in message and "available" in message and "hidden_dim" in message


def test_too_many_density_gap_samples_are_refused_and_leave_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    message = refused(capsys, "train", "--out", str(out), *TINY, "--objective", "dg", "--dg-samples", "100000000")
    assert "density gap" in message and "--dg-samples" in message and "available" in message
    assert not out.exists()


def test_the_estimate_is_compared_with_the_available_memory(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**16)
    message = refused(capsys, "train", "--out", str(tmp_path / "run"), *TINY)
    assert "6.1e-05 GiB available" in message and not (tmp_path / "run").exists()


def _fake_cgroups(tmp_path, proc_lines: str, files: dict[str, str]):
    (tmp_path / "cgroup").write_text(proc_lines)
    for name, text in files.items():
        (tmp_path / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "fs" / name).write_text(text)
    return tmp_path / "cgroup", tmp_path / "fs"


@pytest.mark.parametrize("proc_lines, files, expected", [
    ("0::/job/step\n", {"job/step/memory.max": "max\n", "job/step/memory.current": "5\n",
                        "job/memory.max": "1073741824\n", "job/memory.current": "73741824\n"}, 10**9),
    ("0::/\n", {"memory.max": "2048\n", "memory.current": "48\n"}, 2000),
    ("4:memory:/slurm/job\n0::/\n", {"memory/slurm/job/memory.limit_in_bytes": "3000\n",
                                     "memory/slurm/job/memory.usage_in_bytes": "1000\n",
                                     "memory/memory.limit_in_bytes": "9223372036854771712\n"}, 2000),
    ("0::/job\n", {"job/memory.max": "max\n"}, None),
    ("4:cpu:/x\n", {}, None),
])
def test_the_cgroup_limit_is_read_at_every_level_of_v1_and_v2(tmp_path, proc_lines, files, expected):
    assert memory.cgroup_memory_available(*_fake_cgroups(tmp_path, proc_lines, files)) == expected


def test_a_run_over_its_cgroup_limit_is_refused_though_the_machine_has_room(tmp_path, capsys, monkeypatch):
    proc, root = _fake_cgroups(tmp_path, "0::/job\n", {"job/memory.max": str(2**16), "job/memory.current": "0"})
    monkeypatch.setattr(memory, "PROC_CGROUP", proc)
    monkeypatch.setattr(memory, "CGROUP_ROOT", root)
    assert memory._machine_available() > 2**30
    message = refused(capsys, "train", "--out", str(tmp_path / "run"), *TINY)
    assert "6.1e-05 GiB available" in message and not (tmp_path / "run").exists()


def test_a_validation_split_of_far_longer_sentences_counts_in_the_estimate(monkeypatch):
    from inference.objectives import get_objective
    from inference.run import check_training_memory
    from inference.train_config import TrainConfig
    from pyro_textvae.data import Corpus
    from pyro_textvae.data.corpus import Split
    from pyro_textvae.errors import OptionError

    short, long = [["a", "b"]] * 4, [["a", "b"] * 2000] * 4
    corpus = Corpus.from_splits({"train": Split(short), "valid": Split(long), "test": Split(short)})
    config = TextVAEConfig(vocab_size=len(corpus.vocab), embed_dim=8, hidden_dim=16, latent_dim=3)
    train = TrainConfig(batch_size=4, optimizer="adam")
    params = get_objective("elbo").configure({})
    from inference.trainer import EVAL_BATCH

    short_only = sum(training_estimate(config, 4, 2, "adam", validation=(EVAL_BATCH, 2)).values())
    monkeypatch.setattr(memory, "available_memory", lambda device: short_only)
    with pytest.raises(OptionError, match="GiB available"):
        check_training_memory(config, train, corpus, params)
    short_valid = Corpus.from_splits({"train": Split(short), "valid": Split(short), "test": Split(long)})
    check_training_memory(config, train, short_valid, params)  # the test split is not batched in training
