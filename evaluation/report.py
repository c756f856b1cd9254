"""Run-level evaluation: every metric of ``docs/metrics.md`` for a trained run, in one call.

:func:`evaluate_run` scores one split of a run folder (the test split by default) and writes
``eval.json`` and ``eval.md`` into the folder (``eval-<split>.json`` / ``.md`` for another split):

* Rec, KL, -ELBO per sentence (one guide sample, :func:`inference.elbo.elbo_terms`);
* NLL per sentence and PPL per token by importance sampling with K samples (``</s>`` counted),
  on the whole split or on a seeded subset of it, and the -ELBO of that same subset;
* MI and AU (with the per-dimension variances) over the whole split;
* the hole metrics joint-KL, marginal-KL and CU(tau) against ``prior_samples`` prior draws, and
  the density-gap estimate of KL(q_D || p) (dimension-wise for Gaussian latents, the paper's
  default, and joint; joint only for vMF), with q_D the aggregated posterior of the N sentences;
* BLEU-1..4 precision / recall / F of greedy decodings of z ~ p(z) against the split;
* interpolation between seeded pairs of sentences at t = 0, 0.1, ..., 1 on the posterior centers;
* where the corpus has labels, the linear probe of the label from the posterior centers
  (:func:`evaluation.label_probe.linear_probe`) trained on 100, 1,000 and 10,000 training sentences.

Every stage reseeds torch's global RNG from ``seed`` (plus the stage number; each importance-
sampling batch from ``seed`` and its number), so a stage's numbers do not depend on which other
stages ran before it, nor the likelihood on how many processes shared it.
"""
from __future__ import annotations

import inspect
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch.distributions import Distribution
from tqdm.auto import tqdm

from inference.density_gap import density_gap_kl
from inference.distributed import rank_and_world_size
from inference.elbo import elbo_terms
from pyro_textvae.checks import POSITIVE_INT, Range, check_value
from pyro_textvae.config import ACTIVE_UNIT_THRESHOLD
from pyro_textvae.data import EncodedSplit, iterate_batches, num_batches
from pyro_textvae.errors import OptionError, OptionName
from pyro_textvae.io import atomic_write_bytes, read_bounded, save_json
from pyro_textvae.model import TextVAE
from pyro_textvae.run_folder import Run

from .distributed_eval import batches_of_rank, sharded_log_likelihood
from .evaluate_memory import check_evaluation_memory, evaluation_estimate
from .evaluate_options import EVALUATE_DEFAULTS
from .generation import decode, posterior_center
from .label_probe import PROBE_SIZES, probe_split
from .latent_metrics import active_units, hole_metrics, mutual_information
from .likelihood import negative_log_likelihood_summary
from .split_posteriors import collect_posteriors, latent_prior
from .tables import eval_filename, evaluation_markdown
from .text_metrics import bleu_precision_recall, interpolation_scores

_OPTIONAL_POSITIVE_INT = Range(int, minimum=1, optional=True)

INTERPOLATION_STEPS = 11
AU_THRESHOLD = ACTIVE_UNIT_THRESHOLD
CU_TAUS = (0.01, 0.03, 0.05, 0.1)


def _check_options(**options: Any) -> None:
    for name, value in options.items():
        if not _OPTIONAL_POSITIVE_INT.contains(value):
            raise OptionError("evaluation option ", OptionName(name),
                              f" must be {POSITIVE_INT.describe()}, got {value!r}")


def iw_subset_positions(num_sentences: int, iw_subset: int | None, seed: int) -> list[int]:
    """The sorted positions of the sentences scored by importance sampling: ``iw_subset`` of
    ``range(num_sentences)`` drawn without replacement by a ``torch.Generator`` seeded with ``seed``,
    or all of them when ``iw_subset`` is None or >= ``num_sentences``."""
    if iw_subset is None or iw_subset >= num_sentences:
        return list(range(num_sentences))
    generator = torch.Generator().manual_seed(seed)
    return sorted(torch.randperm(num_sentences, generator=generator)[:iw_subset].tolist())


def _stage_seed(seed: int, stage: int) -> None:
    torch.manual_seed(seed + stage)


def _subset(split: EncodedSplit, positions: list[int]) -> EncodedSplit:
    labels = None if split.labels is None else [split.labels[i] for i in positions]
    return EncodedSplit([split.sentences[i] for i in positions], [split.ids[i] for i in positions], labels)


