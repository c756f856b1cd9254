"""Crash-safe files of a run folder: atomic writes, JSON lines, checkpoints loaded without pickle.

Every file is written to a temporary file in the same folder, flushed, ``fsync``-ed and renamed
over the target (``os.replace`` is atomic on POSIX), so a crash leaves either the old or the new
file, never a torn one. ``metrics.jsonl`` lines are appended in one ``write`` of a complete line
followed by ``fsync``; a reader drops a final line without its newline.
Checkpoints load with ``torch.load(weights_only=True)``: tensors, numbers, strings, lists, tuples
and dicts only, so a file carrying a pickled object is refused instead of run, and a checkpoint
holding a NaN or infinite floating-point tensor is refused naming the tensor. Every checkpoint
carries a SHA-256 of its contents (``checksum``: each value's name, type, and each tensor's dtype,
shape and bytes), written in the same atomic write and checked on load, so bytes changed on disk
are refused naming the file; a checkpoint written before checksums (none stored) still loads.
JSON files are read up to :data:`MAX_JSON_BYTES` and a nesting too deep for the parser is an error
naming the file. Run files are regular files only: a FIFO, folder or device in place of one is
refused naming it (opened without blocking, so a FIFO never hangs a reader), and never replaced.
A write that fails (a full disk) raises :class:`CheckpointError` naming the file; the file it
would have replaced is left as it was.
"""
from __future__ import annotations

import dataclasses
import errno
import hashlib
import io
import json
import os
import pickle
import stat
import tempfile
import typing
from pathlib import Path
from typing import Any

import torch

from .errors import CheckpointError

# config, metrics and eval files are kilobytes; a vocabulary of 64 MiB has millions of words
MAX_JSON_BYTES = 64 * 2**20


def _write_error(path: Path, error: OSError) -> CheckpointError:
    return CheckpointError(f"{path}: cannot write ({error.strerror or error}); the previous file is kept")


def file_mode() -> int:
    """The mode ``open()`` gives a new file, ``0o666`` less the umask (``mkstemp`` makes ``0o600``)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def _kind(mode: int) -> str:
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
             (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISLNK, "a link"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def not_regular_error(path: str | Path, mode: int) -> CheckpointError:
    """The refusal of a run file that is not a regular file (``mode``: its ``st_mode``)."""
    return CheckpointError(f"{path}: refused: {_kind(mode)}, not a regular file")


def open_regular(path: str | Path, flags: int = os.O_RDONLY, follow: bool = True, mode: int = 0o666) -> int:
    """A file descriptor of ``path`` opened with ``flags`` (and ``os.O_NONBLOCK``, so a FIFO does
    not block), refusing anything but a regular file with :class:`CheckpointError` naming it;
    ``follow=False`` refuses a symbolic link too (``O_NOFOLLOW``); ``mode``: a created file's (less the
    umask). ``OSError`` of the open passes."""
    try:
        fd = os.open(path, flags | os.O_NONBLOCK | (0 if follow else os.O_NOFOLLOW), mode)
    except OSError as error:
        if error.errno == errno.ELOOP and not follow:
            raise CheckpointError(f"{path}: refused: a symbolic link, not a regular file") from None
        if error.errno in (errno.EISDIR, errno.ENXIO):  # a folder opened to write; a FIFO without a reader
            raise not_regular_error(path, stat.S_IFDIR if error.errno == errno.EISDIR else stat.S_IFIFO) from None
        raise
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular_error(path, mode)
    os.set_blocking(fd, True)
    return fd


def make_folder(folder: str | Path) -> Path:
    """Create ``folder`` (and its parents) if needed; one :class:`CheckpointError` naming it when it
    cannot be (a regular file in the way, no permission, a read-only or virtual file system)."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise CheckpointError(f"{folder}: cannot create this folder: a file of that name is in the way") from None
    except OSError as error:
        raise CheckpointError(f"{folder}: cannot create this folder ({error.strerror or error})") from None
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: cannot create this folder: a file of that name is in the way")
    return folder


