"""Memory a run needs, estimated from its options before anything is allocated.

With V the vocabulary, E, H, d the embedding, LSTM and latent sizes, the model has about
``P = 2 V E + 4 H (E + H + 2) + 4 H (E + d + H + 2) + (H + 1) (2 d + V) + d H`` parameters (two
embeddings, two LSTMs, the posterior head, the decoder's initial state and output layer), stored
in float32. Training keeps ``P`` times 2 (values, gradients) plus 2 for Adam's moments, and a
batch of B sentences of at most T tokens about ``4 B T (3 V + 12 H + 4 E)`` bytes of activations
(logits, their log-softmax and its gradient; the LSTM gates kept for the backward pass); a
validation batch, without gradients, about ``4 B T (2 V + 5 H + E)`` (logits and log-softmax, the
LSTM's outputs and one step's gates), and the larger of the two counts, since they are not held
together. A
density-gap term with M samples per posterior holds about ``6 x 4 M B d`` bytes (the samples,
their prior and aggregate log-densities, the gradients; the B x B scores are chunked). A run is
refused when the estimate exceeds the memory available on its device (on the CPU the smaller of
``MemAvailable`` of ``/proc/meminfo`` and what the memory limit of the process's cgroup leaves,
:func:`cgroup_memory_available`: a container, a Slurm job or ``systemd-run -p MemoryMax`` is
killed at its limit, not at the machine's; on a GPU its free memory), naming the options to change.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import OptionError
from .model import TextVAEConfig

FLOAT_BYTES = 4
GIB = 2**30
PROC_CGROUP = Path("/proc/self/cgroup")  # which cgroup the process is in (module attributes: tests point them
CGROUP_ROOT = Path("/sys/fs/cgroup")  # at fake files)
# (limit, usage) file names: cgroup v2 (the unified hierarchy), and v1's memory controller
CGROUP_FILES = {"v2": ("memory.max", "memory.current"), "v1": ("memory.limit_in_bytes", "memory.usage_in_bytes")}


class MemoryEstimateError(OptionError):
    """A run that would need more memory than its device has available (naming the options to lower)."""


def parameter_count(config: TextVAEConfig) -> int:
    """``P`` of the module docstring (exact up to the few BN and bias terms it leaves out)."""
    v, e, h, d = config.vocab_size, config.embed_dim, config.hidden_dim, config.latent_dim
    decoder_output = (h + (d if config.skip else 0) + 1) * v
    bag = (d + 1) * v if config.bow else 0
    return 2 * v * e + 4 * h * (e + h + 2) + 4 * h * (e + d + h + 2) + (h + 1) * 2 * d + d * h + decoder_output + bag


def _cgroup_folders(proc_cgroup: Path, root: Path) -> dict[str, list[Path]]:
    """Per version, the cgroup folders whose memory limits apply to this process: its own cgroup
    and every one above it, up to the mount point (which is all a container sees of its own)."""
    folders: dict[str, list[Path]] = {}
    for line in proc_cgroup.read_text(encoding="utf-8", errors="replace").splitlines():
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        version = "v2" if parts[0] == "0" and not parts[1] else "v1" if "memory" in parts[1].split(",") else None
        if version is None:
            continue
        base = root if version == "v2" else root / "memory"
        own = base / parts[2].lstrip("/")
        folders[version] = [own, *own.parents[:len(own.relative_to(base).parts)]]
    return folders


def _read_bytes_value(path: Path) -> int | None:
    """The number in a cgroup file; None for ``max`` (no limit) or a file that is not there."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None


def cgroup_memory_available(proc_cgroup: Path | None = None, root: Path | None = None) -> int | None:
    """Bytes the process's cgroups leave before their memory limit, the least over its cgroup and
    those above it (v2 ``memory.max`` less ``memory.current``, v1 ``memory.limit_in_bytes`` less
    ``memory.usage_in_bytes``); None where no limit is set or readable. ``proc_cgroup`` and ``root``
    default to :data:`PROC_CGROUP` and :data:`CGROUP_ROOT`."""
    proc_cgroup = PROC_CGROUP if proc_cgroup is None else proc_cgroup
    root = CGROUP_ROOT if root is None else root
    try:
        folders = _cgroup_folders(proc_cgroup, root)
    except (OSError, ValueError):
        return None
    left = []
    for version, paths in folders.items():
        limit_name, usage_name = CGROUP_FILES[version]
        for folder in paths:
            limit = _read_bytes_value(folder / limit_name)
            if limit is not None:
                left.append(max(0, limit - (_read_bytes_value(folder / usage_name) or 0)))
    return min(left, default=None)


def available_memory(device: torch.device | str) -> int:
    """Bytes available on ``device``: a GPU's free memory, or the smaller of the machine's
    ``MemAvailable`` and what the process's cgroup limit leaves (:func:`cgroup_memory_available`)."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    machine = _machine_available()
    limited = cgroup_memory_available()
    return machine if limited is None else min(machine, limited)


def _machine_available() -> int:
    """``MemAvailable`` of ``/proc/meminfo`` (the free pages where it cannot be read)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def training_estimate(config: TextVAEConfig, batch_size: int, max_tokens: int, optimizer: str,
                      num_samples: int | None = None, validation: tuple[int, int] | None = None) -> dict[str, int]:
    """Bytes of the model's training state, a batch's activations (the larger of a training batch
    and, ``validation`` = (sentences, longest sentence's tokens), a validation batch) and
    (``num_samples``) a density-gap term, as in the module docstring."""
    copies = 4 if optimizer == "adam" else 2
    v, e, h = config.vocab_size, config.embed_dim, config.hidden_dim
    rows, tokens = validation or (0, 0)
    parts = {
        "model": copies * FLOAT_BYTES * parameter_count(config),
        "batch": max(FLOAT_BYTES * batch_size * (max_tokens + 2) * (3 * v + 12 * h + 4 * e),
                     FLOAT_BYTES * rows * (tokens + 2) * (2 * v + 5 * h + e)),
    }
    if num_samples:
        parts["density gap"] = 6 * FLOAT_BYTES * num_samples * batch_size * config.latent_dim
    return parts


def check_memory(parts: dict[str, int], device: torch.device | str, options: str | tuple[str, ...]) -> None:
    """Refuse (:class:`MemoryEstimateError`) when the ``parts`` add up to more than the available
    memory of ``device``, with the estimate, the memory and the ``options`` that set it (a text, or the
    parts of an :class:`~pyro_textvae.errors.OptionError` that name them)."""
    need, have = sum(parts.values()), available_memory(device)
    if need > have:
        shown = ", ".join(f"{name} {size / GIB:.3g}" for name, size in parts.items())
        raise MemoryEstimateError(f"this run needs about {need / GIB:.3g} GiB ({shown}) but {torch.device(device)} "
                                  f"has {have / GIB:.3g} GiB available; lower ",
                                  *((options,) if isinstance(options, str) else options))
