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
