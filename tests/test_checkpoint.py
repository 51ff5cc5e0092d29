"""Atomic writes and the training checkpoint format: a reader sees the old file or the new one, and a
checkpoint of another run or format is no checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from vqpress_server.core.atomic import atomic_write, atomic_write_bytes
from vqpress_server.core.checkpoint import load_checkpoint, save_checkpoint


def test_atomic_write_replaces_whole_files_and_leaves_the_old_one_when_writing_fails(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.bin"
    atomic_write_bytes(path, b"first")
    atomic_write_bytes(path, b"second")
    assert path.read_bytes() == b"second"

    def half_then_fail(f) -> None:  # type: ignore[no-untyped-def]
        f.write(b"half of a new file")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, half_then_fail)
    assert path.read_bytes() == b"second"
    assert sorted(p.name for p in path.parent.iterdir()) == ["out.bin"]  # no temporary file left behind


def test_checkpoint_round_trip_and_what_is_not_a_checkpoint(tmp_path: Path) -> None:
    path = tmp_path / "ck.pt"
    assert load_checkpoint(path) is None
    state = {"w": torch.arange(6.0).reshape(2, 3)}
    save_checkpoint(path, {"config": {"steps": 10}, "state": state, "step": 4, "format": 2, "run": {"id": "a"}})
    ck = load_checkpoint(path, format=2, run={"id": "a"})
    assert ck is not None and ck["step"] == 4 and ck["config"] == {"steps": 10}
    assert torch.equal(ck["state"]["w"], state["w"])
    assert load_checkpoint(path, format=3) is None  # another format version
    assert load_checkpoint(path, run={"id": "b"}) is None  # another run
    with pytest.raises(ValueError, match="step"):
        save_checkpoint(path, {"config": {}, "state": {}})
    path.write_bytes(b"not a torch file")
    assert load_checkpoint(path) is None
