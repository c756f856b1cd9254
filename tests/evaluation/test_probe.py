"""What z holds: the linear probe against hand-made features, the account ``textvae train`` prints,
and the main job's demo (reduced to seconds, same shape) clearing its probe bars."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from evaluation.probe import (
    best_line,
    posterior_centers,
    probe_accuracy,
    run_account_lines,
    synthetic_factors,
    synthetic_probes,
)
from inference.run import new_trainer
from inference.train_config import TrainConfig
from pyro_textvae.cli import main
from pyro_textvae.demo import SYNTHETIC_OPTIMIZER, SYNTHETIC_SIZES
from pyro_textvae.errors import CheckpointError
from pyro_textvae.io import append_jsonl, load_checkpoint, save_checkpoint
from pyro_textvae.run_folder import open_run

# The demo, reduced: the main job's objective, optimiser, validation and test splits and latent size,
# with 2,000 training sentences, a 64-unit LSTM and 3 epochs (about 10 s of CPU on one thread).
REDUCED_DATA = {"synthetic": {**SYNTHETIC_SIZES, "num_train": 2000, "seed": 0}}
REDUCED_MODEL = {"embed_dim": 32, "hidden_dim": 64}
REDUCED_EPOCHS = 3
# Bars (chance: 0.25 topic, 0.5 sentiment). Measured for the reduced demo: topic 0.49, sentiment 0.75.
TOPIC_BAR = 0.40
SENTIMENT_BAR = 0.65


def test_probe_is_exact_on_separable_features_and_at_chance_on_unrelated_ones():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(2000, 3))
    labels = np.where(z[:, 1] > 0.2, "pos", "neg")
    assert probe_accuracy(z[:1000], labels[:1000], z[1000:], labels[1000:]) == pytest.approx(1.0, abs=0.01)
    noise = rng.choice(["a", "b", "c", "d"], size=2000)
    assert probe_accuracy(z[:1000], noise[:1000], z[1000:], noise[1000:]) == pytest.approx(0.25, abs=0.06)
    with pytest.raises(ValueError, match="one d"):
        probe_accuracy(z[:10], labels[:10], z[:10, :2], labels[:10])
    with pytest.raises(ValueError, match="one label per row"):
        probe_accuracy(z[:10], labels[:9], z[:10], labels[:10])
    with pytest.raises(ValueError, match="two classes"):
        probe_accuracy(z[:10], ["a"] * 10, z[:10], labels[:10])


def test_synthetic_probes_read_topic_and_sentiment_from_the_labels():
    labels = [f"topic{t}-{s}" for t in range(4) for s in ("pos", "neg")] * 50
    assert synthetic_factors(labels[:3]) == {"topic": [0, 0, 1], "sentiment": ["pos", "neg", "pos"]}
    topic = np.array([int(label[5]) for label in labels])
    sentiment = np.array([label.endswith("pos") for label in labels], dtype=float)
    z = np.stack([topic == k for k in range(4)] + [sentiment], 1).astype(float)  # one-hot topic, sentiment
    assert synthetic_probes(z, labels, z, labels) == {"topic": 1.0, "sentiment": 1.0}
    only_sentiment = synthetic_probes(z[:, 4:], labels, z[:, 4:], labels)
    assert only_sentiment["sentiment"] == 1.0 and only_sentiment["topic"] == pytest.approx(0.25)
    with pytest.raises(ValueError, match="not a synthetic label"):
        synthetic_factors(["0"])


@pytest.fixture(scope="module")
def reduced_demo(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("demo") / "run"
    train = TrainConfig(epochs=REDUCED_EPOCHS, optimizer=SYNTHETIC_OPTIMIZER, progress=False)
    new_trainer(out, REDUCED_DATA, REDUCED_MODEL, "dg", {}, train).fit()
    return out


@pytest.mark.slow
def test_the_reduced_demo_puts_topic_and_sentiment_into_z(reduced_demo):
    run = open_run(reduced_demo)
    train, test = run.corpus.splits["train"], run.corpus.splits["test"]
    probes = synthetic_probes(posterior_centers(run.vae, train), train.labels,
                              posterior_centers(run.vae, test), test.labels)
    assert probes["topic"] >= TOPIC_BAR and probes["sentiment"] >= SENTIMENT_BAR, probes


@pytest.mark.slow
def test_the_account_names_each_checkpoint_and_which_one_is_best(reduced_demo, tmp_path):
    history = [json.loads(line) for line in (reduced_demo / "metrics.jsonl").read_text().splitlines()]
    best = min(history, key=lambda r: r["valid_objective_loss"])  # DG-VAE selects on its own loss
    lines = run_account_lines(reduced_demo)
    assert lines[-1] == best_line(reduced_demo)
    assert lines[-1].startswith(f"best checkpoint: best.pt is epoch {best['epoch']} of {len(history)} (lowest "
                                f"validation loss of the objective, {best['valid_objective_loss']:.2f}); "
                                "last.pt is epoch 3")
    assert lines[1].startswith(f"  best.pt (epoch {best['epoch']}): topic ")
    assert ("last.pt (epoch 3)" in "\n".join(lines)) == (best["epoch"] != 3)
    # an earlier best.pt: both checkpoints are accounted for, each with its own epoch
    import shutil

    copy = shutil.copytree(reduced_demo, tmp_path / "copy")
    state = load_checkpoint(copy / "best.pt")
    torch.save({**state, "epoch": 1}, copy / "best.pt")
    lines = run_account_lines(copy)
    assert [line.split(":")[0].strip() for line in lines if line.startswith("  ") and not line.startswith("    ")] \
        == ["best.pt (epoch 1)", "last.pt (epoch 3)"]
    assert "best.pt is epoch 1 of 3" in lines[-1]


def test_sample_and_reconstruct_read_the_checkpoint_asked_for(tmp_path, capsys):
    """best.pt made to say one word only: ``--checkpoint best`` decodes it, ``--checkpoint last`` does not."""
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--synthetic-train", "64", "--embed-dim", "8",
                 "--hidden-dim", "16", "--latent-dim", "3", "--batch-size", "16", "--no-progress"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == best_line(out)
    assert "(lowest validation -ELBO, " in best_line(out)  # elbo: the per-sentence -ELBO selects
    state = load_checkpoint(out / "best.pt")
    vocab = json.loads((out / "vocab.json").read_text())
    word = vocab.index("kifo")
    weight = next(k for k in state["model"] if k.endswith("output.weight"))
    state["model"][weight] = torch.zeros_like(state["model"][weight])
    bias = weight.replace("weight", "bias")
    state["model"][bias] = torch.zeros_like(state["model"][bias])
    state["model"][bias][word] = 10.0
    torch.save(state, out / "best.pt")
    for command in (["sample", str(out), "-n", "2"], ["reconstruct", str(out), "very good kifo !"]):
        assert main([*command, "--max-length", "4"]) == 0
        decoded = capsys.readouterr().out.split(" -> ")[-1]  # reconstruct prints INPUT -> OUTPUT
        assert decoded.split() == ["kifo"] * 4 * (2 if command[0] == "sample" else 1)
        assert main([*command, "--max-length", "4", "--checkpoint", "last"]) == 0
        assert set(capsys.readouterr().out.split(" -> ")[-1].split()) != {"kifo"}
    with pytest.raises(SystemExit):
        main(["sample", str(out), "--checkpoint", "first"])


def test_best_line_refuses_a_best_epoch_that_metrics_jsonl_does_not_hold(tmp_path):
    for epoch in (1, 2):
        append_jsonl(tmp_path / "metrics.jsonl", {"epoch": epoch, "valid_elbo_loss": 40.0 - epoch})
    save_checkpoint(tmp_path / "best.pt", {"epoch": 2})
    assert best_line(tmp_path).startswith("best checkpoint: best.pt is epoch 2 of 2 (lowest validation -ELBO, 38.00)")
    save_checkpoint(tmp_path / "best.pt", {"epoch": 5})
    with pytest.raises(CheckpointError, match=r"best\.pt: epoch 5, but metrics\.jsonl has 2 epochs"):
        best_line(tmp_path)
