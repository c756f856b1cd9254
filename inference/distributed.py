"""Data-parallel training with ``torch.distributed`` under ``torchrun``.

N processes (ranks) each hold a full copy of the model. Every epoch all ranks build the same
seeded sequence of *global* batches of ``N * B`` sentences (:func:`pyro_textvae.data.iterate_batches`
with the same seed, so the length bucketing is kept), and rank r takes the r-th contiguous slice
of B rows of each global batch (:func:`shard_batch`). Each rank's loss is the mean over its slice,
so averaging the gradients over ranks (:func:`average_gradients`, a sum all-reduce divided by N,
called by :class:`inference.optim.ClippedOptim` right before clipping) gives

    (1/N) sum_r grad[(1/B) sum_{i in slice r} l_i] = grad[(1/(N B)) sum_{i in global batch} l_i],

the gradient of one process on the global batch (Li et al. 2020, "PyTorch Distributed", sec. 3).
This needs equal slices: the last, short global batch of an epoch is cut to a multiple of N rows,
leaving out at most N - 1 sentences of the epoch (a different few each epoch, as with
``DistributedSampler(drop_last=True)``).

The density-gap term can aggregate over the global batch: :func:`gather_distribution` concatenates
every rank's posterior parameters with a differentiable all-gather, so gradients of one rank's
loss reach the encoders of the others (``docs/maths.md#density-gap-estimator``; :class:`inference.DensityGapELBO`
with ``agg="global"``).
"""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

try:
    from torch.distributed._functional_collectives import all_gather_single
except ImportError:  # torch < 2.13: the same differentiable all-gather under its earlier name
    from torch.distributed._functional_collectives import (
        all_gather_tensor_autograd as all_gather_single,
    )
from torch.distributions import Distribution, Independent

from pyro_textvae.data import Batch
from pyro_textvae.devices import DEVICE, resolve_device
from pyro_textvae.errors import OptionError, OptionName, option_error

TORCHRUN_VARIABLES = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
T = TypeVar("T")


@dataclass(frozen=True)
class DistributedContext:
    """This process's place in the process group and the device it computes on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes files (checkpoints, metrics, config)."""
        return self.rank == 0


def is_distributed() -> bool:
    """True when a ``torch.distributed`` process group is initialised in this process."""
    return dist.is_available() and dist.is_initialized()


def rank_and_world_size() -> tuple[int, int]:
    """This process's rank and the number of processes; ``(0, 1)`` without a process group."""
    return (dist.get_rank(), dist.get_world_size()) if is_distributed() else (0, 1)


def close_distributed() -> None:
    """Wait for every rank, then destroy the process group: a process that exits with the group
    alive can abort in the backend's threads (``terminate called without an active exception``)."""
    if is_distributed():
        dist.barrier()
        dist.destroy_process_group()



def init_process_group() -> None:
    """Join the process group of a ``torchrun`` launch (idempotent).

    Rank and world size come from the variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR, MASTER_PORT). Collectives on CPU tensors use ``gloo`` and, where CUDA is present,
    those on CUDA tensors ``nccl`` (one group ``"cpu:gloo,cuda:nccl"``), so the group does not
    depend on the training device and can be joined before a run's config is read.
    """
    if not dist.is_available():
        raise OptionError(OptionName("distributed"), ": this PyTorch build has no torch.distributed")
    if is_distributed():
        return
    missing = [name for name in TORCHRUN_VARIABLES if name not in os.environ]
    if missing:
        raise option_error(
            "distributed", f"needs the environment torchrun sets (missing {', '.join(missing)}); launch with "
            "`torchrun --nproc-per-node N -m pyro_textvae.cli train|evaluate ...`"
        )
    with_cuda = torch.cuda.is_available() and dist.is_nccl_available()
    dist.init_process_group("cpu:gloo,cuda:nccl" if with_cuda else "gloo")


def init_distributed(device: str = "cpu") -> DistributedContext:
    """:func:`init_process_group`, then this rank's device (:func:`resolve_device`), made the
    current CUDA device where it is one."""
    init_process_group()
    local_rank = int(os.environ.get("LOCAL_RANK", dist.get_rank()))
    resolved = resolve_device(device, local_rank, int(os.environ.get("LOCAL_WORLD_SIZE", dist.get_world_size())))
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    elif dist.get_backend() == "nccl":
        raise OptionError(DEVICE, " cpu cannot use a process group whose only backend is nccl; pass ", DEVICE, " cuda")
    return DistributedContext(dist.get_rank(), dist.get_world_size(), local_rank, resolved)


def shard_bounds(rows: int, rank: int, world_size: int, equal: bool = True) -> tuple[int, int]:
    """``[start, stop)`` of rank ``rank``'s contiguous slice of ``rows`` rows.

    ``equal``: every rank gets ``rows // world_size`` rows (the remainder is left out);
    otherwise the first ``rows % world_size`` ranks get one more row, so all rows are covered.
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
    size, extra = divmod(rows, world_size)
    if equal:
        return rank * size, (rank + 1) * size
    start = rank * size + min(rank, extra)
    return start, start + size + (rank < extra)


def shard_batch(batch: Batch, rank: int, world_size: int, equal: bool = True) -> Batch | None:
    """Rank ``rank``'s rows of a global batch (see :func:`shard_bounds`), padding width kept;
    ``None`` where the slice is empty."""
    start, stop = shard_bounds(len(batch), rank, world_size, equal)
    if stop == start:
        return None
    labels = None if batch.labels is None else batch.labels[start:stop]
    return Batch(batch.tokens[start:stop], batch.mask[start:stop], batch.index[start:stop], labels)


def _flat_gradients(params: Sequence[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1) for p in params])


def average_gradients(params: Sequence[torch.Tensor]) -> None:
    """Replace every ``p.grad`` by its mean over ranks: one sum all-reduce of all gradients
    flattened in the given order (callers sort by name), divided by the world size. A missing
    gradient counts as zeros, so every rank sends the same layout."""
    if not is_distributed() or not params:
        return
    flat = _flat_gradients(params)
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    for param, piece in zip(params, flat.split([p.numel() for p in params])):
        param.grad = piece.view_as(param).to(param.dtype)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over ranks (``values`` itself when not distributed)."""
    if is_distributed():
        values = values.clone()
        dist.all_reduce(values)
    return values


