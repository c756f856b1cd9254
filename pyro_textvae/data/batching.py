"""Padded mini-batches of sentences, with length bucketing.

Each row of a batch is ``<s> w_1 ... w_n </s>`` followed by ``<pad>`` up to the longest row, the
layout the LSTM encoder and decoder of ``docs/maths.md#model-and-guide`` read: the decoder predicts
``tokens[:, 1:]`` (the words and ``</s>``) where ``mask[:, 1:]`` is True.

Bucketing: an epoch shuffles the sentence order with a seeded ``torch.Generator``, groups it by
length (keeping the shuffled order within a length) and cuts every length's group into full
batches, so those batches hold sentences of exactly one length, as the paper's code batches them.
The remainders (fewer than ``batch_size`` sentences of a length) are sorted by length and cut into
batches too, so the count of batches is ``ceil(N / batch_size)`` as without bucketing and at most
one batch is short. The order of the batches is then shuffled. Equal-length rows need no padding
and keep the LSTMs on their fused kernels, while the batches stay random; the same seed gives the
same batches, so an interrupted epoch resumes by skipping the batches already served.

``bucketing="pools"`` serves the order of the versions before exact-length buckets: the shuffled
order cut into pools of ``POOL_BATCHES`` batches, each pool sorted by length and cut into batches,
then the order of the batches shuffled. It is kept so that a checkpoint written in the middle of
such an epoch resumes on the batches that epoch began with.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch

from .corpus import EncodedSplit
from .vocab import BOS_ID, EOS_ID, PAD_ID, _check_count

BUCKETINGS = ("exact", "pools")
POOL_BATCHES = 50

@dataclass
class Batch:
    """``tokens`` (B, L) long, ``mask`` (B, L) bool (True on ``<s>``, words and ``</s>``),
    ``index`` (B,) long (positions of the rows in their split) and their ``labels`` (or None)."""

    tokens: torch.Tensor
    mask: torch.Tensor
    index: torch.Tensor
    labels: list[str] | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    @property
    def num_tokens(self) -> int:
        """Number of predicted tokens, words plus one ``</s>`` per row: ``mask.sum() - B``."""
        return int(self.mask.sum()) - len(self)

    @property
    def lengths(self) -> torch.Tensor:
        """(B,) long: tokens per row including ``<s>`` and ``</s>`` (``mask.sum(-1)``)."""
        return self.mask.sum(-1)

    def to(self, device: torch.device | str) -> Batch:
        """The same batch with its tensors on ``device``."""
        return Batch(self.tokens.to(device), self.mask.to(device), self.index.to(device), self.labels)


def make_batch(
    ids: Sequence[Sequence[int]],
    index: Sequence[int] | torch.Tensor | None = None,
    labels: Sequence[str] | None = None,
) -> Batch:
    """Pad ``ids`` (word ids, no ``<s>``/``</s>``) into a :class:`Batch`; ``index`` defaults to 0..B-1."""
    if len(ids) == 0:
        raise ValueError("make_batch needs at least one sentence")
    rows = len(ids)
    width = max(len(row) for row in ids) + 2
    tokens = torch.full((rows, width), PAD_ID, dtype=torch.long)
    mask = torch.zeros((rows, width), dtype=torch.bool)
    for r, row in enumerate(ids):
        n = len(row)
        tokens[r, 0] = BOS_ID
        if n:
            tokens[r, 1 : n + 1] = torch.as_tensor(row, dtype=torch.long)
        tokens[r, n + 1] = EOS_ID
        mask[r, : n + 2] = True
    positions = torch.arange(rows) if index is None else torch.as_tensor(index, dtype=torch.long).reshape(-1)
    if positions.shape[0] != rows:
        raise ValueError(f"index has {positions.shape[0]} entries for {rows} sentences")
    if labels is not None and len(labels) != rows:
        raise ValueError(f"labels has {len(labels)} entries for {rows} sentences")
    return Batch(tokens, mask, positions, None if labels is None else list(labels))


def num_batches(split: EncodedSplit, batch_size: int, drop_last: bool = False) -> int:
    """Batches per epoch of :func:`iterate_batches`: ``floor(N / b)`` with ``drop_last``, else ``ceil(N / b)``."""
    _check_count(batch_size, "batch_size", 1)
    n = len(split)
    return n // batch_size if drop_last else -(-n // batch_size)


def _exact_length_batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """Full batches of one length each (in ``order`` within a length), then the remainders sorted by length."""
    by_length: dict[int, list[int]] = {}
    for position in order:
        by_length.setdefault(lengths[position], []).append(position)
    batches, rest = [], []
    for length in sorted(by_length):
        group = by_length[length]
        full = len(group) - len(group) % batch_size
        batches.extend(group[i : i + batch_size] for i in range(0, full, batch_size))
        rest.extend(group[full:])
    batches.extend(rest[i : i + batch_size] for i in range(0, len(rest), batch_size))
    return batches


def _pool_batches(order: list[int], lengths: list[int], batch_size: int) -> list[list[int]]:
    """``order`` cut into pools of ``POOL_BATCHES`` batches, each sorted by length (stable) and cut into batches."""
    pool, batches = POOL_BATCHES * batch_size, []
    for start in range(0, len(order), pool):
        chunk = sorted(order[start : start + pool], key=lengths.__getitem__)
        batches.extend(chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size))
    return batches


def _batch_order(
    lengths: list[int], batch_size: int, shuffle: bool, seed: int | None, bucket: bool, drop_last: bool,
    bucketing: str = "exact",
) -> list[list[int]]:
    """The positions of every batch of one epoch, in the order they are served."""
    n = len(lengths)
    if not shuffle:
        order = sorted(range(n), key=lengths.__getitem__) if bucket else list(range(n))
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
        return [b for b in batches if len(b) == batch_size] if drop_last else batches
    if seed is None:
        seed = int(torch.randint(2**62, ()))
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(n, generator=generator).tolist()
    if bucket:
        cut = _exact_length_batches if bucketing == "exact" else _pool_batches
        batches = cut(order, lengths, batch_size)
    else:
        batches = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last:
        batches = [b for b in batches if len(b) == batch_size]
    if bucket:
        batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    return batches


def iterate_batches(
    split: EncodedSplit,
    batch_size: int,
    shuffle: bool,
    seed: int | None = None,
    bucket: bool = True,
    drop_last: bool = False,
    bucketing: str = "exact",
) -> Iterator[Batch]:
    """One epoch of batches over ``split``; every sentence appears exactly once (unless dropped
    with ``drop_last``, which drops the one short batch).

    ``shuffle=False``: sorted by length when ``bucket`` (stable, ties in split order), else in
    split order -- deterministic. ``shuffle=True``: random order from ``torch.Generator`` seeded by
    ``seed`` (None: a seed drawn from torch's global generator, so ``torch.manual_seed`` fixes it),
    bucketed when ``bucket`` as ``bucketing`` says (:data:`BUCKETINGS`, module docstring). The same arguments
    give the same sequence of batches, so an interrupted epoch can be resumed by skipping batches.
    """
    _check_count(batch_size, "batch_size", 1)
    _check_count(seed, "seed", 0, allow_none=True)
    if bucketing not in BUCKETINGS:
        raise ValueError(f"bucketing must be one of {', '.join(BUCKETINGS)}, got {bucketing!r}")
    lengths = [len(ids) for ids in split.ids]
    return _serve(split, _batch_order(lengths, batch_size, shuffle, seed, bucket, drop_last, bucketing))


def _serve(split: EncodedSplit, order: list[list[int]]) -> Iterator[Batch]:
    """Build the batches of ``order`` lazily, one at a time."""
    for positions in order:
        labels = None if split.labels is None else [split.labels[i] for i in positions]
        yield make_batch([split.ids[i] for i in positions], index=positions, labels=labels)


def padding_fraction(batches: Iterable[Batch]) -> float:
    """Padding positions over all positions of ``batches``: ``sum(~mask) / sum(B * L)``."""
    padding, total = 0, 0
    for batch in batches:
        padding += int((~batch.mask).sum())
        total += batch.mask.numel()
    if total == 0:
        raise ValueError("padding_fraction needs at least one batch")
    return padding / total
