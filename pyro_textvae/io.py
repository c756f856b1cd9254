"""Crash-safe files of a run folder: atomic writes, JSON lines, checkpoints loaded without pickle.

Every file is written to a temporary file in the same folder, flushed, ``fsync``-ed and renamed
over the target (``os.replace`` is atomic on POSIX), so a crash leaves either the old or the new
file, never a torn one. ``metrics.jsonl`` lines are appended in one ``write`` of a complete line
followed by ``fsync``; a reader drops a final line without its newline.
Checkpoints load with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples
and dicts only, so a file carrying a pickled object is refused instead of run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import pickle
import tempfile
import typing
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError


def file_mode() -> int:
    """The mode ``open()`` gives a new file, ``0o666`` less the umask (``mkstemp`` makes ``0o600``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def save_json(path: str | Path, value: Any) -> None:
    """Atomically write ``value`` as indented JSON."""
    atomic_write_bytes(path, (json.dumps(value, indent=2, sort_keys=True) + "\n").encode())


def load_json(path: str | Path) -> Any:
    """Read a JSON file, naming the file (and the position) in any error."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{path}: not valid JSON ({error})") from None


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line in a single write and fsync it."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    with open(path, "ab") as handle:
        handle.write(line)
        handle.flush()
        os.fsync(handle.fileno())


def read_jsonl(path: str | Path) -> list[dict]:
    """Read the complete lines of a JSON-lines file (a torn last line, without newline, is dropped)."""
    path = Path(path)
    if not path.exists():
        return []
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")[:-1]
    records = []
    for number, line in enumerate(lines, 1):
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{path}:{number}: not a JSON line ({error})") from None
    return records


def truncate_jsonl(path: str | Path, keep: int) -> None:
    """Keep the first ``keep`` complete lines (used when resuming from an earlier checkpoint)."""
    records = read_jsonl(path)[:keep]
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically ``torch.save`` a dict of tensors, numbers, strings, lists and dicts."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    atomic_write_bytes(path, buffer.getvalue())


def rng_state(device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """torch's RNG state for a checkpoint: the CPU generator's, and the CUDA generator's of
    ``device`` when it is a CUDA device (``torch.manual_seed`` seeds both; sampling on a GPU
    draws from the second)."""
    device = torch.device(device)
    state = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def restore_rng_state(state: dict[str, torch.Tensor] | torch.Tensor, device: torch.device | str = "cpu") -> None:
    """Set the generators saved by :func:`rng_state` (a bare tensor: the CPU state of an older
    checkpoint), wherever ``map_location`` put them. Resumed on a GPU from a state without one
    (written on a CPU), the process's GPU generators are seeded from a hash of the CPU state, so
    that they differ between ranks and resumes instead of restarting at torch's default seed."""
    state = {"cpu": state} if torch.is_tensor(state) else state
    device = torch.device(device)
    torch.set_rng_state(state["cpu"].cpu())
    if device.type != "cuda":
        return
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"].cpu(), device)
    else:
        digest = hashlib.sha256(state["cpu"].cpu().numpy().tobytes()).digest()
        torch.cuda.manual_seed_all(int.from_bytes(digest[:8], "little"))


def _other_checkpoint(path: Path) -> str:
    """The hint that a run's other checkpoint may still be good."""
    other = {"best.pt": "last.pt", "last.pt": "best.pt"}.get(path.name)
    if other is None or not (path.parent / other).is_file():
        return ""
    return f"; {other} beside it may still be fine"


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint with ``weights_only=True``; refuse pickled objects with a clear error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds pickled objects, not only tensors and numbers "
                              f"(read with weights_only=True){_other_checkpoint(path)}") from None
    except Exception as error:
        reason = str(error).split(". ")[0].splitlines()[0][:120]
        raise CheckpointError(f"{path}: cannot be read, truncated or corrupt ({reason}){_other_checkpoint(path)}"
                              ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: a checkpoint must hold a dict, found {type(state).__name__}")
    return state


def _fits(value: Any, kind: Any) -> bool:
    if kind is type(None):
        return value is None
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def dataclass_from_dict(cls: type, values: Any, where: str) -> Any:
    """Build the dataclass ``cls`` from a JSON object, refusing unknown keys and wrong types with
    the option's name (``where`` says which file or section), before the values reach any code."""
    if not isinstance(values, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {field.name for field in dataclasses.fields(cls)}
    unknown = sorted(set(values) - fields)
    if unknown:
        raise ValueError(f"{where}: unknown option(s) {unknown}; valid: {sorted(fields)}")
    for name, value in values.items():
        kinds = typing.get_args(hints[name]) or (hints[name],)
        if not any(_fits(value, kind) for kind in kinds):
            expected = " or ".join(getattr(kind, "__name__", str(kind)) for kind in kinds)
            raise ValueError(f"{where}: option {name} must be {expected}, got {value!r}")
    try:
        return cls(**values)
    except ValueError as error:  # a value the dataclass refuses: say which file or section
        raise ValueError(f"{where}: {error}") from None
