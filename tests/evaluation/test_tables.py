"""Tables of results: numbers as papers print them (fixed decimals per column, N an integer, no exponent), each
eval.json value in its column, and a missing run or evaluation refused naming it."""
from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from evaluation.tables import (
    compare_runs,
    eval_filename,
    format_mean_std,
    markdown_table,
    metric_value,
    table_from_results_csv,
    write_results,
)
from pyro_textvae.io import CheckpointError


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
    path = Path(__file__).resolve().parents[2] / "results" / "short_yelp" / "results.csv"
    table = table_from_results_csv(path)
    assert "| VAE | 2 | 10000 | 41.39 ± 0.22 |" in table
    assert not re.search(r"\de[+-]\d", table)


def test_results_md_puts_nll_beside_the_elbo_of_the_same_sentences_and_says_so(tmp_path):
    """A VAE row read NLL 54.11 > -ELBO 53.51 (NLL on a 500-sentence subset, -ELBO on all 10,000): the
    table now shows how many sentences NLL scores and the -ELBO of those sentences, and a note says which
    columns score the subset."""
    run = {"objective": "elbo", "num_sentences": 10000, "elbo": {"neg_elbo": 53.51},
           "likelihood": {"nll": 54.11, "ppl": 80.0, "num_sentences": 500, "neg_elbo": 54.60}}
    write_results(tmp_path, {"VAE": [run]})
    lines = (tmp_path / "results.md").read_text().splitlines()
    row = dict(zip([c.strip() for c in lines[0].split("|")], [c.strip() for c in lines[2].split("|")]))
    assert (row["N"], row["IW N"], row["NLL"], row["-ELBO IW"], row["-ELBO"]) == ("10000", "500", "54.11", "54.60",
                                                                               "53.51")
    write_results(tmp_path, {"VAE": [run, run]})
    row = (tmp_path / "results.md").read_text().splitlines()[2].split(" | ")
    assert row[3:5] == ["10000", "500"]  # the seeds' shared counts, without a spread of 0
    header = lines[0].split(" | ")
    assert header.index("IW N") < header.index("NLL") < header.index("-ELBO IW") < header.index("-ELBO")
    assert lines[-1].startswith("NLL and PPL are estimated by importance sampling on the IW N sentences")
    assert "-ELBO IW is the -ELBO of those same sentences" in lines[-1]


def test_a_diverged_seed_is_named_in_the_table(tmp_path):
    runs = [{"objective": "elbo", "num_sentences": 8, "likelihood": {"nll": value, "ppl": 3.0}}
            for value in (4.0, math.nan)]
    write_results(tmp_path, {"VAE": runs})
    row = (tmp_path / "results.md").read_text().splitlines()[2]
    assert row.startswith("| VAE | elbo | 2 | 8 | - | diverged | 3.00 ± 0.00 |")


def _eval_json(run_dir: Path, split: str = "test", **values) -> None:
    run_dir.mkdir(parents=True)
    result = {"objective": "dg", "seed": 1, "num_sentences": 40,
              "likelihood": {"nll": 41.123456789, "ppl": 60.5, "iw_samples": 500, "iw_subset": None},
              "holes": {"joint_kl": 0.25, "cu": {"0.03": 31}}, **values}
    (run_dir / eval_filename(split)).write_text(json.dumps(result))


def test_eval_filenames_by_split():
    assert [eval_filename(s) for s in ("test", "valid", "train")] == ["eval.json", "eval-valid.json", "eval-train.json"]
    assert eval_filename("valid", "md") == "eval-valid.md"


def test_metric_value_walks_the_keys_and_says_none_where_one_is_missing():
    result = {"holes": {"cu": {"0.03": 31}}, "mi": 1.5}
    assert metric_value(result, ("holes", "cu", "0.03")) == 31
    assert metric_value(result, ("mi",)) == 1.5
    assert metric_value(result, ("holes", "joint_kl")) is None
    assert metric_value(result, ("mi", "deeper")) is None


def test_compare_runs_puts_each_eval_json_value_in_its_column(tmp_path):
    _eval_json(tmp_path / "a")
    _eval_json(tmp_path / "b", "valid", seed=2, mi=0.5)
    first = compare_runs([tmp_path / "a"], out_prefix=tmp_path / "cmp")
    row = dict(zip(first.columns, first.rows[0]))
    assert row["run"] == "a" and row["objective"] == "dg" and row["K"] == 500 and row["IW subset"] == "all"
    assert row["NLL"] == 41.123456789 and row["CU(0.03)"] == 31 and row["MI"] is None
    assert (tmp_path / "cmp.csv").read_text().splitlines()[1].startswith("a,dg,1,500,all,40,,41.123456789,60.5,")
    assert "| a | dg | 1 | 500 | all | 40 | - | 41.12 | 60.50 | - |" in (tmp_path / "cmp.md").read_text()
    valid = compare_runs([tmp_path / "b"], split="valid")
    assert dict(zip(valid.columns, valid.rows[0]))["MI"] == 0.5


def test_compare_runs_refuses_a_missing_folder_or_evaluation_naming_it(tmp_path):
    with pytest.raises(CheckpointError, match="'.*nowhere' does not exist"):
        compare_runs([tmp_path / "nowhere"])
    (tmp_path / "trained").mkdir()
    with pytest.raises(CheckpointError, match=r"eval.json: not found; run `textvae evaluate .*trained --split test`"):
        compare_runs([tmp_path / "trained"])
    with pytest.raises(ValueError, match="no run folders"):
        compare_runs([])


def test_markdown_table_prints_floats_to_four_digits_and_none_as_a_dash():
    assert markdown_table(["a", "b"], [[1.23456, None], ["x", 7]]) == (
        "| a | b |\n|---|---|\n| 1.235 | - |\n| x | 7 |\n")
