"""The ``textvae`` command line: a tiny end-to-end run and every bad-input message."""
from __future__ import annotations

import json
import math

import pytest
import torch

from evaluation.generation import decode, posterior_center
from inference.elbo import elbo_terms
from pyro_textvae.cli import main
from pyro_textvae.data import make_batch, write_synthetic
from pyro_textvae.run_folder import open_run

TINY = ["--synthetic-train", "64", "--embed-dim", "8", "--hidden-dim", "16", "--latent-dim", "3",
        "--batch-size", "16", "--optimizer", "adam", "--no-progress"]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--seed", "3", *TINY]) == 0
    return out


def test_train_writes_a_complete_run_folder(tiny_run):
    names = {p.name for p in tiny_run.iterdir()}
    assert {"config.json", "vocab.json", "metrics.jsonl", "best.pt", "last.pt"} <= names
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["train"]["seed"] == 3 and config["model"]["hidden_dim"] == 16
    assert config["data"]["synthetic"]["num_train"] == 64


def test_resume_adds_the_missing_epochs(tiny_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_run, copy)
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--no-progress"]) == 0
    lines = (copy / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]


def _printed(capsys, argv) -> list[str]:
    assert main(argv) == 0
    return capsys.readouterr().out.splitlines()


def test_sample_and_reconstruct_print_sentences_from_the_vocabulary(tiny_run, capsys):
    vocab = set(json.loads((tiny_run / "vocab.json").read_text()))
    lines = _printed(capsys, ["sample", str(tiny_run), "-n", "3", "--max-length", "5"])
    assert len(lines) == 3 and all(len(line.split()) <= 5 and set(line.split()) <= vocab for line in lines)
    out = _printed(capsys, ["reconstruct", str(tiny_run), "the food is good", "--strategy", "beam",
                            "--max-length", "6"])
    source, arrow, output = out[0].partition(" -> ")
    assert len(out) == 1 and source == "the food is good" and arrow
    assert len(output.split()) <= 6 and set(output.split()) <= vocab


@pytest.mark.parametrize("command, lines", [(["sample", "-n", "4"], 4),
                                            (["reconstruct", "the food is good", "bad service"], 2)])
def test_seed_fixes_sampled_decoding(tiny_run, capsys, command, lines):
    """Same --seed: the same sentences; another --seed: other sentences (after one epoch the
    decoder is close to uniform over the vocabulary, so two seeds agreeing on every one of the
    30-word lines has negligible probability)."""
    argv = [command[0], str(tiny_run), *command[1:], "--strategy", "sample", "--max-length", "30"]
    first = _printed(capsys, [*argv, "--seed", "5"])
    torch.manual_seed(123)
    assert _printed(capsys, [*argv, "--seed", "5"]) == first
    assert _printed(capsys, [*argv, "--seed", "6"]) != first
    assert len(first) == lines


def test_greedy_reconstruct_decodes_the_posterior_center(tiny_run, capsys):
    run = open_run(tiny_run)
    sentences = ["the food is good", "bad service"]
    expected = []
    for sentence in sentences:
        batch = make_batch([run.corpus.vocab.encode(sentence.split())])
        with torch.no_grad():
            center = posterior_center(run.vae.posterior_distribution(batch.tokens, batch.mask))
        expected.append(" ".join(run.corpus.vocab.decode(decode(run.vae, center, "greedy", 7)[0])))
    printed = _printed(capsys, ["reconstruct", str(tiny_run), "the  food is good", "bad service", "--max-length", "7"])
    assert printed == [f"{sentence} -> {output}" for sentence, output in zip(sentences, expected)]


def test_objectives_lists_every_registered_name(capsys):
    from inference.objectives import OBJECTIVES

    assert main(["objectives"]) == 0
    out = capsys.readouterr().out
    assert all(name in out for name in OBJECTIVES)


