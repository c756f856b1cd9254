"""Numbers in tables as papers print them: fixed decimals per column, N an integer, no exponent."""
from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from evaluation.tables import format_mean_std, table_from_results_csv, write_results


@pytest.mark.parametrize(
    ("column", "mean", "std", "text"),
    [("NLL", 41.385800045728686, 0.21915126053263653, "41.39 ± 0.22"),
     ("KL", 0.003971976813569199, 0.0018787361269104158, "0.00 ± 0.00"),
     ("MI", -0.025631891216626457, 0.031603839204423334, "-0.03 ± 0.03"),
     ("MI", -0.001, 0.001, "0.00 ± 0.00"),
     ("N", 10000.0, 0.0, "10000"),
     ("AU", 16.5, 3.5355339059327378, "16.5 ± 3.5"),
     ("prior BLEU-4 F", 0.08759781824985975, 0.002337193400713321, "0.088 ± 0.002"),
     ("PPL", 60.15414613651973, 1.3048726017904508, "60.15 ± 1.30"),
     ("PPL", 7.039e10, 8.7e10, "exp(24.98)"),
     ("NLL", math.inf, None, "diverged"),
     ("NLL", None, None, "-"),
     ("VAE-only", 3.0, None, "3.00")],
)
def test_cells_are_printed_with_the_columns_decimals(column, mean, std, text):
    assert format_mean_std(column, mean, std) == text


def test_a_results_csv_renders_with_fixed_decimals(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("method,objective,seeds,N mean,N std,NLL mean,NLL std,PPL mean,PPL std,AU mean,AU std\n"
                    "VAE,elbo,2,10000.0,0.0,41.3858,0.2191,60.154,1.3049,0.0,0.0\n"
                    "AE,ae,1,10000.0,,245.0,,70390000000.0,,32.0,\n")
    assert table_from_results_csv(path, ["N", "NLL", "PPL", "AU"]) == (
        "| method | seeds | N | NLL | PPL | AU |\n|---|---|---|---|---|---|\n"
        "| VAE | 2 | 10000 | 41.39 ± 0.22 | 60.15 ± 1.30 | 0.0 ± 0.0 |\n"
        "| AE | 1 | 10000 | 245.00 | exp(24.98) | 32.0 |\n")
    with pytest.raises(ValueError, match="no column"):
        table_from_results_csv(path, ["BLEU"])


def test_the_committed_short_yelp_table_renders_without_exponents():
    path = Path(__file__).resolve().parents[1] / "results" / "short_yelp" / "results.csv"
    table = table_from_results_csv(path)
    assert "| VAE | 2 | 10000 | 41.39 ± 0.22 |" in table
    assert not re.search(r"\de[+-]\d", table)


def test_a_diverged_seed_is_named_in_the_table(tmp_path):
    runs = [{"objective": "elbo", "num_sentences": 8, "likelihood": {"nll": value, "ppl": 3.0}}
            for value in (4.0, math.nan)]
    write_results(tmp_path, {"VAE": runs})
    row = (tmp_path / "results.md").read_text().splitlines()[2]
    assert row.startswith("| VAE | elbo | 2 | 8 | diverged | 3.00 ± 0.00 |")
