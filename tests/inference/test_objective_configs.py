"""The typed objective configs (inference/objective_configs.py): one source for every parameter's
default, type and range; a value out of range refused naming the parameter; config.json round trips
exactly; old spellings read; the ELBO, the CLI options and `textvae objectives` built from them."""
from __future__ import annotations

import dataclasses
import inspect

import pytest

from inference.objective_configs import (
    CONFIGS,
    DGConfig,
    configure_from_text,
    describe_parameters,
)
from inference.objectives import OBJECTIVES, get_objective
from pyro_textvae.checks import Range, check_value
from pyro_textvae.cli import build_parser, main
from pyro_textvae.io import load_json, save_json

FIELDS = [(name, item) for name, cls in CONFIGS.items() for item in dataclasses.fields(cls)]
NUMERIC = [(name, item) for name, item in FIELDS if item.metadata["range"].minimum is not None]


def _other_value(item: dataclasses.Field):
    """A value in range that is not the default."""
    wanted = item.metadata["range"]
    if wanted.choices:
        return next(choice for choice in wanted.choices if choice != item.default)
    return item.default + (3 if wanted.kind is int else 0.75)


def test_the_registry_and_the_torch_free_configs_name_the_same_objectives():
    assert list(OBJECTIVES) == list(CONFIGS)
    assert all(objective.config_class is CONFIGS[name] for name, objective in OBJECTIVES.items())


@pytest.mark.parametrize("name, item", NUMERIC, ids=[f"{n}.{i.name}" for n, i in NUMERIC])
def test_a_value_below_the_range_is_refused_naming_objective_parameter_and_value(name, item):
    wanted = item.metadata["range"]
    below = wanted.minimum - (0 if wanted.strict else 1)
    with pytest.raises(ValueError) as error:
        get_objective(name).configure({item.name: below})
    assert str(error.value) == (f"objective {name!r}: parameter {item.name}={below} must be "
                                f"{'>' if wanted.strict else '>='} {wanted.minimum:g}")
    with pytest.raises(ValueError, match=f"parameter {item.name}=True must be {wanted.describe()}"):
        get_objective(name).configure({item.name: True})  # a bool is no number


@pytest.mark.parametrize("name", list(CONFIGS))
def test_a_config_round_trips_through_config_json_exactly(name, tmp_path):
    cls = CONFIGS[name]
    config = cls(**{item.name: _other_value(item) for item in dataclasses.fields(cls)})
    save_json(tmp_path / "config.json", {"objective": {"name": name, "params": config.to_dict()}})
    saved = load_json(tmp_path / "config.json")["objective"]["params"]
    assert get_objective(name).configure(saved) == config and saved == config.to_dict()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_the_loss_takes_the_configs_values(name):
    """Each loss parameter reaches the ELBO under its own name (no registry renames it)."""
    cls = CONFIGS[name]
    config = cls(**{item.name: _other_value(item) for item in dataclasses.fields(cls)})
    loss = get_objective(name).make_loss(config)
    for key, value in config.part("loss").items():
        assert getattr(loss, key) == (None if key == "agg_size" and value == 0 else value), key
    assert get_objective(name).model_options(config).items() >= config.part("model").items()


@pytest.mark.parametrize("old, new, objective", [("gamma", "bn_gamma", "bn"), ("lambda", "weight", "wae-mmd"),
                                                 ("disc_hidden", "hidden_dim", "aae"), ("disc_lr", "lr", "aae")])
def test_an_old_spelling_reads_as_the_current_name_from_a_file_and_the_command_line(old, new, objective):
    item = CONFIGS[objective].parameters()[new]
    value = _other_value(item)
    assert getattr(get_objective(objective).configure({old: value}), new) == value
    assert getattr(configure_from_text(objective, {old: str(value)}), new) == value


def test_the_vmf_latent_makes_the_density_gap_joint_unless_a_mode_is_given():
    assert get_objective("dg").configure(latent="vmf").mode == "joint"
    assert get_objective("dg").configure({"mode": "marginal"}, latent="vmf").mode == "marginal"
    assert get_objective("dg").configure(latent="normal").mode == DGConfig.mode == "marginal"


def test_a_command_line_value_is_named_as_typed():
    with pytest.raises(ValueError, match=r"^objective 'aae': parameter disc_hidden=0 must be >= 1$"):
        configure_from_text("aae", {"disc_hidden": "0"})
    with pytest.raises(ValueError, match=r"^objective 'dg': parameter mode=both must be one of 'marginal', 'joint'$"):
        configure_from_text("dg", {"mode": "both"})


def test_objectives_and_train_help_list_the_same_parameters_from_the_configs(capsys):
    assert main(["objectives"]) == 0
    listing = "".join(capsys.readouterr().out.split())  # argparse wraps lines, at hyphens too
    train = next(action for action in build_parser()._subparsers._group_actions[0].choices.items()
                 if action[0] == "train")[1]
    help_text = "".join(train.format_help().split())
    for name, cls in CONFIGS.items():
        assert "".join(f"{name}: {describe_parameters(name)}".split()) in help_text
        assert "".join(f"parameters: {describe_parameters(name)}".split()) in listing
        for key, value in cls.defaults().items():
            assert f"{key}={value}" in describe_parameters(name)


def test_the_shared_validator_names_the_option_and_refuses_bools():
    assert check_value("n", 3, int, minimum=1) == 3
    assert check_value("rate", 2, float, minimum=0, strict=True) == 2.0
    with pytest.raises(ValueError, match=r"^n must be an integer >= 1, got True$"):
        check_value("n", True, int, minimum=1)
    with pytest.raises(ValueError, match=r"^rate must be a number > 0, got 0$"):
        check_value("rate", 0, float, minimum=0, strict=True)
    assert Range(int, minimum=1, optional=True).check("chunk", None) is None


def test_an_elbos_own_defaults_are_its_configs():
    """Built without a config, an ELBO has the config's defaults (dg-vmf's joint mode is its own config's;
    agg_size 0 is the ELBO's None, the whole batch)."""
    for name, objective in OBJECTIVES.items():
        defaults = objective.config_class().part("loss")
        signature = inspect.signature(objective.loss).parameters
        for key, value in defaults.items():
            if (name, key) not in {("dg-vmf", "mode"), ("dg", "agg_size"), ("dg-vmf", "agg_size")}:
                assert signature[key].default == value, (name, key)