def test_sweep_trains_one_sibling_run_per_value(tmp_path):
    out = tmp_path / "sweep"
    args = ["train", "--epochs", "1", "--out", str(out), "--objective", "beta", "--param", "beta=0.1,0.4", *TINY]
    assert main(args) == 0
    for value in ("0.1", "0.4"):
        config = json.loads((tmp_path / f"sweep-beta={value}" / "config.json").read_text())
        assert config["objective"]["params"]["beta"] == float(value)


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--objective", "nope"], "unknown objective 'nope'; valid: elbo"),
        (["--param", "gamma=2"], "has no parameter 'gamma'; valid: warmup_epochs"),
        (["--param", "warmup_epochs=soon"], "warmup_epochs='soon' is not a float"),
        (["--param", "novalue"], "NAME=VALUE"),
        (["--data", "/nonexistent/corpus"], "/nonexistent/corpus"),
        (["--batch-size", "0"], "--batch-size must be >= 1"),
    ],
)
def test_bad_options_end_with_one_clear_message(tmp_path, capsys, extra, message):
    assert main(["train", "--epochs", "1", "--out", str(tmp_path / "r"), *TINY, *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_corpus_errors_name_the_file_and_line(tmp_path, capsys):
    corpus = write_synthetic(tmp_path / "corpus", num_train=20, num_valid=5, num_test=5)
    (corpus / "valid.txt").write_bytes(b"1\tgood food\n0\tbad \xff food\n")
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "r"), *TINY]) == 2
    err = capsys.readouterr().err
    assert "valid.txt" in err and "line 2" in err
    (corpus / "test.txt").unlink()
    assert main(["train", "--data", str(corpus), "--out", str(tmp_path / "r"), *TINY]) == 2
    assert "test" in capsys.readouterr().err


def test_existing_run_is_kept_without_overwrite(tiny_run, capsys):
    before = (tiny_run / "last.pt").read_bytes()
    assert main(["train", "--epochs", "1", "--out", str(tiny_run), *TINY]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tiny_run / "last.pt").read_bytes() == before


def test_missing_run_folder_is_named(tmp_path, capsys):
    assert main(["sample", str(tmp_path / "absent")]) == 2
    assert "absent" in capsys.readouterr().err


def test_density_gap_options_reach_the_objective(tmp_path):
    out = tmp_path / "dg"
    assert main(["train", "--epochs", "1", "--out", str(out), "--objective", "dg", "--dg-samples", "4",
                 "--agg-size", "8", "--dg-mode", "joint", *TINY]) == 0
    params = json.loads((out / "config.json").read_text())["objective"]["params"]
    assert (params["num_samples"], params["agg_size"], params["mode"]) == (4, 8, "joint")


def _vmf_uniform_kl_on_s2(kappa: float) -> float:
    """KL(vMF(kappa) || U(S^2)) in R^3 in closed form: C_3 = kappa / (4 pi sinh kappa) and
    A_3 = coth kappa - 1/kappa give kappa A_3 + log C_3 + log 4 pi = kappa coth kappa - 1 + log(kappa / sinh kappa)."""
    return kappa / math.tanh(kappa) - 1 + math.log(kappa) - (kappa + math.log1p(-math.exp(-2 * kappa)) - math.log(2))


def test_vmf_latent_trains_with_elbo_and_with_the_density_gap(tmp_path):
    kl = _vmf_uniform_kl_on_s2(20.0)
    for objective in ("elbo", "dg"):
        out = tmp_path / objective
        assert main(["train", "--epochs", "1", "--out", str(out), "--objective", objective,
                     "--latent", "vmf", "--kappa", "20", *TINY]) == 0
        config = json.loads((out / "config.json").read_text())
        assert config["model"]["latent"] == "vmf" and config["model"]["kappa"] == 20.0
        run = open_run(out)
        batch = make_batch(run.corpus.splits["valid"].ids[:16])
        posterior = run.vae.posterior_distribution(batch.tokens, batch.mask)
        draws = posterior.sample((5,))
        assert draws.shape == (5, 16, 3)
        torch.testing.assert_close(draws.norm(dim=-1), torch.ones(5, 16))
        terms = elbo_terms(run.vae.model, run.vae.guide, batch.tokens, batch.mask)
        torch.testing.assert_close(terms["kl"], torch.full((16,), kl), rtol=1e-5, atol=1e-5)
        valid = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
        assert valid["valid_kl"] == pytest.approx(kl, rel=1e-5)
    assert json.loads((tmp_path / "dg" / "config.json").read_text())["objective"]["params"]["mode"] == "joint"
