"""The one-line change: the same Pyro SVI loop with ``Trace_ELBO`` and then with ``DensityGapELBO``.

Trains the text VAE on the synthetic corpus twice with the usual Pyro loop (KL warm-up by
``scale_latent``) and prints, for each run, the test split's per-sentence KL, the active units
and the density-gap estimate of KL(q_D(z) || p(z)).

    python examples/swap_elbo.py --epochs 10 --seed 0
"""
from __future__ import annotations

import argparse

import pyro
import torch
from pyro.infer import SVI, Trace_ELBO
from pyro.optim import Adam

from evaluation.latent_metrics import active_units
from inference import (
    DensityGapELBO,
    LinearWarmup,
    density_gap_kl,
    elbo_terms,
    scale_latent,
)
from pyro_textvae import TextVAE, TextVAEConfig
from pyro_textvae.data import iterate_batches, make_batch, synthetic_corpus


def train(loss, corpus, args) -> TextVAE:
    """The plain Pyro SVI loop; only ``loss`` differs between the two runs."""
    pyro.clear_param_store()
    pyro.set_rng_seed(args.seed)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), hidden_dim=args.hidden_dim))
    train_split = corpus.splits["train"]
    steps_per_epoch = -(-len(train_split) // 32)
    warmup = LinearWarmup(args.warmup_epochs * steps_per_epoch)
    weight = {"kl": 0.0}

    def model(*batch, **kwargs):
        with scale_latent(scale=weight["kl"]):
            return vae.model(*batch, **kwargs)

    def guide(*batch, **kwargs):
        with scale_latent(scale=weight["kl"]):
            return vae.guide(*batch, **kwargs)

    svi = SVI(model, guide, Adam({"lr": 1e-3}), loss=loss)
    step = 0
    for epoch in range(args.epochs):
        for batch in iterate_batches(train_split, 32, shuffle=True, seed=args.seed * 1000 + epoch):
            weight["kl"] = warmup(step)
            svi.step(batch.tokens, batch.mask, num_data=len(train_split))
            step += 1
    return vae.eval()


@torch.no_grad()
def report(name: str, vae: TextVAE, corpus) -> None:
    test = corpus.splits["test"]
    batch = make_batch(test.ids)
    terms = elbo_terms(vae.model, vae.guide, batch.tokens, batch.mask)
    posterior = vae.posterior_distribution(batch.tokens, batch.mask)
    units, _ = active_units(posterior.mean)
    gap = density_gap_kl(posterior, vae.prior(len(test)), num_samples=8, mode="joint")
    print(f"{name:16s} KL {float(terms['kl'].mean()):6.2f}  AU {units:2d}/{vae.config.latent_dim}  "
          f"Rec {float(terms['reconstruction'].mean()):6.2f}  DG-KL(q_D || p) {float(gap):6.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--warmup-epochs", type=int, default=2)
    parser.add_argument("--hidden-dim", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    corpus = synthetic_corpus(num_train=2000, num_test=500, seed=args.seed)
    report("Trace_ELBO", train(Trace_ELBO(), corpus, args), corpus)
    report("DensityGapELBO", train(DensityGapELBO(), corpus, args), corpus)


if __name__ == "__main__":
    main()
