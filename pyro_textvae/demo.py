"""The main job's defaults, in one place and importable without torch: what ``textvae train`` trains
when no ``--data`` is given (the embedded synthetic corpus, :mod:`pyro_textvae.data.synthetic`).

They are sized so that ``textvae train --objective dg --out runs/demo --seed 0`` ends in a few minutes
(2 min 47 s of CPU time on one thread, measured) with a model whose reconstructions follow the input's
template, length and sentiment: 10,000 training sentences (2,000 were learned in three epochs, then
overfitted), an LSTM of 256 units instead of the paper's 512, and Adam at 1e-3 (as the short_yelp
protocol, ``examples/short_yelp.toml``). The objective's 10-epoch KL warm-up ends with the run.
Every option the user gives overrides these; with ``--data`` the paper's defaults
(:class:`pyro_textvae.config.TextVAEConfig`, :class:`inference.train_config.TrainConfig`) hold.
"""
from __future__ import annotations

SYNTHETIC_SIZES = {"num_train": 10_000, "num_valid": 500, "num_test": 500, "num_topics": 4}
SYNTHETIC_DEFAULTS = {**SYNTHETIC_SIZES, "seed": 0}  # the synthetic corpus a run's config names
SYNTHETIC_MAX_TRAIN = 1_000_000  # 100 x the default: minutes and about 2 GB to draw; more never finishes
SYNTHETIC_EPOCHS = 10
SYNTHETIC_MODEL = {"hidden_dim": 256}
SYNTHETIC_OPTIMIZER = "adam"
