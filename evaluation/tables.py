"""Tables of evaluation results: the metric columns, ``eval.json`` look-ups, Markdown and CSV.

Numbers are printed as papers print them (:func:`format_mean_std`): a fixed number of decimals per
column (:data:`DECIMALS`, 2 unless listed), N as an integer, a non-finite value as "diverged", and a
perplexity of :data:`PPL_LIMIT` or more as ``exp(log PPL)``.

:func:`compare_runs` gathers the ``eval.json`` of several runs (written by
:func:`evaluation.report.evaluate_run`) into one :class:`ComparisonTable`, a row per run and a
column per metric of :data:`COLUMNS` (``docs/metrics.md``), as Markdown and CSV.
"""
from __future__ import annotations

import csv
import io
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pyro_textvae.io import CheckpointError, atomic_write_bytes, load_json

from .label_probe import PROBE_SIZES

COLUMNS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("N", ("num_sentences",)),
    ("IW N", ("likelihood", "num_sentences")),
    ("NLL", ("likelihood", "nll")),
    ("PPL", ("likelihood", "ppl")),
    ("-ELBO IW", ("likelihood", "neg_elbo")),
    ("-ELBO", ("elbo", "neg_elbo")),
    ("Rec", ("elbo", "reconstruction")),
    ("KL", ("elbo", "kl")),
    ("MI", ("mi",)),
    ("AU", ("active_units", "au")),
    ("joint-KL", ("holes", "joint_kl")),
    ("CU(0.03)", ("holes", "cu", "0.03")),
    ("DG-KL", ("density_gap", "kl")),
    ("DG-KL joint", ("density_gap", "joint_kl")),
    *((f"prior BLEU-{n} F", ("prior_sampling", "bleu", "f", str(n))) for n in range(1, 5)),
    ("interp self-BLEU-4", ("interpolation", "self_bleu", "4")),
    ("interp distinct-1", ("interpolation", "distinct", "1")),
    ("interp distinct-2", ("interpolation", "distinct", "2")),
    *((f"probe acc {n:,}", ("probe", "accuracy", str(n))) for n in PROBE_SIZES),
)


DECIMALS: dict[str, int] = {
    "N": 0, "IW N": 0, "seeds": 0, "AU": 1, "CU(0.03)": 1,
    **{name: 3 for name, _ in COLUMNS if name.startswith(("prior BLEU", "interp", "probe"))},
}
PPL_LIMIT = 1e4


def format_mean_std(column: str, mean: float | None, std: float | None = None) -> str:
    """``mean ± std`` with the column's decimals (``41.39 ± 0.22``; ``-`` when ``mean`` is None, no
    ``± std`` when ``std`` is None, for N, or for an IW N the seeds share), "diverged" when ``mean`` is not finite, and
    ``exp(24.98)`` for a PPL of at least :data:`PPL_LIMIT` (the log of the mean PPL; no spread)."""
    if mean is None:
        return "-"
    if not math.isfinite(mean):
        return "diverged"
    if column == "PPL" and mean >= PPL_LIMIT:
        return f"exp({math.log(mean):.2f})"
    decimals = DECIMALS.get(column, 2)

    def fixed(value: float) -> str:
        return f"{round(value, decimals) + 0.0:.{decimals}f}"  # + 0.0: no "-0.00"

    if std is None or column == "N" or (column == "IW N" and std == 0) or not math.isfinite(std):
        return fixed(mean)
    return f"{fixed(mean)} ± {fixed(std)}"


def eval_filename(split: str, suffix: str = "json") -> str:
    """``eval.<suffix>`` for the test split, ``eval-<split>.<suffix>`` for any other."""
    return f"eval.{suffix}" if split == "test" else f"eval-{split}.{suffix}"


def load_evaluation(path: str | Path) -> dict:
    """An ``eval.json`` read back (:func:`pyro_textvae.io.load_json`), refused unless a JSON object."""
    result = load_json(path)
    if not isinstance(result, dict):
        raise CheckpointError(f"{path}: not an evaluation (a JSON object written by `textvae evaluate`), "
                              f"found a JSON {type(result).__name__}")
    return result


