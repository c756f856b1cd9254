"""What the latent code knows: linear probes of known factors from z, and the account of a run that
``textvae train`` prints at its end.

A linear probe fits multinomial logistic regression (scikit-learn's ``LogisticRegression``) from the
posterior centers ``E[z|x]`` of the training sentences to a label, and reports its accuracy on the
centers of held-out sentences: ``acc = (1/N) sum_i [argmax_c w_c . z_i + b_c = y_i]``. On the
synthetic corpus (:mod:`pyro_textvae.data.synthetic`) every sentence carries its true topic and
sentiment, so the probe says how much of each the encoder put into z (chance: 1/K topics, 1/2).
A collapsed model scores chance; a model whose reconstructions follow the input scores near 1.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from pyro_textvae.data import EncodedSplit, make_batch
from pyro_textvae.data.synthetic import parse_label
from pyro_textvae.errors import CheckpointError
from pyro_textvae.io import load_checkpoint, load_json
from pyro_textvae.model import TextVAE
from pyro_textvae.run_folder import read_history

from .generation import decode, posterior_center
from .latent_metrics import active_units

PROBE_MAX_ITER = 2000


def probe_accuracy(
    train_z: np.ndarray, train_labels: Sequence, test_z: np.ndarray, test_labels: Sequence, seed: int = 0
) -> float:
    """Accuracy on ``(test_z, test_labels)`` of a logistic-regression probe fitted on
    ``(train_z, train_labels)`` (features standardised with the training mean and deviation)."""
    from sklearn.linear_model import LogisticRegression

    train_z, test_z = np.asarray(train_z, dtype=float), np.asarray(test_z, dtype=float)
    if train_z.ndim != 2 or test_z.ndim != 2 or train_z.shape[1] != test_z.shape[1]:
        raise ValueError(f"probe needs (N, d) features of one d, got {train_z.shape} and {test_z.shape}")
    if len(train_labels) != len(train_z) or len(test_labels) != len(test_z):
        raise ValueError("probe: one label per row of features")
    if len(set(train_labels)) < 2:
        raise ValueError("probe: the training labels must have at least two classes")
    mean, std = train_z.mean(0), train_z.std(0) + 1e-8
    probe = LogisticRegression(max_iter=PROBE_MAX_ITER, random_state=seed)
    probe.fit((train_z - mean) / std, np.asarray(train_labels))
    return float(probe.score((test_z - mean) / std, np.asarray(test_labels)))


def synthetic_factors(labels: Sequence[str]) -> dict[str, list]:
    """``"topic2-pos"`` labels as ``{"topic": [2, ...], "sentiment": ["pos", ...]}``."""
    parsed = [parse_label(label) for label in labels]
    return {"topic": [t for t, _ in parsed], "sentiment": [s for _, s in parsed]}


def synthetic_probes(train_z: np.ndarray, train_labels: Sequence[str], test_z: np.ndarray,
                     test_labels: Sequence[str], seed: int = 0) -> dict[str, float]:
    """Probe accuracy of the synthetic corpus's topic and sentiment: ``{"topic": .., "sentiment": ..}``."""
    train, test = synthetic_factors(train_labels), synthetic_factors(test_labels)
    return {name: probe_accuracy(train_z, train[name], test_z, test[name], seed) for name in train}


@torch.no_grad()
def posterior_centers(vae: TextVAE, split: EncodedSplit, batch_size: int = 256) -> np.ndarray:
    """E[z|x] (the vMF mean direction for ``latent="vmf"``) of every sentence of ``split``, dropout off."""
    was_training = vae.training
    vae.eval()
    device = next(vae.parameters()).device
    centers = []
    for start in range(0, len(split.ids), batch_size):
        batch = make_batch(split.ids[start : start + batch_size]).to(device)
        centers.append(posterior_center(vae.posterior_distribution(batch.tokens, batch.mask)).double().cpu())
    vae.train(was_training)
    return torch.cat(centers).numpy()


@dataclass
class CheckpointAccount:
    """What one checkpoint's z holds: its ``epoch``, the probe accuracies of the synthetic factors
    (train -> test), the active units of the test split (Var_x E[z_k|x] >= 0.01) and the mean token
    overlap (Dice) of greedy reconstructions with their test sentences, with two ``examples``."""

    name: str
    epoch: int
    probes: dict[str, float]
    active_units: int
    latent_dim: int
    overlap: float
    examples: list[tuple[str, str]]


