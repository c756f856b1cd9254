"""Our training step against a plain-PyTorch replica of the paper's step, and bf16 against fp32.

The replica is written here from the math of ``docs/maths.md``, on the same networks and the
same batches (short_yelp's exact-length buckets from :func:`pyro_textvae.data.iterate_batches`):

    z_i = mu_i + sigma_i eps_i,   Rec = (1/|B|) sum_i -sum_t m_it log softmax(decoder(x_i, z_i))[w_it]
    VAE:  loss = Rec + w (1/|B|) sum_i sum_k (mu_ik^2 + sigma_ik^2 - 1 - log sigma_ik^2) / 2
    DG:   z_im = mu_i + sigma_i eps_im (M of them),  g_k(z) = logsumexp_j log N(z | mu_jk, sigma_jk) - log |B|
          loss = Rec + w (1/(|B| M)) sum_{i,m,k} [g_k(z_imk) - log N(z_imk | 0, 1)]

computed in float32 with the whole (|B| M, |B|, d) array of log densities at once, then SGD (lr 0.5)
after clipping the gradient norm to 5. Our side is :meth:`inference.trainer.Trainer.step` (``SVI`` with
``DensityGapELBO`` or ``Trace_ELBO``) at ``--precision fp32`` and ``bf16``. Every round draws one batch
of the epoch and runs every side on it, in a rotating order; the script prints, per side, the median
CPU time (``time.process_time``, the steadier clock on a shared machine) and wall time of a step, the
throughput over all rounds (sentences / summed CPU time: the training part of an epoch, estimated on
``--rounds`` of its batches), and the ratios. One thread unless ``--threads``.

Usage: ``python benchmarks/paper_replica.py --rounds 40 --seed 0``
"""
from __future__ import annotations

import argparse
import copy
import math
import statistics
import time
from pathlib import Path

import pyro
import torch

from inference.objectives import get_objective
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.data import Corpus, iterate_batches
from pyro_textvae.model import TextVAE, TextVAEConfig

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"
HALF_LOG_TWO_PI = 0.5 * math.log(2 * math.pi)


def replica_step(vae: TextVAE, optimizer: torch.optim.Optimizer, tokens: torch.Tensor, mask: torch.Tensor,
                 weight: float, objective: str, num_samples: int = 32) -> float:
    """One step of the replica (module docstring), float32, whole arrays, no Pyro."""
    out, _ = vae.encoder.lstm(vae.encoder.embed(tokens))
    hidden = out[torch.arange(tokens.shape[0]), mask.sum(-1) - 1]
    loc, logvar = vae.posterior.linear(hidden).chunk(2, -1)
    scale = torch.exp(0.5 * logvar)
    z = loc + scale * torch.randn_like(loc)
    log_probs = torch.log_softmax(vae.decoder(tokens, z), -1)
    picked = log_probs.gather(-1, tokens[:, 1:, None]).squeeze(-1)
    reconstruction = -(picked * mask[:, 1:]).sum(-1).mean()
    if objective == "elbo":
        latent = 0.5 * (loc.square() + logvar.exp() - 1 - logvar).sum(-1).mean()
    else:
        batch, dim = loc.shape
        samples = loc[:, None] + scale[:, None] * torch.randn(batch, num_samples, dim)
        rows = samples.reshape(-1, 1, dim)
        log_q = -0.5 * ((rows - loc) / scale).square() - scale.log() - HALF_LOG_TWO_PI
        log_aggregate = torch.logsumexp(log_q, 1) - math.log(batch)
        log_prior = -0.5 * rows.squeeze(1).square() - HALF_LOG_TWO_PI
        latent = (log_aggregate - log_prior).sum(-1).mean()
    loss = reconstruction + weight * latent
    optimizer.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(vae.parameters(), 5.0)
    optimizer.step()
    return float(loss.detach())


def _ours(trainer: Trainer):
    """The trainer's step; Pyro's parameter store is global, so it is emptied before each step (untimed)
    and ``pyro.module`` registers this trainer's own parameters again (their optimiser state is kept)."""
    return (lambda batch: trainer.step(batch.tokens, batch.mask)["loss"]), pyro.clear_param_store


def make_sides(corpus: Corpus, vae: TextVAE, seed: int) -> dict:
    """name -> (step(batch), prepare) for our DG and VAE steps in fp32 and bf16 and the replica's."""
    sides = {}
    for objective in ("dg", "elbo"):
        chosen = get_objective(objective)
        for precision in ("fp32", "bf16"):
            config = TrainConfig(optimizer="sgd", progress=False, seed=seed, validate_args=False, precision=precision)
            trainer = Trainer(copy.deepcopy(vae), corpus, chosen, chosen.configure(), config, run_dir=Path("."))
            sides[f"ours {objective} {precision}"] = _ours(trainer)
        replica = copy.deepcopy(vae).train()
        optimizer = torch.optim.SGD(replica.parameters(), lr=0.5)
        step = (lambda r, o, name: lambda b: replica_step(r, o, b.tokens, b.mask, 0.1, name))(
            replica, optimizer, objective)
        sides[f"replica {objective} fp32"] = (step, lambda: None)
    return sides


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    corpus = Corpus.from_folder(SHORT_YELP)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab)))
    sides = make_sides(corpus, vae, args.seed)
    pyro.enable_validation(False)
    batches = list(iterate_batches(corpus.splits["train"], 32, shuffle=True, seed=args.seed))
    chosen = torch.randperm(len(batches), generator=torch.Generator().manual_seed(args.seed)).tolist()
    cpu = {name: [] for name in sides}
    wall = {name: [] for name in sides}
    names = list(sides)
    rows = 0
    for round_index in range(args.warmup + args.rounds):
        batch = batches[chosen[round_index % len(chosen)]]
        order = names[round_index % len(names):] + names[: round_index % len(names)]
        for name in order:
            step, prepare = sides[name]
            prepare()
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            step(batch)
            if round_index >= args.warmup:
                cpu[name].append(time.process_time() - start_cpu)
                wall[name].append(time.perf_counter() - start_wall)
        rows += len(batch) if round_index >= args.warmup else 0
    print(f"short_yelp, vocabulary {len(corpus.vocab)}, paper sizes, batch 32, {args.rounds} rounds "
          f"(+{args.warmup} warm-up), {torch.get_num_threads()} thread(s), sides in rotating order")
    print(f"{'side':20s} {'CPU ms':>8s} {'wall ms':>8s} {'sent/s CPU':>11s}")
    throughput = {}
    for name in names:
        throughput[name] = rows / sum(cpu[name])
        print(f"{name:20s} {1e3 * statistics.median(cpu[name]):8.1f} {1e3 * statistics.median(wall[name]):8.1f} "
              f"{throughput[name]:11.1f}")
    for objective in ("dg", "elbo"):
        base = f"replica {objective} fp32"
        for precision in ("fp32", "bf16"):
            ours = f"ours {objective} {precision}"
            step = statistics.median(cpu[base]) / statistics.median(cpu[ours])
            step_wall = statistics.median(wall[base]) / statistics.median(wall[ours])
            ratio = throughput[ours] / throughput[base]
            print(f"{objective}: ours {precision} / replica throughput: epoch {ratio:.3f}, "
                  f"median step CPU {step:.3f}, wall {step_wall:.3f}")
        bf16 = statistics.median(cpu[f"ours {objective} fp32"]) / statistics.median(cpu[f"ours {objective} bf16"])
        print(f"{objective}: ours bf16 / fp32 speed-up, median step CPU {bf16:.3f}")


if __name__ == "__main__":
    main()
