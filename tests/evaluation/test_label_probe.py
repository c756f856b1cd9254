"""The probe learning curve of the label (evaluation/label_probe.py) and its place in eval.json."""
from __future__ import annotations

import numpy as np
import pytest

from evaluation.label_probe import linear_probe, probe_positions
from evaluation.report import evaluate_run, evaluation_settings
from evaluation.tables import COLUMNS, metric_value
from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.run_folder import open_run
from tests.conftest import SMALL


def _separable(n, rng):
    labels = rng.integers(0, 2, n)
    features = np.stack([4.0 * labels - 2.0 + 0.1 * rng.standard_normal(n), rng.standard_normal(n)], 1)
    return features, [str(label) for label in labels]


def test_nested_seeded_subsets():
    assert probe_positions(50, 10, 3) == probe_positions(50, 20, 3)[:10]
    assert sorted(probe_positions(7, 100, 0)) == list(range(7))
    assert probe_positions(50, 10, 3) != probe_positions(50, 10, 4)


def test_a_separable_label_is_read_off_and_a_constant_feature_is_at_chance():
    rng = np.random.default_rng(0)
    train_x, train_y = _separable(400, rng)
    test_x, test_y = _separable(200, rng)
    result = linear_probe(train_x, train_y, test_x, test_y, sizes=(10, 400), seed=1)
    assert result["accuracy"] == {"10": 1.0, "400": 1.0} and result["num_train"] == {"10": 10, "400": 400}
    flat = linear_probe(np.zeros_like(train_x), train_y, np.zeros_like(test_x), test_y, sizes=(400,))
    train_majority = max(set(train_y), key=train_y.count)  # constant features: the intercept alone decides
    assert flat["accuracy"]["400"] == np.mean(np.asarray(test_y) == train_majority)
    assert result["majority"] == max(test_y.count(label) for label in set(test_y)) / len(test_y)
    noisy_x = train_x + rng.standard_normal(train_x.shape) * 3.0
    noisy = linear_probe(noisy_x, train_y, test_x, test_y, (30,), 2)["accuracy"]["30"]
    assert linear_probe(noisy_x * 0.01, train_y, test_x * 0.01, test_y, (30,), 2)["accuracy"]["30"] == noisy
    assert linear_probe(train_x, ["a"] * 400, test_x, test_y, (30,))["accuracy"]["30"] == test_y.count("a") / 200
    with pytest.raises(ValueError, match="differ in length"):
        linear_probe(train_x, train_y[:-1], test_x, test_y)


def test_eval_json_has_the_probe_and_the_table_its_columns(tmp_path):
    data = {"synthetic": {"num_train": 64, "num_valid": 16, "num_test": 24, "seed": 4}}
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False)
    new_trainer(tmp_path / "run", data, SMALL, "elbo", {"warmup_epochs": 1}, config).fit()
    run = open_run(tmp_path / "run")
    assert run.corpus.splits["train"].labels is not None
    result = evaluate_run(run, iw_samples=2, prior_samples=50, num_generate=4, num_interpolations=2,
                          probe_sizes=(8, 64), progress=False, subset_seed=5)
    probe = result["probe"]
    assert set(probe["accuracy"]) == {"8", "64"} and probe["num_test"] == 24 and probe["seed"] == 5
    assert all(0.0 <= value <= 1.0 for value in probe["accuracy"].values())
    assert result["settings"]["probe_sizes"] == [8, 64] == evaluation_settings(probe_sizes=(8, 64))["probe_sizes"]
    names = [name for name, keys in COLUMNS if keys[0] == "probe"]
    assert names == ["probe acc 100", "probe acc 1,000", "probe acc 10,000"]
    assert metric_value(result, ("probe", "accuracy", "64")) == probe["accuracy"]["64"]
    with pytest.raises(ValueError, match="probe_sizes"):
        evaluate_run(run, probe_sizes=(0,), progress=False)
