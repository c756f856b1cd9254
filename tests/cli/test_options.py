"""The ``textvae`` command line as a new user meets it: every option has help and shows its default
(read from the option dataclasses), the parser imports no torch, and each bad option is refused
in one line, with a non-zero exit, no traceback and nothing written."""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import shutil
import subprocess
import sys

import pytest
import torch

from evaluation.evaluate_options import EVALUATE_DEFAULTS
from inference.train_config import SYNTHETIC_DEFAULTS, SYNTHETIC_EPOCHS, TrainConfig
from pyro_textvae.cli import build_parser, main
from pyro_textvae.cli.train import _model_options, _train_config
from pyro_textvae.config import TextVAEConfig
from pyro_textvae.demo import SYNTHETIC_MODEL, SYNTHETIC_OPTIMIZER
from tests.cli.test_cli import TINY


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


@pytest.mark.parametrize("command", sorted(_subparsers(build_parser())))
def test_every_option_has_help_and_its_default_is_shown(command):
    parser = _subparsers(build_parser())[command]
    text = " ".join(parser.format_help().split())
    for action in _options(parser):
        assert action.help, f"{command} {action.dest} has no help"
        shown = action.default not in (None, False, []) and (action.option_strings or action.nargs == "?")
        if shown:
            assert f"(default: {action.default})" in text, f"{command} {action.dest}: default not shown"


def test_the_top_level_help_is_plain_text():
    text = build_parser().format_help()
    assert "``" not in text and ":func:" not in text and "textvae COMMAND --help" in text


def test_evaluate_defaults_are_one_source_for_the_parser_and_the_library():
    import inspect

    from evaluation.latent_metrics import hole_metrics
    from evaluation.report import evaluate_run

    defaults = dataclasses.asdict(EVALUATE_DEFAULTS)
    args = build_parser().parse_args(["evaluate", "RUN"])
    signature = inspect.signature(evaluate_run).parameters
    for name, value in defaults.items():
        assert getattr(args, name) == value, name
        assert signature[name].default == value, name
    assert build_parser().parse_args(["compare", "RUN"]).split == EVALUATE_DEFAULTS.split
    assert inspect.signature(hole_metrics).parameters["num_prior_samples"].default == EVALUATE_DEFAULTS.prior_samples
    help_text = " ".join(_subparsers(build_parser())["evaluate"].format_help().split())
    assert f"(default: {EVALUATE_DEFAULTS.iw_samples})" in help_text


def test_train_defaults_are_the_option_dataclasses_defaults():
    args = build_parser().parse_args(["train"])
    train_fields = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    model_fields = {f.name: f.default for f in dataclasses.fields(TextVAEConfig)}
    for name in ("batch_size", "clip_norm", "seed", "checkpoint_every", "skip_nonfinite"):
        assert getattr(args, name) == train_fields[name], name
    for name in ("embed_dim", "latent_dim", "dropout_in", "dropout_out", "latent", "kappa"):
        assert getattr(args, name) == model_fields[name], name
    assert args.synthetic_train == SYNTHETIC_DEFAULTS["num_train"]
    text = " ".join(_subparsers(build_parser())["train"].format_help().split())
    # the main job's own defaults on the synthetic corpus, the paper's with --data (pyro_textvae/demo.py)
    assert args.optimizer is None and args.hidden_dim is None
    assert f"(default: {TrainConfig.optimizer} with --data, {SYNTHETIC_OPTIMIZER} on the synthetic corpus)" in text
    assert f"(default: {TextVAEConfig.hidden_dim} with --data, {SYNTHETIC_MODEL['hidden_dim']} on the synthetic" in text
    assert _model_options(args)["hidden_dim"] == SYNTHETIC_MODEL["hidden_dim"]
    assert _train_config(args, {})[0].optimizer == SYNTHETIC_OPTIMIZER
    with_data = build_parser().parse_args(["train", "--data", "corpus"])
    assert _model_options(with_data) == {name: model_fields[name] for name in _model_options(with_data)}
    assert _train_config(with_data, {})[0].optimizer == TrainConfig.optimizer
    given = build_parser().parse_args(["train", "--hidden-dim", "8", "--optimizer", "sgd"])
    assert _model_options(given)["hidden_dim"] == 8 and _train_config(given, {})[0].optimizer == "sgd"
    assert f"default: {TrainConfig.epochs} with --data, {SYNTHETIC_EPOCHS} on the synthetic" in text
    for name in ("decay_patience", "lr_decay", "max_decays"):  # None on the command line: a --schedule's
        assert getattr(args, name) is None and f"(default: {train_fields[name]}, or the --schedule's)" in text


