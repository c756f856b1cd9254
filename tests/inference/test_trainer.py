"""Training by SVI: schedules, the latent-weight handler, clipping, run folders and exact resume."""
from __future__ import annotations

import json
import math
import pickle
from pathlib import Path

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.poutine.messenger import Messenger

import inference.checkpoints as checkpoints_module
from inference.handlers import scale_latent
from inference.optim import ClippedOptim
from inference.run import new_trainer, resume_trainer
from inference.schedules import ConstantSchedule, CyclicalSchedule, LinearWarmup
from inference.trainer import TrainConfig
from pyro_textvae.io import CheckpointError, load_checkpoint, read_jsonl
from pyro_textvae.run_folder import open_run
from tests.conftest import SMALL
from tests.inference.crashing import crash_at_step

DATA = {"synthetic": {"num_train": 96, "num_valid": 32, "num_test": 32, "seed": 1}}


def _train(tmp_path, name="run", epochs=2, objective="elbo", params=None, **train):
    config = TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", progress=False, seed=7, **train)
    return new_trainer(tmp_path / name, DATA, SMALL, objective, params or {"warmup_epochs": 1}, config)


def test_schedules_follow_their_formulas():
    warm = LinearWarmup(10)
    assert [warm(t) for t in (0, 5, 10, 30)] == [0.0, 0.5, 1.0, 1.0]
    cyc = CyclicalSchedule(cycle=8, warmup=4)
    assert [cyc(t) for t in (0, 2, 4, 7, 8, 10)] == [0.0, 0.5, 1.0, 1.0, 0.0, 0.5]
    assert ConstantSchedule(0.4)(123) == 0.4
    with pytest.raises(ValueError):
        CyclicalSchedule(cycle=4, warmup=8)


def _toy_model(x):
    with pyro.plate("data", 3):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _toy_guide(x):
    loc = pyro.param("loc", torch.tensor([0.3, -1.0, 2.0]))
    with pyro.plate("data", 3):
        pyro.sample("z", dist.Normal(loc, 0.5))


@pytest.mark.parametrize("weight", [1.0, 0.3, 0.0])
def test_scale_latent_weights_only_the_latent_term(weight):
    x = torch.tensor([0.5, 0.1, -0.2])
    pyro.set_rng_seed(0)
    loss = Trace_ELBO().loss(scale_latent(_toy_model, weight), scale_latent(_toy_guide, weight), x)
    pyro.set_rng_seed(0)
    guide_trace = poutine.trace(_toy_guide).get_trace(x)
    model_trace = poutine.trace(poutine.replay(_toy_model, guide_trace)).get_trace(x)
    z = guide_trace.nodes["z"]["value"]
    rec = -dist.Normal(z, 1.0).log_prob(x).sum()
    latent = (dist.Normal(torch.tensor([0.3, -1.0, 2.0]), 0.5).log_prob(z) - dist.Normal(0.0, 1.0).log_prob(z)).sum()
    assert model_trace.nodes["z"]["value"] is z
    assert loss == pytest.approx(float((rec + weight * latent).detach()), rel=1e-5)


def test_clipped_optim_clips_the_global_norm():
    a = torch.nn.Parameter(torch.zeros(2))
    b = torch.nn.Parameter(torch.zeros(1))
    pyro.param("a", a)
    pyro.param("b", b)
    a.grad, b.grad = torch.tensor([3.0, 4.0]), torch.tensor([12.0])
    ClippedOptim("sgd", lr=1.0, clip_norm=6.5)([pyro.param("a").unconstrained(), pyro.param("b").unconstrained()])
    assert torch.allclose(a.detach(), -torch.tensor([1.5, 2.0]))
    assert torch.allclose(b.detach(), -torch.tensor([6.0]))
    assert a.grad is None and b.grad is None, "gradients are released after the step, not refilled with zeros"
    with pytest.raises(ValueError, match="unknown optimizer"):
        ClippedOptim("rmsprop", lr=1.0)