@torch.no_grad()
def _elbo_per_sentence(vae: TextVAE, split: EncodedSplit, batch_size: int, device, bar) -> torch.Tensor:
    """(N, 2): reconstruction and KL of every sentence, in the split's order."""
    terms = torch.empty(len(split), 2, dtype=torch.float64)
    for batch in iterate_batches(split, batch_size, shuffle=False):
        batch = batch.to(device)
        values = elbo_terms(vae.model, vae.guide, batch.tokens, batch.mask)
        terms[batch.index.cpu()] = torch.stack([values["reconstruction"], values["kl"]], -1).double().cpu()
        bar.update()
    return terms


def _importance_sampling(vae, split, positions, samples, batch_size, chunk, seed, device, bar) -> dict:
    """NLL / PPL of the sentences at ``positions`` by importance sampling with ``samples`` particles,
    the batches shared out over the ranks of a process group (:mod:`evaluation.distributed_eval`)."""
    scored = _subset(split, positions)
    log_px = sharded_log_likelihood(vae, scored, samples, batch_size, chunk, device, seed=seed,
                                    on_batch=bar.update)
    return negative_log_likelihood_summary(log_px, sum(len(ids) + 1 for ids in scored.ids))


def _greedy_ids(vae: TextVAE, z: torch.Tensor, max_length: int, batch_size: int) -> list[list[int]]:
    """Greedy decodings of the rows of ``z``, ``batch_size`` rows at a time."""
    return [row for start in range(0, z.shape[0], batch_size)
            for row in decode(vae, z[start : start + batch_size], "greedy", max_length)]


def _prior_sampling(run: Run, references: list[list[str]], num_generate: int, max_length: int,
                    batch_size: int, device) -> dict:
    """Greedy decodings of z ~ p(z) scored by BLEU-1..4 precision / recall / F against ``references``.

    An empty decoding has BLEU 0 (it is left out of the BLEU calls, which need tokens, and counted
    as 0 in the precision average); F is recomputed from the adjusted precision."""
    vocab = run.corpus.vocab
    z = latent_prior(run.vae, device).sample((num_generate,))
    sentences = [vocab.decode(ids) for ids in _greedy_ids(run.vae, z, max_length, batch_size)]
    kept = [sentence for sentence in sentences if sentence]
    zeros = {str(n): 0.0 for n in range(1, 5)}
    bleu = {"precision": dict(zeros), "recall": dict(zeros), "f": dict(zeros)}
    if kept:
        scores = bleu_precision_recall(kept, references)
        for n in range(1, 5):
            precision = scores["precision"][n] * len(kept) / len(sentences)
            recall = scores["recall"][n]
            bleu["precision"][str(n)], bleu["recall"][str(n)] = precision, recall
            bleu["f"][str(n)] = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return {
        "num_samples": num_generate,
        "num_empty": len(sentences) - len(kept),
        "max_length": max_length,
        "bleu": bleu,
        "examples": [" ".join(sentence) for sentence in sentences[:10]],
    }


def _interpolation(run: Run, centers: torch.Tensor, references: list[list[str]], num_pairs: int,
                   seed: int, max_length: int, batch_size: int) -> dict:
    """Greedy decodings at mu = (1 - t) mu_a + t mu_b, t = 0, 0.1, ..., 1, for seeded pairs (a, b),
    scored by :func:`evaluation.text_metrics.interpolation_scores` and averaged over pairs
    (``docs/metrics.md#interpolation``). A pair whose path holds an empty decoding is skipped (BLEU needs
    tokens) and counted."""
    generator = torch.Generator().manual_seed(seed)
    pairs = torch.randperm(centers.shape[0], generator=generator)[: 2 * num_pairs].view(num_pairs, 2)
    steps = [k / (INTERPOLATION_STEPS - 1) for k in range(INTERPOLATION_STEPS)]
    t = torch.tensor(steps, dtype=centers.dtype, device=centers.device).view(1, -1, 1)
    start, end = centers[pairs[:, 0].to(centers.device)], centers[pairs[:, 1].to(centers.device)]
    z = ((1 - t) * start.unsqueeze(1) + t * end.unsqueeze(1)).reshape(-1, centers.shape[-1])
    words = [run.corpus.vocab.decode(ids) for ids in _greedy_ids(run.vae, z, max_length, batch_size)]
    paths = [words[i : i + INTERPOLATION_STEPS] for i in range(0, len(words), INTERPOLATION_STEPS)]
    scored, example = [], None
    for (a, b), path in zip(pairs.tolist(), paths):
        if all(path):
            scored.append(interpolation_scores(path, references[a], references[b]))
            example = example or {"start": " ".join(references[a]), "end": " ".join(references[b]),
                                  "path": [" ".join(step) for step in path]}
    result: dict[str, Any] = {"num_pairs": num_pairs, "num_skipped": num_pairs - len(scored),
                              "t": steps, "example": example}
    for key in ("bleu_to_start", "bleu_to_end", "rougeL_to_start", "rougeL_to_end"):
        result[key] = [sum(values) / len(scored) for values in zip(*(s[key] for s in scored))] if scored else None
    for key in ("self_bleu", "distinct"):
        result[key] = {str(n): sum(s[key][n] for s in scored) / len(scored) for n in range(1, 5)} if scored else None
    return result


