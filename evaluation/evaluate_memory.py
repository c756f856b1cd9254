"""Memory an evaluation needs, estimated before anything is allocated (as :mod:`pyro_textvae.memory` does for
training).

The stages of :func:`evaluation.report.evaluate_run` run one after another, each in chunks of a fixed
size, so the peak is what every stage keeps (the model's parameters; the posteriors of the evaluated
split and of the training split the label probe reads, ``5 x 4 N d`` bytes each: location, scale,
centers, samples and their log-densities) plus the largest stage, in float32 bytes (V the vocabulary,
d, H and E the latent, LSTM and embedding sizes, T the longest sentence, N the split's sentences):

* ELBO terms: a batch of B = 256 sentences through the Pyro traces, ``3 x 4 B (T + 2) V`` (the logits,
  their log-softmax and the gathered words' copy);
* importance sampling: :func:`evaluation.sentence_likelihood.chunk_bytes` of the chunk of samples
  decoded at a time, for a batch of the longest sentences (``--iw-chunk`` given, or sized by
  :func:`~evaluation.sentence_likelihood.chunk_for_memory`);
* mutual information: ``6 x 8`` bytes per pair of a float64 product of ``MI_CHUNK x MI_POSTERIOR_CHUNK``
  samples and posteriors (at most N each);
* hole metrics: ``3 x 4 HOLE_CHUNK HOLE_POSTERIOR_CHUNK d`` (the standardised draws, their
  log-densities, the logsumexp's exponentials; at most the prior draws and N);
* density-gap KL: ``4 x 4 N d``, one draw scored against all N posteriors.

On short_yelp (N = 10,000, d = 32, H = 512, V = 5,151) that is about 0.3 GB above the 0.5 GB of the
libraries; the estimate is refused (:class:`~pyro_textvae.memory.MemoryEstimateError`) when it exceeds
the memory available on the device, naming the options that lower the largest stage.
"""
from __future__ import annotations

import torch

from pyro_textvae.errors import OptionName
from pyro_textvae.memory import FLOAT_BYTES, check_memory, parameter_count
from pyro_textvae.model import TextVAE

from .latent_metrics import HOLE_CHUNK, HOLE_POSTERIOR_CHUNK, MI_CHUNK, MI_POSTERIOR_CHUNK
from .sentence_likelihood import chunk_bytes, chunk_for_memory

ELBO_BATCH = 256  # sentences per batch of the posteriors, the ELBO terms, decoding and the probe's encoding
IW_OPTIONS = (OptionName("iw_batch_size"), " or ", OptionName("iw_chunk"))


def evaluation_estimate(vae: TextVAE, num_sentences: int, num_train: int, max_tokens: int, iw_samples: int,
                        iw_batch_size: int, iw_chunk: int | None, prior_samples: int,
                        device: torch.device | str = "cpu") -> dict[str, int]:
    """Bytes of what an evaluation keeps (``model``, ``posteriors``) and of each stage (module docstring),
    for a split of ``num_sentences`` of at most ``max_tokens`` tokens and a training split of
    ``num_train`` (0: no probe)."""
    config = vae.config
    n, d, v = num_sentences, config.latent_dim, config.vocab_size
    tokens = torch.empty((iw_batch_size, max_tokens + 2), dtype=torch.long, device=device)
    chunk = iw_chunk or chunk_for_memory(iw_samples, tokens, vae)
    return {
        "model": FLOAT_BYTES * parameter_count(config),
        "posteriors": 5 * FLOAT_BYTES * (num_sentences + num_train) * d,
        "ELBO terms": 3 * FLOAT_BYTES * ELBO_BATCH * (max_tokens + 2) * v,
        "importance sampling": chunk_bytes(min(chunk, iw_samples), iw_samples, tokens, vae),
        "mutual information": 6 * 8 * min(MI_CHUNK, n) * min(MI_POSTERIOR_CHUNK, n),
        "hole metrics": 3 * FLOAT_BYTES * min(HOLE_CHUNK, prior_samples) * min(HOLE_POSTERIOR_CHUNK, n) * d,
        "density gap": 4 * FLOAT_BYTES * n * d,
    }


def check_evaluation_memory(parts: dict[str, int], device: torch.device | str) -> None:
    """Refuse an evaluation whose kept parts and largest stage of ``parts`` (:func:`evaluation_estimate`)
    exceed the memory available on ``device``, naming the options of importance sampling when it is the
    largest stage (the other stages have fixed chunks)."""
    kept = {name: parts[name] for name in ("model", "posteriors")}
    stage = max((name for name in parts if name not in kept), key=parts.__getitem__)
    options = IW_OPTIONS if stage == "importance sampling" else ("the other programs' memory (every stage but "
                                                                  "importance sampling has chunks of a fixed size)",)
    check_memory({**kept, f"largest stage, {stage}": parts[stage]}, device, options)
