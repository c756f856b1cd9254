"""One-factor runs behind "Why the dimension-wise DG-VAE reconstructed worse" (docs/results/six-epochs.md).

Every variant is the short_yelp table's "DG-VAE" row (`examples/short_yelp.toml`: paper network,
Adam 1e-3, batch 32, clip 5, KL warm-up 2 epochs, M = 32, b = batch) with ONE setting changed. The
run trains with the library's Trainer into OUT/VARIANT-sSEED and, every --measure-every steps, measures
the gradient norms of the reconstruction and of the latent term (KL or density gap) for the encoder
(with its posterior head) and the decoder separately (`inference.gradient_norms`), under a forked RNG
so the training itself is the same as without the measurement. Every step records the global
gradient norm before clipping (`ClippedOptim.last_norm`). Written into the run folder: the Trainer's
config.json, metrics.jsonl and checkpoints, steps.jsonl (one line a step) and factors.json (per-epoch
means of the norms, the mean clip factor, the share of clipped steps, the validation terms of every
epoch and of the last one).

    python examples/dg_factors.py --data ../shared/data/short_yelp --variant dg --seed 0 --epochs 3 --out RUNS
    python examples/dg_factors.py --list
    python examples/dg_factors.py --measure RUN/last.pt --batches 20 --seed 0   # no training

``--measure CHECKPOINT`` trains nothing: it loads the run folder's objective and the checkpoint's
parameters (``init`` instead of a checkpoint: a fresh model of --variant) and prints the mean norms
over --batches training batches at KL weight 1, with the share of batches a clip at 5 would shrink.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import pyro
import torch

from inference.gradient_norms import term_gradient_norms
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.data import iterate_batches
from pyro_textvae.io import load_checkpoint, read_jsonl
from pyro_textvae.run_folder import load_model_state

MODEL = {"embed_dim": 128, "hidden_dim": 512, "latent_dim": 32, "dropout_in": 0.5, "dropout_out": 0.5}
TRAIN = {"batch_size": 32, "optimizer": "adam", "lr": 1e-3, "clip_norm": 5.0, "validate_args": False}
DG = {"warmup_epochs": 2.0}
NO_CLIP = 1e12

# variant: (objective, objective params, model changes, train changes)
VARIANTS = {
    "vae": ("elbo", {"warmup_epochs": 2.0}, {}, {}),
    "dg": ("dg", DG, {}, {}),
    "dg-joint": ("dg", {**DG, "mode": "joint"}, {}, {}),
    "dg-warmup10": ("dg", {"warmup_epochs": 10.0}, {}, {}),
    "dg-sgd": ("dg", DG, {}, {"optimizer": "sgd", "lr": 0.5}),
    "vae-sgd": ("elbo", {"warmup_epochs": 2.0}, {}, {"optimizer": "sgd", "lr": 0.5}),
    "dg-noclip": ("dg", DG, {}, {"clip_norm": NO_CLIP}),
    "dg-nodropout": ("dg", DG, {"dropout_in": 0.0, "dropout_out": 0.0}, {}),
}


def _groups(vae) -> dict[str, list[torch.Tensor]]:
    return {"encoder": [*vae.encoder.parameters(), *vae.posterior.parameters()],
            "decoder": list(vae.decoder.parameters())}


def _instrument(trainer, every: int, log):
    """Wrap ``trainer.step``: measure the per-term norms before every ``every``-th step, log each step."""
    plain_step = trainer.step
    groups = _groups(trainer.vae)

    def step(tokens, mask):
        number = trainer.state["step"]
        record = {"step": number, "epoch": trainer.state["epoch"] + 1}
        if number % every == 0:
            trainer.weight = trainer.schedule(number)
            with torch.random.fork_rng(devices=[]):
                record.update(term_gradient_norms(trainer.loss, trainer._model, trainer._guide, groups,
                                                  tokens, mask, clip_norm=trainer.optim.clip_norm))
        values = plain_step(tokens, mask)
        norm = trainer.optim.last_norm
        record.update(values, kl_weight=trainer.weight, grad_norm=norm,
                      applied_clip=min(1.0, trainer.optim.clip_norm / norm))
        log.write(json.dumps(record) + "\n")
        return values

    trainer.step = step


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def summarise(steps: list[dict], epochs: list[dict], clip_norm: float) -> dict:
    """Per-epoch means of the measured norms and the clip statistics, with the validation terms."""
    summary = {"epochs": []}
    for record in epochs:
        rows = [s for s in steps if s["epoch"] == record["epoch"]]
        measured = [s for s in rows if "total/all" in s]
        keys = [k for k in (measured[0] if measured else {}) if "/" in k]
        summary["epochs"].append({
            "epoch": record["epoch"], "kl_weight_end": record["kl_weight"],
            "clipped_share": _mean([float(s["grad_norm"] > clip_norm) for s in rows]),
            "mean_applied_clip": _mean([s["applied_clip"] for s in rows]),
            **{f"mean {k}": _mean([s[k] for s in measured]) for k in keys},
            **{k: record[k] for k in record if k.startswith("valid_")},
        })
    summary["best_elbo_epoch"] = min(epochs, key=lambda r: r["valid_elbo_loss"])["epoch"]
    if "valid_objective_loss" in epochs[0]:
        summary["best_objective_epoch"] = min(epochs, key=lambda r: r["valid_objective_loss"])["epoch"]
    summary["last"] = summary["epochs"][-1]
    return summary


def measure(trainer, batches: int) -> dict[str, float]:
    """Mean per-term norms over the first ``batches`` training batches at weight 1 (dropout on)."""
    groups, rows = _groups(trainer.vae), []
    trainer.weight = 1.0
    trainer.vae.train()
    for index, batch in enumerate(iterate_batches(trainer.train_split, trainer.config.batch_size, shuffle=True,
                                                  seed=trainer.config.seed)):
        if index == batches:
            break
        rows.append(term_gradient_norms(trainer.loss, trainer._model, trainer._guide, groups, batch.tokens,
                                        batch.mask, clip_norm=trainer.optim.clip_norm))
    summary = {key: _mean([row[key] for row in rows]) for key in rows[0]}
    summary["clipped_share"] = _mean([float(row["clip_factor"] < 1.0) for row in rows])
    return summary


def _measure_command(args) -> int:
    if args.measure == "init":
        objective, params, model, train = VARIANTS[args.variant]
        config = TrainConfig(epochs=1, seed=args.seed, progress=False, **{**TRAIN, **train})
        run_dir = Path(args.out) / f"init-{args.variant}-s{args.seed}"
        trainer = new_trainer(run_dir, {"path": args.data}, {**MODEL, **model}, objective, params, config,
                              overwrite=True)
    else:
        checkpoint = Path(args.measure)
        trainer = resume_trainer(checkpoint.parent)
        load_model_state(trainer.vae, load_checkpoint(checkpoint, "cpu"), checkpoint)
    pyro.set_rng_seed(args.seed)
    print(json.dumps({"measure": args.measure, "variant": args.variant, **measure(trainer, args.batches)}))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", choices=sorted(VARIANTS))
    parser.add_argument("--data", default="../shared/data/short_yelp", help="corpus folder, or 'synthetic'")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--measure-every", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="runs-dg-factors")
    parser.add_argument("--list", action="store_true", help="print the variants and exit")
    parser.add_argument("--measure", help="a checkpoint (or 'init' with --variant) to measure without training")
    parser.add_argument("--batches", type=int, default=20)
    args = parser.parse_args(argv)
    if args.measure and (args.measure != "init" or args.variant):
        return _measure_command(args)
    if args.list or args.variant is None:
        for name, (objective, params, model, train) in VARIANTS.items():
            print(f"{name}: objective {objective} {params} model {model} train {train}")
        return 0 if args.list else 2
    if args.epochs < 1 or args.measure_every < 1:
        print("dg_factors.py: --epochs and --measure-every must be >= 1", file=sys.stderr)
        return 2
    objective, params, model, train = VARIANTS[args.variant]
    config = TrainConfig(epochs=args.epochs, seed=args.seed, progress=False, **{**TRAIN, **train})
    run_dir = Path(args.out) / f"{args.variant}-s{args.seed}"
    data = {"synthetic": {}} if args.data == "synthetic" else {"path": args.data}
    trainer = new_trainer(run_dir, data, {**MODEL, **model}, objective, params, config)
    with open(run_dir / "steps.jsonl", "w") as log:
        _instrument(trainer, args.measure_every, log)
        trainer.fit()
    summary = summarise(read_jsonl(run_dir / "steps.jsonl"), read_jsonl(run_dir / "metrics.jsonl"), config.clip_norm)
    (run_dir / "factors.json").write_text(json.dumps({"variant": args.variant, "seed": args.seed, **summary}, indent=1))
    print(json.dumps(summary["last"], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
