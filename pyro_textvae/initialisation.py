"""The start of training: the parameters as the DG-VAE paper's code draws them (``init="paper"``).

PyTorch's defaults (``init="pytorch"``) draw embeddings from N(0, 1) and LSTM and linear weights and
biases from U(-1/sqrt(fan_in), 1/sqrt(fan_in)). The code of the DG-VAE paper (and of the lagging-encoder
and BN-VAE papers it builds on) draws every parameter from U(-0.01, 0.01) and the word embeddings from
U(-0.1, 0.1), and its posterior head, the decoder's z-to-state map and its output layer have no bias
(:attr:`~pyro_textvae.config.TextVAEConfig.linear_bias`). At that start the posterior means of
different sentences are almost equal, so a run begins collapsed; ``docs/maths.md#initialisation``
says what each start does to each method.
"""
from __future__ import annotations

import torch
from torch import nn

PAPER_PARAMETER_BOUND = 0.01  # every parameter ~ U(-0.01, 0.01)
PAPER_EMBEDDING_BOUND = 0.1  # word embeddings ~ U(-0.1, 0.1)


@torch.no_grad()
def initialise_as_paper(module: nn.Module) -> None:
    """Redraw every parameter of ``module`` from U(-0.01, 0.01), then the weights of its
    ``nn.Embedding`` s from U(-0.1, 0.1); an embedding's padding row stays 0 (it is never read, and
    ``padding_idx`` keeps it out of every gradient)."""
    for parameter in module.parameters():
        parameter.uniform_(-PAPER_PARAMETER_BOUND, PAPER_PARAMETER_BOUND)
    for layer in module.modules():
        if isinstance(layer, nn.Embedding):
            layer.weight.uniform_(-PAPER_EMBEDDING_BOUND, PAPER_EMBEDDING_BOUND)
            if layer.padding_idx is not None:
                layer.weight[layer.padding_idx].zero_()
