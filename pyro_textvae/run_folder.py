"""Run folders read back: a run's data options, ``config.json``, ``vocab.json`` and checkpoints.

``config.json`` records everything needed to rebuild the run: the data source (a corpus folder or
the synthetic generator's arguments), the model options, the objective and its parameters, and the
training options (seed included). ``vocab.json`` is the training vocabulary, so a run folder alone
reconstructs the model (:func:`open_run`, for evaluation and decoding); resuming its training is
:func:`inference.run.resume_trainer`'s, which reads the folder with the functions here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .checks import Range
from .data import Corpus, Vocab, synthetic_splits
from .data.corpus import LABEL_MODES
from .data.synthetic import MAX_TOPICS
from .demo import SYNTHETIC_DEFAULTS
from .devices import resolve_device
from .io import CheckpointError, check_state_dict, load_checkpoint, load_json, read_jsonl
from .memory import FLOAT_BYTES, check_memory, parameter_count
from .model import TextVAE, TextVAEConfig
from .precision import DEFAULT_PRECISION, check_precision, effective_precision

CONFIG_VERSION = 1
# every file of a run folder that a command reads: what training writes (config.json last), what
# evaluation writes (evaluation.tables.eval_filename) and explore's (evaluation.arviz_data.NETCDF_NAME)
RUN_FILE_PATTERNS = ("config.json", "vocab.json", "metrics.jsonl", "last.pt", "best.pt",
                     "eval.json", "eval.md", "eval-*.json", "eval-*.md", "inference_data.nc")


DATA_COUNTS = {"min_count": 1, "max_vocab": 0, "max_length": 1}  # option: its least value (None allowed)
DATA_KEYS = {"path", "labels", "synthetic", *DATA_COUNTS}


def _count_error(value: Any, minimum: int, allow_none: bool) -> str | None:
    wanted = Range(int, minimum=minimum, optional=allow_none)
    return None if wanted.contains(value) else f"must be {wanted.describe()}, got {value!r}"


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


CONFIG_SECTIONS = ("data", "model", "objective", "train")
CONFIG_KEYS = {"version", "corpus", *CONFIG_SECTIONS}  # corpus: a summary, only ever printed


def read_config(run_dir: Path, check: Callable[[dict, Path], None] | None = None) -> dict:
    """``run_dir/config.json``, refused (one :class:`CheckpointError`, or ``ValueError`` for an
    option's value, naming the file, the section and the option) unless it is a config of this
    version with only its known sections, a valid ``data`` section and a ``model`` section
    :class:`TextVAEConfig` accepts; ``check(config, path)``
    checks the sections of the layers above (``train`` and ``objective``:
    :func:`inference.run.check_run_config`)."""
    if not run_dir.is_dir():
        raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
    path = run_dir / "config.json"
    config = load_json(path)
    if not isinstance(config, dict) or config.get("version") != CONFIG_VERSION:
        raise CheckpointError(f"{path}: not a pyro-textvae run config (version {CONFIG_VERSION})")
    unknown = sorted(set(config) - CONFIG_KEYS)
    if unknown:
        raise CheckpointError(f"{path}: unknown key(s) {unknown}; valid: {sorted(CONFIG_KEYS)}")
    for key in CONFIG_SECTIONS:
        if not isinstance(config.get(key), dict):
            raise CheckpointError(f"{path}: missing or malformed section {key!r}")
    check_data_options(config["data"], f"{path} [data]")
    TextVAEConfig.from_dict(config["model"], f"{path} [model]")
    if check is not None:
        check(config, path)
    return config


def read_history(run_dir: str | Path) -> list[dict]:
    """The lines of ``run_dir/metrics.jsonl``, one an epoch, as the trainer writes them: line ``n``
    is an object with ``"epoch": n`` (a resume truncates the file to the epochs of ``last.pt``).
    A missing file is an empty history; any other line is refused, naming the file and the line."""
    path = Path(run_dir) / "metrics.jsonl"
    history = read_jsonl(path)
    for number, record in enumerate(history, 1):
        epoch = record.get("epoch") if isinstance(record, dict) else None
        if type(epoch) is not int or epoch != number:
            raise CheckpointError(f"{path}:{number}: not the line of epoch {number} (its \"epoch\" is {epoch!r}); "
                                  "each line is one epoch, in order")
    return history


def read_vocab(run_dir: Path, config: dict) -> Vocab:
    """``vocab.json`` (unique strings, the specials first: :meth:`Vocab.from_json`), refused unless
    it has exactly the ``vocab_size`` of ``config.json`` (one word too many shifts every id)."""
    expected = config["model"].get("vocab_size")
    path = run_dir / "vocab.json"
    vocab = Vocab.from_json(path)
    if len(vocab) != expected:
        raise CheckpointError(f"{path}: {len(vocab)} entries, but config.json says model.vocab_size {expected!r}; "
                              "the vocabulary does not belong to this run")
    return vocab


def load_model_state(vae: TextVAE, state: dict, path: Path) -> None:
    """Load parameters into ``vae``; a checkpoint of another vocabulary or size gets a clear error."""
    check_state_dict(vae, state.get("model"), path, f" (vocabulary {vae.config.vocab_size}, sizes from config.json)")
    vae.load_state_dict(state["model"])


def run_precision(config: dict, where: str) -> str:
    """The precision a run was trained in: its ``[train] precision`` (a folder older than the
    option has none and gets the default)."""
    return check_precision(config["train"].get("precision", DEFAULT_PRECISION), f"{where} [train] precision")


def open_run(
    run_dir: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu", precision: str | None = None,
    check: Callable[[dict, Path], None] | None = None,
) -> Run:
    """Load a run folder's config, corpus (with its saved vocabulary) and model from ``best.pt``/``last.pt``
    onto ``device`` (checked first: a device that does not exist is a ``ValueError`` naming ``--device``,
    not an unreadable checkpoint); the model runs in ``precision`` (default: the run's own,
    :func:`run_precision`). ``check``: the config check of the layers above (:func:`read_config`)."""
    run_dir = Path(run_dir)
    if checkpoint not in ("best", "last"):
        raise ValueError(f"checkpoint must be 'best' or 'last', got {checkpoint!r}")
    device = resolve_device(device) if isinstance(device, str) else device
    config = read_config(run_dir, check)
    vocab = read_vocab(run_dir, config)
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
