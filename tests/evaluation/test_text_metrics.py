"""BLEU against a reference set, self-BLEU, distinct-n, ROUGE and interpolation scores on tiny
hand-checked cases, cross-checked against sacrebleu where the definitions coincide."""

import math
import random

import pytest
import sacrebleu
from sacrebleu.metrics.bleu import BLEU

from evaluation.text_metrics import (
    bleu_precision_recall,
    distinct_n,
    interpolation_scores,
    rouge,
    self_bleu,
    sentence_bleu,
)


def _split(*sentences):
    return [sentence.split() for sentence in sentences]


def _sacrebleu(hypothesis, references, order, smooth_method):
    metric = BLEU(tokenize="none", smooth_method=smooth_method, effective_order=False, max_ngram_order=order)
    return metric.sentence_score(" ".join(hypothesis), [" ".join(r) for r in references]).score / 100


def test_identical_sets_score_one_and_disjoint_sets_zero():
    sentences = _split("the cat sat on the mat", "a dog ran in the park today")
    result = bleu_precision_recall(sentences, sentences)
    for key in ("precision", "recall", "f"):
        assert result[key] == pytest.approx({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})
    disjoint = bleu_precision_recall(_split("a b c d e"), _split("f g h i j", "k l m n"))
    for key in ("precision", "recall", "f"):
        assert disjoint[key] == {1: 0.0, 2: 0.0, 3: 0.0, 4: 0.0}


def test_hand_computed_clipping_against_the_maximum_count_of_any_single_reference():
    # H = "the the the cat", R = {"the cat sat", "the the dog"}
    # precision: p1 = (min(3, 2) + 1) / 4 = 3/4; p2 = (min(2, 1) [the the] + 1 [the cat]) / 3 = 2/3; |H| = 4 > 3: BP 1
    # recall, each reference against {H} (closest length 4): p1 = 2/3, p2 = 1/2, BP = exp(1 - 4/3)
    result = bleu_precision_recall(_split("the the the cat"), _split("the cat sat", "the the dog"), max_order=2)
    precision = {1: 3 / 4, 2: math.sqrt(3 / 4 * 2 / 3)}
    penalty = math.exp(-1 / 3)
    recall = {1: penalty * 2 / 3, 2: penalty * math.sqrt(2 / 3 * 1 / 2)}
    assert result["precision"] == pytest.approx(precision)
    assert result["recall"] == pytest.approx(recall)
    assert result["f"] == pytest.approx({n: 2 * precision[n] * recall[n] / (precision[n] + recall[n]) for n in (1, 2)})


def test_single_and_multi_reference_bleu_match_sacrebleu():
    rng = random.Random(0)
    vocabulary = "a b c d e f".split()

    def sentence():
        return [rng.choice(vocabulary) for _ in range(rng.randint(1, 9))]

    for _ in range(60):
        hypothesis, references = sentence(), [sentence() for _ in range(rng.randint(1, 3))]
        for order in (1, 2, 3, 4):
            for smooth_method in ("none", "floor", "exp"):
                ours = sentence_bleu(hypothesis, references, max_order=order, smooth_method=smooth_method)
                assert ours == pytest.approx(_sacrebleu(hypothesis, references, order, smooth_method), abs=1e-9)
    single = _split("the quick brown fox jumps", "the quick brown dog jumped over")
    hypothesis, reference = (" ".join(tokens) for tokens in single)
    library = sacrebleu.sentence_bleu(hypothesis, [reference], tokenize="none", use_effective_order=False).score
    assert sentence_bleu(single[0], [single[1]], smooth_method="exp") == pytest.approx(library / 100)


def test_precision_averages_per_hypothesis_bleu_against_the_whole_set():
    rng = random.Random(1)
    vocabulary = "a b c d e".split()
    hypotheses = [[rng.choice(vocabulary) for _ in range(rng.randint(3, 8))] for _ in range(8)]
    references = [[rng.choice(vocabulary) for _ in range(rng.randint(3, 8))] for _ in range(11)]
    result = bleu_precision_recall(hypotheses, references)
    for order in (1, 4):
        forward = sum(_sacrebleu(h, references, order, "floor") for h in hypotheses) / len(hypotheses)
        backward = sum(_sacrebleu(r, hypotheses, order, "floor") for r in references) / len(references)
        assert result["precision"][order] == pytest.approx(forward)
        assert result["recall"][order] == pytest.approx(backward)


