"""Experiment method names become run folders under out/runs: a name that would leave it is refused."""
from __future__ import annotations

import pytest

from tests.cli.test_experiment import CONFIG
from tests.cli.test_run_files import refused


@pytest.mark.parametrize("name", ["../../escaped", "/ABSOLUTE/elsewhere", "..", ".hidden", "a\\b", "tab\there", ""])
def test_a_method_name_that_is_not_a_plain_folder_name_is_refused_and_nothing_is_written(tmp_path, capsys, name):
    elsewhere = tmp_path / "elsewhere-seed0"
    elsewhere.mkdir()
    (elsewhere / "best.pt").write_bytes(b"precious")
    name = name.replace("/ABSOLUTE", str(tmp_path))
    config = tmp_path / "exp" / "mini.toml"
    config.parent.mkdir()
    config.write_text(CONFIG.replace('name = "VAE"', f"name = {name!r}".replace("'", '"')))
    message = refused(capsys, "experiment", str(config), "--no-progress")
    assert str(config) in message and "method name" in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(["elsewhere-seed0", "best.pt", "exp", "mini.toml"])
    assert (elsewhere / "best.pt").read_bytes() == b"precious"


@pytest.mark.parametrize("name", ["\U0001f600" * 63, "\u00e9" * 200])
def test_a_method_name_too_long_for_a_folder_name_is_refused_when_the_file_is_read(tmp_path, capsys, name):
    config = tmp_path / "mini.toml"
    config.write_text(CONFIG.replace('name = "VAE"', f'name = "{name}"').replace('out = "results"',
                                                                                  f'out = "{tmp_path / "out"}"'))
    message = refused(capsys, "experiment", str(config), "--no-progress")
    assert str(config) in message and f"method name {name!r}" in message and "240 bytes" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("first, second", [("caf\u00e9", "cafe\u0301"), ("VAE", "VAE "), ("VAE", "vae")])
def test_method_names_whose_folders_would_look_the_same_are_refused_as_duplicates(tmp_path, capsys, first, second):
    config = tmp_path / "mini.toml"
    text = CONFIG.replace('name = "VAE"', f'name = "{first}"').replace('name = "DG-VAE"', f'name = "{second}"')
    config.write_text(text.replace('out = "results"', f'out = "{tmp_path / "out"}"'))
    message = refused(capsys, "experiment", str(config), "--no-progress")
    assert f"method names {first!r} and {second!r}" in message and "look the same" in message
    assert not (tmp_path / "out").exists()
