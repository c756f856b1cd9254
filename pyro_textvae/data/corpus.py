"""Reading tokenised text files into splits, and encoding them with one vocabulary.

File format (the Short-Yelp files of the DG-VAE experiments, ``docs/maths.md#paper-settings``): UTF-8, one
sentence per line, tokens separated by white space, an optional ``label<TAB>`` prefix. Blank lines
are skipped. A line ends at ``\\n``, ``\\r\\n`` or a lone ``\\r`` (the line ends editors write); a
byte-order mark is accepted at the start of the file only. A control character other than TAB
(NUL, VT, FF, ESC, DEL, the C1 range including U+0085 NEL), a U+2028 LINE SEPARATOR or U+2029
PARAGRAPH SEPARATOR (which other programs take for line ends) and a byte-order mark after the
start are refused, naming the line, rather than guessed at. The reader works on bytes, so any file
content gives either a :class:`Split` or a :class:`CorpusError` that names the file and, where one
is to blame, the 1-based line. It reads a file a block at a time and a line of more than
:data:`MAX_LINE_BYTES` bytes is refused as soon as it is seen, so neither a huge file nor a huge
line is held whole before it is judged.
"""

from __future__ import annotations

import os
import re
import typing
from dataclasses import dataclass
from pathlib import Path

from ..config import DEFAULT_MAX_LENGTH
from .vocab import UNK_ID, CorpusError, Vocab, _check_count

__all__ = [
    "DEFAULT_MAX_LENGTH", "CorpusError", "Split", "EncodedSplit", "Corpus", "read_split", "SPLIT_NAMES", "LABEL_MODES"
]

SPLIT_NAMES: tuple[str, ...] = ("train", "valid", "test")
LABEL_MODES: tuple[str, ...] = ("auto", "yes", "no")
_LINE = re.compile(rb"([^\r\n]*)(\r\n|\r|\n)")
MAX_LINE_BYTES = 2**20  # a sentence of a megabyte is no sentence; Short-Yelp's longest lines are under 1 KB
_BLOCK_BYTES = 2**20
_REFUSED = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\ufeff]")


@dataclass
class Split:
    """Tokenised sentences of one file; ``labels[i]`` belongs to ``sentences[i]`` (None: unlabelled);
    ``blank``: the blank or white-space-only lines of the file, skipped."""

    sentences: list[list[str]]
    labels: list[str] | None = None
    path: str | None = None
    blank: int = 0

    def __post_init__(self) -> None:
        if self.labels is not None and len(self.labels) != len(self.sentences):
            raise ValueError(f"{len(self.labels)} labels for {len(self.sentences)} sentences")

    def __len__(self) -> int:
        return len(self.sentences)


@dataclass
class EncodedSplit:
    """A split after vocabulary encoding: kept ``sentences``, their ``ids`` (no ``<s>``/``</s>``),
    ``labels``, the number of sentences ``dropped`` for being longer than ``max_length`` and of ``blank``
    lines skipped in the file."""

    sentences: list[list[str]]
    ids: list[list[int]]
    labels: list[str] | None = None
    dropped: int = 0
    blank: int = 0

    def __post_init__(self) -> None:
        if len(self.ids) != len(self.sentences):
            raise ValueError(f"{len(self.ids)} id lists for {len(self.sentences)} sentences")
        if self.labels is not None and len(self.labels) != len(self.sentences):
            raise ValueError(f"{len(self.labels)} labels for {len(self.sentences)} sentences")

    def __len__(self) -> int:
        return len(self.sentences)


def _raw_lines(handle: typing.BinaryIO, where: str) -> typing.Iterator[bytes]:
    """The lines of a file opened in binary, without their ends, read a block at a time; a line
    longer than :data:`MAX_LINE_BYTES` is a ``CorpusError`` naming it."""
    buffer, count = b"", 0
    while True:
        block = handle.read(_BLOCK_BYTES)
        buffer += block
        start = 0
        for match in _LINE.finditer(buffer):
            if block and match.end() == len(buffer) and match.group(2) == b"\r":
                break  # the \n of a \r\n may start the next block
            yield match.group(1)
            count, start = count + 1, match.end()
        buffer = buffer[start:]
        if len(buffer) > MAX_LINE_BYTES + 1:
            raise CorpusError(f"{where}, line {count + 1}: longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES); "
                              "a corpus holds one sentence a line")
        if not block:
            if buffer:
                yield buffer
            return


