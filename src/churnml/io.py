"""Atomic output: a reader sees the old file or the new one, never half of one.

Every writer in churnml goes through these helpers, so a failed run leaves previous results intact.
"""

from __future__ import annotations

import glob
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from churnml import ownership


def _temp_prefix(target: Path) -> str:
    """``.<name>.<pid>.``: a temp sibling says which process made it, so a later run can tell a killed
    run's leftovers (process gone) from a live writer's work in progress."""
    return f".{target.name}.{os.getpid()}."


def _leftover_of_dead_run(leftover: Path, target: Path) -> bool:
    """A ``.<name>.<pid>.*`` sibling whose process is gone (``.<name>.json.*`` belongs to another file)."""
    pid = leftover.name[len(target.name) + 2 :].split(".", 1)[0]
    return pid.isdigit() and not ownership.alive(pid)


def clean_leftovers(target: str | Path) -> None:
    """Remove the temp siblings of ``target`` that killed runs left (their process is gone), and put a
    directory back from its backup when a run was killed between the two renames of ``atomic_dir``."""
    target = Path(target)
    if not target.parent.is_dir():
        return
    backup = _backup(target)
    if backup.is_dir() and not target.exists():
        os.replace(backup, target)
    for leftover in target.parent.glob(f".{glob.escape(target.name)}.*"):
        if leftover == backup or not _leftover_of_dead_run(leftover, target):
            continue
        if leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
        else:
            leftover.unlink(missing_ok=True)


@contextmanager
def atomic_path(target: str | Path, make_parent: bool = True) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it is renamed over ``target``. ``make_parent``
    False: a missing parent folder is an error (FileNotFoundError), not made again."""
    target = Path(target)
    if make_parent:
        target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(target), suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        tmp_path.unlink(missing_ok=True)


def write_text(target: str | Path, text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text)
    return Path(target)


def strict(payload: Any) -> Any:
    """``payload`` with every non-finite float (NaN, inf, numpy's too) as None, NumPy scalars as Python.

    ``json.dumps`` writes NaN as the bare word ``NaN``, which is not JSON: browsers, ``jq`` and most
    parsers outside Python refuse the whole file. Every JSON churnml writes goes through this.
    """
    if isinstance(payload, dict):
        return {key: strict(value) for key, value in payload.items()}
    if isinstance(payload, list | tuple):
        return [strict(value) for value in payload]
    if payload is pd.NA or payload is pd.NaT:
        return None
    if isinstance(payload, np.generic):
        payload = payload.item()
    if isinstance(payload, float) and not math.isfinite(payload):
        return None
    return payload


def dumps(payload: Any, **kwargs: Any) -> str:
    """Strict JSON text (see ``strict``); anything else JSON cannot hold is written as text."""
    return json.dumps(strict(payload), allow_nan=False, default=str, **kwargs)


def write_json(target: str | Path, payload: Any) -> Path:
    return write_text(target, dumps(payload, indent=2, sort_keys=True) + "\n")


def write_parquet(
    target: str | Path, frame: pd.DataFrame, metadata: dict[str, Any] | None = None, make_parent: bool = True
) -> Path:
    """Write ``frame`` as Parquet (no index), optionally with JSON metadata under key ``churnml``
    (``make_parent``: see :func:`atomic_path`)."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        merged = dict(table.schema.metadata or {})
        merged[b"churnml"] = dumps(metadata, sort_keys=True).encode()
        table = table.replace_schema_metadata(merged)
    with atomic_path(target, make_parent) as tmp:
        pq.write_table(table, tmp)
    return Path(target)


def read_parquet_metadata(path: str | Path) -> dict[str, Any]:
    raw = (pq.read_schema(path).metadata or {}).get(b"churnml")
    return json.loads(raw) if raw else {}


# A cell starting with one of these is a formula to Excel, LibreOffice and Google Sheets (OWASP's list).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def neutralise_formulas(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells that a spreadsheet would run as a formula start with a quote (``'=1+1``).

    OWASP's rule for CSV injection: an id or a reason like ``=HYPERLINK(...)`` opened in a spreadsheet
    runs. Only text columns change (a negative number is a number); the quote shows in the cell, and
    Parquet, for programs, keeps every value exact.
    """
    out = frame.copy(deep=False)
    for column in frame.columns:
        values = frame[column]
        if pd.api.types.is_numeric_dtype(values) or pd.api.types.is_datetime64_any_dtype(values):
            continue
        text = values.astype(object)
        risky = text.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS), na_action="ignore")
        risky = risky.fillna(False).astype(bool)
        if risky.any():
            out[column] = text.where(~risky, "'" + text.astype(str))
    return out


def write_csv(target: str | Path, frame: pd.DataFrame, for_people: bool = True) -> Path:
    """Write ``frame`` as CSV; ``for_people`` (the default) neutralises formulas (``neutralise_formulas``).
    Data files that programs read back (the simulator's tables) pass ``for_people=False``."""
    if for_people:
        frame = neutralise_formulas(frame)
    with atomic_path(target) as tmp:
        # RFC 4180's CRLF line ends also make the writer quote a lone CR inside a cell (pandas quotes
        # only cells holding its line terminator), which would otherwise split the row for a reader.
        frame.to_csv(tmp, index=False, lineterminator="\r\n")
    return Path(target)


def _backup(target: Path) -> Path:
    return target.with_name(f".{target.name}.old")


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a whole output directory in a temp sibling, then swap it in (old one removed last).

    A run killed at any point leaves the previous directory readable, or (between the two renames) its
    backup, which the next run puts back before anything else (``clean_leftovers``).
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    clean_leftovers(target)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(target), dir=target.parent))
    try:
        yield tmp
        backup = _backup(target)
        if backup.exists():
            shutil.rmtree(backup)
        if target.exists():
            os.replace(target, backup)
        os.replace(tmp, target)
        if backup.exists():
            shutil.rmtree(backup)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def write_with(target: str | Path, writer: Callable[[Path], object]) -> Path:
    """Atomically write ``target`` with any function that writes to a path."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)