def _stage_bar(progress: bool, total: int, description: str) -> tqdm:
    """The progress bar of one slow stage, below the evaluation's (gone when the stage ends)."""
    return tqdm(total=total, desc=description, unit="draw", unit_scale=True, position=1, leave=False,
                disable=not progress)


def _latent_metrics(vae: TextVAE, posteriors: Distribution, prior_samples: int, dg_samples: int, seed: int,
                    device, progress: bool) -> dict:
    """MI, AU, the hole metrics and the density-gap KL(q_D || p) of the posteriors of a split: joint
    and dimension-wise ("marginal", the paper's Gaussian default) for Gaussian latents, joint for vMF;
    the hole metrics (a tick per chunk of prior draws) and each density-gap KL (per chunk of posterior
    draws) with a progress bar of their own."""
    _stage_seed(seed, 3)
    mi = mutual_information(posteriors)
    au, variances = active_units(posteriors.mean, AU_THRESHOLD)
    _stage_seed(seed, 4)
    prior = latent_prior(vae, device)
    with _stage_bar(progress, prior_samples, "hole metrics, prior draws") as bar:
        holes = hole_metrics(posteriors, prior, prior_samples, CU_TAUS, on_chunk=bar.update)
    if holes["cu"] is not None:
        holes["cu"] = {f"{tau:g}": count for tau, count in holes["cu"].items()}
    _stage_seed(seed, 5)
    mode = "joint" if vae.config.latent == "vmf" else "marginal"
    kl, draws = {}, dg_samples * posteriors.batch_shape[0]
    for name in dict.fromkeys(("joint", mode)):  # joint first, as the seeded draws were always taken
        with torch.no_grad(), _stage_bar(progress, draws, f"{name} DG-KL, posterior draws") as bar:
            kl[name] = float(density_gap_kl(posteriors, prior, dg_samples, mode=name, on_chunk=bar.update))
    return {
        "mi": mi,
        "active_units": {"au": au, "threshold": AU_THRESHOLD, "variances": variances.tolist()},
        "holes": holes,
        "density_gap": {"kl": kl[mode], "mode": mode, "joint_kl": kl["joint"], "num_samples": dg_samples,
                        "num_posteriors": posteriors.batch_shape[0]},
    }


