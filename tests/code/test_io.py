"""Atomic outputs: a failed write leaves the previous result intact."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from churnml import io


def test_failed_write_keeps_previous_file(tmp_path: Path) -> None:
    target = tmp_path / "result.txt"
    io.write_text(target, "old")
    with pytest.raises(RuntimeError), io.atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temp files left behind


def test_parquet_metadata_round_trip(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0], "b": pd.Categorical(["x", "y"])})
    path = io.write_parquet(tmp_path / "t.parquet", frame, metadata={"features": ["a", "b"]})
    assert io.read_parquet_metadata(path) == {"features": ["a", "b"]}
    pd.testing.assert_frame_equal(pd.read_parquet(path), frame)


def test_atomic_dir_swaps_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    with pytest.raises(RuntimeError), io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("2")
        raise RuntimeError("failed run")
    assert (target / "a.txt").read_text() == "1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]
