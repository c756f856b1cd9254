"""DensityGapELBO against Trace_ELBO on a text VAE that collapses under the plain ELBO."""
from __future__ import annotations

from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.io import read_jsonl

DATA = {"synthetic": {"num_train": 256, "num_valid": 128, "num_test": 32, "seed": 1}}
MODEL = {"embed_dim": 16, "hidden_dim": 32, "latent_dim": 4}


def _active_units(tmp_path, objective):
    config = TrainConfig(epochs=16, batch_size=32, optimizer="adam", lr=5e-3, progress=False, seed=0)
    new_trainer(tmp_path / objective, DATA, MODEL, objective, {"warmup_epochs": 2}, config).fit()
    return [record["valid_active_units"] for record in read_jsonl(tmp_path / objective / "metrics.jsonl")]


def test_density_gap_keeps_active_units_where_the_elbo_collapses(tmp_path):
    elbo = _active_units(tmp_path, "elbo")
    dg = _active_units(tmp_path, "dg")
    assert max(elbo[-4:]) == 0, f"the plain VAE should collapse in this setting: {elbo}"
    assert min(dg[-4:]) >= 2, f"DG-VAE should keep latent units active: {dg}"
