"""Review pipeline: every archived risk list whose horizon is now in the data → realised churn, the
model's hold-up and each play's measured effect → an HTML page, CSV tables and summary.json per list,
the success rate measured over all reviewed lists, and an MLflow run per list.

``run`` is the wiring and this module the I/O; the steps are pure functions of ``churnml.risk.review``.
Everything is rebuilt from the archive and the data on each run (cheap: labels and group counts), so
the review directory is swapped in whole and never mixes old and new figures.
"""

from __future__ import annotations

import json
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd
from pydantic import ValidationError

from churnml import io, ownership
from churnml.config import CampaignConfig, Config
from churnml.data.dataset import Dataset
from churnml.errors import ChurnmlError
from churnml.pipelines import features
from churnml.pipelines.archive import (
    ARCHIVE_DIR,
    RISK_LIST,
    SUMMARY_FILE,
    archive_key,
    archived_lists,
    read_archived_list,
    review_dir,
    score_dir,
)
from churnml.risk import review_report
from churnml.risk.population import LIST_LABEL_KEYS, with_list_labels
from churnml.risk.review import (
    Review,
    json_ready,
    measured_success_rate,
    observed_by,
    pooled_effects,
    public_plays,
    review_list,
)
from churnml.risk.risk_list import load_playbook
from churnml.training.tracking import session

__all__ = ["MEASURED_FILE", "ReviewResult", "campaign_in_use", "measured_effect", "review_dir", "run"]

log = logging.getLogger(__name__)

MEASURED_FILE = "measured_effect.json"
PLAYS_FILE = "review_plays.csv"
BREAKDOWN_FILE = "review_breakdown.csv"
CUSTOMERS_FILE = "review_customers.parquet"
REPORT_FILE = "review.html"


@dataclass(frozen=True)
class ReviewResult:
    reviews: list[Review]
    waiting: list[tuple[pd.Timestamp, pd.Timestamp]]  # (list as of, outcomes observed by)
    measured: dict[str, Any] | None
    out_dir: Path
    run_ids: list[str]
    pages: list[Path]  # review.html of each reviewed list
    measured_file: Path | None = None  # where ``measured`` was saved (not by a review of one list)


def run(
    config: Config,
    as_of: Any = None,
    dataset: Dataset | None = None,
    base_dir: Path | None = None,
) -> ReviewResult:
    """Review the archived lists whose outcomes are observed (or only the one of ``as_of``, a date or a
    moment). With none due, nothing is written: the earlier reviews stay as they are."""
    scores = score_dir(config)
    lists = archived_lists(scores, strict=True)
    if not lists:
        raise ChurnmlError(
            f"no archived risk list in {scores / ARCHIVE_DIR}: run `churnml score` first; a list can be "
            f"reviewed once its horizon ({config.labels.horizon_days} days) is in the data"
        )
    archive = lists
    if as_of is not None:
        lists = _the_list_of(as_of, lists)
    dataset = dataset or features.load_data(config, base_dir)
    summaries = {stamp: _summary_of(folder) for stamp, folder in lists}
    settings = {stamp: _list_config(summaries[stamp], folder, config) for stamp, folder in lists}
    ready = {stamp: observed_by(stamp, settings[stamp]) for stamp, _ in lists}
    due = [(stamp, folder) for stamp, folder in lists if ready[stamp] <= dataset.end]
    waiting = [(stamp, ready[stamp]) for stamp, _ in lists if ready[stamp] > dataset.end]
    out_dir = review_dir(config)
    if not due:
        if as_of is not None:
            stamp, observed = waiting[0]
            raise ChurnmlError(
                f"the list of {stamp.date()} cannot be reviewed yet: its outcomes are observed from "
                f"{observed.date()} (horizon + grace), and the data ends {dataset.end.date()}"
            )
        return ReviewResult([], waiting, None, out_dir, [], [])
    source = features.data_source(config)
    playbook = load_playbook(config.risk.playbook)
    reviews = []
    for stamp, folder in due:
        summary = summaries[stamp]
        review = review_list(
            read_archived_list(folder, stamp),
            dataset,
            settings[stamp],
            stamp,
            next_list=next((later for later, _ in archive if later > stamp), None),
            held_before=_held_out_before(summary, folder, archive, config),
            playbook=playbook,
        )
        label_note = _label_note(settings[stamp], config)
        if label_note:
            review.notes.insert(0, label_note)
        scored_on = summary.get("data_source")
        if scored_on is not None and scored_on != source:
            review.notes.insert(
                0,
                f"this list was scored on other data ({_describe(scored_on)}) than this review reads "
                f"({_describe(source)}): its figures compare different customers",
            )
            log.warning("review of %s: %s", stamp.date(), review.notes[0])
        reviews.append(review)
    measured = _measured(reviews, config)
    target = out_dir / archive_key(reviews[0].as_of) if as_of is not None else out_dir
    run_ids: list[str] = []
    logging_on = config.scoring.log_to_mlflow  # the review of a scoring run goes where the run went
    with session(config) if logging_on else nullcontext(), io.atomic_dir(target) as tmp:
        for review in reviews:
            folder = tmp if as_of is not None else tmp / archive_key(review.as_of)
            write_review(folder, review, settings[review.as_of])
            if logging_on:
                run_ids.append(log_run(folder, review, settings[review.as_of]))
        if as_of is None and measured is not None:
            io.write_json(tmp / MEASURED_FILE, measured)
    pages = [(target if as_of is not None else out_dir / archive_key(r.as_of)) / REPORT_FILE for r in reviews]
    saved = out_dir / MEASURED_FILE if as_of is None and measured is not None else None
    return ReviewResult(reviews, waiting, measured, out_dir, run_ids, pages, saved)