def _decode_lines(handle: typing.BinaryIO, where: str) -> tuple[list[tuple[int, str]], int]:
    """Non-blank lines of the file ``handle`` as ``(1-based line number, text)`` and the number of
    blank or white-space-only lines (the end of the last line is no line); ``CorpusError`` on bad
    UTF-8, a refused character or a line too long (module docstring)."""
    lines, number = [], 0
    for number, raw in enumerate(_raw_lines(handle, where), start=1):
        if number == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if len(raw) > MAX_LINE_BYTES:
            raise CorpusError(f"{where}, line {number}: longer than {MAX_LINE_BYTES} bytes (MAX_LINE_BYTES); "
                              "a corpus holds one sentence a line")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            reason = f"{error.reason} at byte {error.start}"
            raise CorpusError(f"{where}, line {number}: not valid UTF-8 ({reason})") from None
        bad = _REFUSED.search(text)
        if bad:
            raise CorpusError(f"{where}, line {number}: {_describe(bad.group())} at character {bad.start() + 1}; "
                              "lines end at \\n, \\r\\n or \\r and may hold no other control character")
        if text.split():
            lines.append((number, text))
    return lines, number - len(lines)


def _describe(char: str) -> str:
    names = {"\u2028": "a LINE SEPARATOR", "\u2029": "a PARAGRAPH SEPARATOR", "\ufeff": "a byte-order mark",
             "\x85": "a NEXT LINE control character"}
    return f"{names.get(char, 'a control character')} (U+{ord(char):04X})"


def read_split(path: str | os.PathLike[str], labels: str = "auto") -> Split:
    """Read one split file.

    ``labels``: ``"yes"`` -- every line is ``label<TAB>sentence`` (label: the text before the first
    TAB, stripped); ``"no"`` -- no labels, a TAB is ordinary white space; ``"auto"`` -- labelled
    iff every non-blank line has a TAB. Raises :class:`CorpusError` naming the file (and line) for a
    missing or unreadable file, bytes that are not UTF-8, a file without sentences, a labelled line
    whose label or text is empty, and, with ``labels="yes"``, a line without a TAB.
    """
    if labels not in LABEL_MODES:
        raise CorpusError(f"option labels must be one of {list(LABEL_MODES)}, got {labels!r}")
    where = f"corpus file {str(path)!r}"
    try:
        with open(path, "rb") as handle:
            lines, blank = _decode_lines(handle, where)
    except OSError as error:
        raise CorpusError(f"cannot read {where}: {error.strerror or error}") from None
    if not lines:
        raise CorpusError(f"{where} has no sentences")
    labelled = labels == "yes" or (labels == "auto" and all("\t" in text for _, text in lines))
    if not labelled:
        return Split(sentences=[text.split() for _, text in lines], labels=None, path=str(path), blank=blank)
    sentences, tags = [], []
    for number, text in lines:
        label, tab, rest = text.partition("\t")
        if not tab:
            raise CorpusError(f"{where}, line {number}: labels='yes' but the line has no TAB")
        label, tokens = label.strip(), rest.split()
        if not label:
            raise CorpusError(f"{where}, line {number}: empty label before the TAB")
        if not tokens:
            raise CorpusError(f"{where}, line {number}: label {label!r} but no text")
        sentences.append(tokens)
        tags.append(label)
    return Split(sentences=sentences, labels=tags, path=str(path), blank=blank)


def _kept(split: Split, max_length: int | None) -> list[int]:
    """Positions of the sentences of ``split`` with at most ``max_length`` tokens (all if None)."""
    return [i for i, s in enumerate(split.sentences) if max_length is None or len(s) <= max_length]


