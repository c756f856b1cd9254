"""Vocabulary, corpus reading and batching (pyro_textvae.data)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyro_textvae.data import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    UNK_ID,
    Corpus,
    CorpusError,
    EncodedSplit,
    Split,
    Vocab,
    iterate_batches,
    make_batch,
    num_batches,
    padding_fraction,
    read_split,
)

SHORT_YELP = Path(__file__).resolve().parents[4] / "shared" / "data" / "short_yelp"
SPECIALS = ["<pad>", "<s>", "</s>", "<unk>"]


def write(path: Path, data: bytes | str) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


# ----------------------------------------------------------------------------- vocabulary


def test_special_ids_and_order_by_count_then_alphabet():
    sentences = [["b", "a", "c", "a", "<unk>"], ["c", "b", "d", "</s>"], ["e"]]
    vocab = Vocab.build(sentences)
    assert (PAD_ID, BOS_ID, EOS_ID, UNK_ID) == (0, 1, 2, 3)
    assert vocab.itos == SPECIALS + ["a", "b", "c", "d", "e"]
    assert len(vocab) == 9 and vocab.index("c") == 6 and "d" in vocab and "z" not in vocab
    assert Vocab.build(list(reversed(sentences))) == vocab


def test_min_count_and_max_size():
    sentences = [["x"] * 5 + ["y"] * 3 + ["z"] * 3 + ["w"]]
    assert Vocab.build(sentences, min_count=3).itos == SPECIALS + ["x", "y", "z"]
    assert Vocab.build(sentences, max_size=2).itos == SPECIALS + ["x", "y"]
    assert Vocab.build(sentences, max_size=0).itos == SPECIALS
    bad = [({"min_count": 0}, "min_count"), ({"max_size": -1}, "max_size"), ({"min_count": 1.5}, "min_count")]
    for kwargs, name in bad:
        with pytest.raises(ValueError, match=name):
            Vocab.build(sentences, **kwargs)


def test_encode_decode_round_trip_and_unknowns():
    vocab = Vocab.build([["the", "food", "is", "good"]])
    sentence = ["the", "food", "is", "good"]
    ids = vocab.encode(sentence)
    assert ids == [vocab.index(w) for w in sentence] and min(ids) > UNK_ID
    assert vocab.decode(ids + [EOS_ID]) == sentence
    assert vocab.decode([BOS_ID] + ids + [EOS_ID, 5, PAD_ID]) == sentence
    assert vocab.decode(torch.tensor([BOS_ID, ids[0], PAD_ID, ids[1]])) == sentence[:2]
    assert vocab.encode(["the", "pizza", "<s>", "</s>", "<pad>", "<unk>"]) == [ids[0]] + [UNK_ID] * 5
    with pytest.raises(ValueError, match="outside"):
        vocab.decode([len(vocab)])
    with pytest.raises(KeyError, match="pizza"):
        vocab.index("pizza")


def test_json_round_trip_is_exact_and_atomic(tmp_path):
    vocab = Vocab.build([["é", "naïve", "日本", "a"], ["a", '"quote"']])
    path = tmp_path / "vocab.json"
    vocab.to_json(path)
    assert json.loads(path.read_text(encoding="utf-8")) == vocab.itos
    assert Vocab.from_json(path) == vocab and Vocab.from_json(path).itos == vocab.itos
    Vocab.build([["b"]]).to_json(path)
    assert Vocab.from_json(path).itos == SPECIALS + ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vocab.json"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"\xff\xfe[]", "not UTF-8"),
        (b"[1, 2", "not valid JSON"),
        (b'{"itos": []}', "JSON list"),
        (json.dumps(SPECIALS[:3]).encode(), "specials"),
        (json.dumps(["<s>", "<pad>", "</s>", "<unk>", "a"]).encode(), "specials"),
        (json.dumps(SPECIALS + ["a", "a"]).encode(), "duplicate"),
        (json.dumps(SPECIALS + [3]).encode(), "strings"),
    ],
)
def test_bad_vocabulary_file_raises_corpus_error_naming_it(tmp_path, content, reason):
    path = write(tmp_path / "bad.json", content)
    with pytest.raises(CorpusError, match=reason) as info:
        Vocab.from_json(path)
    assert str(path) in str(info.value)


def test_missing_vocabulary_file(tmp_path):
    with pytest.raises(CorpusError, match="missing.json"):
        Vocab.from_json(tmp_path / "missing.json")


# ----------------------------------------------------------------------------- reading files


def test_labels_auto_yes_no(tmp_path):
    labelled = write(tmp_path / "a.txt", "1\tthe food is great .\r\n\n0\tawful\t service\n   \n")
    split = read_split(labelled)
    assert split.sentences == [["the", "food", "is", "great", "."], ["awful", "service"]]
    assert split.labels == ["1", "0"] and split.path == str(labelled)
    assert read_split(labelled, labels="yes") == split
    plain = read_split(labelled, labels="no")
    assert plain.labels is None
    assert plain.sentences == [["1", "the", "food", "is", "great", "."], ["0", "awful", "service"]]

    mixed = write(tmp_path / "b.txt", "\ufeff1\tgood food\nno label here\n")
    auto = read_split(mixed)
    assert auto.labels is None and auto.sentences == [["1", "good", "food"], ["no", "label", "here"]]
    with pytest.raises(CorpusError, match=r"b\.txt.*line 2.*TAB"):
        read_split(mixed, labels="yes")


@pytest.mark.parametrize(
    "content, pattern",
    [
        (b"good\nfine\n\xc3\x28 broken\n", r"line 3: not valid UTF-8"),
        (b"\n  \r\n\t\n", r"has no sentences"),
        (b"", r"has no sentences"),
        (b"1\tgood\n0\t  \n", r"line 2: label '0' but no text"),
        (b"1\tgood\n \tbad\n", r"line 2: empty label"),
    ],
)
def test_bad_corpus_file_names_file_and_line(tmp_path, content, pattern):
    path = write(tmp_path / "split.txt", content)
    with pytest.raises(CorpusError, match=pattern) as info:
        read_split(path)
    assert str(path) in str(info.value)


def test_missing_file_directory_and_bad_option(tmp_path):
    with pytest.raises(CorpusError, match="nope.txt"):
        read_split(tmp_path / "nope.txt")
    with pytest.raises(CorpusError, match=str(tmp_path)):
        read_split(tmp_path)
    path = write(tmp_path / "ok.txt", "a b\n")
    with pytest.raises(CorpusError, match="labels"):
        read_split(path, labels="maybe")


REFUSED = {chr(c) for c in [*range(0x00, 0x09), *range(0x0B, 0x20), *range(0x7F, 0xA0), 0x2028, 0x2029, 0xFEFF]}


def expected_split(text: str, labels: str) -> Split | None:
    """Independent oracle for read_split on valid UTF-8 text: None where an error is due."""
    text = text[1:] if text.startswith("\ufeff") else text
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if any(c in REFUSED for c in text.replace("\r", "").replace("\n", "")):
        return None
    kept = [line for line in lines if line.split()]
    if not kept:
        return None
    if labels == "no" or (labels == "auto" and not all("\t" in line for line in kept)):
        return Split([line.split() for line in kept], None)
    if not all("\t" in line for line in kept):
        return None
    pairs = [(line.split("\t", 1)[0].strip(), line.split("\t", 1)[1].split()) for line in kept]
    if not all(label and tokens for label, tokens in pairs):
        return None
    return Split([tokens for _, tokens in pairs], [label for label, _ in pairs])


FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@FUZZ
@given(data=st.binary(max_size=300), labels=st.sampled_from(["auto", "yes", "no"]))
def test_random_bytes_give_a_split_or_corpus_error(tmp_path, data, labels):
    path = write(tmp_path / "fuzz.txt", data)
    try:
        split = read_split(path, labels=labels)
    except CorpusError as error:
        assert str(path) in str(error)
        return
    assert len(split.sentences) >= 1 and all(split.sentences)
    assert all(token and not any(c.isspace() for c in token) for s in split.sentences for token in s)
    assert split.labels is None or len(split.labels) == len(split.sentences)


line_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\n"), max_size=12)
fragments = st.lists(st.sampled_from(["\t", " ", "\r", "\r\n", "1", "0", "ab", "é", "\u2028", "\x85", "\x00", "\ufeff"])
                     | line_text, max_size=6)


@FUZZ
@given(lines=st.lists(fragments.map("".join), max_size=8), labels=st.sampled_from(["auto", "yes", "no"]))
def test_random_lines_match_the_format_rules(tmp_path, lines, labels):
    path = write(tmp_path / "fuzz.txt", "\n".join(lines))
    expected = expected_split("\n".join(lines), labels)
    if expected is None:
        with pytest.raises(CorpusError, match="fuzz.txt"):
            read_split(path, labels=labels)
    else:
        split = read_split(path, labels=labels)
        assert (split.sentences, split.labels) == (expected.sentences, expected.labels)


# ----------------------------------------------------------------------------- corpus


def write_folder(root: Path, train: str, valid: str, test: str) -> Path:
    root.mkdir()
    for name, text in {"train": train, "valid": valid, "test": test}.items():
        write(root / f"{name}.txt", text)
    return root


def test_corpus_vocabulary_from_train_only_and_max_length(tmp_path):
    root = write_folder(
        tmp_path / "c",
        train="1\ta b b\n0\tb c\n1\ta b c d e f g\n",
        valid="0\tb z\n1\ta a a a a a a a\n",
        test="1\tc\n",
    )
    corpus = Corpus.from_folder(root, max_length=4)
    assert corpus.vocab.itos == SPECIALS + ["b", "a", "c"]
    valid = corpus.splits["valid"]
    assert valid.sentences == [["b", "z"]] and valid.ids == [[4, UNK_ID]] and valid.labels == ["0"]
    assert [corpus.splits[n].dropped for n in ("train", "valid", "test")] == [1, 1, 0]
    summary = corpus.summary()
    assert summary["vocab_size"] == 7
    assert summary["splits"]["train"] == {
        "sentences": 2, "tokens": 5, "unknown_tokens": 0, "dropped": 1, "blank_lines": 0, "max_length": 3,
        "labels": ["0", "1"],
    }
    assert summary["splits"]["valid"]["unknown_tokens"] == 1
    again = Corpus.from_folder(root, vocab=Vocab.build([["z"]]))
    assert again.vocab.itos == SPECIALS + ["z"] and again.splits["valid"].ids[0] == [UNK_ID, 4]
    with pytest.raises(ValueError, match="max_length"):
        Corpus.from_folder(root, max_length=0)


def test_corpus_folder_errors_name_what_is_missing(tmp_path):
    with pytest.raises(CorpusError, match="nowhere"):
        Corpus.from_folder(tmp_path / "nowhere")
    root = tmp_path / "partial"
    root.mkdir()
    write(root / "train.txt", "a\n")
    write(root / "test.txt", "a\n")
    with pytest.raises(CorpusError, match="valid"):
        Corpus.from_folder(root)
    with pytest.raises(ValueError, match="dev"):
        Corpus.from_splits({"train": Split([["a"]]), "dev": Split([["a"]])})
    with pytest.raises(ValueError, match="train"):
        Corpus.from_splits({"test": Split([["a"]])})


@pytest.mark.skipif(not SHORT_YELP.is_dir(), reason=f"short_yelp corpus not found at {SHORT_YELP}")
def test_short_yelp_corpus():
    corpus = Corpus.from_folder(SHORT_YELP)
    train = corpus.splits["train"]
    assert len(train) == 10_000 and set(train.labels) == {"0", "1"} and train.dropped == 0
    lines = (SHORT_YELP / "train.txt").read_text(encoding="utf-8").splitlines()
    words = {w for line in lines for w in line.split("\t", 1)[1].split()}
    assert len(corpus.vocab) == len(words | set(SPECIALS))
    assert train.sentences[0] == lines[0].split("\t", 1)[1].split()
    assert all(len(corpus.splits[name]) == 10_000 for name in ("valid", "test"))


# ----------------------------------------------------------------------------- batches


def test_hand_made_batch_exact_tensors():
    batch = make_batch([[5, 6, 7], [8], []], index=[4, 0, 9], labels=["a", "b", "c"])
    expected_tokens = torch.tensor([[1, 5, 6, 7, 2], [1, 8, 2, 0, 0], [1, 2, 0, 0, 0]])
    expected_mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    assert torch.equal(batch.tokens, expected_tokens) and batch.tokens.dtype == torch.long
    assert torch.equal(batch.mask, expected_mask) and batch.mask.dtype == torch.bool
    assert torch.equal(batch.index, torch.tensor([4, 0, 9])) and batch.labels == ["a", "b", "c"]
    assert len(batch) == 3 and batch.num_tokens == 4 + 2 + 1
    assert torch.equal(batch.lengths, torch.tensor([5, 3, 2]))
    moved = batch.to("cpu")
    assert torch.equal(moved.tokens, batch.tokens) and torch.equal(moved.index, batch.index)
    assert padding_fraction([batch]) == pytest.approx(5 / 15)
    with pytest.raises(ValueError, match="index"):
        make_batch([[5], [6]], index=[0])
    with pytest.raises(ValueError, match="at least one"):
        make_batch([])


def yelp_like_split(n: int, seed: int = 0) -> EncodedSplit:
    """Sentences of 1..15 tokens, most between 5 and 12 (the short_yelp length profile)."""
    generator = torch.Generator().manual_seed(seed)
    lengths = (torch.randn(n, generator=generator) * 3.2 + 9).round().clamp(1, 15).long().tolist()
    ids = [[4 + (i + j) % 50 for j in range(length)] for i, length in enumerate(lengths)]
    sentences = [[str(t) for t in row] for row in ids]
    return EncodedSplit(sentences=sentences, ids=ids, labels=[str(i % 2) for i in range(n)])


@pytest.mark.parametrize("shuffle, bucket", [(True, True), (True, False), (False, True), (False, False)])
def test_every_sentence_once_with_its_own_ids(shuffle, bucket):
    split = yelp_like_split(1000)
    batches = list(iterate_batches(split, 32, shuffle=shuffle, seed=3, bucket=bucket))
    assert len(batches) == num_batches(split, 32) == 32
    seen = torch.cat([b.index for b in batches]).tolist()
    assert sorted(seen) == list(range(1000))
    for batch in batches:
        for row, position in enumerate(batch.index.tolist()):
            n = len(split.ids[position])
            assert batch.tokens[row, 1 : n + 1].tolist() == split.ids[position]
            assert batch.labels[row] == split.labels[position] and int(batch.mask[row].sum()) == n + 2
    dropped = list(iterate_batches(split, 32, shuffle=shuffle, seed=3, bucket=bucket, drop_last=True))
    assert len(dropped) == num_batches(split, 32, drop_last=True) == 31 and all(len(b) == 32 for b in dropped)


def test_bucketing_reduces_padding():
    split = yelp_like_split(3000)
    bucketed = padding_fraction(iterate_batches(split, 32, shuffle=True, seed=0, bucket=True))
    random_order = padding_fraction(iterate_batches(split, 32, shuffle=True, seed=0, bucket=False))
    assert random_order > 0.15 and bucketed < random_order / 5
    ordered = list(iterate_batches(split, 32, shuffle=False))
    lengths = torch.cat([b.mask.sum(-1) for b in ordered]).tolist()
    assert lengths == sorted(lengths)


def test_same_seed_same_batches_and_seeds_differ():
    split = yelp_like_split(500)

    def epoch(seed):
        return [b.index.tolist() for b in iterate_batches(split, 16, shuffle=True, seed=seed)]

    assert epoch(7) == epoch(7)
    assert epoch(7) != epoch(8)
    torch.manual_seed(1)
    first = [b.index.tolist() for b in iterate_batches(split, 16, shuffle=True)]
    torch.manual_seed(1)
    assert first == [b.index.tolist() for b in iterate_batches(split, 16, shuffle=True)]
    with pytest.raises(ValueError, match="batch_size"):
        iterate_batches(split, 0, shuffle=True)


def test_exact_length_buckets_leave_at_most_the_remainders_mixed():
    split = yelp_like_split(3000)
    per_length: dict[int, int] = {}
    for ids in split.ids:
        per_length[len(ids)] = per_length.get(len(ids), 0) + 1
    full = sum(count // 32 for count in per_length.values())
    remainder = sum(count % 32 for count in per_length.values())
    batches = list(iterate_batches(split, 32, shuffle=True, seed=5))
    single = [b for b in batches if int(b.lengths.min()) == int(b.lengths.max())]
    mixed = [b for b in batches if int(b.lengths.min()) < int(b.lengths.max())]
    assert len(batches) == num_batches(split, 32) and len(single) >= full
    assert sum(len(b) for b in mixed) <= remainder
    assert padding_fraction(single) == 0.0
    assert [len(b) for b in batches].count(32) == len(batches) - 1


def test_exact_length_buckets_are_shuffled_within_a_length_and_in_order():
    split = yelp_like_split(3000)

    def single_length_members(seed):
        return {frozenset(b.index.tolist()) for b in iterate_batches(split, 32, shuffle=True, seed=seed)
                if int(b.lengths.min()) == int(b.lengths.max())}

    assert single_length_members(1) != single_length_members(2)
    lengths = [int(b.lengths[0]) for b in iterate_batches(split, 32, shuffle=True, seed=1)]
    assert lengths != sorted(lengths) and lengths != sorted(lengths, reverse=True)


@given(st.lists(st.sampled_from([b"a", b"b c", b" ", b"\r", b"\n", b"\r\n", b"\xef\xbb\xbf"]), max_size=30),
       st.integers(1, 5))
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_reading_a_block_at_a_time_gives_the_lines_of_the_whole_file(tmp_path, monkeypatch, parts, block):
    import pyro_textvae.data.corpus as corpus

    path = write(tmp_path / "split.txt", b"x\n" + b"".join(parts))
    monkeypatch.setattr(corpus, "_BLOCK_BYTES", 1 << 20)
    try:
        whole = read_split(path, labels="no")
    except CorpusError as error:
        whole = str(error)
    monkeypatch.setattr(corpus, "_BLOCK_BYTES", block)  # a \r\n cut between two blocks is one line end
    try:
        assert read_split(path, labels="no") == whole
    except CorpusError as error:
        assert str(error) == whole


def test_a_line_over_the_cap_is_refused_before_the_rest_of_the_file_is_read(tmp_path, monkeypatch):
    import pyro_textvae.data.corpus as corpus

    monkeypatch.setattr(corpus, "MAX_LINE_BYTES", 1000)
    monkeypatch.setattr(corpus, "_BLOCK_BYTES", 100)
    path = write(tmp_path / "split.txt", b"short line\n" + b"word " * 100_000)  # one line of 500 kB, no end
    reads = []
    real_open = open

    def counting_open(*args, **kwargs):
        handle = real_open(*args, **kwargs)
        real_read = handle.read
        handle.read = lambda size=-1: reads.append(size) or real_read(size)
        return handle

    monkeypatch.setattr("builtins.open", counting_open)
    with pytest.raises(CorpusError, match=r"split.txt', line 2: longer than 1000 bytes \(MAX_LINE_BYTES\)"):
        read_split(path)
    assert reads and sum(reads) < 2000 and -1 not in reads
    write(tmp_path / "split.txt", b"a b\n" + b"c" * 1001 + b"\n")
    with pytest.raises(CorpusError, match="line 2: longer than 1000 bytes"):
        read_split(path)