@pytest.mark.slow
def test_two_epochs_lower_the_validation_loss(tmp_path):
    trainer = _train(tmp_path, epochs=3)
    before = trainer.evaluate_split(trainer.corpus.splits["valid"])["elbo_loss"]
    trainer.fit()
    history = read_jsonl(tmp_path / "run" / "metrics.jsonl")
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert history[-1]["valid_elbo_loss"] < before
    written = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.json", "vocab.json", "metrics.jsonl", "best.pt", "last.pt"} <= written
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["train"]["seed"] == 7 and config["objective"]["name"] == "elbo"


def _parameters(run_dir):
    return load_checkpoint(run_dir / "last.pt")["model"]


def test_resume_reaches_the_same_parameters(tmp_path):
    _train(tmp_path, "straight", epochs=2).fit()
    _train(tmp_path, "stopped", epochs=1).fit()
    resume_trainer(tmp_path / "stopped", epochs=2).fit(resume=True)
    straight, resumed = _parameters(tmp_path / "straight"), _parameters(tmp_path / "stopped")
    differences = {k: float((straight[k] - resumed[k]).abs().max()) for k in straight}
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), differences
    assert len(read_jsonl(tmp_path / "stopped" / "metrics.jsonl")) == 2


@pytest.mark.slow
def test_resume_from_a_mid_epoch_checkpoint(tmp_path):
    _train(tmp_path, "straight", epochs=2).fit()
    trainer = crash_at_step(_train(tmp_path, "crashed", epochs=2, checkpoint_every=3), 9)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    assert load_checkpoint(tmp_path / "crashed" / "last.pt")["trainer"]["step"] == 6
    resume_trainer(tmp_path / "crashed").fit(resume=True)
    straight, resumed = _parameters(tmp_path / "straight"), _parameters(tmp_path / "crashed")
    differences = {k: float((straight[k] - resumed[k]).abs().max()) for k in straight}
    assert all(torch.equal(straight[k], resumed[k]) for k in straight), differences


def _lines_without_timing(run_dir):
    return [{k: v for k, v in record.items() if k != "seconds"} for record in read_jsonl(run_dir / "metrics.jsonl")]


@pytest.mark.slow
@pytest.mark.parametrize("crash", ["after the metrics line", "after last.pt"])
def test_a_crash_at_the_end_of_an_epoch_keeps_each_metrics_line_once(tmp_path, monkeypatch, crash):
    """A crash between epoch 2's metrics line and its ``last.pt``, or right after its ``last.pt``:
    the resumed run's metrics.jsonl holds epochs 1..3 once each, as an uninterrupted run's does."""
    _train(tmp_path, "straight", epochs=3).fit()
    trainer = _train(tmp_path, "crashed", epochs=3)
    save_checkpoint = checkpoints_module.save_checkpoint  # last.pt is written there
    saved = {"last.pt": 0}

    def crash_at_second_last_pt(path, state):
        if Path(path).name == "last.pt":
            saved["last.pt"] += 1
            if saved["last.pt"] == 2 and crash == "after the metrics line":
                raise KeyboardInterrupt
        save_checkpoint(path, state)
        if saved["last.pt"] == 2 and crash == "after last.pt":
            raise KeyboardInterrupt

    monkeypatch.setattr(checkpoints_module, "save_checkpoint", crash_at_second_last_pt)
    with pytest.raises(KeyboardInterrupt):
        trainer.fit()
    monkeypatch.undo()
    assert [r["epoch"] for r in read_jsonl(tmp_path / "crashed" / "metrics.jsonl")] == [1, 2]
    assert load_checkpoint(tmp_path / "crashed" / "last.pt")["trainer"]["epoch"] == (crash == "after last.pt") + 1
    resume_trainer(tmp_path / "crashed").fit(resume=True)
    assert [r["epoch"] for r in read_jsonl(tmp_path / "crashed" / "metrics.jsonl")] == [1, 2, 3]
    assert _lines_without_timing(tmp_path / "crashed") == _lines_without_timing(tmp_path / "straight")


def test_existing_run_folder_is_not_overwritten(tmp_path):
    _train(tmp_path, epochs=1).fit()
    before = (tmp_path / "run" / "last.pt").read_bytes()
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        _train(tmp_path, epochs=1)
    assert (tmp_path / "run" / "last.pt").read_bytes() == before


