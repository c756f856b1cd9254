"""Run folders: one folder per training run holding its config, vocabulary, metrics and checkpoints.

``config.json`` records everything needed to rebuild the run: the data source (a corpus folder or
the synthetic generator's arguments), the model options, the objective and its parameters, and the
training options (seed included). ``vocab.json`` is the training vocabulary, so a run folder alone
reconstructs the model, resumes training (``--resume``) and is evaluated.

Under ``torchrun`` (``TrainConfig.distributed``) rank 0 alone creates the folder, reads and writes
its files and hands the vocabulary, config and errors to the other ranks, so the run folder only
has to exist on rank 0's machine (the corpus must be readable by every rank).
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_textvae.data import Corpus, CorpusError, Vocab, synthetic_splits
from pyro_textvae.data.corpus import LABEL_MODES
from pyro_textvae.data.synthetic import MAX_TOPICS
from pyro_textvae.io import (
    CheckpointError,
    check_state_dict,
    dataclass_from_dict,
    load_checkpoint,
    load_json,
    save_json,
)
from pyro_textvae.lock import LOCK_NAME, FolderLock
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.precision import (
    DEFAULT_PRECISION,
    check_precision,
    effective_precision,
)

from .distributed import (
    broadcast_from_rank_zero,
    init_process_group,
    resolve_device,
)
from .memory import FLOAT_BYTES, check_memory, parameter_count, training_estimate
from .objectives import get_objective
from .train_config import SYNTHETIC_DEFAULTS, TrainConfig, launched_by_torchrun
from .tensorboard import TENSORBOARD_DIR
from .trainer import Trainer

CONFIG_VERSION = 1


DATA_COUNTS = {"min_count": 1, "max_vocab": 0, "max_length": 1}  # option: its least value (None allowed)
DATA_KEYS = {"path", "labels", "synthetic", *DATA_COUNTS}


def _count_error(value: Any, minimum: int, allow_none: bool) -> str | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        return f"must be an integer >= {minimum}{' or None' if allow_none else ''}, got {value!r}"
    return None


def check_data_options(data: Any, where: str = "data options") -> None:
    """Refuse a data config that :func:`load_corpus` would misread: unknown keys (a typo would
    otherwise fall back to the synthetic corpus), both or an empty ``path``, a ``labels`` mode,
    count or ``synthetic`` argument of the wrong kind; ``ValueError`` names ``where`` and the key."""
    if not isinstance(data, dict):
        raise ValueError(f"{where} must be a table of options, got {type(data).__name__}")
    unknown = sorted(set(data) - DATA_KEYS)
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; valid: {sorted(DATA_KEYS)}")
    if "path" in data and (not isinstance(data["path"], str) or not data["path"]):
        raise ValueError(f"{where}: path must be a corpus folder, got {data['path']!r}")
    if "path" in data and "synthetic" in data:
        raise ValueError(f"{where}: path and synthetic exclude each other (a corpus folder or the synthetic one)")
    if data.get("labels", "auto") not in LABEL_MODES:
        raise ValueError(f"{where}: labels must be one of {list(LABEL_MODES)}, got {data['labels']!r}")
    for key, minimum in DATA_COUNTS.items():
        problem = _count_error(data.get(key), minimum, allow_none=True)
        if problem:
            raise ValueError(f"{where}: {key} {problem}")
    synthetic = data.get("synthetic") or {}
    if not isinstance(synthetic, dict):
        raise ValueError(f"{where}: synthetic must be a table of {sorted(SYNTHETIC_DEFAULTS)}, got {synthetic!r}")
    unknown = sorted(set(synthetic) - set(SYNTHETIC_DEFAULTS))
    if unknown:
        raise ValueError(f"{where}: unknown synthetic key(s) {unknown}; valid: {sorted(SYNTHETIC_DEFAULTS)}")
    for key, value in synthetic.items():
        problem = _count_error(value, 0 if key == "seed" else 1, allow_none=False)
        if problem or (key == "num_topics" and value > MAX_TOPICS):
            raise ValueError(f"{where}: synthetic {key} {problem or f'must be at most {MAX_TOPICS}, got {value}'}")


def load_corpus(data: dict[str, Any], vocab: Vocab | None = None, where: str = "data options") -> Corpus:
    """The corpus a run's ``data`` config names: ``{"path": DIR}`` or ``{"synthetic": {...}}``, with
    ``labels``, ``min_count`` (None: 1), ``max_vocab`` and ``max_length``; checked first by
    :func:`check_data_options` (``where`` names the config in its errors)."""
    check_data_options(data, where)
    options = {k: data.get(k) for k in DATA_COUNTS}
    options["min_count"] = 1 if options["min_count"] is None else options["min_count"]
    if data.get("path"):
        return Corpus.from_folder(data["path"], labels=data.get("labels", "auto"), vocab=vocab, **options)
    splits = synthetic_splits(**{**SYNTHETIC_DEFAULTS, **(data.get("synthetic") or {})})
    return Corpus.from_splits(splits, vocab=vocab, **options)


@dataclass
class Run:
    """A run folder loaded back: its config, corpus and model (in eval mode)."""

    path: Path
    config: dict
    corpus: Corpus
    vae: TextVAE


UNUSED_NAMES = {LOCK_NAME, "vocab.json"}  # all a start killed before config.json was written leaves


def _unused(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing a run needs: no ``config.json``, only the lock file,
    ``vocab.json`` (written first) and temporary files."""
    return all(p.name in UNUSED_NAMES or p.name.endswith(".tmp") for p in run_dir.iterdir())


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """``FileExistsError`` when ``run_dir`` holds a run and ``overwrite`` is off."""
    if run_dir.exists() and not overwrite and not _unused(run_dir):
        raise FileExistsError(f"run folder {str(run_dir)!r} already exists; pass --overwrite or --resume")


