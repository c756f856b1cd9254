"""Device handling that a CPU-only machine can check: which device a rank trains on, the CUDA
generator in checkpoints, and runs moving between devices on resume (``torch.cuda``'s queries are
replaced where a GPU would be needed)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist

from evaluation.generation import _indexed
from inference.distributed import init_distributed
from inference.run import new_trainer, resume_trainer
from inference.trainer import TrainConfig
from pyro_textvae.devices import resolve_device
from pyro_textvae.io import load_checkpoint, restore_rng_state, rng_state
from tests.conftest import SMALL

DATA = {"synthetic": {"num_train": 64, "num_valid": 16, "num_test": 16, "seed": 1}}


@pytest.fixture
def two_gpus(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


def test_cuda_means_the_gpu_of_the_local_rank(two_gpus):
    assert resolve_device("cuda", local_rank=1, local_world_size=2) == torch.device("cuda", 1)
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    assert resolve_device("cpu", local_rank=1, local_world_size=2) == torch.device("cpu")
    message = "device 'cuda:1' names one GPU for 2 processes on this node; pass device cuda"
    with pytest.raises(ValueError, match=message):
        resolve_device("cuda:1", local_rank=0, local_world_size=2)
    with pytest.raises(ValueError, match="resolves to cuda:2 but only 2 GPU"):
        resolve_device("cuda", local_rank=2, local_world_size=3)


@pytest.mark.parametrize("device, message", [("gpu", "^device 'gpu' is not a torch device"),
                                             ("mps", "^device must be cpu, cuda or cuda:K, got 'mps'")])
def test_a_bad_device_is_named(device, message):
    with pytest.raises(ValueError, match=message):
        resolve_device(device)


def test_cuda_on_a_machine_without_one_is_refused(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="^device 'cuda' but CUDA is not available"):
        resolve_device("cuda")


def test_checkpoints_carry_the_cuda_generator_of_the_training_device(monkeypatch):
    """GPU sampling draws from the CUDA generator of the rank's device: a checkpoint keeps it and a
    resume sets it on that device; a state without one (a CPU run, an older checkpoint: a bare tensor)
    seeds the GPU from a hash of the CPU state (torch.cuda's calls are replaced: this machine has no GPU)."""
    set_states = {}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: torch.full((8,), device.index, dtype=torch.uint8))
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: set_states.update({device.index: state}))
    state = rng_state("cuda:1")
    assert torch.equal(state["cpu"], torch.get_rng_state()) and state["cuda"].tolist() == [1] * 8
    assert set(rng_state("cpu")) == {"cpu"}
    torch.manual_seed(123)
    restore_rng_state(state, "cuda:1")
    assert torch.equal(torch.get_rng_state(), state["cpu"]) and torch.equal(set_states.pop(1), state["cuda"])
    seeds = []
    monkeypatch.setattr(torch.cuda, "manual_seed_all", seeds.append)
    restore_rng_state(rng_state("cpu"), "cuda:0")
    restore_rng_state(state["cpu"], "cuda:0")
    torch.manual_seed(7)
    restore_rng_state(rng_state("cpu"), "cuda:0")
    assert set_states == {} and torch.equal(torch.get_rng_state(), torch.manual_seed(7).get_state())
    assert seeds[0] == seeds[1] != seeds[2]



def test_a_run_trained_on_a_gpu_resumes_on_a_cpu(tmp_path, monkeypatch):
    """``--resume RUN --device cpu`` continues a run whose config names a GPU (one this machine
    lacks, or is made to lack): it ends where the uninterrupted run ends, bit for bit."""
    def config(epochs):
        return TrainConfig(epochs=epochs, batch_size=16, optimizer="adam", progress=False, seed=5)
    new_trainer(tmp_path / "straight", DATA, SMALL, "elbo", {}, config(2)).fit()
    new_trainer(tmp_path / "moved", DATA, SMALL, "elbo", {}, config(1)).fit()
    path = tmp_path / "moved" / "config.json"
    stored = json.loads(path.read_text())
    stored["train"]["device"] = "cuda"
    path.write_text(json.dumps(stored))
    with monkeypatch.context() as without_gpu:
        without_gpu.setattr(torch.cuda, "is_available", lambda: False)
        with pytest.raises(ValueError, match="CUDA is not available"):
            resume_trainer(tmp_path / "moved", epochs=2)
    resume_trainer(tmp_path / "moved", epochs=2, device="cpu").fit(resume=True)
    straight, moved = (load_checkpoint(tmp_path / name / "last.pt")["model"] for name in ("straight", "moved"))
    assert all(torch.equal(straight[key], moved[key]) for key in straight)


def test_a_gpu_machine_joins_one_group_with_gloo_for_the_cpu_and_nccl_for_cuda(two_gpus, monkeypatch):
    """Under torchrun on a machine with GPUs, process k of a node joins the group
    ``cpu:gloo,cuda:nccl`` and computes on GPU k (torch.distributed's calls are replaced)."""
    calls = {}
    for name, value in dict(RANK="1", WORLD_SIZE="2", LOCAL_RANK="1", LOCAL_WORLD_SIZE="2",
                            MASTER_ADDR="127.0.0.1", MASTER_PORT="29500").items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "is_nccl_available", lambda: True)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.update(backend=backend))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    monkeypatch.setattr(dist, "get_backend", lambda: "cpu:gloo,cuda:nccl")
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: calls.update(device=device))
    context = init_distributed("cuda")
    assert calls == {"backend": "cpu:gloo,cuda:nccl", "device": torch.device("cuda", 1)}
    assert (context.rank, context.world_size, context.local_rank, context.device) == (1, 2, 1, torch.device("cuda", 1))
    with pytest.raises(ValueError, match="names one GPU for 2 processes"):
        init_distributed("cuda:0")


def test_the_differentiable_all_gather_of_older_torch_is_used_where_the_new_name_is_missing():
    """torch 2.11 (the GPU image's) has the all-gather under its earlier name only."""
    code = ("import torch.distributed._functional_collectives as f\n"
            "expected = f.all_gather_tensor_autograd\n"
            "del f.all_gather_single\n"
            "import inference.distributed as d\n"
            "assert d.all_gather_single is expected\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_generator_made_on_cuda_counts_as_on_the_current_gpu(monkeypatch):
    """``torch.Generator(device="cuda").device`` has no index; z on the current GPU has one."""
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert _indexed(torch.device("cuda")) == torch.device("cuda", 1) == _indexed(torch.device("cuda", 1))
    assert _indexed(torch.device("cpu")) == torch.device("cpu")
