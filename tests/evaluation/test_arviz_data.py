"""InferenceData export: groups, dims, shapes, sentence coordinates, draws tied to the right
sentences, predictive statistics recomputed independently, netCDF round trip, per-dimension
statistics against closed forms."""

import math
import stat

import numpy as np
import pytest
import torch
import xarray as xr

from evaluation.arviz_data import (
    GROUPS,
    NETCDF_NAME,
    choose_sentences,
    dimension_statistics,
    encode_split,
    load_inference_data,
    posterior_summary,
    save_inference_data,
    to_inference_data,
    token_overlap,
)
from evaluation.generation import decode
from pyro_textvae.data import make_batch
from pyro_textvae.io import file_mode, save_json
from pyro_textvae.run_folder import Run


@pytest.fixture
def sharp_vae(tiny_vae):
    """q(z|x) with sigma = exp(-30): every draw equals the posterior mean in float32."""
    d = tiny_vae.config.latent_dim
    with torch.no_grad():
        tiny_vae.posterior.linear.weight[d:] = 0.0
        tiny_vae.posterior.linear.bias[d:] = -60.0
    return tiny_vae.eval()


def _loc(vae, ids):
    batch = make_batch([ids])
    with torch.no_grad():
        return vae.posterior_distribution(batch.tokens, batch.mask).base_dist.loc[0]


def test_groups_dims_shapes_and_sentence_coordinates(tiny_vae, tiny_corpus, tmp_path):
    run = Run(tmp_path, {}, tiny_corpus, tiny_vae)
    idata = to_inference_data(run, split="test", sentences=5, draws=7, chains=3, seed=1)
    d = tiny_vae.config.latent_dim
    assert set(idata.groups()) == set(GROUPS)
    for group in ("posterior", "prior"):
        z = getattr(idata, group)["z"]
        assert z.dims == ("chain", "draw", "sentence", "latent_dim") and z.shape == (3, 7, 5, d)
    for var in ("length", "overlap"):
        assert idata.posterior_predictive[var].dims == ("chain", "draw", "sentence")
        assert idata.posterior_predictive[var].shape == (3, 7, 5)
        assert idata.observed_data[var].dims == ("sentence",)
    assert idata.prior_predictive["length"].shape == (3, 7, 5)
    split = tiny_corpus.splits["test"]
    positions = choose_sentences(len(split), 5, seed=1)
    for group in GROUPS:
        data = getattr(idata, group)
        assert data["sentence"].values.tolist() == positions
        assert data["sentence_text"].values.tolist() == [" ".join(split.sentences[p]) for p in positions]
        assert data["sentence_label"].values.tolist() == [split.labels[p] for p in positions]
    assert idata.observed_data["length"].values.tolist() == [len(split.ids[p]) for p in positions]
    np.testing.assert_array_equal(idata.observed_data["overlap"].values, 1.0)
    assert idata.posterior.attrs["run"] == str(tmp_path) and "no diagnostic meaning" in idata.posterior.attrs["note"]


def test_posterior_draws_and_reconstructions_belong_to_their_sentences(sharp_vae, tiny_corpus):
    split = tiny_corpus.splits["test"]
    positions = [3, 0, 17]
    idata = to_inference_data(sharp_vae, tiny_corpus, sentences=positions, draws=4, chains=2, max_length=12)
    for k, p in enumerate(positions):
        loc = _loc(sharp_vae, split.ids[p])
        z = torch.as_tensor(idata.posterior["z"].sel(sentence=p).values)
        torch.testing.assert_close(z, loc.expand_as(z), rtol=1e-5, atol=1e-6)
        words = decode(sharp_vae, loc.unsqueeze(0), "greedy", 12)[0]
        np.testing.assert_array_equal(idata.posterior_predictive["length"].sel(sentence=p).values, len(words))
        np.testing.assert_allclose(
            idata.posterior_predictive["overlap"].sel(sentence=p).values, token_overlap(words, split.ids[p])
        )


def test_prior_draws_are_standard_normal_and_prior_predictive_decodes_them(tiny_vae, tiny_corpus):
    idata = to_inference_data(tiny_vae, tiny_corpus, sentences=4, draws=250, chains=2, max_length=10)
    z = idata.prior["z"].values
    n = z.size
    assert abs(z.mean()) < 4 / math.sqrt(n) and abs(z.var() - 1) < 4 * math.sqrt(2 / n)
    first = torch.as_tensor(idata.prior["z"].isel(chain=0, draw=slice(0, 3)).values).reshape(-1, z.shape[-1])
    lengths = [len(words) for words in decode(tiny_vae, first, "greedy", 10)]
    assert idata.prior_predictive["length"].isel(chain=0, draw=slice(0, 3)).values.ravel().tolist() == lengths


def test_same_seed_same_data_and_global_rng_untouched(tiny_vae, tiny_corpus):
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    first = to_inference_data(tiny_vae, tiny_corpus, sentences=3, draws=5, seed=2)
    assert torch.equal(torch.rand(3), expected_next)
    second = to_inference_data((tiny_vae, tiny_corpus), sentences=3, draws=5, seed=2)
    for group in GROUPS:
        xr.testing.assert_identical(getattr(first, group).drop_attrs(), getattr(second, group).drop_attrs())