def prepare_run_dir(run_dir: str | Path, overwrite: bool) -> Path:
    """Create ``run_dir``; refuse a folder holding a run unless ``overwrite``. Call it holding the
    folder's lock (:class:`~pyro_textvae.lock.FolderLock`), so no other writer loses its files."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, overwrite)
    if run_dir.exists() and not _unused(run_dir):
        for name in ("metrics.jsonl", "last.pt", "best.pt", "eval.json"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / TENSORBOARD_DIR, ignore_errors=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def remove_temporaries(run_dir: Path) -> None:
    """Delete the ``.NAME.*.tmp`` files that a write killed halfway left (call it holding the lock)."""
    for path in run_dir.glob(".*.tmp"):
        path.unlink(missing_ok=True)


def new_trainer(
    run_dir: str | Path,
    data: dict,
    model_options: dict,
    objective: str,
    params: dict,
    train: TrainConfig,
    overwrite: bool = False,
) -> Trainer:
    """Build corpus, model and trainer for a new run, then write ``config.json`` and ``vocab.json``
    (rank 0 only when ``train.distributed``; the other ranks get its vocabulary). Every option is
    checked, the device included, before the run folder is created, so bad options leave nothing
    behind that a corrected rerun would need ``--overwrite`` for."""
    chosen = get_objective(objective)
    resolved = chosen.resolve(params)
    if train.distributed:
        init_process_group()
    made: dict[str, Corpus] = {}

    def build_vocab() -> list[str]:
        made["corpus"] = load_corpus(data)
        return made["corpus"].vocab.itos

    itos = broadcast_from_rank_zero(build_vocab) if train.distributed else build_vocab()
    corpus = made["corpus"] if "corpus" in made else load_corpus(data, vocab=Vocab(itos))
    check_split_sizes(corpus, data)
    model_config = _model_config(chosen, resolved, model_options, corpus)
    check_training_memory(model_config, train, corpus, resolved)
    torch.manual_seed(train.seed)
    trainer = Trainer(TextVAE(model_config), corpus, chosen, resolved, train, Path(run_dir))

    def write_run() -> None:
        if not (Path(run_dir) / LOCK_NAME).exists():  # a run's folder: its writer is named by the lock
            check_run_dir(Path(run_dir), overwrite)  # before a lock file is added to a folder that is no run's
        trainer.lock = FolderLock(run_dir)
        try:
            _write_run(prepare_run_dir(run_dir, overwrite))
        except BaseException:
            trainer.close()
            raise

    def _write_run(folder: Path) -> None:
        remove_temporaries(folder)
        config = {
            "version": CONFIG_VERSION,
            "data": data,
            "model": model_config.to_dict(),
            "objective": {"name": objective, "params": resolved},
            "train": train.to_dict(),
            "corpus": corpus.summary(),
        }
        corpus.vocab.to_json(folder / "vocab.json")
        save_json(folder / "config.json", config)  # last: a folder with config.json has every file of a start

    if train.distributed:
        broadcast_from_rank_zero(write_run)
    else:
        write_run()
    return trainer


SIZE_OPTIONS = "--hidden-dim, --embed-dim, --max-vocab (the vocabulary), --batch-size, --max-length or --dg-samples"


def check_training_memory(model_config: TextVAEConfig, train: TrainConfig, corpus: Corpus, params: dict,
                          options: str = SIZE_OPTIONS) -> None:
    """Refuse a run whose model, batch of the longest training sentences and density-gap samples
    (``params["num_samples"]``) would not fit in the memory of ``train.device``
    (:func:`inference.memory.training_estimate`), before any of it is allocated."""
    longest = max((len(ids) for ids in corpus.splits["train"].ids), default=0)
    samples = params.get("num_samples")
    samples = samples if isinstance(samples, int) and not isinstance(samples, bool) else None
    parts = training_estimate(model_config, train.batch_size, longest, train.optimizer, samples)
    local = [int(os.environ.get(name, default)) for name, default in (("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))]
    check_memory(parts, resolve_device(train.device, *local), options)  # the device is checked first


MIN_SENTENCES = 2  # per split: validation and evaluation divide by n - 1 (active units)


def check_split_sizes(corpus: Corpus, data: dict) -> None:
    """Refuse a corpus with a split of fewer than :data:`MIN_SENTENCES` sentences after the length
    filter (before any run folder exists), naming the split's file and ``max_length``; print how
    many sentences the filter dropped when it dropped any."""
    source = data.get("path") or "synthetic corpus"
    dropped = {name: split.dropped for name, split in corpus.splits.items()}
    for name, split in corpus.splits.items():
        if len(split) < MIN_SENTENCES:
            where = str(Path(data["path"]) / f"{name}.txt") if data.get("path") else f"synthetic corpus, {name} split"
            raise CorpusError(f"{where}: {len(split)} sentence(s) left after max_length {data.get('max_length')} "
                              f"dropped {split.dropped}; every split needs at least {MIN_SENTENCES} (raise --max-length)")
    if any(dropped.values()) and int(os.environ.get("RANK", "0")) == 0:
        counts = ", ".join(f"{name} {count}" for name, count in dropped.items())
        print(f"{source}: dropped {sum(dropped.values())} sentence(s) longer than max_length "
              f"{data.get('max_length')} ({counts})")


def _model_config(chosen, resolved: dict, model_options: dict, corpus: Corpus) -> TextVAEConfig:
    options = {**model_options, **chosen.model_options(resolved), "vocab_size": len(corpus.vocab)}
    return TextVAEConfig.from_dict(options)


def _read_config(run_dir: Path) -> dict:
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
    config = load_json(run_dir / "config.json")
    if not isinstance(config, dict) or config.get("version") != CONFIG_VERSION:
        raise CheckpointError(f"{run_dir / 'config.json'}: not a pyro-textvae run config (version {CONFIG_VERSION})")
    for key in ("data", "model", "objective", "train"):
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{run_dir / 'config.json'}: missing or malformed section {key!r}")
    return config


def _read_vocab(run_dir: Path, config: dict) -> Vocab:
    """``vocab.json`` (unique strings, the specials first: :meth:`Vocab.from_json`), refused unless
    it has exactly the ``vocab_size`` of ``config.json`` (one word too many shifts every id)."""
    expected = config["model"].get("vocab_size")
    path = run_dir / "vocab.json"
    vocab = Vocab.from_json(path)
    if len(vocab) != expected:
        raise CheckpointError(f"{path}: {len(vocab)} entries, but config.json says model.vocab_size {expected!r}; "
                              "the vocabulary does not belong to this run")
    return vocab


def resume_trainer(
    run_dir: str | Path,
    epochs: int | None = None,
    distributed: bool | None = None,
    device: str | None = None,
    precision: str | None = None,
) -> Trainer:
    """A trainer for an existing run folder, ready for ``fit(resume=True)`` (optionally more epochs,
    or on another ``device``: a run trained on a GPU resumes on a CPU and the other way round, since
    ``last.pt`` is read onto the CPU and copied onto the device; or in another ``precision``:
    checkpoints are float32 in either).

    ``distributed``: resume under torchrun (``None``: when launched by torchrun with more than one
    process); rank 0 reads ``config.json`` and ``vocab.json`` and hands them to the other ranks.
    """
    run_dir = Path(run_dir)
    distributed = launched_by_torchrun() if distributed is None else distributed

    locks: list[FolderLock] = []

    def read_run() -> tuple[dict, list[str]]:
        if not run_dir.is_dir():
            raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
        locks.append(FolderLock(run_dir))
        remove_temporaries(run_dir)
        config = _read_config(run_dir)
        return config, _read_vocab(run_dir, config).itos

    try:
        trainer = _resumed_trainer(run_dir, read_run, distributed, {"epochs": epochs, "device": device,
                                                                     "precision": precision})
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    trainer.lock = locks[0] if locks else None
    return trainer


def _resumed_trainer(run_dir: Path, read_run, distributed: bool, overrides: dict) -> Trainer:
    """The trainer of :func:`resume_trainer`; ``overrides``: the train options given (None: the run's)."""
    if distributed:
        init_process_group()
        config, itos = broadcast_from_rank_zero(read_run)
    else:
        config, itos = read_run()
    train_options = {**config["train"], "distributed": distributed}
    train_options.update({key: value for key, value in overrides.items() if value is not None})
    train = dataclass_from_dict(TrainConfig, train_options, f"{run_dir / 'config.json'} [train]")
    corpus = load_corpus(config["data"], vocab=Vocab(itos), where=f"{run_dir / 'config.json'} [data]")
    model_config = TextVAEConfig.from_dict(config["model"], f"{run_dir / 'config.json'} [model]")
    objective = get_objective(config["objective"]["name"])
    params = objective.resolve(config["objective"]["params"])
    check_training_memory(model_config, train, corpus, params, "hidden_dim, embed_dim, vocab_size, batch_size or "
                          f"num_samples in {run_dir / 'config.json'}")
    torch.manual_seed(train.seed)  # as new_trainer: a run without last.pt restarts from these parameters
    trainer = Trainer(TextVAE(model_config), corpus, objective, params, train, run_dir)
    if "precision" not in config["train"]:  # written before --precision, by code that bucketed in pools
        trainer.unrecorded_bucketing = "pools"
    return trainer


def load_model_state(vae: TextVAE, state: dict, path: Path) -> None:
    """Load parameters into ``vae``; a checkpoint of another vocabulary or size gets a clear error."""
    check_state_dict(vae, state.get("model"), path, f" (vocabulary {vae.config.vocab_size}, sizes from config.json)")
    vae.load_state_dict(state["model"])


def run_precision(config: dict, where: str) -> str:
    """The precision a run was trained in: its ``[train] precision`` (a folder older than the
    option has none and gets the default)."""
    return check_precision(config["train"].get("precision", DEFAULT_PRECISION), f"{where} [train] precision")


def open_run(
    run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu", precision: str | None = None
) -> Run:
    """Load a run folder's config, corpus (with its saved vocabulary) and model from ``best.pt``/``last.pt``
    onto ``device`` (checked first: a device that does not exist is a ``ValueError`` naming ``--device``,
    not an unreadable checkpoint); the model runs in ``precision`` (default: the run's own,
    :func:`run_precision`)."""
    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    device = resolve_device(device) if isinstance(device, str) else device
    config = _read_config(run_dir)
    vocab = _read_vocab(run_dir, config)
    corpus = load_corpus(config["data"], vocab=vocab, where=f"{run_dir / 'config.json'} [data]")
    model_config = TextVAEConfig.from_dict(config["model"], f"{run_dir / 'config.json'} [model]")
    check_memory({"model": FLOAT_BYTES * parameter_count(model_config)}, device,
                 f"hidden_dim, embed_dim or vocab_size in {run_dir / 'config.json'}")
    vae = TextVAE(model_config)
    path = run_dir / f"{checkpoint}.pt"
    load_model_state(vae, load_checkpoint(path, device), path)
    chosen = run_precision(config, str(run_dir / "config.json")) if precision is None else check_precision(precision)
    vae.precision = effective_precision(chosen, device)
    return Run(run_dir, config, corpus, vae.to(device).eval())
