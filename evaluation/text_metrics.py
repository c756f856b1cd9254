"""Text metrics for prior sampling and interpolation (``docs/metrics.md#bleu-against-a-set``).

BLEU against a *set* of references, as in the forward/backward BLEU of Shi et al. (2018) and
Fu et al. (2019): a hypothesis h is scored against the whole reference set R with the standard
multi-reference BLEU (Papineni et al. 2002):

    p_m(h)   = sum_g min(c_h(g), max_{r in R} c_r(g)) / sum_g c_h(g),   g the m-grams of h
    BP(h)    = 1 if |h| > r* else exp(1 - r* / |h|),  r* the reference length closest to |h|
               (ties to the shorter one)
    BLEU-n(h) = BP(h) exp((1/n) sum_{m=1..n} log p_m(h))

BLEU-n *precision* (forward) averages BLEU-n(h) over the hypotheses with R the reference set;
*recall* (backward) swaps the roles; F = 2PR / (P + R). The per-n-gram maximum counts over R are
computed once, so the cost is linear in the total number of n-grams. n-grams come from
sacrebleu's ``extract_all_word_ngrams``; brevity penalty, geometric mean and smoothing come from
sacrebleu's ``BLEU.compute_bleu`` (no effective order). The default smoothing is ``"floor"``
with value 0.1: a zero match count m becomes 0.1 / total (Chen & Cherry 2014, method 1 = NLTK's
``SmoothingFunction().method1``); ``"none"``, ``"add-k"`` and ``"exp"`` are sacrebleu's others.
A hypothesis with no match at all scores 0 under every method, and one shorter than n tokens
scores 0 at BLEU-n. With a single reference all of this is sacrebleu's sentence BLEU.
"""

from __future__ import annotations

import bisect
import re
from collections import Counter
from typing import Sequence

from rouge_score import rouge_scorer
from sacrebleu.metrics.bleu import BLEU
from sacrebleu.metrics.helpers import extract_all_word_ngrams

from pyro_textvae.checks import POSITIVE_INT

SMOOTH_METHODS = ("none", "floor", "add-k", "exp")
ROUGE_TYPE = re.compile(r"rouge[1-9][0-9]*|rougeL|rougeLsum")


def _check_options(max_order: int, smooth_method: str, caller: str) -> None:
    POSITIVE_INT.check(f"{caller}: max_order", max_order)
    if smooth_method not in SMOOTH_METHODS:
        raise ValueError(f"{caller}: smooth_method must be one of {SMOOTH_METHODS}, got {smooth_method!r}")


def _ngram_counts(tokens: Sequence[str], max_order: int, caller: str) -> tuple[Counter, int]:
    """(Counter of all 1..max_order-grams as tuples, length) via sacrebleu's extractor."""
    if isinstance(tokens, str) or not all(isinstance(token, str) for token in tokens):
        raise TypeError(f"{caller}: every sentence must be a list of str tokens, got {tokens!r}")
    counts, length = extract_all_word_ngrams(" ".join(tokens), 1, max_order)
    if length != len(tokens):
        raise ValueError(f"{caller}: tokens must be non-empty and contain no whitespace, got {list(tokens)!r}")
    return counts, length


def _closest_length(length: int, sorted_lengths: list[int]) -> int:
    """The reference length closest to ``length``, ties to the shorter (sacrebleu's rule)."""
    position = bisect.bisect_left(sorted_lengths, length)
    candidates = sorted_lengths[max(position - 1, 0) : position + 1]
    return min(candidates, key=lambda ref_length: (abs(ref_length - length), ref_length))


def _bleu_scores(
    counts: Counter,
    length: int,
    max_counts: dict,
    ref_length: int,
    max_order: int,
    smooth_method: str,
    smooth_value: float | None,
) -> list[float]:
    """[BLEU-1, ..., BLEU-max_order] of one hypothesis, in [0, 1], from clipped match counts."""
    correct, total = [0] * max_order, [0] * max_order
    for gram, count in counts.items():
        order = len(gram) - 1
        total[order] += count
        correct[order] += min(count, max_counts.get(gram, 0))
    return [
        BLEU.compute_bleu(
            correct[:n], total[:n], length, ref_length, smooth_method, smooth_value, max_ngram_order=n
        ).score
        / 100.0
        for n in range(1, max_order + 1)
    ]


