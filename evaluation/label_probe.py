"""The learning curve of a linear probe of the sentence's label (short_yelp: its sentiment) from the
posterior mean, in ``eval.json``: how much of the label a linear classifier reads off the
representation with few or many labelled sentences, next to collapse and holes.

For each size n of ``sizes`` the probe of :func:`evaluation.probe.probe_accuracy` (scikit-learn's
``LogisticRegression`` on features standardised with the training rows' mean and deviation, so the
scale of the means does not matter, only what they separate) is fitted on the first n sentences of
one seeded permutation of the training split (nested subsets: the 1,000 include the 100), and its
accuracy is measured on the evaluated split. The permutation depends only on the seed and the split size, so
every run of an experiment is probed on the same sentences.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import numpy as np
import torch

from pyro_textvae.data import Corpus, EncodedSplit

from .probe import probe_accuracy

PROBE_SIZES = (100, 1000, 10000)


def probe_positions(num_sentences: int, size: int, seed: int) -> list[int]:
    """The first ``min(size, num_sentences)`` positions of a permutation of ``range(num_sentences)``
    drawn by a ``torch.Generator`` seeded with ``seed``."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(num_sentences, generator=generator)[:size].tolist()


def linear_probe(
    train_features: np.ndarray,
    train_labels: Sequence[str],
    test_features: np.ndarray,
    test_labels: Sequence[str],
    sizes: Sequence[int] = PROBE_SIZES,
    seed: int = 0,
) -> dict:
    """Test accuracy of the probe trained on ``n`` training rows for each ``n`` of ``sizes``.

    Returns ``{"accuracy": {str(n): acc}, "num_train": {str(n): rows used}, "num_test": M,
    "majority": accuracy of always answering the test split's most frequent label}``. A subset
    holding one label only predicts that label."""
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError("linear_probe: features and labels differ in length")
    if not len(test_labels) or not len(train_labels):
        raise ValueError("linear_probe: empty training or test set")
    train_labels, test_labels = np.asarray(train_labels), np.asarray(test_labels)
    majority = Counter(test_labels.tolist()).most_common(1)[0][1] / len(test_labels)
    accuracy, used = {}, {}
    for size in sizes:
        rows = probe_positions(len(train_labels), size, seed)
        labels = train_labels[rows]
        if len(set(labels.tolist())) == 1:
            accuracy[str(size)] = float((test_labels == labels[0]).mean())
        else:
            accuracy[str(size)] = probe_accuracy(train_features[rows], labels.tolist(), test_features,
                                                 test_labels.tolist(), seed)
        used[str(size)] = len(rows)
    return {"accuracy": accuracy, "num_train": used, "num_test": len(test_labels), "majority": majority}


def probe_split(
    corpus: Corpus,
    split: EncodedSplit,
    centers: torch.Tensor,
    sizes: Sequence[int],
    seed: int,
    encode: Callable[[EncodedSplit], torch.Tensor],
) -> dict | None:
    """:func:`linear_probe` trained on the corpus's training split (its posterior centers from
    ``encode``) and tested on ``split`` (centers ``centers``); None when either has no labels or
    ``sizes`` is empty. The result also records ``seed``."""
    train = corpus.splits.get("train")
    if not sizes or split.labels is None or train is None or train.labels is None:
        return None
    features = encode(train).double().cpu().numpy()
    result = linear_probe(features, train.labels, centers.double().cpu().numpy(), split.labels, sizes, seed)
    return {**result, "seed": seed}
