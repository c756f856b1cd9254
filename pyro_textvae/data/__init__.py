"""Text data for sentence VAEs: vocabulary, corpus files, padded batches, a synthetic corpus."""

from .batching import Batch, iterate_batches, make_batch, num_batches, padding_fraction
from .corpus import Corpus, CorpusError, EncodedSplit, Split, read_split
from .synthetic import synthetic_corpus, synthetic_splits, write_synthetic
from .vocab import BOS_ID, EOS_ID, PAD_ID, UNK_ID, Vocab

__all__ = [
    "Vocab",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "CorpusError",
    "Split",
    "EncodedSplit",
    "Corpus",
    "read_split",
    "Batch",
    "make_batch",
    "iterate_batches",
    "num_batches",
    "padding_fraction",
    "synthetic_corpus",
    "synthetic_splits",
    "write_synthetic",
]
