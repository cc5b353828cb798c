"""The archive of risk lists: where a config's lists and reviews live, every run's list kept by its
as-of date, and reading them back.

One home for the layout, because three pipelines share it: ``score`` writes the lists (and reads the
previous one for the trend and the holdouts), ``review`` reads every archived list whose outcomes are
known, and ``train``/``score`` read the measured success rate the review leaves beside them.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from churnml.config import Config

log = logging.getLogger(__name__)

RISK_LIST = "risk_list"  # .csv and .parquet
SUMMARY_FILE = "summary.json"
ARCHIVE_DIR = "history"  # <score dir>/history/<as_of>/: every run's list, for looking back


def score_dir(config: Config) -> Path:
    return Path(config.scoring.out_dir or Path(config.output.dir) / config.name / "score")


def review_dir(config: Config) -> Path:
    """Beside the score directory: the reviews of its archived lists (``outputs/<name>/review`` for the
    default ``outputs/<name>/score``; ``<dir>_review`` beside any other, so two never share one)."""
    scores = score_dir(config)
    return scores.parent / ("review" if scores.name == "score" else f"{scores.name}_review")


def archive_key(as_of: pd.Timestamp) -> str:
    """The archive folder of an as-of moment: its date, with the time when it is not midnight."""
    stamp = pd.Timestamp(as_of)
    return stamp.strftime("%Y-%m-%d" if stamp == stamp.normalize() else "%Y-%m-%dT%H%M%S")


def archive(tmp: Path, out_dir: Path, as_of: pd.Timestamp) -> None:
    """Keep this run's list and summary (those just written to ``tmp``) under ``history/<as_of>/``
    beside the earlier runs' (carried over by hard links: the output directory is swapped as a whole).
    Scoring a date again replaces it."""
    old = out_dir / ARCHIVE_DIR
    if old.is_dir():
        shutil.copytree(old, tmp / ARCHIVE_DIR, copy_function=_link_or_copy)
    day = tmp / ARCHIVE_DIR / archive_key(as_of)
    if day.exists():
        shutil.rmtree(day)
    day.mkdir(parents=True)
    for name in (f"{RISK_LIST}.parquet", SUMMARY_FILE):
        _link_or_copy(str(tmp / name), str(day / name))


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:  # a file system without hard links
        shutil.copy2(source, target)


def read_previous(out_dir: Path, as_of: pd.Timestamp) -> pd.DataFrame | None:
    """The list of the latest run before ``as_of`` in this output directory (for the trend and the
    holdouts), if there is one: from the archive, so that scoring a date again, or an earlier date
    later, compares with the run before it and not with the last one written."""
    archived = [
        (stamp, folder / f"{RISK_LIST}.parquet")
        for folder in sorted((out_dir / ARCHIVE_DIR).glob("*"))
        if (stamp := _archived_as_of(folder)) is not None and stamp < as_of
    ]
    latest = out_dir / f"{RISK_LIST}.parquet"
    candidates = sorted(archived) or ([(pd.Timestamp.min, latest)] if latest.exists() else [])
    for _, path in reversed(candidates):
        previous = _read_list(path)
        if previous is not None and (
            previous.attrs["as_of"] is None or pd.Timestamp(previous.attrs["as_of"]) < as_of
        ):
            return previous
    return None


def _archived_as_of(folder: Path) -> pd.Timestamp | None:
    try:
        return pd.Timestamp(json.loads((folder / SUMMARY_FILE).read_text())["as_of"])
    except Exception:  # not an archive folder of ours, or damaged: skipped
        return None


def _read_list(path: Path) -> pd.DataFrame | None:
    try:
        wanted = ["customer_id", "churn_probability", "at_risk", "action", "as_of"]
        previous = pd.read_parquet(path, columns=[c for c in wanted if c in _parquet_columns(path)])
    except Exception as exc:  # an unreadable old file must not stop today's list
        log.warning("previous risk list %s unreadable (%s): skipped", path, exc)
        return None
    previous.attrs["as_of"] = str(previous["as_of"].iloc[0]) if len(previous) else None
    return previous


def _parquet_columns(path: Path) -> set[str]:
    return set(pq.read_schema(path).names)


def archived_lists(out_dir: Path) -> list[tuple[pd.Timestamp, Path]]:
    """(as of, folder) of every readable archived run under ``<out_dir>/history/``, oldest first."""
    found = [
        (stamp, folder)
        for folder in sorted((out_dir / ARCHIVE_DIR).glob("*"))
        if (stamp := _archived_as_of(folder)) is not None and (folder / f"{RISK_LIST}.parquet").exists()
    ]
    return sorted(found, key=lambda item: item[0])
