"""The synthetic corpus (pyro_textvae.data.synthetic): determinism, format, and that the latent
factors recorded in the labels really drive the words."""

from __future__ import annotations

from collections import Counter

import pytest
import torch

from pyro_textvae.data import (
    Corpus,
    read_split,
    synthetic_corpus,
    synthetic_splits,
    write_synthetic,
)
from pyro_textvae.data.synthetic import (
    NEGATIVE,
    POSITIVE,
    ZIPF_EXPONENT,
    parse_label,
    topic_lexicon,
)

SMALL = {"num_train": 300, "num_valid": 50, "num_test": 50}


def as_tuples(splits):
    return {name: (split.sentences, split.labels) for name, split in splits.items()}


def test_deterministic_for_a_seed_and_seeds_differ():
    first = as_tuples(synthetic_splits(**SMALL, seed=5))
    assert first == as_tuples(synthetic_splits(**SMALL, seed=5))
    other = as_tuples(synthetic_splits(**SMALL, seed=6))
    assert all(first[name][0] != other[name][0] for name in first)
    resized = synthetic_splits(num_train=300, num_valid=80, num_test=50, seed=5)
    assert (resized["train"].sentences, resized["train"].labels) == first["train"]
    assert resized["valid"].sentences[:50] == first["valid"][0]
    assert (resized["test"].sentences, resized["test"].labels) == first["test"]
    assert first["train"][0][:50] != first["valid"][0] != first["test"][0]


def test_lengths_labels_and_vocabulary_size():
    corpus = synthetic_corpus(num_train=2000, num_valid=200, num_test=200, seed=0)
    train = corpus.splits["train"]
    assert all(4 <= len(s) <= 20 for split in corpus.splits.values() for s in split.sentences)
    assert 200 <= len(corpus.vocab) <= 600
    factors = Counter(parse_label(label) for label in train.labels)
    assert set(factors) == {(t, s) for t in range(4) for s in ("pos", "neg")}
    assert all(abs(n - 2000 / 8) < 0.3 * 2000 / 8 for n in factors.values())
    lexicon = topic_lexicon(4)
    assert len({w for topic in lexicon for w in topic["nouns"] + topic["verbs"]}) == 4 * 50
    assert topic_lexicon(3) == lexicon[:3]


def test_write_read_round_trip_is_exact(tmp_path):
    splits = synthetic_splits(**SMALL, num_topics=3, seed=2)
    folder = write_synthetic(tmp_path / "synth", **SMALL, num_topics=3, seed=2)
    for name, split in splits.items():
        back = read_split(folder / f"{name}.txt", labels="yes")
        assert (back.sentences, back.labels) == (split.sentences, split.labels)
    from_files = Corpus.from_folder(folder)
    in_memory = Corpus.from_splits(splits)
    assert from_files.vocab == in_memory.vocab
    assert all(from_files.splits[n].ids == in_memory.splits[n].ids for n in splits)


def test_topic_words_belong_to_their_topic_and_adjectives_to_their_sentiment():
    split = synthetic_splits(num_train=2000, num_valid=1, num_test=1, seed=1)["train"]
    lexicon = topic_lexicon(4)
    factors = [parse_label(label) for label in split.labels]
    for topic in range(4):
        own = [s for s, (t, _) in zip(split.sentences, factors) if t == topic]
        other = [s for s, (t, _) in zip(split.sentences, factors) if t != topic]
        top_words = set(lexicon[topic]["nouns"][:5]) | set(lexicon[topic]["verbs"][:2])
        own_rate = sum(w in top_words for s in own for w in s) / len(own)
        other_rate = sum(w in top_words for s in other for w in s) / len(other)
        assert own_rate > 0.5 and own_rate > 20 * other_rate
    for sentiment, words, opposite in (("pos", POSITIVE, NEGATIVE), ("neg", NEGATIVE, POSITIVE)):
        sentences = [s for s, (_, v) in zip(split.sentences, factors) if v == sentiment]
        same = sum(w in words for s in sentences for w in s)
        assert same > len(sentences) and same > 20 * sum(w in opposite for s in sentences for w in s)


def test_noun_frequencies_follow_the_zipf_law():
    split = synthetic_splits(num_train=6000, num_valid=1, num_test=1, seed=4)["train"]
    rank = {w: r for topic in topic_lexicon(4) for r, w in enumerate(topic["nouns"])}
    counts = Counter(rank[w] for s in split.sentences for w in s if w in rank)
    ranks = torch.arange(1, 41, dtype=torch.float64)
    expected = ranks**-ZIPF_EXPONENT / (ranks**-ZIPF_EXPONENT).sum()
    total = sum(counts.values())
    observed = torch.tensor([counts[r] / total for r in range(40)], dtype=torch.float64)
    sigma = (expected * (1 - expected) / total).sqrt()
    assert ((observed - expected).abs() < 4.5 * sigma).all()


def test_naive_bayes_on_words_recovers_the_factors():
    """Every template has a topic noun and a sentiment word, so a multinomial naive Bayes
    classifier fitted on train words must recover topic and sentiment of test sentences."""
    corpus = synthetic_corpus(num_train=1500, num_valid=1, num_test=400, seed=3)
    train, test = corpus.splits["train"], corpus.splits["test"]

    def bags(split):
        counts = torch.zeros(len(split), len(corpus.vocab))
        for row, ids in enumerate(split.ids):
            counts[row].index_add_(0, torch.tensor(ids), torch.ones(len(ids)))
        return counts

    for part in (0, 1):
        train_y = [parse_label(x)[part] for x in train.labels]
        test_y = [parse_label(x)[part] for x in test.labels]
        classes = sorted(set(train_y))
        x = bags(train)
        word_counts = torch.stack([x[[y == c for y in train_y]].sum(0) for c in classes]) + 1.0
        log_probs = (word_counts / word_counts.sum(1, keepdim=True)).log()
        predicted = (bags(test) @ log_probs.T).argmax(1).tolist()
        accuracy = sum(classes[p] == y for p, y in zip(predicted, test_y)) / len(test_y)
        assert accuracy > 0.97


def test_max_length_and_bad_options():
    splits = synthetic_splits(**SMALL, seed=0)
    corpus = synthetic_corpus(**SMALL, seed=0, max_length=8)
    for name, split in splits.items():
        assert corpus.splits[name].dropped == sum(len(s) > 8 for s in split.sentences)
        assert corpus.splits[name].sentences == [s for s in split.sentences if len(s) <= 8]
    for kwargs, name in (({"num_topics": 0}, "num_topics"), ({"num_train": 0}, "num_train"), ({"seed": -1}, "seed")):
        with pytest.raises(ValueError, match=name):
            synthetic_splits(**kwargs)
    with pytest.raises(ValueError, match="synthetic label"):
        parse_label("topic-pos")
