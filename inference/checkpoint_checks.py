"""The fields of a training checkpoint ``last.pt`` checked before any of them is used.

:func:`check_training_state` refuses, with one :class:`~pyro_textvae.errors.CheckpointError`
naming the file and the field, what would otherwise fail deep inside a resume: trainer counters
that are not non-negative integers (``trainer.step``), a best loss or running sum that is not a
number, a learning rate that is not a positive finite number, an RNG state of the wrong dtype or
size, optimiser state that is not a ``{"state": {...}, "param_groups": [...]}`` dict per parameter,
a negative step or moments whose shape is not their parameter's.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from pyro_textvae.errors import CheckpointError

COUNTERS = ("epoch", "batch", "step", "bad_epochs", "decays", "skipped")
PARAM_SEPARATOR = "$$$"  # Pyro's module parameter names: "decoder$$$embed.weight" is decoder.embed.weight


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def _check_rng(path: Path, state: Any, field: str) -> None:
    state = {"cpu": state} if torch.is_tensor(state) else state
    if not isinstance(state, dict) or "cpu" not in state:
        raise CheckpointError(f"{path}: field {field} must hold the CPU generator's state under 'cpu'")
    expected = torch.get_rng_state()
    for device, tensor in state.items():
        size_ok = device != "cpu" or (torch.is_tensor(tensor) and tensor.shape == expected.shape)
        if not torch.is_tensor(tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 1 or not size_ok:
            shown = f"{tensor.dtype} {tuple(tensor.shape)}" if torch.is_tensor(tensor) else type(tensor).__name__
            raise CheckpointError(f"{path}: field {field}.{device} is not a generator state (uint8 "
                                  f"{tuple(expected.shape) if device == 'cpu' else '(n,)'}, found {shown})")


def _check_trainer(path: Path, trainer: Any) -> None:
    if not isinstance(trainer, dict):
        raise CheckpointError(f"{path}: field trainer must be a dict, found {type(trainer).__name__}")
    for name in COUNTERS:
        if name not in trainer:
            raise CheckpointError(f"{path}: field trainer.{name} is missing")
        if not _is_count(trainer[name]):
            raise CheckpointError(f"{path}: field trainer.{name} must be an integer >= 0, found {trainer[name]!r}")
    if not _is_number(trainer.get("best")):
        raise CheckpointError(f"{path}: field trainer.best must be a number, found {trainer.get('best')!r}")
    sums = trainer.get("sums")
    if not isinstance(sums, dict) or not all(isinstance(k, str) and _is_number(v) for k, v in sums.items()):
        raise CheckpointError(f"{path}: field trainer.sums must map names to numbers, found {sums!r}"[:300])
    if not isinstance(trainer.get("bucketing", ""), str):
        raise CheckpointError(f"{path}: field trainer.bucketing must be a name, found {trainer['bucketing']!r}")


def _check_optimiser(path: Path, optim: Any, shapes: dict[str, torch.Size]) -> None:
    if not isinstance(optim, dict):
        raise CheckpointError(f"{path}: field optim must be a dict, found {type(optim).__name__}")
    for name, saved in optim.items():
        field = f"optim.{name}"
        if not isinstance(saved, dict) or not isinstance(saved.get("state"), dict) \
                or not isinstance(saved.get("param_groups"), list):
            raise CheckpointError(f"{path}: field {field} is not an optimiser state (a dict of state and param_groups)")
        shape = shapes.get(str(name).replace(PARAM_SEPARATOR, "."))
        for index, values in saved["state"].items():
            if not isinstance(values, dict):
                raise CheckpointError(f"{path}: field {field}.state.{index} must be a dict, found {values!r}"[:300])
            for key, value in values.items():
                _check_moment(path, f"{field}.state.{index}.{key}", key, value, shape)


def _check_moment(path: Path, field: str, key: str, value: Any, shape: torch.Size | None) -> None:
    if key == "step":
        step = value.item() if torch.is_tensor(value) and value.numel() == 1 else value
        if not _is_number(step) or step < 0:
            raise CheckpointError(f"{path}: field {field} must be a number >= 0, found {value!r}")
    elif torch.is_tensor(value) and shape is not None and value.shape != shape:
        raise CheckpointError(f"{path}: field {field} has shape {tuple(value.shape)}, its parameter {tuple(shape)}")


def check_training_state(path: Path, state: dict, model: torch.nn.Module) -> None:
    """Refuse a ``last.pt`` whose learning rate, trainer counters, RNG state or optimiser state are
    malformed (module docstring), naming ``path`` and the field."""
    lr = state["lr"]
    if not _is_number(lr) or not 0 < lr < math.inf:
        raise CheckpointError(f"{path}: field lr must be a positive finite number, found {lr!r}")
    _check_trainer(path, state["trainer"])
    _check_rng(path, state["rng"], "rng")
    if "world_size" in state and not (_is_count(state["world_size"]) and state["world_size"] >= 1):
        raise CheckpointError(f"{path}: field world_size must be an integer >= 1, found {state['world_size']!r}")
    for rank, rng in enumerate(state.get("rng_per_rank", [])):
        _check_rng(path, rng, f"rng_per_rank.{rank}")
    if not isinstance(state.get("loss_state", {}), dict):
        raise CheckpointError(f"{path}: field loss_state must be a dict, found {type(state['loss_state']).__name__}")
    _check_optimiser(path, state["optim"], {name: value.shape for name, value in model.state_dict().items()})
