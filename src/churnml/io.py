"""Atomic output: a reader sees the old file or the new one, never half of one.

Every writer in churnml goes through these helpers, so a failed run leaves previous results intact.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(target: str | Path) -> Iterator[Path]:
    """Yield a temp path beside ``target``; on success it is renamed over ``target``."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
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


def write_json(target: str | Path, payload: Any) -> Path:
    return write_text(target, json.dumps(payload, indent=2, sort_keys=True, default=str) + "\n")


def write_parquet(target: str | Path, frame: pd.DataFrame, metadata: dict[str, Any] | None = None) -> Path:
    """Write ``frame`` as Parquet (no index), optionally with JSON metadata under key ``churnml``."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata is not None:
        merged = dict(table.schema.metadata or {})
        merged[b"churnml"] = json.dumps(metadata, sort_keys=True, default=str).encode()
        table = table.replace_schema_metadata(merged)
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp)
    return Path(target)


def read_parquet_metadata(path: str | Path) -> dict[str, Any]:
    raw = (pq.read_schema(path).metadata or {}).get(b"churnml")
    return json.loads(raw) if raw else {}


def write_csv(target: str | Path, frame: pd.DataFrame) -> Path:
    with atomic_path(target) as tmp:
        frame.to_csv(tmp, index=False)
    return Path(target)


@contextmanager
def atomic_dir(target: str | Path) -> Iterator[Path]:
    """Build a whole output directory in a temp sibling, then swap it in (old one removed last)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        backup = target.with_name(f".{target.name}.old")
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


def write_with(target: str | Path, writer: Callable[[Path], None]) -> Path:
    """Atomically write ``target`` with any function that writes to a path."""
    with atomic_path(target) as tmp:
        writer(tmp)
    return Path(target)
