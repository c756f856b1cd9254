import json

import pytest

from pyro_textvae.errors import CheckpointError
from pyro_textvae.run_folder import read_history


def write_lines(run_dir, records):
    run_dir.mkdir(exist_ok=True)
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))


def test_a_history_reads_back_its_epochs_in_order_and_a_missing_file_is_empty(tmp_path):
    assert read_history(tmp_path) == []
    records = [{"epoch": 1, "valid_elbo_loss": 3.0}, {"epoch": 2, "valid_elbo_loss": 2.5}]
    write_lines(tmp_path, records)
    assert read_history(tmp_path) == records


@pytest.mark.parametrize(("records", "found"), [
    ([{"epoch": 1}, {"valid_elbo_loss": 2.0}], "None"),
    ([{"epoch": 1}, {"epoch": 3}], "3"),
    ([{"epoch": 1}, {"epoch": 1}], "1"),
    ([{"epoch": 1}, {"epoch": 2.0}], "2.0"),
    ([{"epoch": True}], "True"),
    ([{"epoch": 1}, [2]], "None"),
])
def test_a_line_that_is_not_its_epoch_is_refused_with_file_and_line(tmp_path, records, found):
    write_lines(tmp_path, records)
    line = len(records)
    with pytest.raises(CheckpointError, match=rf"metrics\.jsonl:{line}: not the line of epoch {line} "
                                              rf"\(its \"epoch\" is {found}\)"):
        read_history(tmp_path)
