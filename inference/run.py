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

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pyro_textvae.data import Corpus, Vocab, synthetic_splits
from pyro_textvae.io import (
    CheckpointError,
    dataclass_from_dict,
    load_checkpoint,
    load_json,
    save_json,
)
from pyro_textvae.model import TextVAE, TextVAEConfig

from .distributed import (
    broadcast_from_rank_zero,
    init_process_group,
    launched_by_torchrun,
)
from .objectives import get_objective
from .trainer import TrainConfig, Trainer

CONFIG_VERSION = 1
SYNTHETIC_DEFAULTS = {"num_train": 2000, "num_valid": 500, "num_test": 500, "num_topics": 4, "seed": 0}


def load_corpus(data: dict[str, Any], vocab: Vocab | None = None) -> Corpus:
    """The corpus a run's ``data`` config names: ``{"path": DIR}`` or ``{"synthetic": {...}}``."""
    options = {k: data.get(k) for k in ("min_count", "max_vocab", "max_length")}
    options["min_count"] = options["min_count"] or 1
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


def prepare_run_dir(run_dir: str | Path, overwrite: bool) -> Path:
    """Create ``run_dir``; refuse a non-empty existing folder unless ``overwrite``."""
    run_dir = Path(run_dir)
    if run_dir.exists() and any(run_dir.iterdir()):
        if not overwrite:
            raise FileExistsError(f"run folder {str(run_dir)!r} already exists; pass --overwrite or --resume")
        for name in ("metrics.jsonl", "last.pt", "best.pt", "eval.json"):
            (run_dir / name).unlink(missing_ok=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def new_trainer(
    run_dir: str | Path,
    data: dict,
    model_options: dict,
    objective: str,
    params: dict,
    train: TrainConfig,
    overwrite: bool = False,
) -> Trainer:
    """Build corpus, model and trainer for a new run and write ``config.json`` and ``vocab.json``
    (rank 0 only when ``train.distributed``; the other ranks get its vocabulary)."""
    chosen = get_objective(objective)
    resolved = chosen.resolve(params)
    if train.distributed:
        init_process_group()
    made: dict[str, Corpus] = {}

    def write_run() -> list[str]:
        corpus = made["corpus"] = load_corpus(data)
        folder = prepare_run_dir(run_dir, overwrite)
        config = {
            "version": CONFIG_VERSION,
            "data": data,
            "model": _model_config(chosen, resolved, model_options, corpus).to_dict(),
            "objective": {"name": objective, "params": resolved},
            "train": train.to_dict(),
            "corpus": corpus.summary(),
        }
        save_json(folder / "config.json", config)
        corpus.vocab.to_json(folder / "vocab.json")
        return corpus.vocab.itos

    itos = broadcast_from_rank_zero(write_run) if train.distributed else write_run()
    corpus = made["corpus"] if "corpus" in made else load_corpus(data, vocab=Vocab(itos))
    torch.manual_seed(train.seed)
    vae = TextVAE(_model_config(chosen, resolved, model_options, corpus))
    return Trainer(vae, corpus, chosen, resolved, train, Path(run_dir))


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


def resume_trainer(
    run_dir: str | Path, epochs: int | None = None, distributed: bool | None = None, device: str | None = None
) -> Trainer:
    """A trainer for an existing run folder, ready for ``fit(resume=True)`` (optionally more epochs,
    or on another ``device``: a run trained on a GPU resumes on a CPU and the other way round, since
    ``last.pt`` is read onto the CPU and copied onto the device).

    ``distributed``: resume under torchrun (``None``: when launched by torchrun with more than one
    process); rank 0 reads ``config.json`` and ``vocab.json`` and hands them to the other ranks.
    """
    run_dir = Path(run_dir)
    distributed = launched_by_torchrun() if distributed is None else distributed

    def read_run() -> tuple[dict, list[str]]:
        return _read_config(run_dir), Vocab.from_json(run_dir / "vocab.json").itos

    if distributed:
        init_process_group()
        config, itos = broadcast_from_rank_zero(read_run)
    else:
        config, itos = read_run()
    train_options = {**config["train"], "distributed": distributed}
    if epochs is not None:
        train_options["epochs"] = epochs
    if device is not None:
        train_options["device"] = device
    train = dataclass_from_dict(TrainConfig, train_options, f"{run_dir / 'config.json'} [train]")
    corpus = load_corpus(config["data"], vocab=Vocab(itos))
    vae = TextVAE(TextVAEConfig.from_dict(config["model"]))
    objective = get_objective(config["objective"]["name"])
    return Trainer(vae, corpus, objective, objective.resolve(config["objective"]["params"]), train, run_dir)


def load_model_state(vae: TextVAE, state: dict, path: Path) -> None:
    """Load parameters into ``vae``; a checkpoint of another vocabulary or size gets a clear error."""
    own = vae.state_dict()
    model_state = state.get("model")
    if not isinstance(model_state, dict):
        raise CheckpointError(f"{path}: no model parameters in checkpoint")
    missing = sorted(set(own) - set(model_state))
    unexpected = sorted(set(model_state) - set(own))
    if missing or unexpected:
        raise CheckpointError(f"{path}: parameters do not match the model (missing {missing}, unexpected {unexpected})")
    for name, tensor in model_state.items():
        if not isinstance(tensor, torch.Tensor) or tensor.shape != own[name].shape:
            shape = getattr(tensor, "shape", type(tensor).__name__)
            raise CheckpointError(
                f"{path}: parameter {name} has shape {tuple(shape)} but the model (vocabulary "
                f"{vae.config.vocab_size}, sizes from config.json) expects {tuple(own[name].shape)}"
            )
    vae.load_state_dict(model_state)


def open_run(run_dir: str | Path, checkpoint: str = "best", device: str = "cpu") -> Run:
    """Load a run folder's config, corpus (with its saved vocabulary) and model from ``best.pt``/``last.pt``."""
    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    config = _read_config(run_dir)
    corpus = load_corpus(config["data"], vocab=Vocab.from_json(run_dir / "vocab.json"))
    vae = TextVAE(TextVAEConfig.from_dict(config["model"]))
    path = run_dir / f"{checkpoint}.pt"
    load_model_state(vae, load_checkpoint(path, device), path)
    return Run(run_dir, config, corpus, vae.to(device).eval())