def _check_replaceable(path: Path) -> None:
    """Refuse to replace a FIFO, folder or device (a link is replaced itself, never written through)."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if not (stat.S_ISREG(mode) or stat.S_ISLNK(mode)):
        raise CheckpointError(f"{path}: refused to replace it: {_kind(mode)}, not a regular file")


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync and rename (refusing a ``path``
    that is a FIFO, folder or device, and a folder that cannot be created, naming it)."""
    path = Path(path)
    make_folder(path.parent)
    _check_replaceable(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except OSError as error:
        Path(tmp).unlink(missing_ok=True)
        raise _write_error(path, error) from None
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


def read_bounded(path: str | Path, limit: int | None = None) -> bytes:
    """The bytes of ``path``, refusing a file over ``limit`` (None: :data:`MAX_JSON_BYTES`) bytes
    before reading it all."""
    path = Path(path)
    limit = MAX_JSON_BYTES if limit is None else limit
    try:
        with os.fdopen(open_regular(path), "rb") as handle:
            data = handle.read(limit + 1)
    except FileNotFoundError:
        raise CheckpointError(f"{path}: file not found") from None
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    if len(data) > limit:
        raise CheckpointError(f"{path}: larger than {limit} bytes, too large for a run's JSON file")
    return data


def parse_json(text: str | bytes, where: str) -> Any:
    """``json.loads`` with any failure, a nesting too deep for the parser included, as one
    :class:`CheckpointError` naming ``where``."""
    try:
        return json.loads(text)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise CheckpointError(f"{where}: not valid JSON ({error})") from None
    except RecursionError:
        raise CheckpointError(f"{where}: not valid JSON (nested too deeply)") from None


def load_json(path: str | Path) -> Any:
    """Read a JSON file of at most :data:`MAX_JSON_BYTES`, naming the file (and the position) in any error."""
    return parse_json(read_bounded(path), str(path))


def append_jsonl(path: str | Path, record: dict) -> None:
    """Append one JSON line in a single write and fsync it."""
    line = (json.dumps(record, sort_keys=True) + "\n").encode()
    try:
        with os.fdopen(open_regular(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), "ab") as handle:
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise CheckpointError(f"{path}: cannot append a line ({error.strerror or error})") from None


def read_jsonl(path: str | Path) -> list[dict]:
    """Read the complete lines of a JSON-lines file (a torn last line, without newline, is dropped)."""
    path = Path(path)
    if not path.exists():
        return []
    try:
        text = read_bounded(path).decode("utf-8")
    except UnicodeDecodeError as error:
        raise CheckpointError(f"{path}: not UTF-8 ({error})") from None
    lines = text.split("\n")[:-1]
    return [parse_json(line, f"{path}:{number}") for number, line in enumerate(lines, 1)]


def truncate_jsonl(path: str | Path, keep: int) -> None:
    """Keep the first ``keep`` complete lines (used when resuming from an earlier checkpoint)."""
    records = read_jsonl(path)[:keep]
    atomic_write_bytes(path, "".join(json.dumps(r, sort_keys=True) + "\n" for r in records).encode())


CHECKSUM_KEY = "checksum"


def _digest(value: Any, sha: Any) -> None:
    """Feed ``value`` (nested dicts, lists, tuples, tensors, numbers, strings) into ``sha``."""
    if isinstance(value, dict):
        sha.update(b"d%d" % len(value))
        for key in sorted(value, key=repr):
            sha.update(repr(key).encode() + b":")
            _digest(value[key], sha)
    elif isinstance(value, (list, tuple)):
        sha.update(b"%s%d" % (type(value).__name__.encode(), len(value)))
        for item in value:
            _digest(item, sha)
    elif torch.is_tensor(value):
        sha.update(f"T{value.dtype}{tuple(value.shape)}".encode())
        sha.update(value.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy())
    else:
        sha.update(f"{type(value).__name__}={value!r};".encode())


def checkpoint_checksum(state: dict) -> str:
    """``"sha256:<hex>"`` of ``state`` without its own ``checksum``: every key, every value's type
    and value, every tensor's dtype, shape and bytes (what a load reads back, bit for bit)."""
    sha = hashlib.sha256()
    _digest({key: value for key, value in state.items() if key != CHECKSUM_KEY}, sha)
    return f"sha256:{sha.hexdigest()}"


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Atomically ``torch.save`` a dict of tensors, numbers, strings, lists and dicts, with its
    :func:`checkpoint_checksum` under ``checksum`` in the same file."""
    buffer = io.BytesIO()
    torch.save({**state, CHECKSUM_KEY: checkpoint_checksum(state)}, buffer)
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
    """Load a checkpoint with ``weights_only=True``; refuse pickled objects, a file that is not a
    regular file, and contents that do not match their stored checksum with a clear error."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        handle = os.fdopen(open_regular(path), "rb")
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read ({error.strerror or error})") from None
    try:
        with handle:
            empty = os.fstat(handle.fileno()).st_size == 0
            state = torch.load(handle, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path}: refused: it holds pickled objects, not only tensors and numbers "
                              f"(read with weights_only=True){_other_checkpoint(path)}") from None
    except Exception as error:
        reason = (str(error).split(". ")[0].splitlines() or [type(error).__name__])[0][:120]
        reason = "an empty file" if empty else reason
        raise CheckpointError(f"{path}: cannot be read, truncated or corrupt ({reason}){_other_checkpoint(path)}"
                              ) from None
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: a checkpoint must hold a dict, found {type(state).__name__}")
    stored = state.pop(CHECKSUM_KEY, None)
    if stored is not None and stored != checkpoint_checksum(state):
        raise CheckpointError(f"{path}: refused: its contents do not match the checksum stored in it (changed or "
                              f"corrupted on disk){_other_checkpoint(path)}")
    bad = next(non_finite_tensors(state), None)
    if bad is not None:
        raise CheckpointError(f"{path}: refused to load: tensor {bad} holds NaN or infinite values")
    return state