def test_netcdf_round_trip_preserves_every_group(tiny_vae, tiny_corpus, tmp_path):
    idata = to_inference_data(tiny_vae, tiny_corpus, sentences=4, draws=6)
    path = save_inference_data(idata, tmp_path)
    assert path == tmp_path / NETCDF_NAME
    save_json(tmp_path / "config.json", {})
    assert stat.S_IMODE(path.stat().st_mode) == stat.S_IMODE((tmp_path / "config.json").stat().st_mode) == file_mode()
    back = load_inference_data(tmp_path)
    assert set(back.groups()) == set(GROUPS)
    for group in GROUPS:
        xr.testing.assert_equal(getattr(back, group), getattr(idata, group))
        texts = getattr(idata, group)["sentence_text"].values.tolist()
        assert getattr(back, group)["sentence_text"].values.tolist() == texts
    assert back.posterior.attrs["note"] == idata.posterior.attrs["note"]
    with pytest.raises(FileNotFoundError):
        load_inference_data(tmp_path / "missing.nc")


def test_summary_has_the_statistics_of_the_draws_and_no_diagnostics(tiny_vae, tiny_corpus):
    idata = to_inference_data(tiny_vae, tiny_corpus, sentences=3, draws=20)
    summary = posterior_summary(idata)
    assert len(summary) == 3 * tiny_vae.config.latent_dim
    assert not {"r_hat", "ess_bulk", "ess_tail", "mcse_mean"} & set(summary.columns)
    means = idata.posterior["z"].mean(("chain", "draw")).values.ravel()
    np.testing.assert_allclose(summary["mean"].values, means, atol=1e-3)


def test_token_overlap_counts_shared_tokens_with_multiplicity():
    assert token_overlap([1, 2, 2, 3], [2, 2, 4]) == pytest.approx(2 * 2 / 7)
    assert token_overlap([5, 6], [6, 5]) == 1.0
    assert token_overlap([5], [6]) == 0.0
    assert token_overlap([], []) == 1.0


def test_choose_sentences():
    chosen = choose_sentences(50, 10, seed=3)
    assert chosen == sorted(set(chosen)) and len(chosen) == 10 and all(0 <= p < 50 for p in chosen)
    assert chosen == choose_sentences(50, 10, seed=3) != choose_sentences(50, 10, seed=4)
    assert choose_sentences(4, 10) == [0, 1, 2, 3]
    assert choose_sentences(9, [7, 2]) == [7, 2]
    for bad in ([1, 1], [9], [], 0):
        with pytest.raises(ValueError, match="sentences"):
            choose_sentences(9, bad)


def test_bad_input_is_refused(tiny_vae, tiny_corpus):
    with pytest.raises(TypeError, match="corpus"):
        to_inference_data(tiny_vae)
    with pytest.raises(TypeError, match="run_or_model"):
        to_inference_data("runs/x")
    with pytest.raises(ValueError, match="split"):
        to_inference_data(tiny_vae, tiny_corpus, split="dev")
    with pytest.raises(ValueError, match="draws"):
        to_inference_data(tiny_vae, tiny_corpus, draws=0)


def test_encode_split_keeps_the_split_order(tiny_vae, tiny_corpus):
    split = tiny_corpus.splits["valid"]
    posteriors = encode_split(tiny_vae, tiny_corpus, split="valid", batch_size=7)
    assert posteriors.center.shape == (len(split), tiny_vae.config.latent_dim) == posteriors.draw.shape
    assert posteriors.labels == split.labels and posteriors.family == "normal"
    for p in (0, 8, len(split) - 1):
        batch = make_batch([split.ids[p]])
        with torch.no_grad():
            q = tiny_vae.posterior_distribution(batch.tokens, batch.mask).base_dist
        np.testing.assert_allclose(posteriors.center[p], q.loc[0].numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(posteriors.scale[p], q.scale[0].numpy(), rtol=1e-4, atol=1e-5)


def test_dimension_statistics_against_closed_forms(tiny_vae, tiny_corpus):
    posteriors = encode_split(tiny_vae, tiny_corpus)
    rng = np.random.default_rng(0)
    posteriors.center = rng.normal(size=(30, 3))
    posteriors.scale = rng.uniform(0.3, 1.5, size=(30, 3))
    stats = dimension_statistics(posteriors, num_prior_samples=2000)
    mu, s = posteriors.center, posteriors.scale
    np.testing.assert_allclose(stats["kl"], (0.5 * (mu**2 + s**2 - 1) - np.log(s)).mean(0), rtol=1e-10)
    np.testing.assert_allclose(stats["mean_variance"], mu.var(0, ddof=1), rtol=1e-10)
    # every posterior N(0, 2^2): q_D,k = N(0, 4) and KL(N(0, 1) || N(0, 4)) = log 2 + 1/8 - 1/2
    posteriors.center, posteriors.scale = np.zeros((30, 3)), np.full((30, 3), 2.0)
    marginal = dimension_statistics(posteriors, num_prior_samples=20_000)["marginal_kl"]
    # per-sample sd of log N(z;0,1) - log N(z;0,4) is sqrt(2) * 3/8 = 0.53: standard error 0.004
    np.testing.assert_allclose(marginal, math.log(2) + 1 / 8 - 1 / 2, atol=0.02)


def test_collapsed_model_has_zero_kl_variance_and_marginal_kl(tiny_vae, tiny_corpus):
    with torch.no_grad():
        tiny_vae.posterior.linear.weight.zero_()
        tiny_vae.posterior.linear.bias.zero_()
    stats = dimension_statistics(encode_split(tiny_vae, tiny_corpus), num_prior_samples=2000)
    np.testing.assert_array_equal(stats["kl"], 0.0)
    np.testing.assert_array_equal(stats["mean_variance"], 0.0)
    np.testing.assert_allclose(stats["marginal_kl"], 0.0, atol=1e-9)