def metric_value(result: dict, keys: Sequence[str]) -> Any:
    """The value at ``keys`` in an ``eval.json`` dict, or None where any key is missing."""
    value: Any = result
    for key in keys:
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value


def _markdown_cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def markdown_table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """A Markdown table; floats to 4 significant digits, None as ``-``, anything else as ``str``."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_markdown_cell(value) for value in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


@dataclass
class ComparisonTable:
    """One row per run (run, objective, seed, the importance samples K and the IW subset
    size or "all") and one column per metric of :data:`COLUMNS`."""

    columns: list[str]
    rows: list[list[Any]]

    def markdown(self) -> str:
        """A Markdown table, numbers by :func:`format_mean_std`, missing values as ``-``."""
        rows = [[format_mean_std(column, value) if isinstance(value, float) else value
                 for column, value in zip(self.columns, row)] for row in self.rows]
        return markdown_table(self.columns, rows)

    def csv(self) -> str:
        """CSV by the ``csv`` module, floats at full precision, missing values empty."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(self.columns)
        writer.writerows([["" if value is None else value for value in row] for row in self.rows])
        return buffer.getvalue()


def compare_runs(run_dirs: Sequence[str | Path], out_prefix: str | Path | None = None,
                 split: str = "test") -> ComparisonTable:
    """Read each run's ``eval.json`` (``eval-<split>.json``) into a :class:`ComparisonTable`; with
    ``out_prefix`` write ``<prefix>.md`` and ``<prefix>.csv``. A missing run folder or evaluation
    file raises :class:`CheckpointError` naming it."""
    if not run_dirs:
        raise ValueError("compare_runs: no run folders given")
    rows = []
    for run_dir in map(Path, run_dirs):
        if not run_dir.is_dir():
            raise CheckpointError(f"run folder {str(run_dir)!r} does not exist")
        path = run_dir / eval_filename(split)
        if not path.is_file():
            raise CheckpointError(f"{path}: not found; run `textvae evaluate {run_dir} --split {split}` first")
        result = load_evaluation(path)
        subset = metric_value(result, ("likelihood", "iw_subset"))
        rows.append([run_dir.name, result.get("objective"), result.get("seed"),
                     metric_value(result, ("likelihood", "iw_samples")), "all" if subset is None else subset]
                    + [metric_value(result, keys) for _, keys in COLUMNS])
    table = ComparisonTable(["run", "objective", "seed", "K", "IW subset"] + [name for name, _ in COLUMNS], rows)
    if out_prefix is not None:
        atomic_write_bytes(f"{out_prefix}.md", table.markdown().encode())
        atomic_write_bytes(f"{out_prefix}.csv", table.csv().encode())
    return table


def table_from_results_csv(path: str | Path, columns: Sequence[str] | None = None,
                           rows: Sequence[str] | None = None) -> str:
    """The Markdown table of a ``results.csv`` (``method``, ``seeds`` and ``NAME mean`` / ``NAME std``
    columns, as :func:`write_results` writes it), the ``columns`` named (default:
    every metric in the file) formatted by :func:`format_mean_std`, the methods ``rows`` names in that
    order (default: every row); an unknown column or method raises ``ValueError`` naming the file."""
    with open(path, newline="") as handle:
        records = list(csv.DictReader(handle))
    if rows is not None:
        by_method = {record["method"]: record for record in records}
        missing = [row for row in rows if row not in by_method]
        if missing:
            raise ValueError(f"{path}: no method(s) {missing}; it has {list(by_method)}")
        records = [by_method[row] for row in rows]
    names = [key[: -len(" mean")] for key in (records[0] if records else {}) if key.endswith(" mean")]
    columns = list(columns) if columns is not None else names
    unknown = [column for column in columns if column not in names]
    if unknown:
        raise ValueError(f"{path}: no column(s) {unknown}; it has {names}")

    def number(text: str) -> float | None:
        return float(text) if text != "" else None

    cells = [[record["method"], record["seeds"]]
             + [format_mean_std(c, number(record[f"{c} mean"]), number(record[f"{c} std"])) for c in columns]
             for record in records]
    return markdown_table(["method", "seeds", *columns], cells)


