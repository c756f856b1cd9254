"""Run folders of training: a new run writes config.json and vocab.json that read back to the same run, a
folder holding a run is never overwritten unasked, and a resumed run rebuilds the same trainer."""
from __future__ import annotations

import json

import pytest
import torch

from inference.objectives import get_objective
from inference.run import (
    check_run_dir,
    check_split_sizes,
    new_trainer,
    prepare_run_dir,
    remove_temporaries,
    resume_trainer,
)
from inference.train_config import TrainConfig
from pyro_textvae.data import CorpusError
from pyro_textvae.run_folder import load_corpus, read_config, read_vocab

from ..conftest import SMALL

DATA = {"synthetic": {"num_train": 48, "num_valid": 16, "num_test": 16, "seed": 2}}


def _trainer(run_dir, **options):
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False, seed=3, **options)
    return new_trainer(run_dir, DATA, SMALL, "dg", {"num_samples": 4}, config)


def test_a_new_run_writes_a_config_that_reads_back_to_the_same_run(tmp_path):
    trainer = _trainer(tmp_path / "run")
    trainer.close()
    config = read_config(tmp_path / "run")
    assert config["objective"] == {"name": "dg", "params": get_objective("dg").configure({"num_samples": 4}).to_dict()}
    assert config["objective"]["params"]["num_samples"] == 4
    assert config["model"]["latent_dim"] == SMALL["latent_dim"]
    assert config["train"]["seed"] == 3 and config["data"] == DATA
    assert read_vocab(tmp_path / "run", config).itos == trainer.corpus.vocab.itos
    assert sorted(p.name for p in (tmp_path / "run").iterdir() if not p.name.startswith(".")) == [
        "config.json", "vocab.json"]


def test_a_resumed_run_has_the_same_model_objective_and_initial_parameters(tmp_path):
    first = _trainer(tmp_path / "run")
    first.close()
    resumed = resume_trainer(tmp_path / "run", epochs=5)
    try:
        assert resumed.config.epochs == 5 and resumed.config.seed == first.config.seed
        assert type(resumed.loss) is type(first.loss) and resumed.selection == "objective"
        assert resumed.vae.config == first.vae.config
        for (name, a), (_, b) in zip(first.vae.state_dict().items(), resumed.vae.state_dict().items()):
            assert torch.equal(a, b), name
    finally:
        resumed.close()


def test_a_folder_holding_a_run_is_refused_and_overwrite_clears_its_results(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text("{}\n")
    (run / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match="already exists; pass overwrite=True"):
        check_run_dir(run, overwrite=False)
    prepare_run_dir(run, overwrite=True)
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt"]


def test_overwrite_removes_every_file_of_the_old_run_that_a_command_reads(tmp_path):
    from evaluation.arviz_data import NETCDF_NAME
    from evaluation.evaluate_options import SPLITS
    from evaluation.tables import eval_filename

    run = tmp_path / "run"
    run.mkdir()
    old = ["config.json", "vocab.json", "metrics.jsonl", "best.pt", "last.pt", NETCDF_NAME]
    old += [eval_filename(split, suffix) for split in SPLITS for suffix in ("json", "md")]
    for name in old + ["notes.txt"]:
        (run / name).write_text("old run")
    prepare_run_dir(run, overwrite=True)
    assert [p.name for p in run.iterdir()] == ["notes.txt"]


def test_a_folder_a_killed_start_left_counts_as_unused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "vocab.json").write_text("[]")
    (run / ".config.json.abc.tmp").write_text("{")
    check_run_dir(run, overwrite=False)
    remove_temporaries(run)
    assert [p.name for p in run.iterdir()] == ["vocab.json"]


def test_a_split_emptied_by_the_length_filter_is_refused_naming_it(tmp_path):
    data = {"synthetic": {"num_train": 16, "num_valid": 1, "num_test": 8, "seed": 0}}
    with pytest.raises(CorpusError, match="valid split: 1 sentence"):
        check_split_sizes(load_corpus(data), data)


def test_resuming_a_folder_that_does_not_exist_names_it(tmp_path):
    from pyro_textvae.io import CheckpointError

    with pytest.raises(CheckpointError, match="'.*missing' does not exist"):
        resume_trainer(tmp_path / "missing")


def test_config_json_is_valid_json_with_a_version(tmp_path):
    _trainer(tmp_path / "run").close()
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert isinstance(config["version"], int)
