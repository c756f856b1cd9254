"""Files of a run folder: exact round trips, torn lines dropped, bad files refused naming the file."""
from __future__ import annotations

import dataclasses
import os
import stat

import pytest
import torch

from pyro_textvae.io import (
    CheckpointError,
    append_jsonl,
    atomic_write_bytes,
    check_state_dict,
    dataclass_from_dict,
    file_mode,
    load_checkpoint,
    load_json,
    non_finite_tensors,
    read_bounded,
    read_jsonl,
    restore_rng_state,
    rng_state,
    save_checkpoint,
    save_json,
    truncate_jsonl,
)


def test_json_round_trip_is_exact_and_leaves_no_temporary_file(tmp_path):
    value = {"b": [1, 2.5, None, "x"], "a": {"nested": True}}
    save_json(tmp_path / "sub" / "config.json", value)
    assert load_json(tmp_path / "sub" / "config.json") == value
    assert os.listdir(tmp_path / "sub") == ["config.json"]


def test_a_new_file_gets_the_mode_open_would_give_it(tmp_path):
    atomic_write_bytes(tmp_path / "f", b"x")
    assert stat.S_IMODE((tmp_path / "f").stat().st_mode) == file_mode()


def test_a_failed_write_keeps_the_old_file_and_names_the_new_one(tmp_path, monkeypatch):
    path = tmp_path / "eval.json"
    save_json(path, {"old": 1})

    def full_disk(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(CheckpointError, match="eval.json"):
        save_json(path, {"new": 2})
    monkeypatch.undo()
    assert load_json(path) == {"old": 1}
    assert os.listdir(tmp_path) == ["eval.json"]


def test_jsonl_lines_read_back_in_order_and_a_torn_last_line_is_dropped(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert read_jsonl(path) == []
    for epoch in range(3):
        append_jsonl(path, {"epoch": epoch})
    with open(path, "a") as handle:
        handle.write('{"epoch": 3, "lo')
    assert read_jsonl(path) == [{"epoch": 0}, {"epoch": 1}, {"epoch": 2}]
    truncate_jsonl(path, 2)
    assert path.read_text() == '{"epoch": 0}\n{"epoch": 1}\n'


def test_a_bad_line_is_named_with_its_number(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"epoch": 0}\nnot json\n')
    with pytest.raises(CheckpointError, match=r"metrics.jsonl:2: not valid JSON"):
        read_jsonl(path)


def test_a_file_over_the_limit_is_refused_and_one_at_it_is_read(tmp_path):
    path = tmp_path / "big.json"
    path.write_bytes(b"1" * 10)
    assert read_bounded(path, limit=10) == b"1" * 10
    with pytest.raises(CheckpointError, match="larger than 9 bytes"):
        read_bounded(path, limit=9)
    with pytest.raises(CheckpointError, match="not found"):
        read_bounded(tmp_path / "missing.json")


def test_checkpoint_round_trip_keeps_tensors_and_containers(tmp_path):
    state = {"model": {"w": torch.randn(3, 2)}, "epoch": 4, "tags": ["a", ("b", 1.5)]}
    save_checkpoint(tmp_path / "last.pt", state)
    loaded = load_checkpoint(tmp_path / "last.pt")
    torch.testing.assert_close(loaded["model"]["w"], state["model"]["w"])
    assert loaded["epoch"] == 4 and loaded["tags"] == ["a", ("b", 1.5)]


@dataclasses.dataclass
class _Pickled:
    value: int = 1


def test_a_checkpoint_holding_a_pickled_object_is_refused_and_the_other_one_is_named(tmp_path):
    torch.save({"object": _Pickled()}, tmp_path / "last.pt")
    save_checkpoint(tmp_path / "best.pt", {"w": torch.ones(1)})
    with pytest.raises(CheckpointError, match="pickled objects.*best.pt beside it may still be fine"):
        load_checkpoint(tmp_path / "last.pt")


def test_a_truncated_checkpoint_and_a_non_dict_are_refused(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"w": torch.ones(100)})
    (tmp_path / "b.pt").write_bytes((tmp_path / "a.pt").read_bytes()[:50])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(tmp_path / "b.pt")
    torch.save([1, 2], tmp_path / "c.pt")
    with pytest.raises(CheckpointError, match="must hold a dict"):
        load_checkpoint(tmp_path / "c.pt")


def test_non_finite_tensors_are_named_by_their_path():
    state = {"model": {"w": torch.tensor([1.0, float("nan")]), "ids": torch.tensor([1, 2])},
             "optim": [{"exp_avg": torch.tensor([float("inf")])}]}
    assert list(non_finite_tensors(state)) == ["model.w", "optim.0.exp_avg"]


def test_rng_state_restored_repeats_the_same_draws():
    saved = rng_state()
    first = torch.rand(5)
    restore_rng_state(saved)
    torch.testing.assert_close(torch.rand(5), first)
    restore_rng_state(saved["cpu"])  # a bare tensor: the CPU state of an older checkpoint
    torch.testing.assert_close(torch.rand(5), first)


def test_a_state_dict_of_another_shape_or_names_is_refused(tmp_path):
    module = torch.nn.Linear(3, 2)
    check_state_dict(module, module.state_dict(), tmp_path)
    with pytest.raises(CheckpointError, match=r"weight \(2, 4\) \(model: \(2, 3\)\)"):
        check_state_dict(module, {"weight": torch.zeros(2, 4), "bias": torch.zeros(2)}, tmp_path)
    with pytest.raises(CheckpointError, match=r"missing \['bias'\]"):
        check_state_dict(module, {"weight": torch.zeros(2, 3)}, tmp_path)


@dataclasses.dataclass(frozen=True)
class _Options:
    size: int = 3
    rate: float = 0.5
    name: str | None = None

    def __post_init__(self):
        if self.size < 1:
            raise ValueError("size must be >= 1")


def test_dataclass_from_dict_builds_and_refuses_with_the_option_named():
    assert dataclass_from_dict(_Options, {"size": 4, "rate": 1}, "cfg") == _Options(4, 1)
    with pytest.raises(ValueError, match=r"cfg: unknown option\(s\) \['sise'\]"):
        dataclass_from_dict(_Options, {"sise": 4}, "cfg")
    with pytest.raises(ValueError, match="cfg: option size must be int, got True"):
        dataclass_from_dict(_Options, {"size": True}, "cfg")
    with pytest.raises(ValueError, match="cfg: size must be >= 1"):
        dataclass_from_dict(_Options, {"size": 0}, "cfg")
    with pytest.raises(ValueError, match="cfg must be a JSON object"):
        dataclass_from_dict(_Options, [1], "cfg")


def test_a_checkpoint_with_bytes_changed_on_disk_is_refused_by_its_checksum(tmp_path):
    tensor = torch.arange(4096, dtype=torch.float32)
    save_checkpoint(tmp_path / "best.pt", {"model": {"w": tensor}, "epoch": 3})
    data = bytearray((tmp_path / "best.pt").read_bytes())
    start = bytes(data).index(tensor.numpy().tobytes()[4000:4064])
    data[start:start + 64] = bytes(64)  # 64 zero bytes inside the tensor's data: it still unpickles
    (tmp_path / "best.pt").write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="best.pt: refused: its contents do not match the checksum"):
        load_checkpoint(tmp_path / "best.pt")


