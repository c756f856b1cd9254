"""Data parallelism under torch.distributed: 2 gloo processes on CPU against one process.

Two processes are spawned once for the whole file (``distributed``); each runs every scenario and
saves what it saw, and the tests compare that with single-process runs in the test process.

Exact comparison of stochastic steps (common random numbers): :class:`CommonNoise` replaces the
standard-normal draws behind ``Normal.rsample`` (the reparameterised z of the guide, the M
samples of the density gap). Its k-th draw of shape ``(..., b, d)`` is
the rows ``offset .. offset + b`` of a ``(..., rows, d)`` tensor from a generator seeded by k. A
process holding rows ``[offset, offset + b)`` of a global batch of ``rows`` sentences therefore
gets exactly the noise that one process gets for those rows of the whole batch, so one
distributed step and one single-process step differ only by floating-point summation order. The
model has no dropout, its only other source of randomness. The importance-weighted evaluation
needs no such device: it seeds each batch from its number, wherever the batch is scored.
"""
from __future__ import annotations

import contextlib
import os
import shutil
import socket
from functools import partial

import pyro
import pyro.distributions as dist
import pytest
import torch
import torch.distributions.normal as normal_module
import torch.multiprocessing as mp

import evaluation.report
import inference.checkpoints
import inference.run
import inference.trainer
from evaluation.distributed_eval import sharded_log_likelihood
from inference.density_gap import density_gap_kl
from inference.density_gap_elbo import DensityGapELBO
from inference.distributed import close_distributed, shard_batch, shard_bounds
from inference.objective_configs import AEConfig
from inference.objectives import Objective, get_objective
from inference.run import new_trainer, resume_trainer
from inference.schedules import ConstantSchedule
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.cli import main
from pyro_textvae.data import iterate_batches, synthetic_corpus
from pyro_textvae.io import load_checkpoint, load_json, read_jsonl
from pyro_textvae.model import TextVAE, TextVAEConfig
from tests.conftest import SMALL
from tests.inference.crashing import crash_at_step
from tests.same_numbers import assert_same_numbers

WORLD = 2
LOCAL = 4
SAMPLES = 3
MODEL = {**SMALL, "dropout_in": 0.0, "dropout_out": 0.0}
RUN_DATA = {"synthetic": {"num_train": 48, "num_valid": 16, "num_test": 8, "seed": 1}}
EVALUATE = ["--iw-samples", "4", "--iw-batch-size", "3", "--iw-chunk", "2", "--prior-samples", "200",
            "--num-generate", "4", "--num-interpolations", "2", "--seed", "3", "--no-progress"]


class CommonNoise:
    """Stand-in for ``torch.distributions.normal._standard_normal`` (see the module docstring)."""

    def __init__(self, rows: int, offset: int) -> None:
        self.rows, self.offset, self.calls = rows, offset, 0

    def __call__(self, shape, dtype=None, device=None) -> torch.Tensor:
        shape = torch.Size(shape)
        generator = torch.Generator().manual_seed(1000 + self.calls)
        self.calls += 1
        full = torch.randn(*shape[:-2], self.rows, shape[-1], generator=generator, dtype=dtype)
        return full.narrow(-2, self.offset, shape[-2]).to(device)


@contextlib.contextmanager
def common_noise(rows: int, offset: int = 0):
    original = normal_module._standard_normal
    normal_module._standard_normal = CommonNoise(rows, offset)
    try:
        yield
    finally:
        normal_module._standard_normal = original


def _corpus():
    return synthetic_corpus(num_train=40, num_valid=9, num_test=11, seed=4)


def _global_batch(corpus):
    return next(iter(iterate_batches(corpus.splits["train"], WORLD * LOCAL, shuffle=True, seed=5)))


def _objective(name: str) -> tuple[Objective, dict]:
    if name == "elbo":
        return get_objective("beta"), {"beta": 1.0}
    loss = {"dg-global": "global", "dg-local": "local"}[name]
    return Objective(name, "density gap", AEConfig, partial(DensityGapELBO, SAMPLES, agg=loss),
                     lambda config, n: ConstantSchedule(1.0)), {}


def _trainer(corpus, name: str, distributed: bool, run_dir) -> Trainer:
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), **MODEL))
    objective, params = _objective(name)
    config = TrainConfig(batch_size=LOCAL, optimizer="sgd", lr=0.5, clip_norm=1e6, progress=False,
                         distributed=distributed)
    return Trainer(vae, corpus, objective, params, config, run_dir)


def _counted(function, counts: dict):
    """``function``, counting its calls in ``counts["writes"]``."""
    def wrapper(*args, **kwargs):
        counts["writes"] += 1
        return function(*args, **kwargs)
    return wrapper


def _count_writes(rank: int) -> dict:
    """Wrap the writers of the run folder to count the calls made in this process."""
    counts = {"writes": 0}
    for module, name in [(inference.trainer, "save_checkpoint"), (inference.checkpoints, "save_checkpoint"),
                         (inference.trainer, "append_jsonl"),
                         (inference.trainer, "truncate_jsonl"), (inference.run, "save_json")]:
        setattr(module, name, _counted(getattr(module, name), counts))
    return counts


