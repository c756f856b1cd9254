"""Training runs in run folders: a new run's folder and :class:`~inference.trainer.Trainer`
(:func:`new_trainer`, which writes ``config.json`` and ``vocab.json``) and an existing run's trainer
(:func:`resume_trainer`, ``--resume``). Reading a folder back is :mod:`pyro_textvae.run_folder`'s.

Under ``torchrun`` (``TrainConfig.distributed``) rank 0 alone creates the folder, reads and writes
its files and hands the vocabulary, config and errors to the other ranks, so the run folder only
has to exist on rank 0's machine (the corpus must be readable by every rank).
"""
from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from pyro_textvae.data import Corpus, CorpusError, Vocab
from pyro_textvae.devices import resolve_device
from pyro_textvae.errors import OptionName
from pyro_textvae.io import CheckpointError, dataclass_from_dict, read_jsonl, save_json
from pyro_textvae.lock import LOCK_NAME, FolderLock
from pyro_textvae.memory import check_memory, training_estimate
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.run_folder import CONFIG_VERSION, RUN_FILE_PATTERNS, load_corpus, read_config, read_vocab

from .distributed import broadcast_from_rank_zero, init_process_group
from .objective_configs import ObjectiveConfig
from .objectives import get_objective
from .tensorboard import TENSORBOARD_DIR
from .train_config import CURVE_PRIOR_SAMPLES, TrainConfig, launched_by_torchrun
from .trainer import EVAL_BATCH, Trainer

DEVICE_PATTERN = re.compile(r"cpu|cuda(:\d+)?")  # the devices pyro_textvae.devices.resolve_device may accept
UNUSED_NAMES = {LOCK_NAME, "vocab.json"}  # all a start killed before config.json was written leaves


def _unused(run_dir: Path) -> bool:
    """True when ``run_dir`` holds nothing a run needs: no ``config.json``, only the lock file,
    ``vocab.json`` (written first) and temporary files."""
    return all(p.name in UNUSED_NAMES or p.name.endswith(".tmp") for p in run_dir.iterdir())


def check_run_dir(run_dir: Path, overwrite: bool) -> None:
    """``FileExistsError`` when ``run_dir`` holds a run and ``overwrite`` is off; ``CheckpointError``
    when it is a file, not a folder."""
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"{run_dir}: cannot create this folder: a file of that name is in the way")
    if run_dir.exists() and not overwrite and not _unused(run_dir):
        raise FileExistsError(
            f"run folder {str(run_dir)!r} already exists; pass overwrite=True to replace it, or resume it")


def _run_files(run_dir: Path) -> list[Path]:
    """The files of ``run_dir`` that a command reads (:data:`~pyro_textvae.run_folder.RUN_FILE_PATTERNS`),
    ``config.json`` first; a folder of such a name is not one of them."""
    found = [path for pattern in RUN_FILE_PATTERNS for path in sorted(run_dir.glob(pattern))]
    return [path for path in found if path.is_symlink() or not path.is_dir()]