@pytest.mark.parametrize("argv", [["--help"], ["train", "--help"], ["train", "--epochs", "two"],
                                  ["train", "--epochs", "0"], ["train", "--resume", "RUN", "--objective", "ae"],
                                  ["sample", "RUN", "-n", "0"], ["evaluate", "RUN", "--iw-samples", "0"]])
def test_help_and_option_errors_import_neither_torch_nor_pyro(argv):
    code = ("import sys\nfrom pyro_textvae.cli import main\ntry:\n    main(sys.argv[1:])\nexcept SystemExit:\n"
            "    pass\nheavy = [m for m in ('torch', 'pyro', 'arviz', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    result = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr


FAST_ERRORS = [
    (["train", "--latent-dim", "0"], "textvae train: error: argument --latent-dim: must be >= 1, got 0"),
    (["train", "--latent", "vmf", "--latent-dim", "1"],
     "textvae train: error: model option --latent-dim must be >= 2 for --latent 'vmf'"),
    (["train", "--dropout-out", "1"], "textvae train: error: argument --dropout-out: must be in [0, 1), got 1"),
    (["train", "--data", "{tmp}/absent"], "textvae train: error: --data: corpus folder '{tmp}/absent' does not exist"),
    (["train", "--data", ""], "textvae train: error: argument --data: expects a path, got ''"),
    (["train", "--resume", ""], "textvae train: error: argument --resume: expects a path, got ''"),
    (["train", "--resume", "{tmp}/absent"], "textvae train: error: --resume: run folder '{tmp}/absent' does not"),
    (["train", "--synthetic-train", "1000000000"],
     "textvae train: error: argument --synthetic-train: must be <= 1,000,000, got 1,000,000,000"),
    (["train", "--curve-samples", "1" + "0" * 30],
     "textvae train: error: argument --curve-samples: must be <= 1,000,000"),
    (["train", "--threads", "100000"], "textvae train: error: argument --threads: must be <= "),
    (["train", "--param", "warmup_epochs=inf"],
     "textvae train: error: objective 'elbo': parameter warmup_epochs=inf must be finite"),
    (["evaluate", "{tmp}/absent"], "textvae evaluate: error: run folder '{tmp}/absent' does not exist"),
    (["evaluate", ""], "textvae evaluate: error: RUN: expects a path, got ''"),
    (["sample", "{tmp}/absent"], "textvae sample: error: run folder '{tmp}/absent' does not exist"),
    (["reconstruct", "{tmp}/absent", "a b"], "textvae reconstruct: error: run folder '{tmp}/absent' does not"),
    (["explore", "{tmp}/absent", "--out", "{tmp}/x"], "textvae explore: error: run folder '{tmp}/absent' does"),
    (["compare", "{tmp}/absent"], "textvae compare: error: run folder '{tmp}/absent' does not exist"),
    (["experiment", "{tmp}/absent.toml"], "textvae experiment: error: {tmp}/absent.toml: experiment file not found"),
    (["toy", "--out", "{tmp}/toy", "--objectives", "elbo,nope"],
     "textvae toy: error: --objectives: unknown objective 'nope'; valid: elbo"),
]


@pytest.mark.parametrize("argv, message", FAST_ERRORS, ids=[" ".join(a) for a, _ in FAST_ERRORS])
def test_paths_and_option_ranges_are_refused_before_torch_is_imported_naming_the_flag(argv, message, tmp_path):
    """A missing folder or file, an empty path, a model option out of range: one line naming the flag
    or the path, exit 2, nothing written, and neither torch nor Pyro imported (so it comes at once)."""
    code = ("import sys\nfrom pyro_textvae.cli import main\ntry:\n    status = main(sys.argv[1:])\n"
            "except SystemExit as exit_:\n    status = exit_.code\n"
            "heavy = [m for m in ('torch', 'pyro', 'arviz', 'matplotlib') if m in sys.modules]\n"
            "assert not heavy, heavy\nsys.exit(status)\n")
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = ["--out", str(tmp_path / "new")] if argv[0] == "train" and "--resume" not in argv else []
    result = subprocess.run([sys.executable, "-c", code, *argv, *out], capture_output=True, text=True, check=False)
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(message.format(tmp=tmp_path)), result.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("options") / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--seed", "1", *TINY]) == 0
    return out


def _refused(argv: list[str], capsys) -> str:
    """Run the command; check a non-zero exit and one line on stderr; return that line."""
    try:
        status = main(argv)
    except SystemExit as exit_:
        status = exit_.code
    err = capsys.readouterr().err
    assert status not in (0, None)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    return err.rstrip("\n")


RUN = "{run}"
BAD_OPTIONS = [
    (["train", "--epochs", "0"], "textvae train: error: --epochs must be >= 1, got 0"),
    (["train", "--min-count", "0"], "textvae train: error: argument --min-count: must be >= 1, got 0"),
    (["train", "--lr", "-1"], "textvae train: error: --lr must be > 0, got -1.0"),
    (["train", "--lr", "inf"], "textvae train: error: --lr must be <= 100 (the paper's rates are 0.5 with sgd"),
    (["train", "--lr", "3e38", "--optimizer", "sgd"], "textvae train: error: --lr must be <= 100"),
    (["train", "--lr", "1e38", "--optimizer", "adam"], "textvae train: error: --lr must be <= 100"),
    (["train", "--lr", "nan"], "textvae train: error: --lr must be > 0, got nan"),
    (["train", "--lr-decay", "2"], "textvae train: error: --lr-decay must be in (0, 1), got 2.0"),
    (["train", "--checkpoint-minutes", "-1"],
     "textvae train: error: --checkpoint-minutes must be >= 0 (0: off), got -1.0"),
    (["train", "--device", "gpu"], "textvae train: error: --device 'gpu' is not a torch device"),
    (["train", "--nonsense"], "textvae: error: unrecognized arguments: --nonsense (see textvae --help)"),
    (["sample", RUN, "-n", "-1"], "textvae sample: error: argument -n: must be >= 1, got -1"),
    (["sample", RUN, "--temperature", "0"], "textvae sample: error: argument --temperature: must be > 0, got 0"),
    (["sample", RUN, "--beam-width", "0"], "textvae sample: error: argument --beam-width: must be >= 1, got 0"),
    (["sample", RUN, "--max-length", "0"], "textvae sample: error: argument --max-length: must be >= 1, got 0"),
    (["reconstruct", RUN, "a b", "--max-length", "x"],
     "textvae reconstruct: error: argument --max-length: expects an integer, got 'x'"),
    (["sample", RUN, "--device", "bogus"], "textvae sample: error: --device 'bogus' is not a torch device"),
    (["reconstruct", RUN, "a", "--device", "bogus"], "textvae reconstruct: error: --device 'bogus' is not a torch"),
    (["evaluate", RUN, "--device", "bogus", "--no-progress"], "textvae evaluate: error: --device 'bogus' is not a"),
    (["evaluate", RUN, "--iw-samples", "0"], "textvae evaluate: error: argument --iw-samples: must be >= 1, got 0"),
    (["explore", RUN, "--out", "{tmp}/x", "--sentences", "0"],
     "textvae explore: error: argument --sentences: must be >= 1, got 0"),
    (["toy", "--out", "{tmp}/toy", "--dpi", "0"], "textvae toy: error: argument --dpi: must be >= 1, got 0"),
    (["train", "--objective", "beta", "--param", "beta=-1"],
     "textvae train: error: objective 'beta': parameter beta=-1 must be >= 0"),
    (["train", "--warmup-epochs", "-2"],
     "textvae train: error: objective 'elbo': parameter warmup_epochs=-2.0 must be >= 0"),
    (["explore", RUN, "--out", "{tmp}/x", "--dims", "0,9"],
     "textvae explore: error: --dims 0,9: give two different latent dimensions of 0..2"),
    (["explore", RUN, "--out", "{tmp}/x", "--sentences", "100000"],
     "textvae explore: error: --sentences 100000: the test split of"),
]


@pytest.mark.parametrize("argv, message", BAD_OPTIONS, ids=[" ".join(a) for a, _ in BAD_OPTIONS])
def test_a_bad_option_is_one_line_naming_it_and_leaves_nothing(argv, message, run_dir, tmp_path, capsys,
                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    before = sorted(p.name for p in run_dir.iterdir())
    argv = [a.format(run=run_dir, tmp=tmp_path) for a in argv]
    if argv[0] == "train" and "--help" not in argv:
        argv += ["--out", str(tmp_path / "new"), *TINY]
    assert _refused(argv, capsys).startswith(message)
    assert list(tmp_path.iterdir()) == [] and sorted(p.name for p in run_dir.iterdir()) == before


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
@pytest.mark.parametrize("command", [["sample"], ["reconstruct", "{run}", "a"], ["evaluate"]])
def test_cuda_without_a_gpu_is_named_as_such_not_as_a_bad_checkpoint(command, run_dir, capsys):
    argv = [a.format(run=run_dir) for a in command] + ([] if len(command) > 1 else [str(run_dir)])
    line = _refused([*argv, "--device", "cuda"], capsys)
    assert line == f"textvae {command[0]}: error: --device 'cuda' but CUDA is not available on this machine"


def test_explore_out_that_is_a_file_is_named(run_dir, tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    line = _refused(["explore", str(run_dir), "--out", str(tmp_path / "file")], capsys)
    assert line == f"textvae explore: error: --out {tmp_path / 'file'}: exists and is not a folder"
    assert (tmp_path / "file").read_text() == "keep"


def test_a_bad_value_in_config_json_names_the_file(run_dir, tmp_path, capsys):
    run = shutil.copytree(run_dir, tmp_path / "run")
    config = json.loads((run / "config.json").read_text())
    for value, problem in (("16", "option hidden_dim must be int, got '16'"),
                           (-4, "model option hidden_dim must be an integer >= 1, got -4")):
        config["model"]["hidden_dim"] = value
        (run / "config.json").write_text(json.dumps(config))
        line = _refused(["sample", str(run)], capsys)
        assert line == f"textvae sample: error: {run / 'config.json'} [model]: {problem}"


def test_a_truncated_checkpoint_is_called_so_and_the_other_one_named(run_dir, tmp_path, capsys):
    run = shutil.copytree(run_dir, tmp_path / "run")
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    line = _refused(["sample", str(run)], capsys)
    assert line.startswith(f"textvae sample: error: {run / 'best.pt'}: cannot be read, truncated or corrupt (")
    assert line.endswith("; last.pt beside it may still be fine") and len(line) < 300 and "pickle" not in line


def test_an_experiment_with_a_missing_corpus_writes_nothing(tmp_path, capsys):
    toml = tmp_path / "exp.toml"
    toml.write_text('out = "results"\n[data]\npath = "absent"\n[[methods]]\nname = "VAE"\nobjective = "elbo"\n')
    line = _refused(["experiment", str(toml), "--no-progress"], capsys)
    assert line.startswith("textvae experiment: error: ") and "absent" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exp.toml"]


def test_an_option_of_an_experiment_file_is_named_as_in_the_file_not_as_a_flag(tmp_path, capsys):
    toml = tmp_path / "exp.toml"
    toml.write_text('[train]\nlr = -1.0\n[[methods]]\nname = "VAE"\nobjective = "elbo"\n')
    line = _refused(["experiment", str(toml), "--no-progress"], capsys)
    assert line.endswith("[train]: lr must be > 0, got -1.0") and "--lr" not in line


def test_the_flag_of_a_library_option_is_the_commands_own():
    commands = build_parser().commands.choices
    assert commands["train"].flag_of("batch_size") == "--batch-size"
    assert commands["train"].flag_of("num_samples") == "--dg-samples"  # the density-gap objective's parameter
    assert commands["evaluate"].flag_of("num_samples") == "num_samples"  # evaluate has no such flag
    assert commands["experiment"].flag_of("lr") == "lr"


@pytest.mark.parametrize("package", ["pyro_textvae", "inference", "evaluation"])
def test_every_name_a_package_exports_on_first_use_resolves(package):
    module = importlib.import_module(package)
    for name in module.__all__:
        assert getattr(getattr(module, name), "__name__", name) == name  # OBJECTIVES is a dict
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'no_such_name'"):
        module.no_such_name


@pytest.mark.parametrize("command", ["sample", "reconstruct", "evaluate", "explore"])
def test_the_checkpoint_help_names_the_loss_that_picks_best_pt_for_every_objective(command):
    """best.pt is the lowest validation -ELBO except where the objective selects on its own loss (DG-VAE):
    the help says which, from the objectives the trainer reads."""
    from inference.objectives import OBJECTIVES

    (action,) = [a for a in _options(_subparsers(build_parser())[command]) if a.dest == "checkpoint"]
    own = [name for name, objective in OBJECTIVES.items() if objective.selection == "objective"]
    assert own and action.help.startswith(f"best.pt (lowest validation -ELBO; for {', '.join(own)} the objective's "
                                          "own validation loss")


def test_train_help_shows_the_curve_samples_default_as_a_number():
    from inference.train_config import CURVE_PRIOR_SAMPLES

    text = " ".join(_subparsers(build_parser())["train"].format_help().split())
    assert f"(default: {CURVE_PRIOR_SAMPLES}; with --resume: the run's own; 0: no MI and joint-KL curves)" in text
    assert "CURVE_" not in text


def test_the_experiment_help_shows_a_file_that_reads_as_an_experiment(tmp_path):
    """The example in ``experiment --help`` is valid TOML (no key on a table header's line) that
    load_experiment accepts as it is, every method's options checked."""
    import tomllib

    from pyro_textvae.cli.experiment import EXAMPLE
    from pyro_textvae.cli.experiment_file import load_experiment

    assert EXAMPLE in _subparsers(build_parser())["experiment"].format_help()
    assert "experiment_file.py" not in _subparsers(build_parser())["experiment"].format_help()
    parsed = tomllib.loads(EXAMPLE)
    (tmp_path / "experiment.toml").write_text(EXAMPLE)
    config = load_experiment(tmp_path / "experiment.toml")
    assert [method["name"] for method in config["methods"]] == ["VAE", "DG-VAE"] and config["seeds"] == [0, 1]
    assert set(parsed) == {"out", "seeds", "data", "model", "schedule", "train", "evaluate", "plots", "targets",
                           "methods"}


def test_evaluate_help_says_how_long_the_defaults_take():
    text = " ".join(_subparsers(build_parser())["evaluate"].format_help().split())
    assert "the defaults take about 1 h 40 min of one CPU core" in text
    assert f"K = {EVALUATE_DEFAULTS.iw_samples} samples of every sentence" in text
    assert f"({EVALUATE_DEFAULTS.prior_samples:,} prior draws)" in text
