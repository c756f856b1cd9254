"""What ``textvae train`` tells the user: one validation line an epoch naming the run, "nothing to
do" for a finished run, options that --resume would ignore refused, words read as <unk> named, the
thread count recorded and used again by --resume."""
from __future__ import annotations

import json

import pytest
import torch

from inference.trainer import epoch_line
from pyro_textvae.cli import main
from tests.cli.test_cli import TINY


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("console") / "demo"
    assert main(["train", "--epochs", "2", "--out", str(out), "--seed", "2", *TINY]) == 0
    return out


def _files(run) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in run.rglob("*") if p.is_file()}


def test_epoch_line_has_the_validation_numbers_and_no_negative_zero():
    record = {"epoch": 3, "train_loss": 30.456, "valid_elbo_loss": 29.1, "valid_reconstruction": 29.101,
              "valid_kl": -0.001, "valid_active_units": 4, "seconds": 12.4, "improved": True, "halved": False,
              "stop": False}
    assert epoch_line("demo", record, 20) == ("demo epoch 3/20: train -ELBO 30.46, valid -ELBO 29.10 "
                                              "(Rec 29.10, KL 0.00, AU 4), 12 s, best so far")
    record.update(valid_objective_loss=21.874, improved=False, halved=True)
    assert epoch_line("dg", record, 20).endswith("(Rec 29.10, KL 0.00, AU 4), valid objective 21.87, 12 s, lr halved")


def test_train_prints_one_line_an_epoch_naming_the_run(tmp_path, capsys):
    out = tmp_path / "named"
    assert main(["train", "--epochs", "2", "--out", str(out), "--seed", "2", *TINY]) == 0
    lines = capsys.readouterr().out.splitlines()
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert lines[0].startswith("synthetic corpus: vocabulary ")  # the corpus summary comes first
    assert lines[1:3] == [epoch_line("named", record, 2) for record in records]
    assert lines[1].startswith("named epoch 1/2: train -ELBO ")


def test_resume_of_a_finished_run_says_there_is_nothing_to_do(finished, capsys):
    before = _files(finished)
    assert main(["train", "--resume", str(finished), "--no-progress"]) == 0
    assert capsys.readouterr().out == (f"{finished}: nothing to do: 2 of 2 epochs done "
                                       "(--epochs N continues a finished run)\n")
    assert _files(finished) == before


@pytest.mark.parametrize("epochs", [["--epochs", "3"], []], ids=["more epochs", "finished"])
@pytest.mark.parametrize("extra, flags", [
    (["--objective", "dg"], "--objective"),
    (["--batch-size", "8", "--lr", "0.1"], "--batch-size, --lr"),
    (["--objective", "elbo"], "--objective"),  # the run's own value and the parser's default: given all the same
    (["--seed", "2", "--latent-dim", "3"], "--latent-dim, --seed"),
    (["--init", "pytorch", "--linear-bias", "on"], "--init, --linear-bias"),
    (["--out", "runs/textvae", "--warmup-epochs", "1"], "--warmup-epochs, --out"),
])
def test_resume_refuses_the_options_it_would_ignore(finished, capsys, extra, flags, epochs):
    """Every option given beside --resume but --epochs, --device, --precision (and the progress, the
    curves, --distributed) is refused, even at the value config.json holds; on a finished run too."""
    before = _files(finished)
    assert main(["train", "--resume", str(finished), *epochs, *extra]) == 2
    err = capsys.readouterr().err
    assert err == (f"textvae train: error: --resume {finished} takes its options from {finished}/config.json; "
                   f"{flags} cannot change there (only --epochs, --device, --precision)\n")
    assert _files(finished) == before