def account_checkpoint(run_dir: str | Path, name: str, seed: int = 0, max_length: int = 30) -> CheckpointAccount:
    """:class:`CheckpointAccount` of ``run_dir/<name>.pt`` (``name``: best or last) of a run on the
    synthetic corpus (labels ``topicK-pos|neg``)."""
    from pyro_textvae.run_folder import open_run

    from .arviz_data import token_overlap

    run = open_run(run_dir, checkpoint=name)
    state = load_checkpoint(Path(run_dir) / f"{name}.pt")
    epoch = int(state["epoch"]) if "epoch" in state else int(state["trainer"]["epoch"])
    train, test = run.corpus.splits["train"], run.corpus.splits["test"]
    train_z, test_z = posterior_centers(run.vae, train), posterior_centers(run.vae, test)
    units, _ = active_units(torch.as_tensor(test_z))
    decoded = decode(run.vae, torch.as_tensor(test_z, dtype=torch.float32), "greedy", max_length)
    overlap = float(np.mean([token_overlap(out, ref) for out, ref in zip(decoded, test.ids)]))
    vocab = run.corpus.vocab
    examples = [(" ".join(vocab.decode(test.ids[i])), " ".join(vocab.decode(decoded[i]))) for i in range(2)]
    return CheckpointAccount(name, epoch, synthetic_probes(train_z, train.labels, test_z, test.labels, seed),
                             int(units), test_z.shape[1], overlap, examples)


def run_account_lines(run_dir: str | Path, seed: int = 0) -> list[str]:
    """The lines ``textvae train`` prints at the end of a run: on the synthetic corpus, per
    checkpoint the probe accuracies, active units, reconstruction overlap and a reconstruction;
    always, last, which checkpoint is best.pt and from which epoch (:func:`best_line`)."""
    run_dir = Path(run_dir)
    config = load_json(run_dir / "config.json")
    lines = []
    if "synthetic" in config.get("data", {}):
        accounts = [account_checkpoint(run_dir, "best", seed)]
        last_epoch = int(load_checkpoint(run_dir / "last.pt")["trainer"]["epoch"])
        if last_epoch != accounts[0].epoch:
            accounts.append(account_checkpoint(run_dir, "last", seed))
        lines.append("what z holds: linear probes of the synthetic corpus's topic and sentiment from E[z|x] "
                     "(fitted on the training split, scored on the test split; chance 0.25 and 0.5)")
        for account in accounts:
            lines.append(f"  {account.name}.pt (epoch {account.epoch}): topic {account.probes['topic']:.3f}, "
                         f"sentiment {account.probes['sentiment']:.3f}; active units {account.active_units} of "
                         f"{account.latent_dim}; token overlap of greedy reconstructions {account.overlap:.3f}")
            lines += [f"    {source!r} -> {output!r}" for source, output in account.examples]
    lines.append(best_line(run_dir))
    return lines


def best_line(run_dir: str | Path) -> str:
    """``best checkpoint: best.pt is epoch E of N (lowest validation <criterion>, L); last.pt is
    epoch N ...``, from best.pt's epoch and metrics.jsonl (one line an epoch). The criterion is the
    trainer's: the objective's own validation loss where it records one (``valid_objective_loss``,
    DG-VAE's reconstruction + KL(q_B || p)), else the per-sentence -ELBO."""
    run_dir = Path(run_dir)
    history = read_history(run_dir)
    best = int(load_checkpoint(run_dir / "best.pt")["epoch"])
    if not 1 <= best <= len(history):
        raise CheckpointError(f"{run_dir / 'best.pt'}: epoch {best}, but metrics.jsonl has {len(history)} epochs")
    record = history[best - 1]
    if "valid_objective_loss" in record:
        criterion, loss = "loss of the objective", record["valid_objective_loss"]
    else:
        criterion, loss = "-ELBO", record["valid_elbo_loss"]
    last = history[-1]["epoch"]
    return (f"best checkpoint: best.pt is epoch {best} of {last} (lowest validation {criterion}, {loss:.2f}); "
            f"last.pt is epoch {last}; sample/reconstruct/explore read best.pt unless --checkpoint last")