def test_self_bleu_equals_bleu_against_the_other_sentences():
    assert self_bleu(_split("a b c d e", "a b c d e", "a b c d e")) == pytest.approx({1: 1.0, 2: 1.0, 3: 1.0, 4: 1.0})
    rng = random.Random(2)
    sentences = [[rng.choice("a b c d".split()) for _ in range(rng.randint(2, 7))] for _ in range(9)]
    sentences.append(list(sentences[0]))  # a duplicate: its own copy is among the others
    result = self_bleu(sentences)
    for order in (1, 2, 4):
        expected = sum(
            _sacrebleu(s, sentences[:i] + sentences[i + 1 :], order, "floor") for i, s in enumerate(sentences)
        ) / len(sentences)
        assert result[order] == pytest.approx(expected)


def test_distinct_n_hand_values():
    assert distinct_n(_split("a a b"), 1) == pytest.approx(2 / 3)
    assert distinct_n(_split("a a b", "a b"), 2) == pytest.approx(2 / 3)  # {a a, a b} over 3 bigrams
    assert distinct_n(_split("a"), 2) == 0.0
    with pytest.raises(ValueError, match="n must"):
        distinct_n(_split("a b"), 0)


def test_rouge_one_f_hand_case():
    # overlap {the, cat}: P = 2/3, R = 2/4, F = 4/7; second pair identical: F = 1
    result = rouge(["the cat sat", "a b"], ["the cat ran away", "a b"], types=("rouge1", "rougeL"))
    assert result["rouge1"] == pytest.approx((4 / 7 + 1) / 2)
    assert result["rougeL"] == pytest.approx((4 / 7 + 1) / 2)
    with pytest.raises(ValueError, match="types"):
        rouge(["a"], ["a"], types=("rouge0",))
    with pytest.raises(ValueError, match="aligned"):
        rouge(["a"], ["a", "b"])


def test_interpolation_scores_along_a_path_that_morphs_start_into_end():
    start = [f"a{i}" for i in range(10)]
    end = [f"b{i}" for i in range(10)]
    path = [end[:step] + start[step:] for step in range(11)]
    scores = interpolation_scores(path, start, end)
    to_start, to_end = scores["bleu_to_start"], scores["bleu_to_end"]
    assert len(to_start) == len(to_end) == 11
    assert to_start[0] == pytest.approx(1.0) and to_end[-1] == pytest.approx(1.0)
    assert to_start[-1] == 0.0 and to_end[0] == 0.0
    assert all(later < earlier for earlier, later in zip(to_start, to_start[1:]))
    assert all(later > earlier for earlier, later in zip(to_end, to_end[1:]))
    # ROUGE-L F to start = LCS / 10 = (10 - step) / 10
    assert scores["rougeL_to_start"] == pytest.approx([(10 - step) / 10 for step in range(11)])
    # distinct-1: the 20 tokens a0..a9, b0..b9 among 110; self-BLEU agrees with its own definition
    assert scores["distinct"][1] == pytest.approx(20 / 110)
    assert scores["self_bleu"] == pytest.approx(self_bleu(path))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="smooth_method"):
        bleu_precision_recall(_split("a"), _split("a"), smooth_method="nltk")
    with pytest.raises(ValueError, match="max_order"):
        self_bleu(_split("a", "b"), max_order=0)
    with pytest.raises(TypeError, match="list of str"):
        bleu_precision_recall(["a b"], _split("a b"))
    with pytest.raises(ValueError, match="whitespace"):
        sentence_bleu(["a b"], _split("a b"))
    with pytest.raises(ValueError, match="at least 2"):
        self_bleu(_split("a b"))
