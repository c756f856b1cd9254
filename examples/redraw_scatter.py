"""Redraw an experiment's collapse-against-holes scatter from its ``results.csv``.

``textvae experiment`` draws ``mi_vs_joint_kl.png`` from the runs' ``eval.json`` files; the run
folders are not kept in git, so this script draws the same picture from the per-method means of
``results.csv`` (the numbers the scatter shows) with
:func:`evaluation.scatter.plot_collapse_against_holes`. Nothing random happens here.

Usage: ``python examples/redraw_scatter.py results/short_yelp/results.csv results/short_yelp/mi_vs_joint_kl.png``
"""
from __future__ import annotations

import argparse
import csv
from pathlib import Path

from evaluation.figures import save_figure
from evaluation.scatter import plot_collapse_against_holes


def results_from_csv(path: Path) -> dict[str, list[dict]]:
    """One pseudo-evaluation per method holding the means of MI, AU and joint-KL."""
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    missing = {"method", "MI mean", "AU mean", "joint-KL mean"} - set(rows[0] if rows else {})
    if missing:
        raise SystemExit(f"{path}: not an experiment results.csv (missing columns {sorted(missing)})")

    def number(text: str) -> float | None:
        return float(text) if text else None

    return {row["method"]: [{"mi": number(row["MI mean"]), "active_units": {"au": number(row["AU mean"])},
                             "holes": {"joint_kl": number(row["joint-KL mean"])}}] for row in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results_csv", type=Path)
    parser.add_argument("out_png", type=Path)
    args = parser.parse_args()
    save_figure(plot_collapse_against_holes(results_from_csv(args.results_csv)), args.out_png)
    print(f"wrote {args.out_png}")


if __name__ == "__main__":
    main()