def _max_counts(all_counts: list[Counter]) -> dict:
    max_counts: dict = {}
    for counts in all_counts:
        for gram, count in counts.items():
            if count > max_counts.get(gram, 0):
                max_counts[gram] = count
    return max_counts


def _corpus_against_set(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    max_order: int,
    smooth_method: str,
    smooth_value: float | None,
    caller: str,
) -> dict[int, float]:
    """Mean over hypotheses of BLEU-n against the whole reference set, n = 1..max_order."""
    if len(hypotheses) == 0 or len(references) == 0:
        raise ValueError(f"{caller}: hypotheses and references must be non-empty")
    reference_stats = [_ngram_counts(reference, max_order, caller) for reference in references]
    max_counts = _max_counts([counts for counts, _ in reference_stats])
    lengths = sorted({length for _, length in reference_stats})
    sums = [0.0] * max_order
    for hypothesis in hypotheses:
        counts, length = _ngram_counts(hypothesis, max_order, caller)
        scores = _bleu_scores(
            counts, length, max_counts, _closest_length(length, lengths), max_order, smooth_method, smooth_value
        )
        sums = [running + score for running, score in zip(sums, scores)]
    return {n: sums[n - 1] / len(hypotheses) for n in range(1, max_order + 1)}


def sentence_bleu(
    hypothesis: Sequence[str],
    references: Sequence[Sequence[str]],
    max_order: int = 4,
    smooth_method: str = "floor",
    smooth_value: float | None = None,
) -> float:
    """BLEU-``max_order`` of one tokenized hypothesis against a set of tokenized references, in
    [0, 1] (module docstring; Papineni et al. 2002, sec. 2)."""
    _check_options(max_order, smooth_method, "sentence_bleu")
    return _corpus_against_set([hypothesis], references, max_order, smooth_method, smooth_value, "sentence_bleu")[
        max_order
    ]


def bleu_precision_recall(
    hypotheses: Sequence[Sequence[str]],
    references: Sequence[Sequence[str]],
    max_order: int = 4,
    smooth_method: str = "floor",
    smooth_value: float | None = None,
) -> dict:
    """Forward/backward BLEU for prior samples (Shi et al. 2018, sec. 5; Fu et al. 2019;
    ``docs/metrics.md#bleu-against-a-set``):

        precision_n = mean_{h in H} BLEU-n(h; R),  recall_n = mean_{r in R} BLEU-n(r; H),
        F_n = 2 precision_n recall_n / (precision_n + recall_n)   (0 when both are 0)

    for n = 1..max_order, with H the generated sentences and R the test set (module docstring
    for BLEU against a set and the smoothing). Returns {"precision": {n: float}, "recall":
    {n: float}, "f": {n: float}}.
    """
    _check_options(max_order, smooth_method, "bleu_precision_recall")
    args = (max_order, smooth_method, smooth_value, "bleu_precision_recall")
    precision = _corpus_against_set(hypotheses, references, *args)
    recall = _corpus_against_set(references, hypotheses, *args)
    f_score = {
        n: 2 * precision[n] * recall[n] / (precision[n] + recall[n]) if precision[n] + recall[n] > 0 else 0.0
        for n in precision
    }
    return {"precision": precision, "recall": recall, "f": f_score}


def self_bleu(
    sentences: Sequence[Sequence[str]],
    max_order: int = 4,
    smooth_method: str = "floor",
    smooth_value: float | None = None,
) -> dict[int, float]:
    """Self-BLEU (Zhu et al. 2018, sec. 3.2): mean over i of BLEU-n(s_i; {s_j : j != i}), n =
    1..max_order; higher means less diverse. The maximum count of every n-gram over the *other*
    sentences comes from the two largest counts per n-gram, so the cost stays linear."""
    _check_options(max_order, smooth_method, "self_bleu")
    if len(sentences) < 2:
        raise ValueError("self_bleu: needs at least 2 sentences")
    stats = [_ngram_counts(sentence, max_order, "self_bleu") for sentence in sentences]
    largest: dict = {}  # gram -> (largest count, its sentence, second largest count)
    for index, (counts, _) in enumerate(stats):
        for gram, count in counts.items():
            first, owner, second = largest.get(gram, (0, -1, 0))
            largest[gram] = (count, index, first) if count > first else (first, owner, max(second, count))
    length_counts = Counter(length for _, length in stats)
    sums = [0.0] * max_order
    for index, (counts, length) in enumerate(stats):
        others_max = {
            gram: (largest[gram][0] if largest[gram][1] != index else largest[gram][2]) for gram in counts
        }
        other_lengths = sorted(
            ref_length for ref_length, number in length_counts.items() if number - (ref_length == length) > 0
        )
        scores = _bleu_scores(
            counts, length, others_max, _closest_length(length, other_lengths), max_order, smooth_method, smooth_value
        )
        sums = [running + score for running, score in zip(sums, scores)]
    return {n: sums[n - 1] / len(sentences) for n in range(1, max_order + 1)}