def prepare_run_dir(run_dir: str | Path, overwrite: bool) -> Path:
    """Create ``run_dir``; refuse a folder holding a run unless ``overwrite``, which removes every
    file of the old run that a command reads (``config.json`` first, so a replacement killed halfway
    leaves a folder without a run, never the old config beside new files: :data:`RUN_FILE_PATTERNS`,
    evaluations and explore's InferenceData included) and its ``tensorboard/``; other files stay.
    Call it holding the folder's lock (:class:`~pyro_textvae.lock.FolderLock`), so no other writer
    loses its files."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, overwrite)
    if run_dir.exists() and not _unused(run_dir):
        for path in _run_files(run_dir):
            path.unlink(missing_ok=True)
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
    params: Mapping[str, Any] | ObjectiveConfig | None,
    train: TrainConfig,
    overwrite: bool = False,
) -> Trainer:
    """Build corpus, model and trainer for a new run, then write ``config.json`` and ``vocab.json``
    (rank 0 only when ``train.distributed``; the other ranks get its vocabulary). Every option is
    checked, the device included, before the run folder is created, so bad options leave nothing
    behind that a corrected rerun would need ``--overwrite`` for. ``params``: the objective's
    :class:`~inference.objective_configs.ObjectiveConfig`, or parameters it is made of (the others
    at their defaults for the model's latent)."""
    chosen = get_objective(objective)
    resolved = chosen.configure(params, latent=model_options.get("latent"))
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
            "objective": {"name": objective, "params": resolved.to_dict()},
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


SIZE_OPTIONS = (OptionName("hidden_dim"), ", ", OptionName("embed_dim"), ", ", OptionName("max_vocab"),
                " (the vocabulary), ", OptionName("batch_size"), ", ", OptionName("max_length"), " or ",
                OptionName("num_samples"))


def check_training_memory(model_config: TextVAEConfig, train: TrainConfig, corpus: Corpus,
                          params: ObjectiveConfig, options: str | tuple[str, ...] = SIZE_OPTIONS) -> None:
    """Refuse a run whose model, batch of the longest training sentences (or validation batch of
    the longest validation sentences, the larger) and density-gap samples (``params.num_samples``,
    where the objective has them) would not fit in the memory of ``train.device``
    (:func:`pyro_textvae.memory.training_estimate`), before any of it is allocated."""
    longest = {name: max((len(ids) for ids in split.ids), default=0) for name, split in corpus.splits.items()}
    samples = getattr(params, "num_samples", None)
    local = [int(os.environ.get(name, default)) for name, default in (("LOCAL_RANK", 0), ("LOCAL_WORLD_SIZE", 1))]
    validation = (EVAL_BATCH, longest.get("valid", 0))  # each process scores EVAL_BATCH rows at a time
    parts = training_estimate(model_config, train.batch_size, longest["train"], train.optimizer, samples, validation)
    check_memory(parts, resolve_device(train.device, *local), options)  # the device is checked first


MIN_SENTENCES = 2  # per split: validation and evaluation divide by n - 1 (active units)


def check_split_sizes(corpus: Corpus, data: dict) -> None:
    """Refuse a corpus with a split of fewer than :data:`MIN_SENTENCES` sentences (before any run folder
    exists), naming the split's file, and ``max_length`` where its filter dropped sentences; print the
    corpus's summary: its vocabulary and sentences per split, the sentences the filter dropped and the
    blank lines skipped, where there are any."""
    source = data.get("path") or "synthetic corpus"
    for name, split in corpus.splits.items():
        if len(split) < MIN_SENTENCES:
            where = str(Path(data["path"]) / f"{name}.txt") if data.get("path") else f"synthetic corpus, {name} split"
            cause = f" left after max_length {data.get('max_length')} dropped {split.dropped}" if split.dropped else ""
            advice = " (raise max_length)" if split.dropped else ""
            raise CorpusError(f"{where}: {len(split)} sentence(s){cause}; every split needs at least "
                              f"{MIN_SENTENCES}{advice}")
    if int(os.environ.get("RANK", "0")) != 0:
        return
    splits = corpus.splits.items()
    print(f"{source}: vocabulary {len(corpus.vocab)} words; sentences " + ", ".join(f"{n} {len(s)}" for n, s in splits))
    for what, counts in ((f"dropped {{}} sentence(s) longer than max_length {data.get('max_length')}",
                          {name: split.dropped for name, split in splits}),
                         ("skipped {} blank line(s)", {name: split.blank for name, split in splits})):
        if any(counts.values()):
            print(f"{source}: {what.format(sum(counts.values()))} ("
                  + ", ".join(f"{name} {count}" for name, count in counts.items()) + ")")


def _model_config(chosen, resolved: ObjectiveConfig, model_options: dict, corpus: Corpus) -> TextVAEConfig:
    options = {**model_options, **chosen.model_options(resolved), "vocab_size": len(corpus.vocab)}
    return TextVAEConfig.from_dict(options)


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
        config = read_config(run_dir, check_run_config)
        if isinstance(config.get("train"), dict) and "curve_samples" not in config["train"]:
            config["train"]["curve_samples"] = recorded_curve_samples(run_dir)
        return config, read_vocab(run_dir, config).itos

    try:
        trainer = _resumed_trainer(run_dir, read_run, distributed, {"epochs": epochs, "device": device,
                                                                     "precision": precision})
    except BaseException:
        for lock in locks:
            lock.release()
        raise
    trainer.lock = locks[0] if locks else None
    return trainer


def recorded_curve_samples(run_dir: Path) -> int:
    """The curves' prior draws of a run whose ``config.json`` predates ``TrainConfig.curve_samples``:
    what its first ``metrics.jsonl`` line records (0 where that line has no curves), the default
    where no epoch was written."""
    history = read_jsonl(run_dir / "metrics.jsonl")
    if not history or not isinstance(history[0], dict):
        return CURVE_PRIOR_SAMPLES
    samples = history[0].get("valid_joint_kl_prior_samples", 0)
    return samples if type(samples) is int else CURVE_PRIOR_SAMPLES


def check_run_config(config: dict, path: Path) -> None:
    """Refuse a ``config.json`` (``path``) whose ``train`` section :class:`TrainConfig` would not
    accept (its fields, their types and ranges: whatever the dataclass holds) or whose ``objective``
    is not a known objective with parameters of its config; one ``ValueError`` (the ``train`` section)
    or :class:`CheckpointError` (the ``objective``) naming the file, the section and the option. The
    check of :func:`pyro_textvae.run_folder.read_config`."""
    train = dataclass_from_dict(TrainConfig, config["train"], f"{path} [train]")
    if not DEVICE_PATTERN.fullmatch(train.device):  # the run's device need not exist here: its syntax only
        raise ValueError(f"{path} [train]: device must be cpu, cuda or cuda:K, got {train.device!r}")
    objective = config["objective"]
    if set(objective) != {"name", "params"} or not isinstance(objective["params"], dict):
        raise CheckpointError(f"{path} [objective]: must hold exactly a name and a table of params, got "
                              f"{sorted(objective)}")
    try:
        get_objective(objective["name"]).configure(objective["params"], latent=config["model"].get("latent"))
    except (ValueError, TypeError) as error:
        raise CheckpointError(f"{path} [objective]: {error}") from None


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
    try:
        params = objective.configure(config["objective"]["params"], latent=config["model"].get("latent"))
    except ValueError as error:
        raise CheckpointError(f"{run_dir / 'config.json'} [objective]: {error}") from None
    check_training_memory(model_config, train, corpus, params, "hidden_dim, embed_dim, vocab_size, batch_size or "
                          f"num_samples in {run_dir / 'config.json'}")
    torch.manual_seed(train.seed)  # as new_trainer: a run without last.pt restarts from these parameters
    trainer = Trainer(TextVAE(model_config), corpus, objective, params, train, run_dir)
    if "precision" not in config["train"]:  # written before --precision, by code that bucketed in pools
        trainer.unrecorded_bucketing = "pools"
    return trainer


