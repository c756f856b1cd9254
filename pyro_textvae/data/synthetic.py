"""A synthetic corpus drawn from a known latent-variable process, for tests and sanity runs.

Generative process (every draw from ``numpy.random.default_rng([seed, split])``, split 0/1/2 for
train/valid/test, so a split does not change when another split's size does):

1. **Lexicon** (fixed, independent of the seed): topic ``k`` owns ``NOUNS_PER_TOPIC`` nouns and
   ``VERBS_PER_TOPIC`` verbs, readable pseudo-words of two or three consonant-vowel syllables
   (``"rotamu"``), unique across topics; the lexicon of K topics is a prefix of that of K + 1.
   Shared by all sentences: function words, ``POSITIVE``/``NEGATIVE`` adjectives and the
   sentiment verbs ``LIKES``/``DISLIKES``.
2. For each sentence, independently: topic ``t ~ Uniform{0..K-1}``, sentiment
   ``s ~ Uniform{pos, neg}`` and a template ``T ~ Uniform(TEMPLATES)``.
3. The template's slots are filled: ``{N}`` a noun of topic ``t`` and ``{V}`` a verb of topic
   ``t``, each drawn from a Zipf law ``P(rank r) proportional to (r + 1)^-ZIPF_EXPONENT`` over the
   topic's list; ``{A}`` a uniform adjective of sentiment ``s``; ``{L}`` a uniform sentiment verb
   of ``s``; ``{E}`` the final mark, ``"!"`` with probability 0.6 (pos) or 0.2 (neg), else ``"."``.
4. Extra clauses, each drawn uniformly from ``CLAUSES`` (``", and the {N} was {A}"``,
   ``"with the {N}"``, ``"and {V} it"``), are inserted before ``{E}``: one more with probability
   1/2 each time (a geometric number), stopping at the first that would exceed ``MAX_TOKENS``.

Sentences have 4 to 20 tokens; K topics use ``50 K + 54`` word types (a vocabulary of 258 with
the four specials for K = 4), which a few thousand sentences all contain. The label of a
sentence records its true factors: ``"topic{t}-{s}"``, e.g. ``"topic2-pos"`` (:func:`parse_label`).
"""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np

from ..demo import SYNTHETIC_MAX_TRAIN, SYNTHETIC_SIZES
from ..io import atomic_write_bytes
from .corpus import SPLIT_NAMES, Corpus, Split
from .vocab import _check_count

NOUNS_PER_TOPIC = 40
VERBS_PER_TOPIC = 10
MAX_TOPICS = 50
ZIPF_EXPONENT = 1.1
MAX_TOKENS = 20
LEXICON_SEED = 20221101
CONSONANTS = "bdfgklmnprstvz"
VOWELS = "aeiou"
POSITIVE = ("good", "great", "nice", "lovely", "fresh", "friendly", "excellent", "amazing",
            "perfect", "tasty", "clean", "pleasant", "wonderful", "fantastic", "superb")
NEGATIVE = ("bad", "awful", "rude", "dirty", "cold", "bland", "slow", "terrible", "horrible",
            "stale", "noisy", "greasy", "poor", "boring", "sloppy")
LIKES = ("love", "like", "enjoy")
DISLIKES = ("hate", "dislike", "regret")
TEMPLATES = (
    "very {A} {N} {E}",
    "the {N} was {A} {E}",
    "i {L} the {N} {E}",
    "we {V} the {N} and it was very {A} {E}",
    "the {N} and the {N} were really {A} {E}",
    "my {N} {V} the {A} {N} , so i {L} it {E}",
    "this {N} is {A} and the {N} is {A} too {E}",
)
CLAUSES = (", and the {N} was {A}", "with the {N}", "and {V} it")
SENTIMENTS = ("pos", "neg")


def topic_lexicon(num_topics: int) -> list[dict[str, list[str]]]:
    """Per topic, its ``"nouns"`` and ``"verbs"`` (pseudo-words, most frequent first); step 1 above."""
    _check_count(num_topics, "num_topics", 1)
    if num_topics > MAX_TOPICS:
        raise ValueError(f"num_topics must be at most {MAX_TOPICS}, got {num_topics}")
    draw = random.Random(LEXICON_SEED)
    taken: set[str] = set()
    lexicon = []
    for _ in range(num_topics):
        words = []
        while len(words) < NOUNS_PER_TOPIC + VERBS_PER_TOPIC:
            syllables = draw.choice((2, 2, 3))
            word = "".join(draw.choice(CONSONANTS) + draw.choice(VOWELS) for _ in range(syllables))
            if word not in taken:
                taken.add(word)
                words.append(word)
        lexicon.append({"nouns": words[:NOUNS_PER_TOPIC], "verbs": words[NOUNS_PER_TOPIC:]})
    return lexicon


