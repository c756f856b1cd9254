"""Memory a run needs, estimated from its options before anything is allocated.

With V the vocabulary, E, H, d the embedding, LSTM and latent sizes, the model has about
``P = 2 V E + 4 H (E + H + 2) + 4 H (E + d + H + 2) + (H + 1) (2 d + V) + d H`` parameters (two
embeddings, two LSTMs, the posterior head, the decoder's initial state and output layer), stored
in float32. Training keeps ``P`` times 2 (values, gradients) plus 2 for Adam's moments, and a
batch of B sentences of at most T tokens about ``4 B T (3 V + 12 H + 4 E)`` bytes of activations
(logits, their log-softmax and its gradient; the LSTM gates kept for the backward pass). A
density-gap term with M samples per posterior holds about ``6 x 4 M B d`` bytes (the samples,
their prior and aggregate log-densities, the gradients; the B x B scores are chunked). A run is
refused when the estimate exceeds the memory available on its device (``MemAvailable`` of
``/proc/meminfo`` on the CPU, the free memory of a GPU), naming the options to change.
"""
from __future__ import annotations

import os

import torch

from .errors import OptionError
from .model import TextVAEConfig

FLOAT_BYTES = 4
GIB = 2**30


class MemoryEstimateError(OptionError):
    """A run that would need more memory than its device has available (naming the options to lower)."""


def parameter_count(config: TextVAEConfig) -> int:
    """``P`` of the module docstring (exact up to the few BN and bias terms it leaves out)."""
    v, e, h, d = config.vocab_size, config.embed_dim, config.hidden_dim, config.latent_dim
    decoder_output = (h + (d if config.skip else 0) + 1) * v
    bag = (d + 1) * v if config.bow else 0
    return 2 * v * e + 4 * h * (e + h + 2) + 4 * h * (e + d + h + 2) + (h + 1) * 2 * d + d * h + decoder_output + bag


def available_memory(device: torch.device | str) -> int:
    """Bytes available on ``device``: a GPU's free memory, or the machine's ``MemAvailable``."""
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def training_estimate(config: TextVAEConfig, batch_size: int, max_tokens: int, optimizer: str,
                      num_samples: int | None = None) -> dict[str, int]:
    """Bytes of the model's training state, a batch's activations and (``num_samples``) a
    density-gap term, as in the module docstring."""
    copies = 4 if optimizer == "adam" else 2
    v, e, h = config.vocab_size, config.embed_dim, config.hidden_dim
    parts = {
        "model": copies * FLOAT_BYTES * parameter_count(config),
        "batch": FLOAT_BYTES * batch_size * (max_tokens + 2) * (3 * v + 12 * h + 4 * e),
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
