"""The device a process computes on, checked before anything is built on it."""
from __future__ import annotations

import torch

from .errors import OptionError, OptionName, option_error

DEVICE = OptionName("device")


def resolve_device(device: str, local_rank: int = 0, local_world_size: int = 1) -> torch.device:
    """``"cpu"`` stays; ``"cuda"`` becomes ``cuda:LOCAL_RANK`` (one GPU per process on a node);
    ``"cuda:K"`` is kept as given, and refused when several processes share the node (they would
    all land on GPU K)."""
    try:
        resolved = torch.device(device)
    except RuntimeError as error:
        raise option_error("device", f"{device!r} is not a torch device: {error}") from None
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise option_error("device", f"{device!r} but CUDA is not available on this machine")
        if resolved.index is not None and local_world_size > 1:
            raise OptionError(DEVICE, f" {device!r} names one GPU for {local_world_size} processes on this node; pass ",
                              DEVICE, " cuda (process K takes GPU K)")
        if resolved.index is None:
            resolved = torch.device("cuda", local_rank)
        if resolved.index >= torch.cuda.device_count():
            visible = torch.cuda.device_count()
            raise option_error("device", f"resolves to {resolved} but only {visible} GPU(s) are visible")
    elif resolved.type != "cpu":
        raise option_error("device", f"must be cpu, cuda or cuda:K, got {device!r}")
    return resolved
