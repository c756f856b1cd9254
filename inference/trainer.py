"""Training a :class:`~pyro_textvae.model.TextVAE` by Pyro's SVI, with the paper's schedule.

Each step is ``SVI.step`` taken apart (:meth:`Trainer.step`: ``loss_and_grads``, a check that the
loss and gradients are finite, the optimiser) on a mini-batch B of a training set of N sentences, with model and guide
wrapped in ``poutine.scale(1 / N)`` so the loss is the per-sentence estimate
``(1/|B|) sum_{i in B} [-log p(x_i|z_i)] + w_t * (latent term)`` of the objective, and the latent
term weighted by the schedule ``w_t`` through :func:`inference.handlers.scale_latent` (KL warm-up,
``docs/maths.md#training-schedule``). Gradients are clipped to a global norm; the learning rate is halved after
``decay_patience`` epochs without a better validation loss, at most ``max_decays`` times, then
training stops (He et al. 2019, the schedule used by Zhang et al. 2022). The validation loss is the
objective's ``selection``: the per-sentence -ELBO, or the trained loss itself at latent weight 1
(the density gap, whose per-sentence KL is free to grow while its own loss falls).

A run folder holds ``metrics.jsonl`` (one line an epoch; the :attr:`Trainer.epoch_metrics` hooks
add validation metrics of their own to it, and with ``tensorboard`` installed the same numbers go
to ``tensorboard/`` as scalars, :mod:`inference.tensorboard`), ``last.pt`` (everything needed to
resume: parameters, optimiser state, counters, RNG state, the position inside the epoch) and
``best.pt`` (parameters at the best validation loss).

With ``distributed`` (a ``torchrun`` launch, :mod:`inference.distributed`) each of N ranks trains
on its B rows of every global batch of N B sentences, gradients are averaged over ranks before
clipping, validation is split over ranks and summed, and rank 0 alone writes the run folder;
``last.pt`` then also holds every rank's RNG state, so a resume needs the same N.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pyro
import torch
from pyro import poutine
from pyro.infer.util import torch_item
from tqdm.auto import tqdm

from pyro_textvae.config import ACTIVE_UNIT_THRESHOLD
from pyro_textvae.data import Batch, Corpus, EncodedSplit, iterate_batches
from pyro_textvae.data.batching import BUCKETINGS
from pyro_textvae.io import (
    append_jsonl,
    load_checkpoint,
    read_jsonl,
    save_checkpoint,
    truncate_jsonl,
)
from pyro_textvae.lock import FolderLock
from pyro_textvae.model import TextVAE
from pyro_textvae.precision import effective_precision

from .checkpoints import CheckpointMixin
from .distributed import (
    DistributedContext,
    all_reduce_sum,
    any_rank,
    average_buffers,
    average_gradients,
    broadcast_from_rank_zero,
    broadcast_module,
    init_distributed,
    resolve_device,
    shard_batch,
    sum_over_ranks,
)
from .elbo import elbo_terms
from .handlers import scale_latent
from .objective_configs import ObjectiveConfig
from .objectives import Objective
from .optim import ClippedOptim, NonFiniteError
from .protocol import PlateauState
from .tensorboard import ScalarLog
from .train_config import TrainConfig

EVAL_BATCH = 256


def epoch_line(name: str, record: dict, epochs: int) -> str:
    """The console line of one epoch: training and validation -ELBO, validation Rec, KL and AU, the
    validation loss that selects best.pt where it is not the -ELBO (DG-VAE's own objective), and what
    the plateau rule did (``-0.00`` printed as ``0.00``)."""

    def fixed(key: str) -> str:
        value = record.get(key)
        return "-" if not isinstance(value, (int, float)) else f"{round(value, 2) + 0.0:.2f}"

    events = [text for key, text in (("improved", "best so far"), ("halved", "lr halved"), ("stop", "stop"))
              if record.get(key)]
    return (f"{name} epoch {record['epoch']}/{epochs}: train -ELBO {fixed('train_loss')}, valid -ELBO "
            f"{fixed('valid_elbo_loss')} (Rec {fixed('valid_reconstruction')}, KL {fixed('valid_kl')}, "
            f"AU {record.get('valid_active_units', '-')})"
            + (f", valid objective {fixed('valid_objective_loss')}" if "valid_objective_loss" in record else "")
            + f", {record.get('seconds', 0):.0f} s" + "".join(f", {event}" for event in events))


class Trainer(CheckpointMixin):
    """Fits ``vae`` on ``corpus`` with an :class:`~inference.objectives.Objective` into ``run_dir``."""

    def __init__(
        self,
        vae: TextVAE,
        corpus: Corpus,
        objective: Objective,
        params: ObjectiveConfig | Mapping[str, Any] | None,
        config: TrainConfig,
        run_dir: str | Path,
    ) -> None:
        if config.threads is None:
            config.threads = torch.get_num_threads()
        torch.set_num_threads(config.threads)
        self.context: DistributedContext | None = init_distributed(config.device) if config.distributed else None
        self.device = self.context.device if self.context else resolve_device(config.device)
        self.world_size = self.context.world_size if self.context else 1
        self.vae = vae.to(self.device)
        self.vae.precision = effective_precision(config.precision, self.device)
        if self.context:
            broadcast_module(self.vae)
        self.corpus = corpus
        self.config = config
        self.run_dir = Path(run_dir)
        self.train_split: EncodedSplit = corpus.splits["train"]
        self.num_data = len(self.train_split.ids)
        self.global_batch_size = config.batch_size * self.world_size
        full, rest = divmod(self.num_data, self.global_batch_size)
        self.steps_per_epoch = full + (rest >= self.world_size)
        params = objective.configure(params)
        self.loss = objective.make_loss(params)
        self.selection = objective.selection
        self.schedule = objective.make_schedule(params, self.steps_per_epoch)
        hook = average_gradients if self.context else None
        self.optim = ClippedOptim(config.optimizer, config.lr, config.clip_norm, grad_hook=hook)
        self.weight = 1.0
        self.epoch_metrics: list[Callable[[TextVAE, EncodedSplit], dict[str, float]]] = []
        self.lock: FolderLock | None = None
        self._saved_at = time.monotonic()
        self.state = {"epoch": 0, "batch": 0, "step": 0, "best": math.inf, "bad_epochs": 0, "decays": 0,
                      "skipped": 0, "sums": {}, "bucketing": BUCKETINGS[0]}
        # the bucketing of the epoch of a last.pt that does not record it (set by resume_trainer)
        self.unrecorded_bucketing = BUCKETINGS[0]

    def _model(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with scale_latent(scale=self.weight), poutine.scale(scale=1.0 / self.num_data):
            return self.vae.model(tokens, mask, num_data=self.num_data)

    def _guide(self, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with scale_latent(scale=self.weight), poutine.scale(scale=1.0 / self.num_data):
            return self.vae.guide(tokens, mask, num_data=self.num_data)

    def _epoch_seed(self, epoch: int) -> int:
        return self.config.seed * 1_000_003 + epoch

    @property
    def is_main(self) -> bool:
        """True in the process that writes the run folder (rank 0, or the only process)."""
        return self.context is None or self.context.is_main

    def local_batch(self, batch: Batch) -> Batch | None:
        """This rank's equal contiguous slice of a global batch (:func:`inference.distributed.shard_batch`;
        ``None`` when it has fewer rows than ranks); the batch itself in a single process."""
        if self.context is None:
            return batch
        return shard_batch(batch, self.context.rank, self.world_size)

    def step(self, tokens: torch.Tensor, mask: torch.Tensor) -> dict[str, float]:
        """One SVI step at the current schedule weight, checked before any parameter moves.

        As ``SVI.step``: ``loss_and_grads`` under a parameter trace, then the optimiser on the
        traced parameters, then their gradients zeroed. In between, a non-finite loss raises
        :class:`NonFiniteError` naming the step and the non-finite term, and :class:`ClippedOptim`
        raises it for a non-finite gradient norm before its update; a distribution refused by
        Pyro's argument checks (non-finite parameters from a diverged update) raises it too."""
        self.weight = self.schedule(self.state["step"])
        where = f"at step {self.state['step']}"
        try:
            with poutine.trace(param_only=True) as capture:
                loss = torch_item(self.loss.loss_and_grads(self._model, self._guide, tokens, mask))
            params = {site["value"].unconstrained() for site in capture.trace.nodes.values()}
            bad = not math.isfinite(loss)
            if any_rank(bad, self.device) if self.context else bad:
                raise NonFiniteError(f"non-finite loss {loss} {where} ({self._bad_terms()})")
            self.optim(params)
        except NonFiniteError as error:
            pyro.infer.util.zero_grads(pyro.get_param_store().values())
            raise NonFiniteError(str(error) if where in str(error) else f"{error} {where}") from None
        except ValueError as error:
            if "Expected parameter" not in str(error):
                raise
            pyro.infer.util.zero_grads(pyro.get_param_store().values())
            raise NonFiniteError(f"invalid distribution parameter {where}: {str(error).splitlines()[0]} "
                                 "(the model's values diverged: lower the learning rate lr)") from None
        pyro.infer.util.zero_grads(params)
        return {"loss": loss, **getattr(self.loss, "last_terms", {})}

    def _bad_terms(self) -> str:
        terms = getattr(self.loss, "last_terms", {})
        bad = [key for key, value in terms.items() if not math.isfinite(value)]
        return "non-finite term: " + ", ".join(bad) if bad else f"terms {terms}"

    def _sum_over_ranks(self, values: torch.Tensor) -> torch.Tensor:
        return all_reduce_sum(values) if self.context else values

    @torch.no_grad()
    def evaluate_split(self, split: EncodedSplit) -> dict[str, float]:
        """Per-sentence reconstruction, KL and -ELBO (KL weight 1, dropout off) and active units
        (dimensions with ``Var_x E[z_k|x] >= ACTIVE_UNIT_THRESHOLD``, ``docs/metrics.md#active-units``).
        Distributed, every rank scores its slice of each batch of ``256 N`` sentences and the sums are added over
        ranks."""
        was_training = self.vae.training
        self.vae.eval()
        rank = self.context.rank if self.context else 0
        totals = torch.zeros(2, dtype=torch.float64, device=self.device)
        means = [torch.zeros(0, self.vae.config.latent_dim, dtype=torch.float64, device=self.device)]
        for batch in iterate_batches(split, EVAL_BATCH * self.world_size, shuffle=False):
            local = shard_batch(batch, rank, self.world_size, equal=False)
            if local is None:
                continue
            local = local.to(self.device)
            terms = elbo_terms(self.vae.model, self.vae.guide, local.tokens, local.mask)
            totals += torch.stack([terms["reconstruction"].sum(), terms["kl"].sum()]).double()
            means.append(self.vae.posterior_distribution(local.tokens, local.mask).mean.double())
        self.vae.train(was_training)
        n = len(split.ids)
        means = torch.cat(means)
        sums = self._sum_over_ranks(torch.cat([totals, means.sum(0)]))
        squares = self._sum_over_ranks(((means - sums[2:] / n) ** 2).sum(0))
        variances = squares / (n - 1)
        result = {"reconstruction": float(sums[0]) / n, "kl": float(sums[1]) / n}
        result["elbo_loss"] = result["reconstruction"] + result["kl"]
        result["active_units"] = int((variances >= ACTIVE_UNIT_THRESHOLD).sum())
        return result

    @torch.no_grad()
    def evaluate_objective(self, split: EncodedSplit, seed: int = 0) -> float:
        """The trained loss per sentence on ``split`` at latent weight 1, dropout off: the mean over
        batches of the training batch size (a batch term such as the density gap depends on it) of
        ``loss.loss``, e.g. ``(1/|B|) sum_i -log p(x_i|z_i) + KL(q_B || p)`` for DG-VAE. Drawn under
        a forked RNG seeded with ``seed``, so the value is repeatable and training draws what it
        would without it. Distributed, every rank scores its shard and the sums are added."""
        was_training, weight = self.vae.training, self.weight
        self.vae.eval()
        self.weight = 1.0
        total = torch.zeros(2, dtype=torch.float64, device=self.device)
        with torch.random.fork_rng(devices=[] if self.device.type == "cpu" else [self.device]):
            torch.manual_seed(seed)
            for batch in iterate_batches(split, self.global_batch_size, shuffle=False):
                local = self.local_batch(batch)
                if local is None:
                    continue
                local = local.to(self.device)
                loss = self.loss.loss(self._model, self._guide, local.tokens, local.mask)
                total += torch.tensor([loss * len(local), len(local)], dtype=torch.float64, device=self.device)
        self.vae.train(was_training)
        self.weight = weight
        total = self._sum_over_ranks(total)
        return float(total[0] / total[1])

    def close(self) -> None:
        """Release the run folder's lock (:meth:`fit` does at its end)."""
        if self.lock is not None:
            self.lock.release()
            self.lock = None

    def fit(self, resume: bool = False) -> dict:
        """Train until ``epochs`` or early stop; return the last epoch's metrics; the run folder's
        lock is released at the end, whatever the outcome.

        An epoch's line is on disk in ``metrics.jsonl`` before ``last.pt`` counts the epoch done,
        so a crash between the two leaves one line too many, which the resume drops (it keeps
        as many lines as ``last.pt`` has epochs), never one too few. A resume of a folder without
        ``last.pt`` (killed before its first checkpoint) starts the run from step 0."""
        try:
            return self._fit(resume)
        finally:
            self.close()

    def _fit(self, resume: bool) -> dict:
        cfg = self.config
        pyro.enable_validation(cfg.validate_args)
        metrics_path = self.run_dir / "metrics.jsonl"
        if resume and broadcast_from_rank_zero(lambda: (self.run_dir / "last.pt").exists()):
            self.load_state(broadcast_from_rank_zero(lambda: load_checkpoint(self.run_dir / "last.pt", "cpu")))
            if self.is_main:
                truncate_jsonl(metrics_path, self.state["epoch"])
        else:
            if resume and self.is_main:
                truncate_jsonl(metrics_path, 0)
                (self.run_dir / "best.pt").unlink(missing_ok=True)
            pyro.clear_param_store()
            pyro.set_rng_seed(cfg.seed + (self.context.rank if self.context else 0))
        self._saved_at = time.monotonic()
        history = broadcast_from_rank_zero(lambda: read_jsonl(metrics_path))
        self.epochs_trained = 0
        scalars = ScalarLog(self.run_dir, self.state["epoch"]) if self.is_main else None
        try:
            while self.state["epoch"] < cfg.epochs and self.state["decays"] <= cfg.max_decays:
                record = self._run_epoch()
                self.epochs_trained += 1
                history.append(record)
                if self.is_main:
                    tqdm.write(epoch_line(self.run_dir.name, record, cfg.epochs))
                    append_jsonl(metrics_path, record)
                    scalars.write(record)
                self._save_last()
                if record["stop"]:
                    break
        finally:
            if scalars is not None:
                scalars.close()
        return history[-1] if history else {}

    def _run_epoch(self) -> dict:
        cfg, st = self.config, self.state
        epoch, start = st["epoch"], time.perf_counter()
        seed = self._epoch_seed(epoch)
        batches = iterate_batches(self.train_split, self.global_batch_size, shuffle=True, seed=seed,
                                  bucketing=st["bucketing"])
        bar = tqdm(total=self.steps_per_epoch, initial=st["batch"],
                   desc=f"{self.run_dir.name} epoch {epoch + 1}/{cfg.epochs}",
                   disable=not cfg.progress or not self.is_main, leave=False)
        self.vae.train()
        for index, batch in enumerate(batches):
            if index < st["batch"]:
                continue
            batch = self.local_batch(batch)
            if batch is None:
                continue
            batch = batch.to(self.device)
            try:
                values = self.step(batch.tokens, batch.mask)
            except NonFiniteError:
                st["skipped"] += 1
                if st["skipped"] > cfg.skip_nonfinite:
                    raise
                values = None
            if values is not None:
                sums = st["sums"]
                for key, value in values.items():
                    if math.isfinite(value):
                        sums[key] = sums.get(key, 0.0) + value * len(batch)
                        sums[f"n:{key}"] = sums.get(f"n:{key}", 0) + len(batch)
                bar.set_postfix({k: f"{round(v, 2) + 0.0:.2f}" for k, v in values.items()}, refresh=False)
            st["step"] += 1
            st["batch"] = index + 1
            bar.update()
            if self._checkpoint_due():
                self._save_last()
        bar.close()
        st["bucketing"] = BUCKETINGS[0]  # an epoch begun by older code ends on its batches, the next are this code's
        stepped = bool(st["sums"].get("n:loss"))  # distributed: rank 0 alone keeps a resumed epoch's sums
        if not (any_rank(stepped, self.device) if self.context else stepped):
            raise NonFiniteError(f"every batch of epoch {epoch + 1} was non-finite ({st['skipped']} skipped in all, "
                                 f"skip_nonfinite {cfg.skip_nonfinite}); the last checkpoint is kept")
        return self._end_epoch(epoch, time.perf_counter() - start)

    def _end_epoch(self, epoch: int, seconds: float) -> dict:
        cfg, st = self.config, self.state
        sums = sum_over_ranks(st["sums"], self.device) if self.context else st["sums"]
        record = {"epoch": epoch + 1, "step": st["step"], "lr": self.optim.lr, "kl_weight": self.weight,
                  "seconds": seconds, "skipped_batches": st["skipped"]}
        record.update({f"train_{k}": v / sums[f"n:{k}"] for k, v in sums.items() if not k.startswith("n:")})
        if self.context:
            average_buffers(self.vae)
        self.check_finite()
        valid = self.corpus.splits["valid"]
        record.update({f"valid_{k}": v for k, v in self.evaluate_split(valid).items()})
        if self.selection == "objective":
            record["valid_objective_loss"] = self.evaluate_objective(valid)
        was_training = self.vae.training
        for metrics in self.epoch_metrics:
            record.update({f"valid_{k}": v for k, v in metrics(self.vae, valid).items()})
        self.vae.train(was_training)
        if self.context:
            record = broadcast_from_rank_zero(lambda: record)
        criterion = record["valid_objective_loss" if self.selection == "objective" else "valid_elbo_loss"]
        decision = cfg.plateau.after_epoch(PlateauState(st["best"], st["bad_epochs"], st["decays"]), epoch + 1,
                                           criterion)
        st.update(best=decision.state.best, bad_epochs=decision.state.bad_epochs, decays=decision.state.decays)
        if decision.improved and self.is_main:
            save_checkpoint(self.run_dir / "best.pt", {"model": self.vae.state_dict(), "epoch": epoch + 1})
        if decision.halve:
            self.optim.scale_lr(cfg.lr_decay)
        record.update(improved=decision.improved, halved=decision.halve, decays=st["decays"], stop=decision.stop)
        record["early_stop"] = st["decays"] > cfg.max_decays
        st.update(epoch=epoch + 1, batch=0, sums={})
        return record
