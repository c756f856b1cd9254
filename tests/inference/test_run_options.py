"""Options of a new run are checked before anything is written: data keys, counts, training options."""
from __future__ import annotations

import re

import pytest

from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.run_folder import load_corpus
from tests.conftest import SMALL

SYNTHETIC = {"num_train": 48, "num_valid": 16, "num_test": 16, "seed": 1}


@pytest.mark.parametrize(
    "data, message",
    [({"pth": "/corpus", "min_cnt": 3}, ("unknown key(s) ['min_cnt', 'pth']; valid: ['labels', 'max_length', "
                                         "'max_vocab', 'min_count', 'path', 'synthetic']")),
     ({"synthetic": {**SYNTHETIC, "num_trian": 40}}, "unknown synthetic key(s) ['num_trian']"),
     ({"synthetic": SYNTHETIC, "min_count": 0}, "min_count must be an integer >= 1 or None, got 0"),
     ({"synthetic": SYNTHETIC, "min_count": -2}, "min_count must be an integer >= 1 or None, got -2"),
     ({"synthetic": SYNTHETIC, "max_length": "20"}, "max_length must be an integer >= 1 or None, got '20'"),
     ({"path": ""}, "path must be a corpus folder, got ''"),
     ({"path": "/corpus", "synthetic": SYNTHETIC}, "path and synthetic exclude each other"),
     ({"synthetic": SYNTHETIC, "labels": "maybe"}, "labels must be one of ['auto', 'yes', 'no']"),
     ({"synthetic": {**SYNTHETIC, "num_topics": 0}}, "synthetic num_topics must be an integer >= 1")],
)
def test_bad_data_options_are_named_instead_of_falling_back(data, message):
    with pytest.raises(ValueError, match=re.escape(f"data options: {message}")):
        load_corpus(data)


def test_only_a_missing_min_count_takes_the_default():
    default = load_corpus({"synthetic": SYNTHETIC, "min_count": None})
    assert default.vocab.itos == load_corpus({"synthetic": SYNTHETIC, "min_count": 1}).vocab.itos
    assert len(load_corpus({"synthetic": SYNTHETIC, "min_count": 3}).vocab) < len(default.vocab)


@pytest.mark.parametrize(
    "option, message",
    [({"lr": -1.0}, "lr must be > 0, got -1.0"), ({"clip_norm": 0.0}, "clip_norm must be > 0, got 0.0"),
     ({"optimizer": "rmsprop"}, "optimizer must be one of ['adam', 'sgd'], got 'rmsprop'"),
     ({"seed": -1}, "seed must be >= 0, got -1"), ({"batch_size": 0}, "batch_size must be >= 1, got 0")],
)
def test_bad_training_options_are_refused_when_the_config_is_made(option, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        TrainConfig(**option)


@pytest.mark.parametrize(
    "data, model, device, message",
    [({"synthetic": SYNTHETIC}, SMALL, "gpu", "device 'gpu' is not a torch device"),
     ({"synthetic": SYNTHETIC, "min_cnt": 2}, SMALL, "cpu", "unknown key(s) ['min_cnt']"),
     ({"synthetic": SYNTHETIC}, {**SMALL, "latent_dim": 0}, "cpu", "latent_dim")],
)
def test_bad_options_leave_no_run_folder_behind(tmp_path, data, model, device, message):
    run = tmp_path / "run"
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False, device=device)
    with pytest.raises(ValueError, match=re.escape(message)):
        new_trainer(run, data, model, "elbo", {}, config)
    assert not run.exists()
    fixed = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False)
    trainer = new_trainer(run, {"synthetic": SYNTHETIC}, SMALL, "elbo", {}, fixed)
    assert {p.name for p in run.iterdir()} == {"config.json", "vocab.json", ".lock"}  # .lock: held while a writer runs
    assert trainer.fit()["epoch"] == 1