def _fit_crash_resume(out_dir) -> None:
    """A 2-epoch distributed run, and the same run killed at its 5th step and resumed."""
    config = TrainConfig(epochs=2, batch_size=LOCAL, optimizer="adam", progress=False, seed=3, checkpoint_every=2)
    new_trainer(out_dir / "straight", RUN_DATA, MODEL, "elbo", {"warmup_epochs": 1}, config).fit()
    crashed = crash_at_step(new_trainer(out_dir / "crashed", RUN_DATA, MODEL, "elbo", {"warmup_epochs": 1}, config), 5)
    with contextlib.suppress(KeyboardInterrupt):
        crashed.fit()
    resume_trainer(out_dir / "crashed").fit(resume=True)


def _worker(rank: int, out_dir, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    pyro.enable_validation(True)
    corpus = _corpus()
    batch = _global_batch(corpus)
    results = {}
    for name in ("elbo", "dg-global", "dg-local"):
        trainer = _trainer(corpus, name, True, out_dir)
        if name == "elbo":
            start, stop = shard_bounds(len(corpus.splits["valid"]), rank, WORLD, equal=False)
            with common_noise(len(corpus.splits["valid"]), start):
                results["valid"] = trainer.evaluate_split(corpus.splits["valid"])
            results["log_px"] = sharded_log_likelihood(trainer.vae, corpus.splits["test"], 6, 3, 3, seed=5)
        local = trainer.local_batch(batch)
        rows, offset = (LOCAL, 0) if name == "dg-local" else (len(batch), rank * LOCAL)
        with common_noise(rows, offset):
            values = trainer.step(local.tokens, local.mask)
        results[name] = {"values": values, "params": trainer.vae.state_dict()}
    counts = _count_writes(rank)
    _fit_crash_resume(out_dir)
    results["writes"] = counts["writes"]
    eval_counts = {"writes": 0}
    for name in ("save_json", "atomic_write_bytes"):
        setattr(evaluation.report, name, _counted(getattr(evaluation.report, name), eval_counts))
    results["evaluate"] = main(["evaluate", str(out_dir / "straight"), *EVALUATE])
    results["eval_writes"] = eval_counts["writes"]
    torch.save(results, out_dir / f"rank{rank}.pt")
    close_distributed()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def distributed(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("distributed")
    mp.spawn(_worker, args=(out_dir, _free_port()), nprocs=WORLD, join=True)
    return out_dir, [torch.load(out_dir / f"rank{r}.pt") for r in range(WORLD)]


def _assert_same_parameters(expected: dict, actual: dict, moved_from: dict) -> None:
    for key in expected:
        torch.testing.assert_close(actual[key], expected[key], rtol=1e-5, atol=1e-6, msg=key)
    assert max(float((expected[k] - moved_from[k]).abs().max()) for k in expected) > 1e-3


@pytest.mark.slow
@pytest.mark.parametrize("name", ["elbo", "dg-global"])
def test_one_distributed_step_equals_one_step_on_the_global_batch(distributed, tmp_path, name):
    _, ranks = distributed
    corpus = _corpus()
    batch = _global_batch(corpus)
    single = _trainer(corpus, name, False, tmp_path)
    before = {k: v.clone() for k, v in single.vae.state_dict().items()}
    with common_noise(len(batch)):
        values = single.step(batch.tokens, batch.mask)
    for rank in ranks:
        _assert_same_parameters(single.vae.state_dict(), rank[name]["params"], before)
    assert sum(rank[name]["values"]["loss"] for rank in ranks) / WORLD == pytest.approx(values["loss"], rel=1e-5)
    if name == "dg-global":
        kl = [rank[name]["values"]["kl_estimate"] for rank in ranks]
        assert sum(kl) / WORLD == pytest.approx(values["kl_estimate"], rel=1e-5)


def test_local_density_gap_is_the_single_process_value_on_each_half(distributed, tmp_path):
    _, ranks = distributed
    corpus = _corpus()
    batch = _global_batch(corpus)
    halves = []
    for rank in range(WORLD):
        single = _trainer(corpus, "dg-local", False, tmp_path)
        half = shard_batch(batch, rank, WORLD)
        with common_noise(LOCAL):
            halves.append(single.step(half.tokens, half.mask))
    for rank, values in zip(ranks, halves):
        for key in ("kl_estimate", "density_gap", "reconstruction", "loss"):
            assert rank["dg-local"]["values"][key] == pytest.approx(values[key], rel=1e-5), key
    global_kl = [rank["dg-global"]["values"]["kl_estimate"] for rank in ranks]
    assert global_kl != pytest.approx([values["kl_estimate"] for values in halves], rel=1e-3)


def test_sharded_validation_equals_single_process(distributed, tmp_path):
    _, ranks = distributed
    corpus = _corpus()
    single = _trainer(corpus, "elbo", False, tmp_path)
    with common_noise(len(corpus.splits["valid"])):
        expected = single.evaluate_split(corpus.splits["valid"])
    for rank in ranks:
        assert rank["valid"]["active_units"] == expected["active_units"]
        for key in ("reconstruction", "kl", "elbo_loss"):
            assert rank["valid"][key] == pytest.approx(expected[key], rel=1e-6), key


def test_sharded_importance_sampling_equals_single_process(distributed):
    """Batches shared out over 2 ranks (rank 0 scores batches 0 and 2, rank 1 batches 1 and 3)
    give the vector that one process gives; another seed gives other draws."""
    _, ranks = distributed
    split = _corpus().splits["test"]
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig(vocab_size=len(_corpus().vocab), **MODEL)).eval()
    expected = sharded_log_likelihood(vae, split, 6, 3, 3, seed=5)
    assert not torch.isnan(expected).any()
    for rank in ranks:
        torch.testing.assert_close(rank["log_px"], expected, rtol=1e-6, atol=1e-5)
    assert not torch.allclose(sharded_log_likelihood(vae, split, 6, 3, 3, seed=6), expected)


def test_distributed_evaluate_writes_once_what_one_process_computes(distributed, tmp_path):
    """``textvae evaluate`` under torchrun: rank 0 writes eval.json and eval.md and nothing else is
    written; every number equals the single-process evaluation of the same run."""
    out_dir, ranks = distributed
    assert [rank["evaluate"] for rank in ranks] == [0, 0]
    assert [rank["eval_writes"] for rank in ranks] == [2, 0]
    shared = load_json(out_dir / "straight" / "eval.json")
    alone = tmp_path / "alone"
    shutil.copytree(out_dir / "straight", alone)
    (alone / "eval.json").unlink()
    assert main(["evaluate", str(alone), *EVALUATE]) == 0
    single = load_json(alone / "eval.json")
    assert shared.pop("run") != single.pop("run")
    assert_same_numbers(shared, single)


def test_resume_of_a_killed_distributed_run_matches_the_straight_run(distributed):
    out_dir, ranks = distributed
    straight = load_checkpoint(out_dir / "straight" / "last.pt")
    resumed = load_checkpoint(out_dir / "crashed" / "last.pt")
    assert straight["world_size"] == WORLD and len(resumed["rng_per_rank"]) == WORLD
    assert all(torch.equal(straight["model"][k], resumed["model"][k]) for k in straight["model"])
    a, b = read_jsonl(out_dir / "straight" / "metrics.jsonl"), read_jsonl(out_dir / "crashed" / "metrics.jsonl")
    assert [r["epoch"] for r in b] == [1, 2]
    for key in ("train_loss", "valid_elbo_loss", "valid_active_units"):
        assert [r[key] for r in a] == pytest.approx([r[key] for r in b], rel=1e-9), key


def test_only_rank_zero_writes_the_run_folder(distributed):
    _, ranks = distributed
    assert ranks[0]["writes"] > 0 and ranks[1]["writes"] == 0


def test_shards_cover_a_batch():
    for rows in range(0, 11):
        loose = [shard_bounds(rows, r, 3, equal=False) for r in range(3)]
        assert [i for start, stop in loose for i in range(start, stop)] == list(range(rows))
        equal = [shard_bounds(rows, r, 3) for r in range(3)]
        assert {stop - start for start, stop in equal} == {rows // 3}
        assert equal[-1][1] == rows - rows % 3
    with pytest.raises(ValueError, match="rank"):
        shard_bounds(4, 3, 3)


def test_global_aggregate_estimate_splits_over_the_data():
    loc, scale = torch.randn(6, 3), torch.rand(6, 3) + 0.3
    posterior = dist.Normal(loc, scale).to_event(1)
    prior = dist.Normal(torch.zeros(3), torch.ones(3)).to_event(1)
    with common_noise(6):
        full = density_gap_kl(posterior, prior, num_samples=4, agg_size=4)
    parts = []
    for offset, rows in ((0, 2), (2, 4)):
        part = dist.Normal(loc[offset:offset + rows], scale[offset:offset + rows]).to_event(1)
        with common_noise(6, offset):
            parts.append(rows * density_gap_kl(part, prior, num_samples=4, agg_size=4, aggregate=posterior,
                                               offset=offset))
    assert float(sum(parts)) / 6 == pytest.approx(float(full), rel=1e-6)
    with pytest.raises(ValueError, match="offset"):
        density_gap_kl(posterior, prior, aggregate=posterior, offset=1)


def test_distributed_without_torchrun_is_a_clear_error(monkeypatch, tmp_path):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)
    assert TrainConfig().distributed is False
    with pytest.raises(ValueError, match="torchrun"):
        _trainer(_corpus(), "elbo", True, tmp_path)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert TrainConfig().distributed is True
    with pytest.raises(ValueError, match="agg"):
        DensityGapELBO(agg="everywhere")