def evaluate_run(
    run: Run,
    split: str = EVALUATE_DEFAULTS.split,
    iw_samples: int = EVALUATE_DEFAULTS.iw_samples,
    iw_subset: int | None = None,
    prior_samples: int = EVALUATE_DEFAULTS.prior_samples,
    num_generate: int = EVALUATE_DEFAULTS.num_generate,
    num_interpolations: int = EVALUATE_DEFAULTS.num_interpolations,
    seed: int = EVALUATE_DEFAULTS.seed,
    subset_seed: int | None = None,
    progress: bool = True,
    batch_size: int = 256,
    iw_batch_size: int = EVALUATE_DEFAULTS.iw_batch_size,
    iw_chunk: int | None = EVALUATE_DEFAULTS.iw_chunk,
    dg_samples: int = EVALUATE_DEFAULTS.dg_samples,
    max_length: int | None = None,
    probe_sizes: Sequence[int] = PROBE_SIZES,
    checkpoint: str | None = None,
    device: torch.device | str = "cpu",
) -> dict:
    """Every metric of ``docs/metrics.md`` on ``split`` of ``run``; writes ``eval.json`` / ``eval.md``.

    -ELBO = Rec + KL, Rec = -log p(x|z), KL = KL(q(z|x) || p) per sentence (one z ~ q(z|x));
    log p(x) ~= logmeanexp_k [log p(x, z_k) - log q(z_k|x)], K = ``iw_samples`` (on ``iw_subset``
    sentences drawn without replacement by a generator seeded with ``subset_seed``, default ``seed``:
    fix it to score one subset across runs of several seeds; all sentences when None or >= N),
    PPL = exp(sum NLL / sum tokens) counting ``</s>``; MI, AU (threshold 0.01 on the
    variances of E_q[z|x]), joint-KL / marginal-KL / CU(tau) from ``prior_samples`` draws of p
    against q_D, the density-gap KL(q_D || p) with ``dg_samples`` draws per posterior; BLEU of
    ``num_generate`` greedy prior decodings against the split; ``num_interpolations`` seeded
    pairs (at most N // 2). ``max_length`` caps decodings (default: the split's longest sentence).
    ``probe_sizes``: training-set sizes of the linear probe (same sentences for every run: the
    permutation follows ``subset_seed``); skipped (``probe`` None) without labels.
    ``checkpoint`` (which file ``run`` was loaded from) is only recorded. In a process group (``textvae
    evaluate`` under torchrun) the importance-sampling batches are shared out over the ranks
    (:func:`~evaluation.distributed_eval.sharded_log_likelihood`: the same numbers for any number of
    ranks), every rank computes the other, cheaper stages alike, and rank 0 alone writes the files.
    Returns the dict written to ``eval.json`` (keys as strings, as JSON reads them back); its ``settings`` are
    :func:`evaluation_settings` of this call. Refused before anything is allocated when the memory estimate
    (:func:`evaluation.evaluate_memory.evaluation_estimate`) exceeds what the device has available.
    """
    settings = {name: _recorded(value) for name, value in locals().items()
                if name not in _UNRECORDED + _ROUNDING_ONLY}
    _check_options(iw_samples=iw_samples, iw_subset=iw_subset, prior_samples=prior_samples,
                   num_generate=num_generate, num_interpolations=num_interpolations, batch_size=batch_size,
                   iw_batch_size=iw_batch_size, iw_chunk=iw_chunk, dg_samples=dg_samples, max_length=max_length)
    subset_seed = seed if subset_seed is None else subset_seed
    data = _checked_split(run, split, seed, subset_seed, probe_sizes)
    n = len(data)
    train = run.corpus.splits.get("train") if probe_sizes and data.labels is not None else None
    check_evaluation_memory(evaluation_estimate(run.vae, n, len(train or ()), max(len(ids) for ids in data.ids),
                                                iw_samples, iw_batch_size, iw_chunk, prior_samples, device), device)
    positions = iw_subset_positions(n, iw_subset, subset_seed)
    stages = _measure(run, data, positions, seed=seed, subset_seed=subset_seed, iw_samples=iw_samples,
                      iw_batch_size=iw_batch_size, iw_chunk=iw_chunk, prior_samples=prior_samples,
                      dg_samples=dg_samples, num_generate=num_generate, num_interpolations=num_interpolations,
                      max_length=max_length or max(len(ids) for ids in data.ids), batch_size=batch_size,
                      probe_sizes=probe_sizes, progress=progress, device=device)
    stages["likelihood"].update(iw_samples=iw_samples, iw_subset=iw_subset if len(positions) < n else None,
                                subset_seed=subset_seed, neg_elbo=float(stages.pop("terms")[positions].sum(-1).mean()))
    result = {
        "run": str(run.path),
        "split": split,
        "checkpoint": checkpoint,
        "objective": run.config["objective"]["name"],
        "objective_params": run.config["objective"]["params"],
        "seed": run.config["train"].get("seed"),
        "eval_seed": seed,
        "settings": settings,
        "num_sentences": n,
        "num_tokens": sum(len(ids) + 1 for ids in data.ids),
        "elbo": stages.pop("elbo"),
        "likelihood": stages.pop("likelihood"),
        **stages.pop("latent"),
        **stages,
    }
    if rank_and_world_size()[0] == 0:
        save_json(run.path / eval_filename(split), result)
        complete_evaluation(run.path, split, result)
    return result


def complete_evaluation(run_dir: Path, split: str, result: dict) -> bool:
    """Write ``eval.md`` (``eval-<split>.md``) from ``result``, the folder's ``eval.json``, unless it
    already says the same; True when it was (re)written. ``eval.json`` is written first and is the
    record: an evaluation killed between the two files leaves its ``eval.md`` old or missing, and
    whoever reads the pair back next (a rerun of ``experiment``) makes it whole again."""
    path = run_dir / eval_filename(split, "md")
    text = evaluation_markdown(result).encode()
    if path.is_file() and read_bounded(path) == text:
        return False
    atomic_write_bytes(path, text)
    return True


