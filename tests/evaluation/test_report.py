"""Run-level evaluation: eval.json against independent computations, compare tables, CLI errors."""
from __future__ import annotations

import argparse
import csv
import math
import shutil

import pytest
import torch

import evaluation.report as report
import pyro_textvae.memory as memory
from evaluation.evaluate_memory import evaluation_estimate
from evaluation.evaluate_options import EVALUATE_DEFAULTS
from evaluation.report import evaluate_run, iw_subset_positions
from evaluation.split_posteriors import collect_posteriors
from evaluation.tables import COLUMNS, compare_runs, format_mean_std, metric_value
from inference.elbo import elbo_terms
from inference.run import new_trainer
from inference.trainer import TrainConfig
from pyro_textvae.cli import main
from pyro_textvae.cli.compare import add_compare_command
from pyro_textvae.cli.evaluate import add_evaluate_commands
from pyro_textvae.data import iterate_batches, make_batch
from pyro_textvae.io import CheckpointError, load_json
from pyro_textvae.model import TextVAE, TextVAEConfig
from pyro_textvae.run_folder import Run, open_run
from tests.conftest import SMALL

DATA = {"synthetic": {"num_train": 96, "num_valid": 32, "num_test": 32, "seed": 1}}
SETTINGS = {"iw_samples": 10, "prior_samples": 2000, "num_generate": 12, "num_interpolations": 3, "progress": False}


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A tiny run trained for one epoch, evaluated once with small settings."""
    run_dir = tmp_path_factory.mktemp("report") / "run"
    config = TrainConfig(epochs=1, batch_size=16, optimizer="adam", progress=False)
    new_trainer(run_dir, DATA, SMALL, "elbo", {}, config).fit()
    result = evaluate_run(open_run(run_dir), checkpoint="best", **SETTINGS)
    return run_dir, result


def _one_sentence(ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = make_batch([ids])
    return batch.tokens, batch.mask


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers()
    add_evaluate_commands(commands)
    add_compare_command(commands)
    return parser


def test_eval_json_holds_every_metric_with_finite_values(trained_run):
    run_dir, result = trained_run
    assert load_json(run_dir / "eval.json") == result
    for name, keys in COLUMNS:
        value = metric_value(result, keys)
        assert isinstance(value, (int, float)) and math.isfinite(value), name
    holes = result["holes"]
    assert holes["num_prior_samples"] == SETTINGS["prior_samples"] and holes["num_posteriors"] == 32
    assert sorted(holes["cu"]) == ["0.01", "0.03", "0.05", "0.1"]
    assert len(holes["marginal_kl"]) == len(result["active_units"]["variances"]) == SMALL["latent_dim"]
    assert all(math.isfinite(v) for v in holes["marginal_kl"] + result["active_units"]["variances"])
    counts = [holes["cu"][tau] for tau in ("0.01", "0.03", "0.05", "0.1")]
    assert counts == sorted(counts) and counts == [sum(v < float(t) for v in holes["marginal_kl"]) for t in
                                                   ("0.01", "0.03", "0.05", "0.1")]
    assert result["active_units"]["au"] == sum(v >= 0.01 for v in result["active_units"]["variances"])
    interpolation = result["interpolation"]
    assert len(interpolation["example"]["path"]) == len(interpolation["t"]) == 11
    assert interpolation["t"][0] == 0.0 and interpolation["t"][-1] == 1.0
    assert "| NLL |" in (run_dir / "eval.md").read_text()


def test_importance_sampled_nll_is_not_above_the_elbo_loss(trained_run):
    likelihood = trained_run[1]["likelihood"]
    assert likelihood["iw_subset"] is None and likelihood["num_sentences"] == 32
    assert likelihood["nll"] <= likelihood["neg_elbo"] + 0.5
    assert likelihood["ppl"] == pytest.approx(math.exp(likelihood["nll"] * 32 / likelihood["num_tokens"]))


def test_elbo_terms_and_au_variances_match_an_independent_computation(trained_run):
    run_dir, result = trained_run
    run = open_run(run_dir)
    split = run.corpus.splits["test"]
    assert result["num_tokens"] == sum(len(ids) + 1 for ids in split.ids)
    kl, locs = 0.0, []
    with torch.no_grad():
        for ids in split.ids:  # one sentence at a time: KL(N(mu, s^2) || N(0, I)) by hand
            q = run.vae.posterior_distribution(*_one_sentence(ids)).base_dist
            kl += float((0.5 * (q.loc.square() + q.scale.square() - 1) - q.scale.log()).sum())
            locs.append(q.loc[0])
    assert result["elbo"]["kl"] == pytest.approx(kl / len(split), rel=1e-5, abs=1e-6)
    variances = torch.stack(locs).var(0, correction=1)  # AU: Var_x E_q[z_k | x]
    assert result["active_units"]["variances"] == pytest.approx(variances.tolist(), rel=1e-4, abs=1e-7)
    passes = []
    for seed in range(8):
        torch.manual_seed(100 + seed)
        total = sum(float(elbo_terms(run.vae.model, run.vae.guide, b.tokens, b.mask)["reconstruction"].sum())
                    for b in iterate_batches(split, 8, shuffle=False, bucket=False))
        passes.append(total / len(split))
    spread = torch.tensor(passes).std().item()
    assert abs(result["elbo"]["reconstruction"] - sum(passes) / 8) <= 5 * spread + 1e-3
    assert result["elbo"]["neg_elbo"] == pytest.approx(result["elbo"]["reconstruction"] + result["elbo"]["kl"])


def test_iw_subset_scores_exactly_the_seeded_sentences(trained_run, tmp_path):
    positions = iw_subset_positions(32, 8, seed=5)
    assert positions == sorted(set(positions)) and len(positions) == 8 and positions[-1] < 32
    assert positions == iw_subset_positions(32, 8, seed=5) != iw_subset_positions(32, 8, seed=6)
    assert iw_subset_positions(32, 40, seed=5) == list(range(32))
    run_dir = tmp_path / "subset"
    shutil.copytree(trained_run[0], run_dir)
    run = open_run(run_dir)
    likelihood = evaluate_run(run, iw_subset=8, seed=5, **SETTINGS)["likelihood"]
    split = run.corpus.splits["test"]
    assert likelihood["iw_subset"] == likelihood["num_sentences"] == 8
    assert likelihood["num_tokens"] == sum(len(split.ids[i]) + 1 for i in positions)
    other = iw_subset_positions(32, 8, seed=6)
    fixed = evaluate_run(run, iw_subset=8, seed=6, subset_seed=5, **SETTINGS)["likelihood"]
    assert fixed["subset_seed"] == 5 and fixed["num_tokens"] == likelihood["num_tokens"]
    moved = evaluate_run(run, iw_subset=8, seed=6, **SETTINGS)["likelihood"]
    assert moved["subset_seed"] == 6 and moved["num_tokens"] == sum(len(split.ids[i]) + 1 for i in other)


def test_compare_runs_table_cells_match_each_eval_json(trained_run, tmp_path):
    first = trained_run[0]
    second = tmp_path / "second"
    shutil.copytree(first, second)
    evaluate_run(open_run(second), seed=1, **SETTINGS)
    table = compare_runs([first, second], out_prefix=tmp_path / "cmp")
    assert [row[0] for row in table.rows] == [first.name, "second"]
    with open(tmp_path / "cmp.csv", newline="") as handle:
        csv_rows = list(csv.reader(handle))
    markdown_rows = [
        [cell.strip() for cell in line.strip("|").split("|")]
        for line in (tmp_path / "cmp.md").read_text().splitlines()
    ]
    assert csv_rows[0] == markdown_rows[0] == table.columns
    for index, run_dir in enumerate([first, second]):
        result = load_json(run_dir / "eval.json")
        assert csv_rows[index + 1][1:5] == [result["objective"], str(result["seed"]), "10", "all"]
        assert markdown_rows[index + 2][3:5] == ["10", "all"]
        for column, (name, keys) in enumerate(COLUMNS, start=5):
            value = metric_value(result, keys)
            assert float(csv_rows[index + 1][column]) == value, name
            expected = format_mean_std(name, value) if isinstance(value, float) else str(value)
            assert markdown_rows[index + 2][column] == expected, name
    assert table.rows[0][table.columns.index("MI")] != table.rows[1][table.columns.index("MI")]


def test_evaluate_command_passes_its_options_through(trained_run, tmp_path, capsys):
    run_dir = tmp_path / "cli"
    shutil.copytree(trained_run[0], run_dir)
    args = _parser().parse_args(["evaluate", str(run_dir), "--checkpoint", "last", "--iw-samples", "4",
                                 "--iw-subset", "6", "--prior-samples", "500", "--num-generate", "4",
                                 "--num-interpolations", "2", "--seed", "3", "--no-progress", "--overwrite"])
    args.func(args)
    result = load_json(run_dir / "eval.json")
    assert (result["checkpoint"], result["eval_seed"]) == ("last", 3)
    assert (result["likelihood"]["iw_samples"], result["likelihood"]["num_sentences"]) == (4, 6)
    assert result["holes"]["num_prior_samples"] == 500 and result["prior_sampling"]["num_samples"] == 4
    assert result["interpolation"]["num_pairs"] == 2
    assert (run_dir / "eval.md").read_text() in capsys.readouterr().out


def test_same_seed_gives_the_same_evaluation(trained_run, tmp_path):
    run_dir = tmp_path / "again"
    shutil.copytree(trained_run[0], run_dir)
    again = evaluate_run(open_run(run_dir), checkpoint="best", **SETTINGS)
    assert {**again, "run": None} == {**trained_run[1], "run": None}


def test_evaluate_without_best_checkpoint_is_a_clear_error(trained_run, tmp_path):
    args = _parser().parse_args(["evaluate", str(tmp_path / "absent")])
    with pytest.raises(CheckpointError, match="absent"):
        args.func(args)
    run_dir = tmp_path / "nobest"
    shutil.copytree(trained_run[0], run_dir)
    (run_dir / "best.pt").unlink()
    args = _parser().parse_args(["evaluate", str(run_dir), "--iw-samples", "2", "--no-progress"])
    with pytest.raises(CheckpointError, match="best.pt"):
        args.func(args)


def test_evaluate_keeps_an_eval_json_of_other_settings_unless_overwrite(trained_run, tmp_path, capsys,
                                                                      monkeypatch):
    run_dir = tmp_path / "kept"
    shutil.copytree(trained_run[0], run_dir)
    before = (run_dir / "eval.json").read_bytes()
    argv = ["evaluate", str(run_dir), "--iw-samples", "3", "--prior-samples", "2000", "--num-generate", "12",
            "--num-interpolations", "3", "--no-progress"]
    assert main(argv) == 2
    assert capsys.readouterr().err == (f"textvae evaluate: error: {run_dir / 'eval.json'} was made with other "
                                       "settings (iw_samples 10 -> 3); pass --overwrite to replace it\n")
    assert (run_dir / "eval.json").read_bytes() == before
    assert main([*argv, "--overwrite"]) == 0
    assert load_json(run_dir / "eval.json")["settings"]["iw_samples"] == 3
    capsys.readouterr()
    monkeypatch.chdir(tmp_path)
    assert main(["compare", str(run_dir), str(trained_run[0])]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("| run | objective | seed | K | IW subset |")
    assert [line.split("|")[4].strip() for line in lines[2:]] == ["3", "10"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"]  # no comparison.* without --out


def test_compare_names_a_missing_folder_or_eval_json(trained_run, tmp_path):
    parser = _parser()
    args = parser.parse_args(["compare", str(tmp_path / "absent"), "--out", str(tmp_path / "t")])
    with pytest.raises(CheckpointError, match="absent"):
        args.func(args)
    bare = tmp_path / "bare"
    bare.mkdir()
    args = parser.parse_args(["compare", str(trained_run[0]), str(bare), "--out", str(tmp_path / "t")])
    with pytest.raises(CheckpointError, match="bare.*eval.json"):
        args.func(args)


@pytest.mark.parametrize("option", [{"iw_samples": 0}, {"iw_subset": -1}, {"seed": -1}, {"split": "dev"}])
def test_evaluate_rejects_bad_options(trained_run, option):
    with pytest.raises(ValueError, match=next(iter(option))):
        evaluate_run(open_run(trained_run[0]), **{**SETTINGS, **option})


@pytest.mark.parametrize("latent", ["normal", "vmf"])
def test_collect_posteriors_keeps_the_split_order(tiny_corpus, latent):
    split = tiny_corpus.splits["test"]
    lengths = [len(ids) for ids in split.ids]
    assert lengths != sorted(lengths)  # bucketing reorders this split, so the order is really tested
    vae = TextVAE(TextVAEConfig(vocab_size=len(tiny_corpus.vocab), latent=latent, **SMALL)).eval()
    collected = collect_posteriors(vae, split, batch_size=7)
    with torch.no_grad():
        single = [vae.posterior_distribution(*_one_sentence(ids)) for ids in split.ids]
    if latent == "vmf":
        assert torch.allclose(collected.loc, torch.cat([q.loc for q in single]), atol=1e-6)
        assert torch.equal(collected.concentration, torch.cat([q.concentration for q in single]))
    else:
        assert torch.allclose(collected.base_dist.loc, torch.cat([q.base_dist.loc for q in single]), atol=1e-6)
        assert torch.allclose(collected.base_dist.scale, torch.cat([q.base_dist.scale for q in single]), atol=1e-6)
    assert collected.batch_shape == (len(split),)


def test_vmf_run_reports_joint_metrics_only(tiny_corpus, tmp_path):
    config = TextVAEConfig(vocab_size=len(tiny_corpus.vocab), latent="vmf", kappa=20.0, **SMALL)
    run = Run(tmp_path, {"objective": {"name": "vmf", "params": {}}, "train": {"seed": 0}}, tiny_corpus,
              TextVAE(config))
    result = evaluate_run(run, **SETTINGS)
    assert result["holes"]["cu"] is None and result["holes"]["marginal_kl"] is None
    assert result["density_gap"]["mode"] == "joint"
    assert result["density_gap"]["kl"] == result["density_gap"]["joint_kl"]
    # KL(vMF(mu, kappa) || uniform) does not depend on mu: every sentence has the same KL
    kl = elbo_terms(run.vae.model, run.vae.guide, *_one_sentence([4, 5]))["kl"]
    assert result["elbo"]["kl"] == pytest.approx(float(kl), rel=1e-5)
    for key in ("nll", "ppl"):
        assert math.isfinite(result["likelihood"][key])


class _RecordedBar:
    """A stand-in for tqdm that records each bar's description, total and updates."""

    made: list[_RecordedBar] = []

    def __init__(self, *args, total=None, desc=None, **kwargs):
        self.desc, self.total, self.ticks = desc, total, []
        _RecordedBar.made.append(self)

    def update(self, n=1):
        self.ticks.append(n)

    def set_description(self, desc):
        self.desc = desc

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def test_the_slow_latent_stages_tick_their_own_bars_once_a_chunk(trained_run, tmp_path, monkeypatch):
    """The hole metrics tick per chunk of 512 prior draws, each density-gap KL per chunk of posterior
    draws (on short_yelp one tick was 18 of 23 minutes)."""
    run_dir = tmp_path / "ticks"
    shutil.copytree(trained_run[0], run_dir)
    monkeypatch.setattr(report, "tqdm", _RecordedBar)
    _RecordedBar.made = []
    evaluate_run(open_run(run_dir), **{**SETTINGS, "prior_samples": 1100, "progress": True})
    bars = {bar.desc.split(",")[0]: bar for bar in _RecordedBar.made[1:]}
    assert sorted(bars) == ["hole metrics", "joint DG-KL", "marginal DG-KL"]
    assert bars["hole metrics"].ticks == [512, 512, 76] and bars["hole metrics"].total == 1100
    for name in ("joint DG-KL", "marginal DG-KL"):
        assert sum(bars[name].ticks) == bars[name].total == 32 and len(bars[name].ticks) >= 1