def parse_label(label: str) -> tuple[int, str]:
    """``"topic2-pos"`` -> ``(2, "pos")``; ``ValueError`` for anything else."""
    head, _, sentiment = label.partition("-")
    if not head.startswith("topic") or not head[5:].isdigit() or sentiment not in SENTIMENTS:
        raise ValueError(f"not a synthetic label: {label!r}")
    return int(head[5:]), sentiment


def _zipf(size: int) -> np.ndarray:
    """Zipf probabilities over ranks 0..size-1: ``(r + 1)^-ZIPF_EXPONENT``, normalised."""
    weights = np.arange(1, size + 1, dtype=float) ** -ZIPF_EXPONENT
    return weights / weights.sum()


NOUN_PROBS = _zipf(NOUNS_PER_TOPIC)
VERB_PROBS = _zipf(VERBS_PER_TOPIC)


def _sentence(rng: np.random.Generator, topic: dict[str, list[str]], positive: bool) -> list[str]:
    """Steps 3-4: fill a uniformly drawn template for one topic and sentiment."""
    template = TEMPLATES[rng.integers(len(TEMPLATES))].split()
    while rng.random() < 0.5:
        clause = CLAUSES[rng.integers(len(CLAUSES))].split()
        if len(template) + len(clause) > MAX_TOKENS:
            break
        template = template[:-1] + clause + template[-1:]
    adjectives, verbs = (POSITIVE, LIKES) if positive else (NEGATIVE, DISLIKES)
    fill = {
        "{N}": lambda: topic["nouns"][rng.choice(NOUNS_PER_TOPIC, p=NOUN_PROBS)],
        "{V}": lambda: topic["verbs"][rng.choice(VERBS_PER_TOPIC, p=VERB_PROBS)],
        "{A}": lambda: adjectives[rng.integers(len(adjectives))],
        "{L}": lambda: verbs[rng.integers(len(verbs))],
        "{E}": lambda: "!" if rng.random() < (0.6 if positive else 0.2) else ".",
    }
    return [fill[token]() if token in fill else token for token in template]


def synthetic_splits(
    num_train: int = SYNTHETIC_SIZES["num_train"],
    num_valid: int = SYNTHETIC_SIZES["num_valid"],
    num_test: int = SYNTHETIC_SIZES["num_test"],
    num_topics: int = SYNTHETIC_SIZES["num_topics"],
    seed: int = 0,
) -> dict[str, Split]:
    """Train/valid/test :class:`Split` drawn from the process above; labels are the true factors.
    The default sizes are the main job's (:data:`pyro_textvae.demo.SYNTHETIC_SIZES`)."""
    sizes = {"train": num_train, "valid": num_valid, "test": num_test}
    for name, size in sizes.items():
        _check_count(size, f"num_{name}", 1)
        if size > SYNTHETIC_MAX_TRAIN:
            raise ValueError(f"num_{name} must be <= {SYNTHETIC_MAX_TRAIN:,} (the synthetic corpus is drawn in "
                             f"memory), got {size:,}")
    _check_count(seed, "seed", 0)
    lexicon = topic_lexicon(num_topics)
    splits = {}
    for split_id, name in enumerate(SPLIT_NAMES):
        rng = np.random.default_rng([seed, split_id])
        sentences, labels = [], []
        for _ in range(sizes[name]):
            topic, positive = int(rng.integers(num_topics)), bool(rng.integers(2) == 0)
            sentences.append(_sentence(rng, lexicon[topic], positive))
            labels.append(f"topic{topic}-{SENTIMENTS[0] if positive else SENTIMENTS[1]}")
        splits[name] = Split(sentences=sentences, labels=labels, path=None)
    return splits


def synthetic_corpus(
    num_train: int = SYNTHETIC_SIZES["num_train"],
    num_valid: int = SYNTHETIC_SIZES["num_valid"],
    num_test: int = SYNTHETIC_SIZES["num_test"],
    num_topics: int = SYNTHETIC_SIZES["num_topics"],
    seed: int = 0,
    max_length: int | None = None,
) -> Corpus:
    """:func:`synthetic_splits` encoded with a vocabulary built from its train split."""
    splits = synthetic_splits(num_train, num_valid, num_test, num_topics, seed)
    return Corpus.from_splits(splits, max_length=max_length)


def write_synthetic(folder: str | os.PathLike[str], **kwargs: int) -> Path:
    """Write :func:`synthetic_splits` (``**kwargs`` passed on) as ``folder/{train,valid,test}.txt``
    in the ``label<TAB>sentence`` format that :func:`pyro_textvae.data.read_split` reads back exactly; returns the
    folder."""
    root = Path(folder)
    root.mkdir(parents=True, exist_ok=True)
    for name, split in synthetic_splits(**kwargs).items():
        lines = (f"{label}\t{' '.join(tokens)}\n" for label, tokens in zip(split.labels, split.sentences))
        atomic_write_bytes(root / f"{name}.txt", "".join(lines).encode("utf-8"))
    return root
