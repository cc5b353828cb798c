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

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from churnml.config import Config
from churnml.data.load import canonical_id
from churnml.errors import ChurnmlError, DataValidationError, example_rows

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
        previous = read_list(path)
        if previous is not None and (
            previous.attrs["as_of"] is None or pd.Timestamp(previous.attrs["as_of"]) < as_of
        ):
            return previous
    return None


def _archived_as_of(folder: Path) -> pd.Timestamp | None:
    """The as-of moment of an archived run: its summary's, else (a damaged summary.json) the list's own
    ``as_of`` column, with a warning; None for a folder that is not an archived run of ours."""
    try:
        return _stamp(json.loads((folder / SUMMARY_FILE).read_text())["as_of"])
    except Exception as exc:
        problem = exc
    try:
        stamps = (
            pd.read_parquet(folder / f"{RISK_LIST}.parquet", columns=["as_of"])["as_of"].dropna().unique()
        )
    except Exception:
        return None
    if len(stamps) != 1:
        return None
    log.warning("%s unreadable (%r): the list's own as_of is used", folder / SUMMARY_FILE, problem)
    return _stamp(stamps[0])


def _stamp(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)  # type: ignore[arg-type]
    if pd.isna(stamp):
        raise ValueError("no as_of")
    return stamp


def read_list(path: Path) -> pd.DataFrame | None:
    """A previous list, as far as the trend and the holdout draw need it; a damaged one is skipped with
    a warning (an old file must not stop today's list)."""
    try:
        wanted = ["customer_id", "churn_probability", "at_risk", "action", "as_of"]
        previous = pd.read_parquet(path, columns=[c for c in wanted if c in _parquet_columns(path)])
        found = list_problem(previous, ("customer_id", "churn_probability", "at_risk", "as_of"))
        problem = None if found is None else f"{found[0]}: {found[1]}"
    except Exception as exc:
        problem = str(exc)
    if problem is not None:
        log.warning("previous risk list %s skipped: %s", path, problem)
        return None
    if "action" not in previous:
        log.warning(
            "previous risk list %s has no action column: its holdouts cannot be kept out of this "
            "list's holdout (risk.holdout_repeat)",
            path,
        )
    previous.attrs["as_of"] = str(previous["as_of"].iloc[0]) if len(previous) else None
    return previous


def list_problem(frame: pd.DataFrame, required: tuple[str, ...]) -> tuple[str, str, np.ndarray] | None:
    """The first thing that makes a list unusable, as (column, problem, rows): a missing column, a
    customer listed twice, a probability that is not one, an at-risk flag that is not true/false."""
    everyone = np.ones(len(frame), dtype=bool)
    missing = [c for c in required if c not in frame]
    if missing:
        return missing[0], f"missing column(s) {', '.join(missing)}", everyone
    twice = frame["customer_id"].astype(str).map(canonical_id).duplicated(keep=False).to_numpy()
    if twice.any():
        return "customer_id", "a customer listed twice or more", twice
    if "churn_probability" in required:
        values = frame["churn_probability"]
        if not pd.api.types.is_numeric_dtype(values) or pd.api.types.is_bool_dtype(values):
            return "churn_probability", "values that are not probabilities in [0, 1]", everyone
        numbers = values.to_numpy(dtype=float, na_value=np.nan)
        outside = ~((numbers >= 0) & (numbers <= 1))
        if outside.any():
            return "churn_probability", "values that are not probabilities in [0, 1]", outside
    if "at_risk" in required and not pd.api.types.is_bool_dtype(frame["at_risk"]):
        return "at_risk", f"at_risk of type {frame['at_risk'].dtype}, not true/false", everyone
    if "customer_value" in required and not pd.api.types.is_numeric_dtype(frame["customer_value"]):
        return "customer_value", f"values of type {frame['customer_value'].dtype}, not numbers", everyone
    return None


REVIEWED_COLUMNS = ("customer_id", "churn_probability", "risk_band", "action", "play", "customer_value")


def read_archived_list(folder: Path, as_of: pd.Timestamp) -> pd.DataFrame:
    """An archived list as the review reads it, checked: a damaged or hand-edited list is an error that
    names the file, the column and example rows, never a traceback or a silently wrong review."""
    path = folder / f"{RISK_LIST}.parquet"
    table = f"archived risk list {path}"
    try:
        frame = pd.read_parquet(path)
    except Exception as exc:
        raise ChurnmlError(
            f"{table} cannot be read ({exc}): restore it, or move its folder out of {folder.parent} to "
            "review the other lists"
        ) from None
    found = list_problem(frame, REVIEWED_COLUMNS)
    if found is None and "as_of" in frame:
        other = (pd.to_datetime(frame["as_of"], errors="coerce") != pd.Timestamp(as_of)).to_numpy()
        if other.any():
            problem = f"rows of another date than the list's summary.json ({pd.Timestamp(as_of)})"
            found = ("as_of", problem, other)
    if found is not None:
        column, problem, rows = found
        if problem.startswith("missing"):
            raise DataValidationError(table, column, f"{problem}: not a list as churnml wrote it")
        shown = frame[["customer_id", column]] if column == "as_of" else frame
        raise DataValidationError(table, column, problem, example_rows(shown, rows), int(rows.sum()))
    return frame


def _parquet_columns(path: Path) -> set[str]:
    return set(pq.read_schema(path).names)


def archived_lists(out_dir: Path, strict: bool = False) -> list[tuple[pd.Timestamp, Path]]:
    """(as of, folder) of every readable archived run under ``<out_dir>/history/``, oldest first; other
    files and folders are passed over. ``strict`` (the review, which rewrites every list's review): a
    folder with a list whose date cannot be read is an error rather than passed over, since its review
    would silently disappear."""
    found = []
    for folder in sorted((out_dir / ARCHIVE_DIR).glob("*")):
        if not (folder / f"{RISK_LIST}.parquet").exists():
            continue
        stamp = _archived_as_of(folder)
        if stamp is not None:
            found.append((stamp, folder))
        elif strict:
            raise ChurnmlError(
                f"archived list {folder} has neither a readable {SUMMARY_FILE} nor an as_of in its list: "
                f"restore it, or move the folder out of {folder.parent} to review the other lists"
            )
    return sorted(found, key=lambda item: item[0])