def test_evaluate_refuses_an_estimate_above_the_memory_available_before_writing(trained_run, tmp_path, capsys,
                                                                               monkeypatch):
    run_dir = tmp_path / "memory"
    shutil.copytree(trained_run[0], run_dir)
    (run_dir / "eval.json").unlink()
    monkeypatch.setattr(memory, "available_memory", lambda device: 2**28)
    assert main(["evaluate", str(run_dir), "--iw-samples", "100000", "--iw-batch-size", "64", "--no-progress"]) == 2
    message = capsys.readouterr().err
    assert message.startswith("textvae evaluate: error: this run needs about") and message.count("\n") == 1
    assert "importance sampling" in message and "0.25 GiB available; lower --iw-batch-size or --iw-chunk" in message
    assert not (run_dir / "eval.json").exists()


def test_the_short_yelp_defaults_are_estimated_under_half_a_gigabyte_above_the_libraries():
    """The paper-size model on short_yelp's 10,000-sentence test split (the training split probed too):
    the stages' chunks keep the estimate small, where one stage once held 12.7 GB."""
    vae = TextVAE(TextVAEConfig(vocab_size=5151, embed_dim=128, hidden_dim=512, latent_dim=32))
    parts = evaluation_estimate(vae, 10_000, 10_000, 15, EVALUATE_DEFAULTS.iw_samples, EVALUATE_DEFAULTS.iw_batch_size,
                                EVALUATE_DEFAULTS.iw_chunk, EVALUATE_DEFAULTS.prior_samples)
    peak = parts["model"] + parts["posteriors"] + max(v for k, v in parts.items() if k not in ("model", "posteriors"))
    assert peak < 2**29
    assert parts["hole metrics"] == 3 * 4 * 512 * 1024 * 32 and parts["density gap"] == 4 * 4 * 10_000 * 32
