"""The training and evaluation paths on a GPU, against the CPU (skipped where there is no GPU).

``TEXTVAE_TEST_DEVICE`` names the device under test (default ``cuda``); ``TEXTVAE_TEST_DEVICE=cpu``
runs the same checks CPU against CPU, which is how their code is exercised on machines without a
GPU. ``.ci/gpu-check`` runs this file on a GPU machine. Common random numbers: the standard-normal
draws behind ``rsample`` come from one CPU generator and are copied to the device
(:func:`tests.test_distributed.common_noise`), dropout is off where two devices are compared, and
TF32 is off, so a step on the GPU and one on the CPU differ only by floating-point rounding.
"""
from __future__ import annotations

import contextlib
import os

import pyro
import pytest
import torch

from evaluation.likelihood import importance_log_likelihood
from evaluation.report import evaluate_run
from inference.distributed import close_distributed
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig, Trainer
from pyro_textvae.data import iterate_batches, synthetic_corpus
from pyro_textvae.distributions import VonMisesFisher
from pyro_textvae.io import load_checkpoint
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.run_folder import open_run
from tests.conftest import SMALL
from tests.inference.test_distributed import _free_port, _objective, common_noise

DEVICE = torch.device(os.environ.get("TEXTVAE_TEST_DEVICE", "cuda"))
os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS, if set before its first use
pytestmark = pytest.mark.skipif(
    DEVICE.type == "cuda" and not torch.cuda.is_available(),
    reason="needs a CUDA GPU (TEXTVAE_TEST_DEVICE=cpu runs these checks on the CPU)",
)
MODEL = {**SMALL, "dropout_in": 0.0, "dropout_out": 0.0}
DATA = {"synthetic": {"num_train": 64, "num_valid": 16, "num_test": 16, "seed": 2}}


@pytest.fixture(autouse=True)
def _exact_float32():
    """TF32 off for cuDNN and matrix products (on by default for cuDNN): float32 as on the CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def _step(corpus, name: str, device: torch.device, batch, run_dir) -> dict:
    pyro.clear_param_store()
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), **MODEL))
    objective, params = _objective(name)
    config = TrainConfig(batch_size=len(batch), optimizer="sgd", lr=0.5, clip_norm=1e6, progress=False,
                         device=str(device), distributed=False)
    trainer = Trainer(vae, corpus, objective, params, config, run_dir)
    local = batch.to(trainer.device)
    with common_noise(len(batch)):
        values = trainer.step(local.tokens, local.mask)
    return {"values": values, "params": {k: v.cpu() for k, v in trainer.vae.state_dict().items()}}


@pytest.mark.parametrize("name", ["elbo", "dg-local"])
def test_one_step_on_the_device_equals_one_step_on_the_cpu(tmp_path, name):
    corpus = synthetic_corpus(num_train=32, num_valid=8, num_test=8, seed=4)
    batch = next(iter(iterate_batches(corpus.splits["train"], 16, shuffle=True, seed=5)))
    on_cpu = _step(corpus, name, torch.device("cpu"), batch, tmp_path)
    on_device = _step(corpus, name, DEVICE, batch, tmp_path)
    for key, value in on_cpu["params"].items():
        torch.testing.assert_close(on_device["params"][key], value, rtol=1e-4, atol=1e-5, msg=key)
    assert on_device["values"]["loss"] == pytest.approx(on_cpu["values"]["loss"], rel=1e-4)


def test_a_run_resumed_on_the_device_ends_where_the_straight_run_ends(tmp_path):
    """With dropout on, the device's own generator draws the masks: a resume that did not restore it
    would end elsewhere (differences of order the learning rate, 1e-3). Deterministic kernels where
    torch has them keep the rest near rounding."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        for name, epochs in (("straight", 2), ("resumed", 1)):
            config = TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", progress=False, seed=3,
                                 device=str(DEVICE))
            new_trainer(tmp_path / name, DATA, SMALL, "elbo", {"warmup_epochs": 1}, config).fit()
        resume_trainer(tmp_path / "resumed", epochs=2).fit(resume=True)
    finally:
        torch.use_deterministic_algorithms(False)
    straight, resumed = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("straight", "resumed"))
    for key, value in straight.items():
        torch.testing.assert_close(resumed[key], value, rtol=0, atol=1e-4, msg=key)