def _checked_split(run: Run, split: str, seed: Any, subset_seed: Any, probe_sizes: Any) -> EncodedSplit:
    """The split :func:`evaluate_run` scores, after its seeds, probe sizes and size are checked."""
    if isinstance(probe_sizes, (str, bytes)) or not isinstance(probe_sizes, Sequence):
        raise ValueError(f"evaluate_run: probe_sizes must be a list of positive ints, got {probe_sizes!r}")
    _check_options(**{f"probe_sizes[{i}]": size for i, size in enumerate(probe_sizes)})
    for name, value in (("seed", seed), ("subset_seed", subset_seed)):
        check_value(f"evaluate_run: {name}", value, int, minimum=0)
    if split not in run.corpus.splits:
        raise ValueError(f"evaluate_run: split {split!r} not in the corpus (has {sorted(run.corpus.splits)})")
    data = run.corpus.splits[split]
    if len(data) < 2:
        raise ValueError(f"evaluate_run: split {split!r} has {len(data)} sentence(s); at least 2 are needed")
    return data


def _measure(run: Run, data: EncodedSplit, positions: list[int], *, seed: int, subset_seed: int, iw_samples: int,
             iw_batch_size: int, iw_chunk: int | None, prior_samples: int, dg_samples: int, num_generate: int,
             num_interpolations: int, max_length: int, batch_size: int, probe_sizes: Sequence[int],
             progress: bool, device) -> dict:
    """The stages of :func:`evaluate_run` in order, each seeded on its own, under one progress bar:
    the per-sentence ``terms`` (Rec, KL) and their means, ``likelihood``, ``latent`` metrics,
    ``prior_sampling``, ``interpolation`` and ``probe``."""
    vae = run.vae.to(device).eval()
    references = [run.corpus.vocab.decode(ids) for ids in data.ids]
    batches = num_batches(data, batch_size)
    rank, world_size = rank_and_world_size()
    scored_batches = batches_of_rank(len(positions), iw_batch_size, rank, world_size)
    bar = tqdm(total=2 * batches + scored_batches + 5, desc="evaluate", disable=not progress or rank > 0)
    stages: dict[str, Any] = {}
    try:
        bar.set_description("posteriors")
        posteriors = collect_posteriors(vae, data, batch_size, device)
        centers = posterior_center(posteriors)
        bar.update(batches)
        bar.set_description("ELBO")
        _stage_seed(seed, 1)
        stages["terms"] = terms = _elbo_per_sentence(vae, data, batch_size, device, bar)
        rec, kl = (float(value) for value in terms.mean(0))
        stages["elbo"] = {"reconstruction": rec, "kl": kl, "neg_elbo": rec + kl}
        bar.set_description("importance sampling")
        stages["likelihood"] = _importance_sampling(vae, data, positions, iw_samples, iw_batch_size, iw_chunk, seed,
                                                    device, bar)
        bar.set_description("latent metrics")
        stages["latent"] = _latent_metrics(vae, posteriors, prior_samples, dg_samples, seed, device,
                                           progress and rank == 0)
        bar.update(3)
        bar.set_description("prior sampling")
        _stage_seed(seed, 6)
        stages["prior_sampling"] = _prior_sampling(run, references, num_generate, max_length, batch_size, device)
        bar.update()
        bar.set_description("interpolation")
        stages["interpolation"] = _interpolation(run, centers, references, min(num_interpolations, len(data) // 2),
                                                 seed, max_length, batch_size)
        bar.update()
        bar.set_description("linear probe")

        def encode(split):
            return posterior_center(collect_posteriors(vae, split, batch_size, device))

        stages["probe"] = probe_split(run.corpus, data, centers, probe_sizes, subset_seed, encode)
    finally:
        bar.close()
    return stages


_UNRECORDED = ("run", "progress", "device")
_ROUNDING_ONLY = ("iw_chunk",)  # options that change no number beyond float rounding: not recorded


def _recorded(value: Any) -> Any:
    """A setting as ``eval.json`` holds it (a tuple as a list), so stored and wanted ones compare equal."""
    return list(value) if isinstance(value, tuple) else value


def evaluation_settings(**options: Any) -> dict[str, Any]:
    """The options of :func:`evaluate_run` that decide its numbers, defaults filled in: what
    ``eval.json`` records as ``settings`` (``run``, ``progress``, ``device`` and ``iw_chunk``, which
    changes only the rounding, are left out).
    An unknown option raises ``ValueError`` naming it."""
    signature = inspect.signature(evaluate_run)
    unknown = sorted((set(options) - set(signature.parameters)) | (set(options) & set(_UNRECORDED)))
    if unknown:
        valid = sorted(set(signature.parameters) - set(_UNRECORDED))
        raise ValueError(f"unknown evaluation option(s) {unknown}; valid: {valid}")
    return {name: _recorded(options.get(name, parameter.default))
            for name, parameter in signature.parameters.items() if name not in _UNRECORDED + _ROUNDING_ONLY}