def distinct_n(sentences: Sequence[Sequence[str]], n: int) -> float:
    """Distinct-n (Li et al. 2016, sec. 4.3): #distinct n-grams / #n-grams over all sentences
    (0.0 when no sentence has n tokens)."""
    POSITIVE_INT.check("distinct_n: n", n)
    grams = Counter()
    for sentence in sentences:
        grams.update(tuple(sentence[i : i + n]) for i in range(len(sentence) - n + 1))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def rouge(
    hypotheses: Sequence[str], references: Sequence[str], types: Sequence[str] = ("rouge1", "rouge2", "rougeL")
) -> dict[str, float]:
    """Mean ROUGE F-measure over aligned (hypothesis, reference) string pairs (Lin 2004), by
    rouge-score's ``RougeScorer`` without stemming; its tokenizer lowercases and drops
    non-alphanumeric characters (so ``<unk>`` counts as ``unk``). Returns {type: mean F}."""
    if len(hypotheses) != len(references) or len(hypotheses) == 0:
        raise ValueError(
            "rouge: hypotheses and references must be non-empty and aligned, "
            f"got {len(hypotheses)} and {len(references)}"
        )
    types = list(types)
    if not types or not all(ROUGE_TYPE.fullmatch(name) for name in types):
        raise ValueError(f"rouge: types must be rougeN (N >= 1), rougeL or rougeLsum, got {types!r}")
    scorer = rouge_scorer.RougeScorer(types, use_stemmer=False)
    totals = dict.fromkeys(types, 0.0)
    for hypothesis, reference in zip(hypotheses, references):
        scores = scorer.score(reference, hypothesis)
        for name in types:
            totals[name] += scores[name].fmeasure
    return {name: total / len(hypotheses) for name, total in totals.items()}


def interpolation_scores(
    path: Sequence[Sequence[str]],
    start: Sequence[str],
    end: Sequence[str],
    max_order: int = 4,
    smooth_method: str = "floor",
) -> dict:
    """Scores of an interpolation path (``docs/metrics.md#interpolation``): the sentences decoded at
    mu = (1 - t) mu_a + t mu_b, t = 0, 0.1, ..., 1, with ``start`` = a and ``end`` = b tokenized.

    Returns {"bleu_to_start": [BLEU-max_order of each step against a], "bleu_to_end": [... b],
    "rougeL_to_start": [ROUGE-L F of each step against a], "rougeL_to_end": [... b],
    "self_bleu": :func:`self_bleu` of the path, "distinct": {n: :func:`distinct_n`} for n = 1..4}.
    """
    if len(path) < 2:
        raise ValueError(f"interpolation_scores: path must have at least 2 sentences, got {len(path)}")

    def bleu_to(target: Sequence[str]) -> list[float]:
        return [sentence_bleu(step, [target], max_order, smooth_method) for step in path]

    def rouge_l_to(target: Sequence[str]) -> list[float]:
        return [rouge([" ".join(step)], [" ".join(target)], types=("rougeL",))["rougeL"] for step in path]

    return {
        "bleu_to_start": bleu_to(start),
        "bleu_to_end": bleu_to(end),
        "rougeL_to_start": rouge_l_to(start),
        "rougeL_to_end": rouge_l_to(end),
        "self_bleu": self_bleu(path, max_order, smooth_method),
        "distinct": {n: distinct_n(path, n) for n in range(1, 5)},
    }