def sum_over_ranks(values: dict[str, float], device: torch.device | str = "cpu") -> dict[str, float]:
    """``{key: sum over ranks of values[key]}`` in float64; every rank must pass the same keys."""
    if not is_distributed() or not values:
        return dict(values)
    keys = sorted(values)
    total = all_reduce_sum(torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device))
    return dict(zip(keys, total.tolist()))


def any_rank(flag: bool, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is True on at least one."""
    if not is_distributed():
        return flag
    return bool(all_reduce_sum(torch.tensor([float(flag)], device=device)) > 0)


def broadcast_from_rank_zero(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 alone and hand its result (or its exception) to every rank."""
    if not is_distributed():
        return fn()
    payload: list[Any] = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            payload = [("ok", fn())]
        except Exception as caught:
            error = caught
            payload = [("error", caught)]
    dist.broadcast_object_list(payload, src=0)
    status, value = payload[0]
    if error is not None:
        raise error
    if status == "error":
        raise value
    return value


def gather_objects(value: T) -> list[T]:
    """Every rank's ``value`` (picklable), in rank order; ``[value]`` when not distributed."""
    if not is_distributed():
        return [value]
    gathered: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, value)
    return gathered


def broadcast_module(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module``."""
    if not is_distributed():
        return
    with torch.no_grad():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_buffers(module: torch.nn.Module) -> None:
    """Average the floating-point buffers (e.g. batch-norm running statistics) over ranks."""
    if not is_distributed():
        return
    with torch.no_grad():
        for buffer in module.buffers():
            if buffer.is_floating_point():
                dist.all_reduce(buffer)
                buffer /= dist.get_world_size()


def gather_rows(rows: torch.Tensor) -> tuple[torch.Tensor, int]:
    """Concatenate every rank's ``rows`` along dim 0 (sizes may differ between ranks), with
    gradients flowing back to the rank that owns each row; returns the result and the position
    of this rank's first row in it. Uses ``all_gather_single`` of
    ``torch.distributed._functional_collectives``, the differentiable all-gather that PyTorch 2.13
    names as the replacement of the deprecated ``torch.distributed.nn.functional.all_gather``
    (``all_gather_tensor_autograd``, the same function, before 2.13)."""
    if not is_distributed():
        return rows, 0
    sizes = torch.tensor([rows.shape[0]], device=rows.device)
    all_sizes = all_gather_single(sizes, 0, dist.group.WORLD).tolist()
    largest = max(all_sizes)
    if largest > rows.shape[0]:
        filler = rows.new_zeros(largest - rows.shape[0], *rows.shape[1:])
        rows = torch.cat([rows, filler])
    gathered = all_gather_single(rows.contiguous(), 0, dist.group.WORLD)
    pieces = gathered.unflatten(0, (len(all_sizes), largest))
    offset = sum(all_sizes[: dist.get_rank()])
    return torch.cat([pieces[r, :n] for r, n in enumerate(all_sizes)]), offset


def _parameters_of(distribution: Distribution) -> dict[str, torch.Tensor]:
    params = {
        name: value
        for name in distribution.arg_constraints
        if torch.is_tensor(value := distribution.__dict__.get(name))
    }
    if not params:
        raise TypeError(
            f'agg="global" cannot gather a {type(distribution).__name__}: it exposes no tensor parameters'
        )
    return params


def gather_distribution(posterior: Distribution) -> tuple[Distribution, int]:
    """The distribution of every rank's data concatenated along the last batch dim (the data dim),
    rebuilt from all-gathered parameters (differentiable), and this rank's offset in it.

    Supports ``Independent`` wrappers around any distribution constructed from the tensor
    parameters named in its ``arg_constraints`` (``Normal(loc, scale)``, ``VonMisesFisher(loc,
    concentration)``); ranks may hold different numbers of data.
    """
    if not is_distributed():
        return posterior, 0
    if len(posterior.batch_shape) < 1:
        raise ValueError('agg="global" needs a posterior with a data batch dim')
    return _gather(posterior, len(posterior.batch_shape) - 1)


def _gather(posterior: Distribution, data_dim: int) -> tuple[Distribution, int]:
    """:func:`gather_distribution` along batch dim ``data_dim`` (counted from the left)."""
    if isinstance(posterior, Independent):
        base, offset = _gather(posterior.base_dist, data_dim)
        return Independent(base, posterior.reinterpreted_batch_ndims), offset
    params = _parameters_of(posterior)
    shape = posterior.batch_shape
    batch = shape[data_dim]
    names, widths, columns = sorted(params), [], []
    for name in names:
        value = params[name]
        full = value.expand(*shape, *value.shape[len(shape):])
        moved = full.movedim(data_dim, 0).reshape(batch, -1)
        widths.append(moved.shape[1])
        columns.append(moved)
    gathered, offset = gather_rows(torch.cat(columns, 1))
    rebuilt = {}
    for name, piece in zip(names, gathered.split(widths, 1)):
        kept = shape[:data_dim] + shape[data_dim + 1:] + params[name].shape[len(shape):]
        rebuilt[name] = piece.reshape(piece.shape[0], *kept).movedim(0, data_dim)
    return type(posterior)(**rebuilt, validate_args=False), offset
