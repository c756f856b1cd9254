"""A run interrupted in the middle of its first epoch by the code of the pool bucketing.

Run from a checkout of e87d36e, the commit before exact-length buckets (git worktree add DIR e87d36e):
    PYTHONPATH=DIR python make_old_run.py OUT
writes OUT/run (config.json, vocab.json, last.pt after 3 of the 10 batches of epoch 1) and
OUT/expected.pt: the model after the whole of epoch 1 run straight, and the epoch's batches.
"""
import shutil
import sys
from pathlib import Path

import torch

from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.data import iterate_batches
from pyro_textvae.io import load_checkpoint

DATA = {"synthetic": {"num_train": 160, "num_valid": 16, "num_test": 16, "seed": 2}}
MODEL = {"embed_dim": 4, "hidden_dim": 8, "latent_dim": 2}


def config(**extra):
    return TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False, seed=5, **extra)


class Interrupted(Exception):
    pass


def main(out: Path) -> None:
    torch.set_num_threads(1)
    straight = new_trainer(out / "straight", DATA, MODEL, "elbo", {}, config())
    straight.fit()
    seed = straight._epoch_seed(0)
    batches = [b.index.tolist() for b in iterate_batches(straight.train_split, 16, shuffle=True, seed=seed)]
    model = load_checkpoint(out / "straight" / "last.pt")["model"]
    torch.save({"model": model, "batches": batches}, out / "expected.pt")
    victim = new_trainer(out / "run", DATA, MODEL, "elbo", {}, config(checkpoint_every=3))
    step, calls = victim.step, []

    def step_then_stop(*args):
        if len(calls) == 4:
            raise Interrupted
        calls.append(1)
        return step(*args)

    victim.step = step_then_stop
    try:
        victim.fit()
    except Interrupted:
        pass
    assert load_checkpoint(out / "run" / "last.pt")["trainer"]["batch"] == 3
    shutil.rmtree(out / "straight")


if __name__ == "__main__":
    main(Path(sys.argv[1]))