def test_a_checkpoint_without_a_checksum_still_loads_and_a_saved_one_round_trips_without_it(tmp_path):
    state = {"model": {"w": torch.ones(3, dtype=torch.bfloat16), "b": torch.zeros(2, dtype=torch.bool)},
             "rest": [1, (2.5, "x")]}
    torch.save(state, tmp_path / "old.pt")  # as checkpoints were written before checksums
    save_checkpoint(tmp_path / "new.pt", state)
    for name in ("old.pt", "new.pt"):
        loaded = load_checkpoint(tmp_path / name)
        assert set(loaded) == {"model", "rest"} and loaded["rest"] == [1, (2.5, "x")]
        assert all(torch.equal(loaded["model"][k], state["model"][k]) for k in state["model"])


def test_a_state_dict_of_another_dtype_is_refused_naming_the_tensor(tmp_path):
    module = torch.nn.Linear(3, 2)
    for dtype in (torch.int64, torch.uint8, torch.bool, torch.complex64):
        state = {**module.state_dict(), "weight": module.weight.detach().to(dtype)}
        with pytest.raises(CheckpointError, match=f"weight dtype {str(dtype)[6:]} \\(model: float32\\)"):
            check_state_dict(module, state, tmp_path / "best.pt")


@pytest.mark.parametrize("make", [os.mkfifo, os.mkdir])
def test_a_run_file_that_is_not_a_regular_file_is_refused_and_never_replaced(tmp_path, make, deadline):
    path = tmp_path / "eval.json"
    make(path)
    for read in (load_json, read_jsonl, load_checkpoint):
        with pytest.raises(CheckpointError, match=f"{path}: refused: .*not a regular file"):
            read(path)
    for write in (lambda: save_json(path, {}), lambda: append_jsonl(path, {})):
        with pytest.raises(CheckpointError, match=f"{path}: refused"):
            write()
    assert not stat.S_ISREG(os.lstat(path).st_mode)


def test_a_folder_that_cannot_be_created_is_one_error_naming_it(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(CheckpointError, match="file: cannot create this folder: a file of that name is in the way"):
        save_json(tmp_path / "file" / "config.json", {})
    with pytest.raises(CheckpointError, match="/proc/nope: cannot create this folder"):
        save_json("/proc/nope/config.json", {})