def test_the_curve_samples_are_recorded_and_used_again_by_resume(tmp_path):
    """--curve-samples goes into config.json, so a resume draws the curves' joint-KL as the run began."""
    out = tmp_path / "curves"
    assert main(["train", "--epochs", "1", "--out", str(out), "--curve-samples", "64", *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["train"]["curve_samples"] == 64
    assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [record["valid_joint_kl_prior_samples"] for record in records] == [64, 64]


@pytest.mark.parametrize("curves", ["0", "64"])
def test_a_resumed_run_writes_the_metrics_lines_of_a_straight_one(tmp_path, curves):
    """Same config, same seed: the same metrics.jsonl lines (curve keys included), resumed or not; only
    ``stop`` differs, on the epoch where the first run's --epochs 1 ended it."""
    straight, resumed = tmp_path / "straight", tmp_path / "resumed"
    assert main(["train", "--epochs", "2", "--out", str(straight), "--curve-samples", curves, *TINY]) == 0
    assert main(["train", "--epochs", "1", "--out", str(resumed), "--curve-samples", curves, *TINY]) == 0
    assert main(["train", "--resume", str(resumed), "--epochs", "2", "--no-progress"]) == 0

    def lines(run):
        return [{k: v for k, v in json.loads(line).items() if k not in ("seconds", "stop")}
                for line in (run / "metrics.jsonl").read_text().splitlines()]

    assert lines(resumed) == lines(straight)
    assert ("valid_joint_kl" in lines(straight)[1]) == (curves != "0")


def test_reconstruct_names_the_words_it_reads_as_unk(finished, capsys):
    assert main(["reconstruct", str(finished), "the zzqx food was xyzzy", "--max-length", "4"]) == 0
    captured = capsys.readouterr()
    vocab = json.loads((finished / "vocab.json").read_text())
    unknown = sorted(w for w in "the zzqx food was xyzzy".split() if w not in vocab)
    assert "zzqx" in unknown and "xyzzy" in unknown
    assert captured.err == (f"textvae reconstruct: not in the vocabulary of {finished}, read as <unk>: "
                            f"{' '.join(unknown)}\n")
    assert len(captured.out.splitlines()) == 1


@pytest.mark.slow
def test_the_thread_count_is_recorded_and_used_again_by_resume(tmp_path):
    out = tmp_path / "threads"
    try:
        assert main(["train", "--epochs", "1", "--out", str(out), "--threads", "2", *TINY]) == 0
        assert json.loads((out / "config.json").read_text())["train"]["threads"] == 2
        torch.set_num_threads(1)
        assert main(["train", "--resume", str(out), "--epochs", "2", "--no-progress"]) == 0
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(1)
    default = tmp_path / "default"
    assert main(["train", "--epochs", "1", "--out", str(default), *TINY]) == 0
    assert json.loads((default / "config.json").read_text())["train"]["threads"] == torch.get_num_threads()


def test_train_init_paper_is_saved_and_builds_the_bias_free_model_again(tmp_path):
    """``--init paper`` lands in config.json with the heads bias-free; sample and --resume rebuild that model."""
    from pyro_textvae.run_folder import open_run

    out = tmp_path / "paper"
    assert main(["train", "--epochs", "1", "--out", str(out), "--seed", "2", "--init", "paper",
                 "--curve-samples", "0", *TINY]) == 0
    model = json.loads((out / "config.json").read_text())["model"]
    assert (model["init"], model["linear_bias"]) == ("paper", None)
    vae = open_run(out).vae
    assert vae.decoder.output.bias is None and vae.posterior.linear.bias is None
    assert main(["train", "--resume", str(out), "--epochs", "2", "--curve-samples", "0", "--no-progress"]) == 0
    assert main(["sample", str(out), "-n", "2", "--max-length", "4"]) == 0


def test_train_linear_bias_on_keeps_the_biases_at_the_paper_init(tmp_path):
    out = tmp_path / "biased"
    assert main(["train", "--epochs", "1", "--out", str(out), "--init", "paper", "--linear-bias", "on",
                 "--curve-samples", "0", *TINY]) == 0
    assert json.loads((out / "config.json").read_text())["model"]["linear_bias"] is True
    state = torch.load(out / "best.pt", weights_only=True)
    assert any(key.endswith("output.bias") for key in _flat_keys(state))


def _flat_keys(tree, prefix=""):
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _flat_keys(value, f"{prefix}{key}.")
    else:
        yield prefix.rstrip(".")


@pytest.mark.parametrize("options", [["--dg-aggregate", "stratified"],
                                     ["--dg-aggregate", "memory", "--dg-memory", "20"]])
def test_train_takes_the_data_aggregate_and_resumes_with_it(tmp_path, options):
    out = tmp_path / "dg"
    assert main(["train", "--epochs", "1", "--out", str(out), "--objective", "dg", "--dg-samples", "2",
                 "--curve-samples", "0", *options, *TINY]) == 0
    params = json.loads((out / "config.json").read_text())["objective"]["params"]
    assert params["aggregate"] == options[1] and params["memory_size"] == (20 if "memory" in options else 1024)
    memory = torch.load(out / "last.pt", weights_only=True)["loss_state"].get("memory")
    assert (memory is not None and memory["count"] == 20) == ("memory" in options)
    assert main(["train", "--resume", str(out), "--epochs", "2", "--curve-samples", "0", "--no-progress"]) == 0
