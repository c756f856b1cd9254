"""Word vocabulary: the map between tokens and integer ids.

The ids follow the text-VAE convention of the DG-VAE experiments (``docs/maths.md#model-and-guide``): the
four specials take ids 0, 1, 2, 3 and the training words follow by descending count, ties broken
alphabetically, so the same corpus always gives the same ids.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence

from ..checks import Range
from ..io import CheckpointError, atomic_write_bytes, parse_json, read_bounded

PAD, BOS, EOS, UNK = "<pad>", "<s>", "</s>", "<unk>"
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
SPECIALS: tuple[str, ...] = (PAD, BOS, EOS, UNK)


class CorpusError(ValueError):
    """A corpus or vocabulary file that cannot be used; the message names the file (and line)."""


def _check_count(value: object, name: str, minimum: int, allow_none: bool = False) -> None:
    """Raise ``ValueError`` naming ``name`` unless ``value`` is an int >= ``minimum`` (or None)."""
    Range(int, minimum=minimum, optional=allow_none).check(name, value)


class Vocab:
    """An ordered list of unique tokens ``itos`` whose first four are ``<pad> <s> </s> <unk>``.

    ``encode`` maps a token to its position in ``itos`` and any token outside it to ``UNK_ID``;
    the control tokens ``<pad> <s> </s>`` met inside a sentence are also encoded as ``UNK_ID``, so
    the text can never forge padding or an early end. ``decode`` inverts ``encode`` on known
    words: ``decode(encode(s) + [EOS_ID]) == s`` whenever every token of ``s`` is in the vocabulary.
    """

    def __init__(self, itos: Sequence[str]) -> None:
        itos = list(itos)
        if not all(isinstance(word, str) for word in itos):
            raise ValueError("itos must be a list of strings")
        if tuple(itos[: len(SPECIALS)]) != SPECIALS:
            raise ValueError(f"itos must start with the specials {list(SPECIALS)}, got {itos[:4]!r}")
        stoi = {word: i for i, word in enumerate(itos)}
        if len(stoi) != len(itos):
            duplicates = sorted(word for word, n in Counter(itos).items() if n > 1)
            raise ValueError(f"itos has duplicate entries: {duplicates[:5]!r}")
        self.itos: list[str] = itos
        self._stoi = stoi

    @classmethod
    def build(cls, sentences: Iterable[list[str]], min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Vocabulary of the words seen at least ``min_count`` times in ``sentences``.

        Order: the four specials, then words by descending count, ties broken alphabetically.
        ``max_size`` caps the number of words *besides* the specials (None: no cap). Special
        tokens found in the text are not counted (they already have their ids).
        """
        _check_count(min_count, "min_count", 1)
        _check_count(max_size, "max_size", 0, allow_none=True)
        counts = Counter(word for sentence in sentences for word in sentence)
        for special in SPECIALS:
            counts.pop(special, None)
        ranked = sorted((word for word, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if max_size is not None:
            ranked = ranked[:max_size]
        return cls(list(SPECIALS) + ranked)

    def __len__(self) -> int:
        return len(self.itos)

    def __contains__(self, word: object) -> bool:
        return word in self._stoi

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self.itos == other.itos

    def __repr__(self) -> str:
        return f"Vocab(size={len(self)})"

    def index(self, word: str) -> int:
        """The id of ``word``; ``KeyError`` naming it when it is not in the vocabulary."""
        try:
            return self._stoi[word]
        except KeyError:
            raise KeyError(f"word {word!r} is not in the vocabulary") from None

    def encode(self, tokens: list[str]) -> list[int]:
        """Ids of ``tokens`` without ``<s>``/``</s>``; unknown words and ``<pad> <s> </s>`` give ``UNK_ID``."""
        ids = []
        for token in tokens:
            i = self._stoi.get(token, UNK_ID)
            ids.append(UNK_ID if i < UNK_ID else i)
        return ids

    def decode(self, ids: Iterable[int]) -> list[str]:
        """Tokens of ``ids`` up to (not including) the first ``</s>``, skipping ``<pad>`` and ``<s>``.

        Accepts any iterable of integers (a list or a 1-D tensor); an id outside
        ``[0, len(self))`` raises ``ValueError``.
        """
        tokens = []
        for raw in ids:
            i = int(raw)
            if not 0 <= i < len(self.itos):
                raise ValueError(f"id {i} is outside the vocabulary of size {len(self.itos)}")
            if i == EOS_ID:
                break
            if i not in (PAD_ID, BOS_ID):
                tokens.append(self.itos[i])
        return tokens

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write ``itos`` as a JSON list, atomically (:func:`pyro_textvae.io.atomic_write_bytes`)."""
        atomic_write_bytes(path, json.dumps(self.itos, ensure_ascii=False).encode("utf-8"))

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a vocabulary written by :meth:`to_json`.

        Raises :class:`CorpusError` naming the file when it is missing, not UTF-8, not JSON, or not
        a list of unique strings starting with ``<pad> <s> </s> <unk>``.
        """
        where = f"vocabulary file {str(path)!r}"
        try:
            data = read_bounded(path)
        except CheckpointError as error:
            raise CorpusError(f"cannot read {where}: {error}") from None
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise CorpusError(f"{where} is not UTF-8") from None
        try:
            itos = parse_json(text, where)
        except CheckpointError as error:
            raise CorpusError(str(error)) from None
        if not isinstance(itos, list):
            raise CorpusError(f"vocabulary file {str(path)!r} must hold a JSON list, got {type(itos).__name__}")
        try:
            return cls(itos)
        except ValueError as error:
            raise CorpusError(f"vocabulary file {str(path)!r}: {error}") from None
