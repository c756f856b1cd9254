"""Posteriors of a trained sentence VAE as ArviZ data, and the per-sentence posteriors behind the pictures.

:func:`to_inference_data` collects, for chosen sentences x_1..x_n of a split,

* ``posterior``: draws z ~ q(z|x_i) of the guide, variable ``z`` with dims
  ``(chain, draw, sentence, latent_dim)``;
* ``prior``: draws z ~ p(z) with the same dims (the model's prior for each sentence's z);
* ``posterior_predictive``: statistics of the sentences greedily decoded from the posterior draws:
  ``length`` (words) and ``overlap`` (token overlap with x_i, :func:`token_overlap`);
* ``prior_predictive``: ``length`` of sentences decoded from the prior draws;
* ``observed_data``: the same statistics of the inputs (``overlap`` of x_i with itself is 1).

The ``sentence`` coordinate holds the sentences' positions in the split; the non-index coordinate
``sentence_text`` holds their text (and ``sentence_label`` their labels where the corpus has them).
Guide draws are independent samples, not a Markov chain: split into pseudo-chains, r_hat is about
1 and ess about the number of draws by construction, so these carry no diagnostic meaning
(:func:`posterior_summary` reports the statistics only). All ArviZ calls for data live here
(pictures: :mod:`evaluation.plots`), so a move to ArviZ 1.x touches two modules.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch.distributions import Independent, Normal

from pyro_textvae.checks import POSITIVE_INT
from pyro_textvae.data import Corpus, EncodedSplit, make_batch
from pyro_textvae.io import file_mode
from pyro_textvae.model import TextVAE
from pyro_textvae.run_folder import Run

from .generation import decode, posterior_center
from .latent_metrics import active_units, hole_metrics, posterior_kl_per_dim

with warnings.catch_warnings():
    warnings.simplefilter("ignore", FutureWarning)
    import arviz as az

if TYPE_CHECKING:
    import pandas

NETCDF_NAME = "inference_data.nc"
GROUPS = ("posterior", "prior", "posterior_predictive", "prior_predictive", "observed_data")
NOT_DIAGNOSTIC = "draws are independent guide samples: r_hat and ess carry no diagnostic meaning"
_DECODE_CHUNK = 1024


def _model_and_corpus(run_or_model, corpus: Corpus | None) -> tuple[TextVAE, Corpus, str]:
    if isinstance(run_or_model, tuple) and len(run_or_model) == 2 and corpus is None:
        run_or_model, corpus = run_or_model
    if isinstance(run_or_model, TextVAE):
        if not isinstance(corpus, Corpus):
            raise TypeError("to_inference_data: with a TextVAE, pass its Corpus as corpus=")
        return run_or_model, corpus, ""
    vae, run_corpus = getattr(run_or_model, "vae", None), getattr(run_or_model, "corpus", None)
    if not isinstance(vae, TextVAE) or not isinstance(run_corpus, Corpus):
        raise TypeError(
            "to_inference_data: run_or_model must be an pyro_textvae.run_folder.Run, a (TextVAE, Corpus) pair or a "
            "TextVAE with corpus=, "
            f"got {type(run_or_model).__name__}"
        )
    return vae, corpus or run_corpus, str(getattr(run_or_model, "path", ""))


def _split(corpus: Corpus, split: str) -> EncodedSplit:
    if split not in corpus.splits:
        raise ValueError(f"split must be one of {sorted(corpus.splits)}, got {split!r}")
    if len(corpus.splits[split]) == 0:
        raise ValueError(f"split {split!r} has no sentences")
    return corpus.splits[split]


def choose_sentences(size: int, sentences: int | Sequence[int], seed: int = 0) -> list[int]:
    """Positions of the chosen sentences in a split of ``size``: an int n draws min(n, size)
    positions without replacement (seeded, returned sorted); a sequence is checked and kept."""
    if isinstance(sentences, bool):
        raise TypeError("sentences must be an int or a sequence of positions, got a bool")
    if isinstance(sentences, int):
        if sentences < 1:
            raise ValueError(f"sentences must be >= 1, got {sentences}")
        generator = torch.Generator().manual_seed(seed)
        return sorted(torch.randperm(size, generator=generator)[: min(sentences, size)].tolist())
    positions = [int(p) for p in sentences]
    if not positions or len(set(positions)) != len(positions) or not all(0 <= p < size for p in positions):
        raise ValueError(f"sentences must be distinct positions in [0, {size}), got {list(sentences)!r}")
    return positions


def token_overlap(candidate: Sequence[int], reference: Sequence[int]) -> float:
    """Multiset token overlap (Dice): 2 sum_w min(c_cand(w), c_ref(w)) / (|cand| + |ref|), in [0, 1];
    1 for two empty sentences."""
    if not candidate and not reference:
        return 1.0
    common = sum((Counter(candidate) & Counter(reference)).values())
    return 2.0 * common / (len(candidate) + len(reference))


def _decode_all(vae: TextVAE, z: torch.Tensor, max_length: int) -> list[list[int]]:
    flat = z.reshape(-1, z.shape[-1])
    out: list[list[int]] = []
    for start in range(0, flat.shape[0], _DECODE_CHUNK):
        out.extend(decode(vae, flat[start : start + _DECODE_CHUNK], "greedy", max_length))
    return out


@torch.no_grad()
def to_inference_data(
    run_or_model: Run | TextVAE | tuple[TextVAE, Corpus],
    corpus: Corpus | None = None,
    split: str = "test",
    sentences: int | Sequence[int] = 16,
    draws: int = 100,
    chains: int = 2,
    seed: int = 0,
    max_length: int | None = None,
) -> az.InferenceData:
    """ArviZ InferenceData of a run's posteriors (groups and dims: see the module docstring).

    :param run_or_model: an :class:`pyro_textvae.run_folder.Run` (from ``open_run``), a ``(TextVAE, Corpus)``
        pair, or a ``TextVAE`` with its ``corpus``.
    :param sentences: how many sentences of ``split`` to draw at random (seeded), or their positions.
    :param draws, chains: ``chains * draws`` independent draws per sentence from q(z|x) and from
        p(z), split into ``chains`` pseudo-chains (r_hat/ess are not diagnostics here).
    :param seed: seeds the choice of sentences and the draws (torch's global RNG is restored).
    :param max_length: most words of a decoded sentence (default: the split's longest + 5).

    ``length`` counts words (``</s>`` excluded); ``overlap`` is :func:`token_overlap` of a
    reconstruction with its input.
    """
    vae, corpus, run_path = _model_and_corpus(run_or_model, corpus)
    data = _split(corpus, split)
    for name, value in (("draws", draws), ("chains", chains)):
        POSITIVE_INT.check(name, value)
    positions = choose_sentences(len(data), sentences, seed)
    ids = [data.ids[p] for p in positions]
    max_length = max_length or max(len(row) for row in data.ids) + 5
    n, total = len(positions), chains * draws
    device = next(vae.parameters()).device
    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            batch = make_batch(ids).to(device)
            z_post = vae.posterior_distribution(batch.tokens, batch.mask).sample((total,))
            z_prior = vae.prior(n, device).sample((total,))
        decoded_post = _decode_all(vae, z_post, max_length)
        decoded_prior = _decode_all(vae, z_prior, max_length)
    finally:
        vae.train(was_training)
    shape = (chains, draws, n)
    reference = [ids[k % n] for k in range(total * n)]
    idata = az.from_dict(
        posterior={"z": z_post.cpu().numpy().reshape(*shape, -1)},
        prior={"z": z_prior.cpu().numpy().reshape(*shape, -1)},
        posterior_predictive={
            "length": np.array([len(row) for row in decoded_post]).reshape(shape),
            "overlap": np.array([token_overlap(row, ref) for row, ref in zip(decoded_post, reference)]).reshape(shape),
        },
        prior_predictive={"length": np.array([len(row) for row in decoded_prior]).reshape(shape)},
        observed_data={"length": np.array([len(row) for row in ids]), "overlap": np.ones(n)},
        coords={"sentence": positions, "latent_dim": list(range(vae.config.latent_dim))},
        dims={"z": ["sentence", "latent_dim"], "length": ["sentence"], "overlap": ["sentence"]},
    )
    texts = [" ".join(data.sentences[p]) for p in positions]
    extra = {"sentence_text": ("sentence", texts)}
    if data.labels is not None:
        extra["sentence_label"] = ("sentence", [data.labels[p] for p in positions])
    attrs = {"split": split, "run": run_path, "note": NOT_DIAGNOSTIC, "seed": seed}
    for group in GROUPS:
        setattr(idata, group, getattr(idata, group).assign_coords(extra).assign_attrs(attrs))
    return idata


def save_inference_data(idata: az.InferenceData, path: str | Path) -> Path:
    """Write ``idata`` as netCDF (h5netcdf) through a temporary file renamed over ``path``; a folder
    ``path`` gets :data:`NETCDF_NAME` inside it. Returns the file's path."""
    path = Path(path)
    if path.is_dir():
        path = path / NETCDF_NAME
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.fchmod(fd, file_mode())  # as every other run file, not mkstemp's 0o600
    os.close(fd)
    try:
        idata.to_netcdf(tmp, engine="h5netcdf")
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def load_inference_data(path: str | Path) -> az.InferenceData:
    """Read a netCDF file written by :func:`save_inference_data` (a folder: its :data:`NETCDF_NAME`),
    loaded into memory so the file is closed on return."""
    path = Path(path)
    if path.is_dir():
        path = path / NETCDF_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no InferenceData file at {str(path)!r}")
    with az.rc_context({"data.load": "eager"}):
        return az.from_netcdf(path, engine="h5netcdf")


def posterior_summary(idata: az.InferenceData, hdi_prob: float = 0.94) -> pandas.DataFrame:
    """``az.summary`` of the posterior ``z`` (mean, sd, HDI) as a pandas DataFrame; the sampling
    diagnostics (r_hat, ess, mcse) are left out because guide draws are independent."""
    if not 0 < hdi_prob < 1:
        raise ValueError(f"hdi_prob must be in (0, 1), got {hdi_prob!r}")
    return az.summary(idata, var_names=["z"], kind="stats", hdi_prob=hdi_prob)


@dataclass
class SplitPosteriors:
    """q(z|x) of every sentence of a split: ``center`` (N, d) (Gaussian mean, vMF mean direction),
    ``scale`` (N, d) for a diagonal Gaussian (None otherwise), one ``draw`` z ~ q(z|x) per
    sentence (N, d), the corpus ``labels`` (None: unlabelled) and ``family`` ("normal" or "vmf")."""

    center: np.ndarray
    scale: np.ndarray | None
    draw: np.ndarray
    labels: list[str] | None
    family: str

    @property
    def latent_dim(self) -> int:
        return self.center.shape[1]


@torch.no_grad()
def encode_split(
    run_or_model: Run | TextVAE | tuple[TextVAE, Corpus],
    corpus: Corpus | None = None,
    split: str = "test",
    batch_size: int = 256,
    seed: int = 0,
) -> SplitPosteriors:
    """Encode every sentence of ``split`` (dropout off) into a :class:`SplitPosteriors`; ``seed``
    seeds the draws (torch's global RNG is restored)."""
    vae, corpus, _ = _model_and_corpus(run_or_model, corpus)
    data = _split(corpus, split)
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    device = next(vae.parameters()).device
    centers, scales, draws = [], [], []
    was_training = vae.training
    vae.eval()
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for start in range(0, len(data), batch_size):
                batch = make_batch(data.ids[start : start + batch_size]).to(device)
                posterior = vae.posterior_distribution(batch.tokens, batch.mask)
                centers.append(posterior_center(posterior))
                draws.append(posterior.sample())
                if isinstance(posterior, Independent) and isinstance(posterior.base_dist, Normal):
                    scales.append(posterior.base_dist.scale.expand_as(centers[-1]))
    finally:
        vae.train(was_training)
    gaussian = vae.config.latent == "normal"
    return SplitPosteriors(
        center=torch.cat(centers).cpu().numpy(),
        scale=torch.cat(scales).cpu().numpy() if gaussian else None,
        draw=torch.cat(draws).cpu().numpy(),
        labels=None if data.labels is None else list(data.labels),
        family=vae.config.latent,
    )


def dimension_statistics(posteriors: SplitPosteriors, num_prior_samples: int = 10_000, seed: int = 0) -> dict:
    """Per latent dimension k (``docs/metrics.md#pictures``), arrays of shape (d,):

    * ``kl``: E_x KL(q(z_k|x) || N(0, 1)) (:func:`posterior_kl_per_dim`), Gaussian posteriors only;
    * ``mean_variance``: Var_x E_q[z_k|x], the active-units statistic (:func:`active_units`);
    * ``marginal_kl``: E_{z~p}[log p(z_k) - log q_D(z_k)] from :func:`hole_metrics` with
      ``num_prior_samples`` prior draws (seeded), Gaussian posteriors only.

    Entries that do not apply (a vMF posterior) are None.
    """
    center = torch.as_tensor(posteriors.center, dtype=torch.float64)
    if center.shape[0] < 2:
        raise ValueError("dimension_statistics needs at least two sentences")
    _, variance = active_units(center)
    stats = {"kl": None, "mean_variance": variance.numpy(), "marginal_kl": None}
    if posteriors.scale is None:
        return stats
    scale = torch.as_tensor(posteriors.scale, dtype=torch.float64)
    stats["kl"] = posterior_kl_per_dim(center, scale).mean(0).numpy()
    prior = Independent(Normal(torch.zeros(center.shape[1], dtype=torch.float64), 1.0), 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        holes = hole_metrics(Independent(Normal(center, scale), 1), prior, num_prior_samples=num_prior_samples)
    stats["marginal_kl"] = np.asarray(holes["marginal_kl"])
    return stats
