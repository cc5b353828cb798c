"""Atomic outputs: a failed write leaves the previous result intact."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
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


def test_json_is_strict(tmp_path: Path) -> None:
    """NaN and inf are not JSON (browsers and jq refuse the file): every JSON churnml writes has null."""
    payload = {"a": float("nan"), "b": [np.float32("inf"), 1.5, pd.NA], "c": np.int64(3), "d": pd.NaT}
    text = io.write_json(tmp_path / "x.json", payload).read_text()
    assert "NaN" not in text and "Infinity" not in text
    assert json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}")) == {
        "a": None,
        "b": [None, 1.5, None],
        "c": 3,
        "d": None,
    }
    meta = io.read_parquet_metadata(
        io.write_parquet(tmp_path / "x.parquet", pd.DataFrame({"x": [1]}), payload)
    )
    assert meta["a"] is None


def _cells(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


@pytest.mark.parametrize("cell", ['=HYPERLINK("http://x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\rx"])
def test_csv_for_people_neutralises_formulas(tmp_path: Path, cell: str) -> None:
    """OWASP's CSV-injection rule: a text cell a spreadsheet would run gets a leading quote; numbers,
    other text and the input frame are untouched; ``for_people=False`` (data files) keeps values exact."""
    frame = pd.DataFrame({"customer_id": [cell, "c2", None], "reason": ["ok", cell, "x"], "n": [-1.5, 2, 3]})
    before = frame.copy()
    cells = _cells(io.write_csv(tmp_path / "p.csv", frame))
    assert [row[:2] for row in cells[1:]] == [["'" + cell, "ok"], ["c2", "'" + cell], ["", "x"]]
    assert [row[2] for row in cells[1:]] == ["-1.5", "2.0", "3.0"]
    pd.testing.assert_frame_equal(frame, before)
    exact = _cells(io.write_csv(tmp_path / "d.csv", frame, for_people=False))
    assert exact[1][0] == cell and exact[2][1] == cell
    again = io.neutralise_formulas(io.neutralise_formulas(frame))
    assert again["customer_id"].iloc[0] == "'" + cell  # neutralising twice changes nothing more


KILLED_WRITER = """
import os, signal, sys
from churnml import io
with io.atomic_dir(sys.argv[1]) as tmp:
    (tmp / "a.txt").write_text("half")
    with io.atomic_path(tmp.parent / "side.json") as side:
        side.write_text("{")
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_leftovers_of_a_killed_run_are_cleaned_by_the_next(tmp_path: Path) -> None:
    """SIGKILL mid-write leaves temp siblings; the next write of the same target removes them and the
    previous result is intact throughout."""
    target = tmp_path / "run"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    killed = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert killed.returncode == -signal.SIGKILL
    assert (target / "a.txt").read_text() == "1"
    assert len(list(tmp_path.iterdir())) == 3  # run, the killed run's temp dir and temp file
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("2")
    io.write_text(tmp_path / "side.json", "{}")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run", "side.json"]
    assert (target / "a.txt").read_text() == "2"


def test_a_run_killed_between_the_renames_gets_its_directory_back(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
    target.rename(tmp_path / ".run.old")  # as after os.replace(target, backup), before the second rename
    io.clean_leftovers(target)
    assert (target / "a.txt").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_live_writers_temp_files_are_left_alone(tmp_path: Path) -> None:
    target = tmp_path / "run"
    with io.atomic_dir(target) as tmp:
        (tmp / "a.txt").write_text("1")
        io.clean_leftovers(target)  # as a second process would, while this one writes
        assert tmp.is_dir()
    assert (target / "a.txt").read_text() == "1"


def test_cleaning_one_target_leaves_other_files_alone(tmp_path: Path) -> None:
    """``.run.json.<pid>...`` is a temp file of ``run.json``, not of ``run``."""
    other = tmp_path / ".run.json.999999999.x.tmp"
    other.write_text("")
    io.clean_leftovers(tmp_path / "run")
    assert other.exists()
    io.clean_leftovers(tmp_path / "run.json")
    assert not other.exists()