def non_finite_tensors(value: Any, name: str = "") -> typing.Iterator[str]:
    """Names (``model.decoder.weight``, ``optim.3.exp_avg``) of the floating-point tensors inside
    nested dicts, lists and tuples that hold a NaN or an infinity."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from non_finite_tensors(item, f"{name}.{key}" if name else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from non_finite_tensors(item, f"{name}.{index}" if name else str(index))
    elif torch.is_tensor(value) and value.is_floating_point() and not bool(torch.isfinite(value).all()):
        yield name


def check_state_dict(module: torch.nn.Module, state: Any, path: Path, hint: str = "") -> None:
    """Refuse a ``state_dict`` that does not fit ``module``: missing or unexpected names, a value
    that is not a tensor, a shape or a dtype that differs (named with both shapes; ``hint`` says where the
    module's sizes come from)."""
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: no model parameters in checkpoint")
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameters do not match the model (missing {missing}, unexpected {unexpected})")
    differ = [f"{key} {tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else type(tensor).__name__} "
              f"(model: {tuple(own[key].shape)})" for key, tensor in state.items()
              if not isinstance(tensor, torch.Tensor) or tensor.shape != own[key].shape]
    differ += [f"{key} dtype {str(tensor.dtype).removeprefix('torch.')} (model: "
               f"{str(own[key].dtype).removeprefix('torch.')})" for key, tensor in state.items()
               if isinstance(tensor, torch.Tensor) and tensor.shape == own[key].shape
               and tensor.dtype != own[key].dtype]
    if differ:
        shown = "; ".join(differ[:4]) + (f"; and {len(differ) - 4} more" if len(differ) > 4 else "")
        raise CheckpointError(f"{path}: {len(differ)} parameter(s) differ from the model{hint}: {shown}")


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