def _the_list_of(as_of: Any, lists: list[tuple[pd.Timestamp, Path]]) -> list[tuple[pd.Timestamp, Path]]:
    """The archived list of a moment, or of a date (a list scored at the end of the data is rarely at
    midnight); a clear error for text that is not a date, or a date with no list or several."""
    try:
        wanted = pd.Timestamp(as_of)
        if pd.isna(wanted):  # "" and "NaT" parse to NaT
            raise ValueError(as_of)
    except (ValueError, TypeError):
        raise ChurnmlError(f"--as-of {as_of!r} is not a date (YYYY-MM-DD or YYYY-MM-DDTHH:MM:SS)") from None
    found = [(stamp, folder) for stamp, folder in lists if stamp == wanted]
    if not found and wanted == wanted.normalize():
        found = [(stamp, folder) for stamp, folder in lists if stamp.normalize() == wanted]
    archived = ", ".join(folder.name for _, folder in lists)
    if not found:
        raise ChurnmlError(f"no archived risk list as of {as_of}; archived: {archived}")
    if len(found) > 1:
        raise ChurnmlError(f"several lists on {as_of}: give the moment, one of {archived}")
    return found


def _summary_of(folder: Path) -> dict[str, Any]:
    """An archived list's summary.json ({} when it cannot be read)."""
    try:
        summary = json.loads((folder / SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def _list_config(summary: dict[str, Any], folder: Path, config: Config) -> Config:
    """``config`` with the label the list was scored with (its model's: horizon, grace...), so that a
    list is judged on the outcome it predicted whatever ``labels`` says today (lists archived before the
    summary recorded it: the config's)."""
    given = summary.get("labels")
    if not isinstance(given, dict):
        return config
    try:
        labels = with_list_labels(config.labels, given)
    except ValidationError as exc:
        raise ChurnmlError(
            f"{folder / SUMMARY_FILE}: its labels are not a label's settings ({exc})"
        ) from None
    return config.model_copy(update={"labels": labels})


def _label_note(used: Config, config: Config) -> str | None:
    """What differs between the label a list was scored with and the config's, among the settings its
    definition reads (a subscription label has no active_days, an inactivity label no grace)."""
    unused = "active_days" if used.labels.definition == "subscription" else "grace_days"
    differ = [
        f"{key} {getattr(used.labels, key)} (the config says {getattr(config.labels, key)})"
        for key in LIST_LABEL_KEYS
        if key != unused and getattr(used.labels, key) != getattr(config.labels, key)
    ]
    return f"outcomes by the label this list was scored with: {', '.join(differ)}" if differ else None


def _held_out_before(
    summary: dict[str, Any], folder: Path, archive: list[tuple[pd.Timestamp, Path]], config: Config
) -> set[str]:
    """Customers held out on the list the scoring compared with (``previous_as_of``), whom its holdout
    draw had to leave out, unless it ran with ``risk.holdout_repeat`` (the config's for older lists)."""
    repeat = summary.get("holdout_repeat", config.risk.holdout_repeat)
    previous = summary.get("previous_as_of")
    if repeat or not previous:
        return set()
    try:
        stamp_before = pd.Timestamp(previous)
    except (ValueError, TypeError):
        raise ChurnmlError(f"{folder / SUMMARY_FILE}: previous_as_of {previous!r} is not a date") from None
    before = next((f for stamp, f in archive if stamp == stamp_before), None)
    if before is None:
        return set()
    try:
        earlier = pd.read_parquet(before / f"{RISK_LIST}.parquet", columns=["customer_id", "action"])
    except (OSError, ValueError, KeyError) as exc:  # the scoring skipped such a list too (with a warning)
        log.warning("list %s unreadable for its holdouts (%s): none assumed", before, exc)
        return set()
    return set(earlier.loc[earlier["action"] == "holdout", "customer_id"].astype(str))


def _describe(source: dict[str, Any]) -> str:
    return ", ".join(f"{key}={value}" for key, value in sorted(source.items()))


def _measured(reviews: list[Review], config: Config) -> dict[str, Any] | None:
    """The success rate over every reviewed list: each (list, play) a stratum (``pooled_effects``), only
    those with enough customers in both arms (``review.min_arm``) counting: a few holdouts on each of
    several lists add up to a number that no list measured."""
    judged = {}
    for review in reviews:
        table = review.plays
        strata = table.loc[table["enough_data"] & (table["play"] != "all plays")] if len(table) else table
        if len(strata):
            judged[review.as_of] = strata
    plays = pooled_effects(list(judged.values()), config.campaign.success_rate, config.review.min_arm)
    overall = measured_success_rate(pd.concat(judged.values(), ignore_index=True)) if judged else None
    if overall is None:
        return None
    return {
        **overall,
        "lists": [stamp.isoformat() for stamp in judged],  # those with a play judged
        "assumed_success_rate": config.campaign.success_rate,
        "plays": [json_ready(row) for row in public_plays(plays).to_dict(orient="records")],
    }


def measured_effect(config: Config) -> dict[str, Any] | None:
    """The last review's measured success rate (``campaign.effect: measured``), None if there is none."""
    path = review_dir(config) / MEASURED_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        log.warning("measured effect %s unreadable (%s): using campaign.success_rate", path, exc)
        return None


def campaign_in_use(config: Config) -> tuple[CampaignConfig, str]:
    """The campaign settings train and score use, and where the success rate comes from: the measured
    one with ``campaign.effect: measured`` once a review has measured it, else ``campaign.success_rate``."""
    campaign = config.campaign
    if campaign.effect != "measured":
        return campaign, "assumed (campaign.success_rate)"
    measured = measured_effect(config)
    rate = None if measured is None else measured.get("success_rate")
    if measured is None or rate is None or not 0 < rate <= 1:
        why = "no review yet" if measured is None else f"measured {rate}, not a share in (0, 1]"
        log.warning(
            "campaign.effect=measured but %s has no usable success rate (%s): using campaign.success_rate",
            review_dir(config) / MEASURED_FILE,
            why,
        )
        return campaign, f"assumed (campaign.success_rate; {why})"
    lists = ", ".join(stamp[:10] for stamp in measured.get("lists", []))
    return campaign.model_copy(update={"success_rate": float(rate)}), f"measured on the lists of {lists}"


def write_review(folder: Path, review: Review, config: Config) -> None:
    """The play table, the breakdowns, the reviewed customers, summary.json and the HTML page."""
    folder.mkdir(parents=True, exist_ok=True)
    io.write_csv(folder / PLAYS_FILE, public_plays(review.plays))
    io.write_csv(folder / BREAKDOWN_FILE, long_breakdown(review))
    keep = [
        "customer_id",
        "rank",
        "churn_probability",
        "risk_band",
        "risk_group",
        "segment",
        "action",
        "play",
        "customer_value",
        "arm",
        "play_run",
        "contact_cost",
        "churned",
    ]
    io.write_parquet(folder / CUSTOMERS_FILE, review.customers[[c for c in keep if c in review.customers]])
    io.write_json(folder / SUMMARY_FILE, json_ready(review.summary()) | {"notes": review.notes})
    review_report.write_report(folder / REPORT_FILE, review, config)


def long_breakdown(review: Review) -> pd.DataFrame:
    """All breakdowns in one table: by (band, group, segment, action, arm), value, counts and rates."""
    frames = [table.assign(by=by) for by, table in review.breakdowns.items()]
    table = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    return table[["by", *[c for c in table.columns if c != "by"]]] if len(table) else table


def log_run(folder: Path, review: Review, config: Config) -> str:
    """An MLflow run of this review in the config's experiment: the figures and the outputs."""
    date = review.as_of.isoformat()[:10]
    with mlflow.start_run(run_name=f"review-{date}", tags=ownership.tags()) as active:
        mlflow.set_tags({"churnml.stage": "review", "churnml.review_as_of": review.as_of.isoformat()})
        mlflow.log_params(
            {
                "as_of": review.as_of.isoformat(),
                "arms_from": review.source,
                "horizon_days": config.labels.horizon_days,
            }
        )
        figures = {f"model_{k}": v for k, v in review.model.items()}
        for row in public_plays(review.plays).itertuples(index=False):
            key = _metric_key(str(row.play))
            while f"{key}.effect" in figures:  # two plays whose names differ only in punctuation
                key += "_"
            for name in (
                "effect",
                "effect_low",
                "effect_high",
                "saved",
                "revenue_saved",
                "roi",
                "success_rate",
            ):
                figures[f"{key}.{name}"] = getattr(row, name)
        mlflow.log_metrics({k: float(v) for k, v in figures.items() if _finite(v)})
        for path in sorted(folder.iterdir()):
            mlflow.log_artifact(str(path), artifact_path="review")
        return active.info.run_id


def _metric_key(play: str) -> str:
    return "play_" + "".join(c if c.isalnum() else "_" for c in play.lower()).strip("_")


def _finite(value: Any) -> bool:
    return (
        isinstance(value, int | float | np.number)
        and not isinstance(value, bool)
        and bool(np.isfinite(value))
    )
