"""Shared fixtures: a small synthetic corpus and a small TextVAE (sizes cut for speed).

Tests run torch on one thread: their tensors are small, and two threads on a busy 2-core
machine are many times slower than one.
"""
from __future__ import annotations

import signal
from pathlib import Path

import pyro
import pytest
import torch

from pyro_textvae.data import synthetic_corpus
from pyro_textvae.model import TextVAE, TextVAEConfig

torch.set_num_threads(1)

SHORT_YELP = Path(__file__).resolve().parents[2] / "shared" / "data" / "short_yelp"
SMALL = {"embed_dim": 16, "hidden_dim": 32, "latent_dim": 4}


@pytest.fixture(autouse=True)
def _fresh_pyro_state():
    pyro.clear_param_store()
    pyro.enable_validation(True)
    torch.manual_seed(0)
    yield
    pyro.clear_param_store()


@pytest.fixture(scope="session")
def tiny_corpus():
    return synthetic_corpus(num_train=160, num_valid=40, num_test=40, seed=3)


@pytest.fixture
def tiny_vae(tiny_corpus):
    torch.manual_seed(0)
    return TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), **SMALL))


@pytest.fixture
def deadline():
    """Fail instead of hanging: a test blocked (on a FIFO) is interrupted after 60 s."""
    def timeout(*_):
        raise AssertionError("blocked for 60 s (on a FIFO?)")

    previous = signal.signal(signal.SIGALRM, timeout)
    signal.alarm(60)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, previous)
