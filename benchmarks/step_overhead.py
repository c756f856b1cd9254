"""Cost of Pyro's SVI machinery on a text-VAE training step, against plain PyTorch.

Both sides train the same networks on the same batches (batch 32, real short_yelp sentences when
``../shared/data/short_yelp`` is present, else the synthetic corpus), with the same optimiser and
global-norm clipping. The Pyro side is :meth:`inference.trainer.Trainer.step` (``SVI.step`` with
``Trace_ELBO``); the plain side computes the same single-sample estimate by hand:

    loss = (1/|B|) sum_i [ -sum_t m_it log p(w_it | w_i<t, z_i) + w (log q(z_i|x_i) - log p(z_i)) ]

Steps alternate between the two (interleaved, so machine noise hits both alike) and the script
prints the median step times, their ratio and the sentences per second.
Usage: ``python benchmarks/step_overhead.py --steps 20 --seed 0 [--no-validate-args]``.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import pyro
import torch

from inference.objectives import get_objective
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.data import Corpus, iterate_batches, synthetic_corpus
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"


def plain_step(vae: TextVAE, optimizer: torch.optim.Optimizer, tokens, mask, weight: float, clip: float) -> float:
    """One hand-written step of the same objective as ``Trace_ELBO`` with a KL weight."""
    q = vae.posterior_distribution(tokens, mask)
    z = q.rsample()
    logits = vae.decoder(tokens, z)
    token_ll = torch.log_softmax(logits, -1).gather(-1, tokens[:, 1:, None]).squeeze(-1)
    reconstruction = -(token_ll * mask[:, 1:]).sum(-1)
    latent = q.log_prob(z) - vae.prior(tokens.shape[0]).log_prob(z)
    loss = (reconstruction + weight * latent).mean()
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), clip)
    optimizer.step()
    return float(loss.detach())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-validate-args", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    if SHORT_YELP.is_dir():
        corpus, source = Corpus.from_folder(SHORT_YELP), str(SHORT_YELP)
    else:
        corpus, source = synthetic_corpus(), "synthetic corpus (short_yelp not found)"
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab)))
    plain_vae = copy.deepcopy(vae)
    optimizer = torch.optim.Adam(plain_vae.parameters(), lr=1e-3)
    config = TrainConfig(optimizer="adam", batch_size=args.batch_size, progress=False, seed=args.seed,
                         validate_args=not args.no_validate_args)
    objective = get_objective("elbo")
    trainer = Trainer(vae, corpus, objective, objective.configure(), config, run_dir=Path("."))
    pyro.clear_param_store()
    pyro.enable_validation(config.validate_args)
    batches = list(iterate_batches(corpus.splits["train"], args.batch_size, shuffle=True, seed=args.seed))
    pyro_times, plain_times = [], []
    for index in range(args.warmup + args.steps):
        batch = batches[index % len(batches)]
        start = time.perf_counter()
        trainer.step(batch.tokens, batch.mask)
        middle = time.perf_counter()
        plain_step(plain_vae, optimizer, batch.tokens, batch.mask, trainer.weight, config.clip_norm)
        end = time.perf_counter()
        if index >= args.warmup:
            pyro_times.append(middle - start)
            plain_times.append(end - middle)
    pyro_ms, plain_ms = 1000 * statistics.median(pyro_times), 1000 * statistics.median(plain_times)
    print(f"data: {source}; batch {args.batch_size}; vocabulary {len(corpus.vocab)}; paper sizes; "
          f"{args.steps} interleaved steps; Pyro validation {'off' if args.no_validate_args else 'on'}; "
          f"{torch.get_num_threads()} threads")
    print(f"plain PyTorch step: {plain_ms:.1f} ms ({1000 * args.batch_size / plain_ms:.0f} sentences/s)")
    print(f"Pyro SVI step:      {pyro_ms:.1f} ms ({1000 * args.batch_size / pyro_ms:.0f} sentences/s)")
    print(f"ratio Pyro / plain: {pyro_ms / plain_ms:.3f}")


if __name__ == "__main__":
    main()