def _encode(split: Split, vocab: Vocab, max_length: int | None) -> EncodedSplit:
    """Encode ``split``, dropping sentences of more than ``max_length`` tokens."""
    keep = _kept(split, max_length)
    sentences = [split.sentences[i] for i in keep]
    labels = None if split.labels is None else [split.labels[i] for i in keep]
    ids = [vocab.encode(s) for s in sentences]
    return EncodedSplit(sentences=sentences, ids=ids, labels=labels, dropped=len(split) - len(keep), blank=split.blank)


@dataclass
class Corpus:
    """A vocabulary and the encoded ``"train"``, ``"valid"``, ``"test"`` splits.

    The vocabulary comes from the training split only (``docs/maths.md#paper-settings``), after dropping
    sentences longer than ``max_length``.
    """

    vocab: Vocab
    splits: dict[str, EncodedSplit]

    @classmethod
    def from_splits(
        cls,
        splits: dict[str, Split],
        min_count: int = 1,
        max_vocab: int | None = None,
        max_length: int | None = None,
        vocab: Vocab | None = None,
    ) -> Corpus:
        """Encode ``splits`` (names among train/valid/test) with ``vocab``, or with a vocabulary
        built from ``splits["train"]`` (``Vocab.build(train, min_count, max_vocab)``) when None."""
        unknown = sorted(set(splits) - set(SPLIT_NAMES))
        if unknown:
            raise ValueError(f"split names must be among {list(SPLIT_NAMES)}, got {unknown}")
        _check_count(max_length, "max_length", 1, allow_none=True)
        if vocab is None:
            if "train" not in splits:
                raise ValueError("splits needs a 'train' split to build the vocabulary (or pass vocab)")
            train = splits["train"]
            kept = (train.sentences[i] for i in _kept(train, max_length))
            vocab = Vocab.build(kept, min_count=min_count, max_size=max_vocab)
        encoded = {name: _encode(splits[name], vocab, max_length) for name in SPLIT_NAMES if name in splits}
        return cls(vocab=vocab, splits=encoded)

    @classmethod
    def from_folder(
        cls,
        folder: str | os.PathLike[str],
        min_count: int = 1,
        max_vocab: int | None = None,
        max_length: int | None = None,
        labels: str = "auto",
        vocab: Vocab | None = None,
    ) -> Corpus:
        """Read ``folder/{train,valid,test}.txt`` with :func:`read_split` and encode them
        (:meth:`from_splits`); ``CorpusError`` naming the folder or file that is missing."""
        root = Path(folder)
        if not root.is_dir():
            raise CorpusError(f"corpus folder {str(folder)!r} does not exist or is not a folder")
        paths = {name: root / f"{name}.txt" for name in SPLIT_NAMES}
        for name, path in paths.items():
            if not path.is_file():
                raise CorpusError(f"corpus folder {str(folder)!r} has no {name} split (expected {str(path)!r})")
        splits = {name: read_split(path, labels=labels) for name, path in paths.items()}
        return cls.from_splits(splits, min_count=min_count, max_vocab=max_vocab, max_length=max_length, vocab=vocab)

    def summary(self) -> dict:
        """Vocabulary size and, per split, sentences, tokens (``</s>`` not counted), unknown
        tokens, dropped sentences, blank lines skipped, longest sentence and the sorted label set (None:
        unlabelled)."""
        per_split = {}
        for name, split in self.splits.items():
            per_split[name] = {
                "sentences": len(split),
                "tokens": sum(len(ids) for ids in split.ids),
                "unknown_tokens": sum(ids.count(UNK_ID) for ids in split.ids),
                "dropped": split.dropped,
                "blank_lines": split.blank,
                "max_length": max((len(ids) for ids in split.ids), default=0),
                "labels": None if split.labels is None else sorted(set(split.labels)),
            }
        return {"vocab_size": len(self.vocab), "splits": per_split}
