"""Corpus files: the line ends users write, refused characters, the default length limit and
splits emptied by it, all checked before a run folder exists."""
from __future__ import annotations

import json
import re

import pytest

from pyro_textvae.cli import main
from pyro_textvae.data import CorpusError, read_split
from pyro_textvae.data.corpus import DEFAULT_MAX_LENGTH
from tests.cli.test_run_files import refused

TINY = ["--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "3", "--batch-size", "4", "--epochs", "1",
        "--optimizer", "adam", "--no-progress"]
SENTENCES = "the food is good\nthe service was slow\ngood food here\nthe place is clean\n"


def _folder(root, train=SENTENCES, valid=SENTENCES, test=SENTENCES):
    root.mkdir()
    for name, text in (("train", train), ("valid", valid), ("test", test)):
        (root / f"{name}.txt").write_text(text, encoding="utf-8")
    return root


def test_cr_only_and_mixed_line_ends_each_end_a_sentence(tmp_path):
    path = tmp_path / "mac.txt"
    path.write_bytes(b"the food is good\rslow service\r\nclean place\nnice\r")
    assert read_split(path).sentences == [["the", "food", "is", "good"], ["slow", "service"], ["clean", "place"],
                                          ["nice"]]


@pytest.mark.parametrize("text, line, what", [
    ("good food\nbad\u2028service\n", 2, "LINE SEPARATOR (U+2028)"),
    ("good food\u2029\n", 1, "PARAGRAPH SEPARATOR (U+2029)"),
    ("good\nfood\r\nbad\x85service\n", 3, "NEXT LINE control character (U+0085)"),
    ("\x00\x00\x00\x00", 1, "control character (U+0000)"),
    ("\ufeffgood food\n\ufeffbad service\n", 2, "byte-order mark (U+FEFF)"),
    ("good\x0bfood\n", 1, "control character (U+000B)"),
])
def test_refused_characters_name_the_file_and_line(tmp_path, text, line, what):
    path = tmp_path / "bad.txt"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CorpusError, match=rf"bad\.txt.*line {line}: a {re.escape(what)}"):
        read_split(path)


def test_train_drops_sentences_over_the_default_max_length_and_prints_the_count(tmp_path, capsys):
    long = " ".join(["word"] * (DEFAULT_MAX_LENGTH + 1))
    data = _folder(tmp_path / "corpus", train=SENTENCES + long + "\n")
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 0
    assert f"dropped 1 sentence(s) longer than max_length {DEFAULT_MAX_LENGTH} (train 1, valid 0, test 0)" in \
        capsys.readouterr().out
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["data"]["max_length"] == DEFAULT_MAX_LENGTH
    assert config["corpus"]["splits"]["train"]["dropped"] == 1


def test_a_max_length_that_empties_a_split_is_refused_before_the_run_folder_exists(tmp_path, capsys):
    data = _folder(tmp_path / "corpus", valid="a very long validation sentence\nanother long validation line here\n")
    message = refused(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), "--max-length", "4", *TINY)
    assert str(data / "valid.txt") in message and "0 sentence(s) left" in message and "max_length 4" in message
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("line_end", [b"\n", b"\r\n", b"\r"])
def test_blank_and_white_space_lines_are_counted_not_read(tmp_path, line_end):
    path = tmp_path / "blank.txt"
    path.write_bytes(line_end.join([b"0\tgood food", b"", b"   ", b"1\tbad service", b"\t ", b""]))
    split = read_split(path)
    assert split.sentences == [["good", "food"], ["bad", "service"]] and split.labels == ["0", "1"]
    assert split.blank == 3  # the end of the last line is no line
    path.write_bytes(b"good food\nbad service\n")
    assert read_split(path).blank == 0


def test_train_prints_the_corpus_summary_with_the_blank_lines_it_skipped(tmp_path, capsys):
    data = _folder(tmp_path / "corpus", train=SENTENCES + "\n  \n", valid=SENTENCES + SENTENCES)
    assert main(["train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY]) == 0
    out = capsys.readouterr().out.splitlines()
    vocabulary = len(json.loads((tmp_path / "run" / "vocab.json").read_text()))
    assert f"{data}: vocabulary {vocabulary} words; sentences train 4, valid 8, test 4" in out
    assert f"{data}: skipped 2 blank line(s) (train 2, valid 0, test 0)" in out
    assert not any("longer than max_length" in line for line in out)  # none dropped: not mentioned
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["corpus"]["splits"]["train"]["blank_lines"] == 2


def test_a_one_sentence_split_is_refused_without_advice_on_max_length_when_nothing_was_dropped(tmp_path, capsys):
    data = _folder(tmp_path / "corpus", valid="the food is good\n")
    message = refused(capsys, "train", "--data", str(data), "--out", str(tmp_path / "run"), *TINY)
    assert message.endswith(f"{data / 'valid.txt'}: 1 sentence(s); every split needs at least 2")
    assert "max_length" not in message and not (tmp_path / "run").exists()