def evaluation_markdown(result: dict) -> str:
    """``eval.md``: the settings, a metric | value table (:data:`COLUMNS`) and BLEU per n."""
    likelihood, holes = result["likelihood"], result["holes"]
    subset = likelihood["iw_subset"]
    lines = [
        f"# Evaluation of {result['run']}",
        "",
        f"Split {result['split']} (N = {result['num_sentences']} sentences), checkpoint "
        f"{result['checkpoint'] or '-'}, objective {result['objective']}, evaluation seed {result['eval_seed']}. "
        f"NLL/PPL by importance sampling with K = {likelihood['iw_samples']} on "
        f"{'all' if subset is None else f'a seeded subset of {subset}'} sentences "
        f"(-ELBO on them: {likelihood['neg_elbo']:.4g}); hole metrics from {holes['num_prior_samples']} prior "
        f"samples against N = {holes['num_posteriors']} posteriors; DG-KL in {result['density_gap']['mode']} "
        f"mode ({result['density_gap']['num_samples']} draw(s) per posterior).",
        "",
        markdown_table(["metric", "value"], [[name, metric_value(result, keys)] for name, keys in COLUMNS]),
    ]
    bleu = result["prior_sampling"]["bleu"]
    lines.append("Prior sampling (greedy), BLEU against the split:\n")
    rows = [[n, bleu["precision"][n], bleu["recall"][n], bleu["f"][n]] for n in sorted(bleu["f"])]
    lines.append(markdown_table(["n", "precision", "recall", "F"], rows))
    example = result["interpolation"]["example"]
    if example is not None:
        lines.append("Interpolation example (t = 0, 0.1, ..., 1):\n")
        lines += [f"{i}. `{sentence}`" for i, sentence in enumerate(example["path"], 1)]
    return "\n".join(lines) + "\n"


def _mean_std(values: list[Any]) -> tuple[float | None, float | None]:
    """Mean and sample std of the numbers among ``values`` (std None for one); NaN for the mean
    when any of them is not finite (a diverged run)."""
    numbers = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    if not numbers:
        return None, None
    if not all(math.isfinite(number) for number in numbers):
        return math.nan, None
    return statistics.fmean(numbers), statistics.stdev(numbers) if len(numbers) > 1 else None


def results_table(results: dict[str, list[dict]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows: a row per method, ``(mean, std)`` over its seeds for every metric."""
    columns = ["method", "objective", "seeds"] + [name for name, _ in COLUMNS]
    rows = []
    for name, runs in results.items():
        cells = [_mean_std([metric_value(r, keys) for r in runs]) for _, keys in COLUMNS]
        rows.append([name, runs[0].get("objective"), len(runs), *cells])
    return columns, rows


RESULTS_NOTE = (
    "NLL and PPL are estimated by importance sampling on the IW N sentences (a seeded subset of the split "
    "where IW N < N); -ELBO IW is the -ELBO of those same sentences, the bound NLL stays below (up to "
    "Monte-Carlo error). N, -ELBO, Rec, KL and every other column: all N sentences of the split.\n")


def write_results(out: Path, results: dict[str, list[dict]]) -> None:
    """``results.md`` (mean ± std, and :data:`RESULTS_NOTE` on which sentences each column scores) and
    ``results.csv`` (mean and std columns) in ``out``."""
    columns, rows = results_table(results)
    table = markdown_table(columns, [[format_mean_std(column, *cell) if isinstance(cell, tuple) else cell
                                      for column, cell in zip(columns, row)] for row in rows])
    atomic_write_bytes(out / "results.md", (table + "\n" + RESULTS_NOTE).encode())
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns[:3] + [f"{c} {part}" for c in columns[3:] for part in ("mean", "std")])
    for row in rows:
        writer.writerow(row[:3] + ["" if v is None else v for cell in row[3:] for v in cell])
    atomic_write_bytes(out / "results.csv", buffer.getvalue().encode())