def test_checkpoint_of_another_size_is_refused(tmp_path):
    _train(tmp_path, epochs=1).fit()
    config_path = tmp_path / "run" / "config.json"
    config = json.loads(config_path.read_text())
    config["model"]["hidden_dim"] = 48
    config_path.write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="differ from the model"):
        open_run(tmp_path / "run")


class _PoisonLikelihood(Messenger):
    """Turns the likelihood of the observed site into NaN (a stand-in for a bad batch)."""

    def _process_message(self, msg):
        if msg["type"] == "sample" and msg["is_observed"]:
            msg["scale"] = msg["scale"] * float("nan")


class _Payload:
    def __reduce__(self):
        return (print, ("this would have run code",))


def test_pickled_object_in_checkpoint_is_refused(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CheckpointError, match="weights_only"):
        load_checkpoint(path)
    path.write_bytes(pickle.dumps({"a": 1}) + b"garbage")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    trainer = _train(tmp_path, epochs=2)
    trainer.fit()
    good = _parameters(tmp_path / "run")
    poisoned = resume_trainer(tmp_path / "run", epochs=3)
    model = poisoned.vae.model

    def nan_model(tokens, mask, num_data=None):
        with _PoisonLikelihood():
            return model(tokens, mask, num_data)

    poisoned.vae.model = nan_model
    with pytest.raises(FloatingPointError, match="step"):
        poisoned.fit(resume=True)
    after = _parameters(tmp_path / "run")
    assert all(torch.equal(good[k], after[k]) for k in good)


def test_skip_nonfinite_allows_bad_batches(tmp_path):
    trainer = _train(tmp_path, epochs=1, skip_nonfinite=100)
    model = trainer.vae.model
    calls = {"n": 0}

    def sometimes_nan(tokens, mask, num_data=None):
        calls["n"] += 1
        if calls["n"] == 2:
            with _PoisonLikelihood():
                return model(tokens, mask, num_data)
        return model(tokens, mask, num_data)

    trainer.vae.model = sometimes_nan
    record = trainer.fit()
    assert record["skipped_batches"] == 1 and math.isfinite(record["train_loss"])


def test_config_json_with_wrong_types_or_keys_is_refused(tmp_path):
    _train(tmp_path, epochs=1).fit()
    path = tmp_path / "run" / "config.json"
    original = json.loads(path.read_text())
    for section, key, value, message in [("train", "epochs", "3", "epochs must be int"),
                                         ("train", "shell", "rm -rf /", "unknown option"),
                                         ("model", "latent_dim", 4.5, "latent_dim must be int")]:
        config = json.loads(json.dumps(original))
        config[section][key] = value
        path.write_text(json.dumps(config))
        with pytest.raises(ValueError, match=message):
            resume_trainer(tmp_path / "run")


@pytest.mark.parametrize("checkpoint_every, at", [(1, 3), (0, 6)], ids=["at a step's checkpoint", "at the epoch's end"])
def test_a_diverged_update_is_never_written_to_a_checkpoint(tmp_path, checkpoint_every, at):
    """An update that leaves an infinity in a parameter (as SGD at a huge lr does) stops training before
    validation or a checkpoint reads it; last.pt keeps the last finite state and still loads."""
    trainer = _train(tmp_path, epochs=2, checkpoint_every=checkpoint_every)
    trainer.fit()
    kept = _parameters(tmp_path / "run")
    resumed = resume_trainer(tmp_path / "run", epochs=3)
    step, calls = resumed.step, {"n": 0}

    def diverging(tokens, mask):
        values = step(tokens, mask)
        calls["n"] += 1
        if calls["n"] == at:
            with torch.no_grad():
                next(resumed.vae.parameters()).fill_(math.inf)
        return values

    resumed.step = diverging
    with pytest.raises(FloatingPointError, match=f"non-finite values in .* at step {12 + at}: the updates diverged"):
        resumed.fit(resume=True)
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["trainer"]["step"] == (11 + at if checkpoint_every else 12)
    if not checkpoint_every:
        assert all(torch.equal(kept[k], state["model"][k]) for k in kept)
    assert len(read_jsonl(tmp_path / "run" / "metrics.jsonl")) == 2
