"""The paper's schedule (inference/protocol.py): halving epochs and stop epoch against hand-computed
sequences, the trainer following the same rule, and the schedule named by the CLI."""
from __future__ import annotations

import json
import math

import pytest

from inference.protocol import PAPER_SCHEDULE, PlateauSchedule, named_schedule, simulate
from inference.run import new_trainer
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.cli import main
from pyro_textvae.io import load_checkpoint, read_jsonl
from tests.cli.test_cli import TINY
from tests.conftest import SMALL

# patience 2, at most 2 halvings. Epoch: loss -> (best, bad epochs, halvings) by hand:
# 1: 10 -> best; 2: 9 -> best; 3: 9.5 -> bad 1; 4: 9.2 -> bad 2: halve (1); 5: 8 -> best;
# 6: 8 (not below) -> bad 1; 7: 8.5 -> bad 2: halve (2); 8: nan -> bad 1; 9: 9 -> bad 2: a third
# plateau, more than 2 halvings: stop after epoch 9, lr not halved again.
LOSSES = [10.0, 9.0, 9.5, 9.2, 8.0, 8.0, 8.5, math.nan, 9.0, 1.0, 1.0]
SMALL_SCHEDULE = PlateauSchedule(max_epochs=30, decay_patience=2, lr_decay=0.5, max_decays=2)


def test_a_loss_sequence_gives_the_hand_computed_halvings_and_stop():
    trace = simulate(SMALL_SCHEDULE, LOSSES)
    assert trace["halving_epochs"] == [4, 7]
    assert trace["stop_epoch"] == 9
    assert trace["best_epoch"] == 5
    assert trace["lr_factors"] == [1, 1, 1, 1, 0.5, 0.5, 0.5, 0.25, 0.25]


def test_the_paper_schedule_halves_five_times_then_stops():
    # best at epoch 12, then flat: bad epochs 13..17 -> halving after 17, 22, 27, 32, 37; the sixth
    # plateau ends at epoch 42 and stops the run.
    losses = [50.0 - e for e in range(12)] + [40.0] * 60
    trace = simulate(PAPER_SCHEDULE, losses)
    assert (PAPER_SCHEDULE.warmup_epochs, PAPER_SCHEDULE.max_epochs) == (10.0, 100)
    assert trace["halving_epochs"] == [17, 22, 27, 32, 37]
    assert trace["stop_epoch"] == 42
    assert simulate(PlateauSchedule(max_epochs=5), [1.0 / e for e in range(1, 9)])["stop_epoch"] == 5
    assert simulate(PlateauSchedule(decay_patience=0), [1.0] * 99)["halving_epochs"] == []


def test_the_trainer_follows_the_schedule(tmp_path, monkeypatch):
    losses = iter(LOSSES)
    monkeypatch.setattr(Trainer, "evaluate_split", lambda self, split: {"elbo_loss": next(losses)})
    config = TrainConfig(epochs=30, batch_size=32, optimizer="adam", lr=1e-3, decay_patience=2, max_decays=2,
                         progress=False)
    data = {"synthetic": {"num_train": 32, "num_valid": 8, "num_test": 8, "seed": 1}}
    new_trainer(tmp_path / "run", data, SMALL, "elbo", {"warmup_epochs": 1}, config).fit()
    history = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    factors = simulate(SMALL_SCHEDULE, LOSSES)["lr_factors"]
    assert [r["lr"] for r in history] == pytest.approx([1e-3 * f for f in factors])
    assert [r["epoch"] for r in history if r["halved"]] == [4, 7]
    assert [r["stop"] for r in history] == [False] * 8 + [True] and history[-1]["early_stop"]
    assert load_checkpoint(tmp_path / "run" / "best.pt")["epoch"] == 5


def test_train_config_defaults_are_the_paper_schedule():
    config = TrainConfig()
    assert config.plateau == PlateauSchedule(**{k: v for k, v in PAPER_SCHEDULE.to_dict().items()
                                                if k != "warmup_epochs"})


def test_named_schedule_overrides_and_refusals():
    assert named_schedule({"name": "paper", "max_epochs": 40}).max_epochs == 40
    assert named_schedule("paper") == PAPER_SCHEDULE
    for options, message in [({"name": "fast"}, "unknown schedule 'fast'"), ({"patience": 3}, "unknown field"),
                             ({"max_epochs": 2.5}, "max_epochs must be an integer"),
                             ({"lr_decay": 1.5}, r"lr_decay must be in \(0, 1\)"), (3, "preset name or a table")]:
        with pytest.raises(ValueError, match=message):
            named_schedule(options, "[schedule]")


def test_cli_schedule_fills_in_what_was_not_given(tmp_path, capsys):
    out = tmp_path / "run"
    args = ["train", "--schedule", "paper", "--epochs", "1", "--decay-patience", "3", "--out", str(out), *TINY]
    assert main(args) == 0
    config = json.loads((out / "config.json").read_text())
    assert config["objective"]["params"]["warmup_epochs"] == PAPER_SCHEDULE.warmup_epochs
    assert {k: config["train"][k] for k in ("epochs", "decay_patience", "lr_decay", "max_decays")} == {
        "epochs": 1, "decay_patience": 3, "lr_decay": 0.5, "max_decays": 5}
    assert main(["train", "--schedule", "fast", "--out", str(tmp_path / "bad"), *TINY]) == 2
    assert "--schedule: unknown schedule 'fast'" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()


def test_experiment_schedule_section_sets_train_options_and_warm_up(tmp_path):
    from pyro_textvae.cli.experiment_file import load_experiment

    path = tmp_path / "exp.toml"
    methods = ("[[methods]]\nname = 'VAE'\nobjective = 'elbo'\n[[methods]]\nname = 'short'\nobjective = 'dg'\n"
               "params = {warmup_epochs = 1.0}\n[[methods]]\nname = 'beta'\nobjective = 'beta'\n")
    path.write_text("[schedule]\nname = 'paper'\nmax_epochs = 40\n[train]\ndecay_patience = 4\n" + methods)
    config = load_experiment(path)
    assert config["train"] == {"epochs": 40, "decay_patience": 4, "lr_decay": 0.5, "max_decays": 5}
    assert [m["params"] for m in config["methods"]] == [{"warmup_epochs": 10.0}, {"warmup_epochs": 1.0}, {}]
    path.write_text("[schedule]\nname = 'paper'\nmax_epoch = 40\n" + methods)
    with pytest.raises(ValueError, match=r"exp.toml: \[schedule\]: unknown field\(s\) \['max_epoch'\]"):
        load_experiment(path)


def test_the_protocol_config_is_the_paper_schedule_with_40_epochs():
    from pathlib import Path

    from pyro_textvae.cli.experiment_file import load_experiment

    config = load_experiment(Path(__file__).resolve().parents[2] / "examples" / "short_yelp_protocol.toml")
    assert config["train"]["epochs"] == 40 and config["train"]["decay_patience"] == 5
    assert config["train"]["max_decays"] == 5 and config["train"]["optimizer"] == "adam"
    by_name = {m["name"]: m for m in config["methods"]}
    assert by_name["VAE"]["params"] == {"warmup_epochs": 10.0}
    assert by_name["DG-VAE SGD"]["train"] == {"optimizer": "sgd", "lr": 0.5}
    assert config["evaluate"]["iw_samples"] == 500 and config["evaluate"]["iw_subset"] >= 1000