def test_importance_sampling_on_the_device_equals_the_cpu():
    corpus = synthetic_corpus(num_train=32, num_valid=8, num_test=8, seed=4)
    torch.manual_seed(0)
    vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), **MODEL)).eval()
    (batch,) = iterate_batches(corpus.splits["test"], 8, shuffle=False)
    estimates = []
    for device in (torch.device("cpu"), DEVICE):
        moved, local = vae.to(device), batch.to(device)
        with common_noise(len(batch)):
            estimates.append(importance_log_likelihood(moved.model, moved.guide, local.tokens, local.mask,
                                                       num_samples=12, chunk_size=5).cpu())
    torch.testing.assert_close(estimates[1], estimates[0], rtol=1e-5, atol=1e-4)


def test_evaluation_on_the_device_agrees_with_the_cpu(tmp_path):
    """The variances of the posterior means behind AU (no randomness): equal to rounding; the
    importance-sampled NLL uses each device's own generator: equal within Monte-Carlo error."""
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False, seed=3)
    new_trainer(tmp_path / "run", DATA, SMALL, "elbo", {"warmup_epochs": 1}, config).fit()
    options = {"iw_samples": 50, "prior_samples": 500, "num_generate": 4, "num_interpolations": 2, "progress": False}
    results = [evaluate_run(open_run(tmp_path / "run", device=str(device)), device=device, **options)
               for device in (torch.device("cpu"), DEVICE)]
    assert results[1]["active_units"]["variances"] == pytest.approx(results[0]["active_units"]["variances"],
                                                                    rel=1e-4, abs=1e-7)
    assert results[1]["likelihood"]["nll"] == pytest.approx(results[0]["likelihood"]["nll"], rel=0.01)


def test_vmf_draws_on_the_device_have_the_mean_resultant_length_of_their_kappa():
    """E[mu . z] = A_d(kappa) = I_{d/2}(kappa) / I_{d/2-1}(kappa) for z ~ vMF(mu, kappa) (Mardia and
    Jupp 2000, sec. 9.3), by the sampler running on the device."""
    d, kappa, n = 8, 10.0, 20000
    loc = torch.nn.functional.normalize(torch.randn(d), dim=0).to(DEVICE)
    draws = VonMisesFisher(loc, torch.tensor(kappa, device=DEVICE)).rsample((n,))
    assert draws.device.type == DEVICE.type
    torch.testing.assert_close(draws.norm(dim=-1), torch.ones(n, device=draws.device), rtol=0, atol=1e-5)
    scipy_special = pytest.importorskip("scipy.special")
    expected = scipy_special.ive(d / 2, kappa) / scipy_special.ive(d / 2 - 1, kappa)
    cosines = (draws @ loc).double().cpu()
    assert float(cosines.mean()) == pytest.approx(expected, abs=4 * float(cosines.std()) / n**0.5)


@contextlib.contextmanager
def _one_process_group(monkeypatch):
    for key, value in dict(RANK="0", WORLD_SIZE="1", LOCAL_RANK="0", LOCAL_WORLD_SIZE="1",
                           MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port())).items():
        monkeypatch.setenv(key, value)
    try:
        yield
    finally:
        close_distributed()


def test_the_global_density_gap_through_the_process_group_equals_the_plain_step(tmp_path, monkeypatch):
    """One process in a ``cpu:gloo,cuda:nccl`` group (gloo alone without a GPU): the all-gather and
    all-reduce of ``DensityGapELBO(agg="global")`` on the device give the plain step."""
    corpus = synthetic_corpus(num_train=32, num_valid=8, num_test=8, seed=4)
    batch = next(iter(iterate_batches(corpus.splits["train"], 16, shuffle=True, seed=5)))
    plain = _step(corpus, "dg-global", DEVICE, batch, tmp_path)
    with _one_process_group(monkeypatch):
        pyro.clear_param_store()
        torch.manual_seed(0)
        vae = TextVAE(TextVAEConfig(vocab_size=len(corpus.vocab), **MODEL))
        objective, params = _objective("dg-global")
        config = TrainConfig(batch_size=len(batch), optimizer="sgd", lr=0.5, clip_norm=1e6, progress=False,
                             device=str(DEVICE), distributed=True)
        trainer = Trainer(vae, corpus, objective, params, config, tmp_path)
        local = trainer.local_batch(batch).to(trainer.device)
        with common_noise(len(batch)):
            values = trainer.step(local.tokens, local.mask)
    assert values["kl_estimate"] == pytest.approx(plain["values"]["kl_estimate"], rel=1e-5)
    for key, value in plain["params"].items():
        torch.testing.assert_close(trainer.vae.state_dict()[key].cpu(), value, rtol=1e-5, atol=1e-6, msg=key)
