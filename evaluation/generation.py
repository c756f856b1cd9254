"""Decoding sentences from latent codes: greedy, sampled and beam search.

Text is generated autoregressively from the decoder's ``p(w_t | w_<t, z)`` (``Predictive`` cannot
do this: a teacher-forced decoder conditions on the observed prefix, see ``docs/maths.md#sampling-text``):

* greedy: ``w_t = argmax_w p(w | w_<t, z)`` over every word but ``<pad>`` and ``<s>``;
* sampled: ``w_t ~ p(w | w_<t, z)^(1/T)`` renormalised (temperature ``T``);
* beam: the ``W`` prefixes of highest ``sum_t log p(w_t | w_<t, z)``; a finished hypothesis keeps
  its score; the best finished (or, failing that, best unfinished) one is returned.
"""
from __future__ import annotations

import torch
from torch.distributions import Distribution, Independent

from pyro_textvae.data import BOS_ID, EOS_ID, PAD_ID
from pyro_textvae.model import TextVAE

STRATEGIES = ("greedy", "sample", "beam")


def posterior_center(posterior: Distribution) -> torch.Tensor:
    """The location parameter of q(z|x): ``mu`` of a Gaussian, the mean direction of a vMF."""
    base = posterior.base_dist if isinstance(posterior, Independent) else posterior
    return base.loc


def _forbid_specials(logits: torch.Tensor) -> torch.Tensor:
    """``<pad>`` and ``<s>`` are never targets, so they are never generated."""
    return logits.index_fill(-1, torch.tensor([PAD_ID, BOS_ID], device=logits.device), float("-inf"))


def _indexed(device: torch.device) -> torch.device:
    """``cuda`` as ``cuda:K`` of the current GPU (a generator made on ``"cuda"`` reports no index)."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def _trim(rows: list[list[int]]) -> list[list[int]]:
    out = []
    for row in rows:
        words = []
        for token in row:
            if token == EOS_ID:
                break
            if token not in (PAD_ID, BOS_ID):
                words.append(token)
        out.append(words)
    return out


@torch.no_grad()
def decode(
    vae: TextVAE,
    z: torch.Tensor,
    strategy: str = "greedy",
    max_length: int = 30,
    beam_width: int = 5,
    temperature: float = 1.0,
    generator: torch.Generator | None = None,
) -> list[list[int]]:
    """Decode each row of ``z`` ``(n, d)`` into at most ``max_length`` word ids (no ``<s>``/``</s>``), dropout off.
    ``generator`` (``strategy="sample"``; default: torch's global RNG) must be on ``z``'s device."""
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown decoding strategy {strategy!r}; valid: {', '.join(STRATEGIES)}")
    if generator is not None and _indexed(generator.device) != _indexed(z.device):
        raise ValueError(f"decode: the generator is on {generator.device} but z on {z.device}")
    if max_length < 1 or beam_width < 1 or temperature <= 0:
        raise ValueError("max_length and beam_width must be >= 1 and temperature > 0")
    was_training = vae.training
    vae.eval()
    try:
        if strategy == "beam":
            return _beam(vae, z, max_length, beam_width)
        return _left_to_right(vae, z, max_length, strategy == "sample", temperature, generator)
    finally:
        vae.train(was_training)


def _left_to_right(vae, z, max_length, sample, temperature, generator) -> list[list[int]]:
    decoder = vae.decoder
    state = decoder.initial_state(z)
    inputs = torch.full((z.shape[0], 1), BOS_ID, dtype=torch.long, device=z.device)
    finished = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
    steps = []
    for _ in range(max_length):
        logits, state = decoder.step(inputs, z, state)
        logits = _forbid_specials(logits[:, -1])
        if sample:
            probs = torch.softmax(logits / temperature, -1)
            token = torch.multinomial(probs, 1, generator=generator).squeeze(-1)
        else:
            token = logits.argmax(-1)
        token = token.masked_fill(finished, PAD_ID)
        steps.append(token)
        finished |= token == EOS_ID
        if finished.all():
            break
        inputs = token.unsqueeze(-1)
    return _trim(torch.stack(steps, 1).tolist())


def _beam(vae, z, max_length, width) -> list[list[int]]:
    decoder = vae.decoder
    n, vocab = z.shape[0], decoder.output.out_features
    zw = z.repeat_interleave(width, 0)
    h, c = decoder.initial_state(zw)
    scores = torch.full((n, width), float("-inf"), device=z.device)
    scores[:, 0] = 0.0
    tokens = torch.full((n, width, 1), BOS_ID, dtype=torch.long, device=z.device)
    finished = torch.zeros(n, width, dtype=torch.bool, device=z.device)
    for _ in range(max_length):
        logits, (h, c) = decoder.step(tokens[:, :, -1].reshape(-1, 1), zw, (h, c))
        logp = torch.log_softmax(_forbid_specials(logits[:, -1]), -1).view(n, width, vocab)
        keep = torch.full_like(logp, float("-inf"))
        keep[..., PAD_ID] = 0.0
        logp = torch.where(finished.unsqueeze(-1), keep, logp)
        total = (scores.unsqueeze(-1) + logp).view(n, -1)
        scores, flat = total.topk(width, -1)
        beam, word = flat // vocab, flat % vocab
        kept = tokens.gather(1, beam.unsqueeze(-1).expand(-1, -1, tokens.shape[-1]))
        tokens = torch.cat([kept, word.unsqueeze(-1)], -1)
        finished = finished.gather(1, beam) | (word == EOS_ID)
        rows = (beam + torch.arange(n, device=z.device).unsqueeze(-1) * width).view(-1)
        h, c = h[:, rows], c[:, rows]
        if finished.all():
            break
    ranked = torch.where(finished, scores, scores - 1e9).argmax(-1)
    best = tokens[torch.arange(n, device=z.device), ranked, 1:]
    return _trim(best.tolist())
