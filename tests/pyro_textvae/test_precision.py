"""bf16 mixed precision: float32 master weights, float32 densities, interchangeable checkpoints."""
from __future__ import annotations

import json
import warnings

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import SVI, Trace_ELBO

from inference.optim import ClippedOptim
from pyro_textvae import precision as precision_module
from pyro_textvae.cli import main
from pyro_textvae.data import make_batch
from pyro_textvae.precision import autocast, bf16_supported, effective_precision
from pyro_textvae.run_folder import open_run

needs_bf16 = pytest.mark.skipif(not bf16_supported("cpu"), reason="this CPU has no native bf16")
TINY = ["--synthetic-train", "64", "--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "3",
        "--batch-size", "16", "--optimizer", "adam", "--no-progress"]


def _batch():
    return make_batch([[5, 6, 7, 8], [9, 10], [11, 12, 13, 14, 15, 16], [17]])


@needs_bf16
def test_bf16_token_log_probs_are_float32_and_normalised_but_differ_from_fp32(tiny_vae):
    tiny_vae.eval()
    batch, z = _batch(), torch.randn(4, tiny_vae.config.latent_dim)
    exact = tiny_vae.token_log_probs(batch.tokens, z)
    tiny_vae.precision = "bf16"
    mixed = tiny_vae.token_log_probs(batch.tokens, z)
    assert mixed.dtype == torch.float32
    assert torch.allclose(mixed.logsumexp(-1), torch.zeros(()), atol=1e-5)  # a bf16 log_softmax is off by ~1e-2
    assert not torch.equal(mixed, exact) and torch.allclose(mixed, exact, atol=0.1)
    assert tiny_vae.posterior_distribution(batch.tokens, batch.mask).base_dist.loc.dtype == torch.float32


@needs_bf16
def test_bf16_step_keeps_float32_weights_gradients_and_optimiser_state(tiny_vae):
    tiny_vae.precision = "bf16"
    batch = _batch()
    optim = ClippedOptim("adam", 1e-3, 5.0)
    svi = SVI(tiny_vae.model, tiny_vae.guide, optim, loss=Trace_ELBO())
    svi.step(batch.tokens, batch.mask)
    params = list(pyro.get_param_store().values())
    assert params and all(p.dtype == torch.float32 for p in params)
    states = [v for s in optim.get_state().values() for v in s["state"].values()]
    tensors = [t for state in states for t in state.values() if isinstance(t, torch.Tensor) and t.dim() > 0]
    assert tensors and all(t.dtype == torch.float32 for t in tensors)
    assert all(t.dtype == torch.float32 for t in tiny_vae.state_dict().values() if t.is_floating_point())


@needs_bf16
def test_bf16_run_resumes_and_evaluates_in_fp32_and_an_old_folder_loads(tmp_path):
    run = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(run), "--seed", "1", "--precision", "bf16", *TINY]) == 0
    config = json.loads((run / "config.json").read_text())
    assert config["train"]["precision"] == "bf16" and open_run(run).vae.precision == "bf16"
    state = torch.load(run / "last.pt", weights_only=True)
    assert all(t.dtype == torch.float32 for t in state["model"].values() if t.is_floating_point())
    assert main(["train", "--resume", str(run), "--epochs", "2", "--precision", "fp32", "--no-progress"]) == 0
    assert open_run(run, precision="fp32").vae.precision == "fp32"
    del config["train"]["precision"]
    (run / "config.json").write_text(json.dumps(config))
    assert open_run(run).vae.precision == precision_module.DEFAULT_PRECISION
    config["train"]["precision"] = "fp16"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="precision"):
        open_run(run)


def test_bf16_on_a_cpu_without_it_says_so_once_and_runs_fp32(monkeypatch, tiny_vae):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(precision_module, "_warned", set())
    assert not bf16_supported("cpu")
    with pytest.warns(UserWarning, match="bf16 is not supported"):
        assert effective_precision("bf16", "cpu") == "fp32"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert effective_precision("bf16", "cpu") == "fp32"
        assert effective_precision("fp32", "cpu") == "fp32"


def test_cuda_autocast_and_support_follow_the_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: True)
    monkeypatch.setattr(precision_module, "_warned", set())
    assert bf16_supported("cuda") and effective_precision("bf16", "cuda:0") == "bf16"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        context = autocast("bf16", "cuda")
    assert isinstance(context, torch.autocast) and context.device == "cuda"
    assert context.fast_dtype == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: False)
    with pytest.warns(UserWarning, match="cuda"):
        assert effective_precision("bf16", torch.device("cuda", 1)) == "fp32"
    assert not isinstance(autocast("fp32", "cuda"), torch.autocast)
    assert not isinstance(autocast("bf16", "meta"), torch.autocast)


def test_bad_precision_is_refused(tiny_vae, capsys):
    with pytest.raises(ValueError, match="precision"):
        tiny_vae.precision = "fp16"
    with pytest.raises(ValueError, match="precision"):
        effective_precision("half", "cpu")
    with pytest.raises(SystemExit):
        main(["train", "--precision", "fp16"])
    assert "--precision" in capsys.readouterr().err


@needs_bf16
def test_density_gap_sees_float32_posteriors_under_bf16(tiny_vae):
    tiny_vae.precision = "bf16"
    batch = _batch()
    trace = poutine.trace(tiny_vae.guide).get_trace(batch.tokens, batch.mask)
    site = trace.nodes["z"]
    assert site["value"].dtype == torch.float32 and site["fn"].base_dist.scale.dtype == torch.float32
