"""Scoring pipeline: customers active at the as-of date → features → calibrated probability → drift
against the model's training reference → value, bands, segments, ranking → SHAP drivers and risk groups for the customers that need them → trend
against the previous run → risk list, group summary and HTML report, swapped in atomically and logged
to an MLflow scoring run.

``run`` is the wiring and this module the I/O (model, previous list, outputs, MLflow); the steps are
pure functions of ``churnml.risk``: ``population`` (who is scored), ``risk_list`` (the scored, ranked and
published list, its summary), ``drivers`` (reasons and risk groups), ``drift`` (the run against the
training data).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, ExitStack, nullcontext
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from churnml import io, ownership
from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.engine import open_engine
from churnml.engine.partition import split_frame
from churnml.engine.sources import Partitions
from churnml.errors import ChurnmlError, ModelLoadError
from churnml.pipelines import features
from churnml.pipelines.archive import (
    ARCHIVE_DIR,
    RISK_LIST,
    SUMMARY_FILE,
    archive,
    read_previous,
    score_dir,
)
from churnml.pipelines.review import campaign_in_use
from churnml.risk import drift, report
from churnml.risk.drivers import drivers_and_groups
from churnml.risk.population import (
    LIST_LABEL_KEYS,
    Context,
    active_customer_features,
    label_config,
    resolve_as_of,
    score_with_context,
)
from churnml.risk.report import Explained
from churnml.risk.risk_list import (
    expected_saves,
    extend_history,
    group_summary,
    load_playbook,
    publish,
    run_summary,
    scored_frame,
    with_uplift,
)
from churnml.training import registry
from churnml.training.model import ChurnModel, load_model
from churnml.training.tracking import session, tracking_uri
from churnml.uplift.learner import UpliftModel
from churnml.uplift.mlflow_model import LoadedUplift, load_uplift
from churnml.uplift.targeting import uplift_figures

__all__ = ["ScoreResult", "active_customer_features", "run", "score_dir"]

log = logging.getLogger(__name__)

GROUPS_FILE = "risk_groups.csv"
REPORT_FILE = "risk_report.html"
TYPICAL_FILE = "typical_values.json"
HISTORY_FILE = "history.csv"
DRIFT_FILE = "drift.csv"
PARTITIONED_DIR = "risk_list_partitioned"  # the dask engine's list, one Parquet file per partition


@dataclass(frozen=True)
class ScoreResult:
    risk_list: pd.DataFrame
    groups: pd.DataFrame
    summary: dict[str, Any]
    out_dir: Path
    model_uri: str
    run_id: str | None
    # Contributions of the explained and sampled customers (for benchmarks and checks).
    explained: Explained | None = field(repr=False, default=None)

    @property
    def report_path(self) -> Path:
        return self.out_dir / REPORT_FILE


def default_model_uri(config: Config) -> str:
    return registry.champion_uri(config.tracking.registered_model)


def run(
    config: Config,
    as_of: Any = None,
    model_uri: str | None = None,
    dataset: Dataset | None = None,
    base_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> ScoreResult:
    """Score every customer active at ``as_of`` (default: config, else the end of the data), on
    ``config.engine`` (``announce`` hears where). On a Dask engine with Parquet data and no ``dataset``
    given, the workers read their own customers (``churnml.engine.sources``): the client never holds the
    tables, only the scored customers' features."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    playbook = load_playbook(config.risk.playbook)
    uri = model_uri or config.scoring.model_uri or default_model_uri(config)
    out_dir = score_dir(config)
    active = tracked(config, uri)
    with ExitStack() as stack:
        # The data and the as-of date are checked before the MLflow session opens: a bad date or bad
        # data is refused before anything (a tracking store) is created.
        engine = stack.enter_context(open_engine(config.engine, config.scoring.nthread, announce))
        data: Dataset | Partitions = (
            dataset
            or features.read_on_workers(config, base_dir, engine, stack)
            or features.load_data(config, base_dir)
        )
        as_of = resolve_as_of(data, as_of if as_of is not None else config.scoring.as_of)
        stack.enter_context(active)
        model, version = load(uri, config)
        lift = load_uplift(config, mlflow_in_use=not isinstance(active, nullcontext))
        timings["load_s"] = _lap(clock)
        churn_inputs = {spec.name for spec in model.specs}
        extra = [] if lift is None else [s for s in lift.model.inputs.specs if s.name not in churn_inputs]
        frame, probability, context = score_with_context(engine, data, model, as_of, config, extra)
        effects = None if lift is None else uplift_effects(lift.model, frame, context)
        timings["features_s"] = _lap(clock, timings)
        scored, value_basis = scored_frame(frame, probability, context.tenure_days, model.specs, config)
        timings["score_s"] = _lap(clock, timings)
        reference, drifted = drift_against_training(model, frame, probability, context, config)
        timings["drift_s"] = _lap(clock, timings)
        scored, explained, typical, stats = drivers_and_groups(scored, frame, model, playbook, config, engine)
        timings["explain_s"] = _lap(clock, timings)
        costs: dict[str, float] = {}
        if lift is not None and effects is not None:
            costs = playbook.play_costs(list(lift.model.plays), config.campaign.cost_per_contact)
            scored = with_uplift(scored, effects, costs, playbook, config)
            ranks = explained.customers["customer_id"].map(scored.set_index("customer_id")["rank"])
            explained = replace(explained, customers=explained.customers.assign(rank=ranks.to_numpy()))
        previous = read_previous(out_dir, as_of)
        plays = () if lift is None else tuple(lift.model.plays)
        risk_list = publish(scored, previous, playbook, config, as_of, version, plays)
        groups = group_summary(risk_list, playbook)
        provenance = {
            "as_of": as_of.isoformat(),
            "model_uri": uri,
            "model_version": version,
            "previous_as_of": None if previous is None else previous.attrs.get("as_of"),
            "value_basis": value_basis,
            "typical_values_source": typical["source"],
            "data_source": features.data_source(config),
            # What the review needs to judge this list as it was made: its outcome (the model's label)
            # and whether last list's holdouts could be held out again.
            "labels": label_config(model, config).model_dump(include=set(LIST_LABEL_KEYS)),
            "holdout_repeat": config.risk.holdout_repeat,
        }
        campaign, success_source = campaign_in_use(config)
        summary = run_summary(risk_list, config, provenance, stats)
        summary |= {
            "expected_saves": expected_saves(risk_list, campaign.success_rate),
            "expected_saves_basis": f"success rate {campaign.success_rate:.0%} ({success_source})",
            "success_rate": campaign.success_rate,
            "success_rate_source": success_source,
        }
        if lift is not None:
            summary |= uplift_summary(risk_list, lift, costs, config)
        summary["drift"] = drift.summary(drifted, reference, config.drift)  # the CLI prints its warning
        run_id = None
        with io.atomic_dir(out_dir) as tmp:
            history = write_outputs(tmp, risk_list, groups, summary, typical, out_dir, drifted)
            if engine.kind != "local":
                parts = data.count if isinstance(data, Partitions) else engine.partitions(len(data.customers))
                write_partitioned(tmp / PARTITIONED_DIR, risk_list, parts)
            started = time.perf_counter()
            report.write_report(
                tmp / REPORT_FILE, risk_list, groups, summary, explained, model, playbook, config, history
            )
            timings["report_s"] = time.perf_counter() - started
            summary["timings"] = {**timings, "total_s": time.perf_counter() - clock}
            io.write_json(tmp / SUMMARY_FILE, summary)
            archive(tmp, out_dir, as_of)
            if config.scoring.log_to_mlflow:
                run_id = log_run(tmp, summary, config, drifted)
    return ScoreResult(risk_list, groups, summary, out_dir, uri, run_id, explained)


def tracked(config: Config, uri: str) -> AbstractContextManager[Any]:
    """The MLflow session, unless neither the model nor the outputs involve MLflow (a model directory
    and ``scoring.log_to_mlflow=false``): then no tracking store is created or touched."""
    if not config.scoring.log_to_mlflow and Path(uri).is_dir():
        return nullcontext()
    return session(config)


def uplift_effects(model: UpliftModel, frame: pd.DataFrame, context: Context) -> pd.DataFrame:
    """Every play's uplift for each scored customer, from the churn model's features where the uplift
    model uses the same ones and its own (``context.extra``, built as of the same date) for any others."""
    if len(context.extra.columns):
        frame = pd.concat([frame.reset_index(drop=True), context.extra], axis=1)
    return model.effects(frame)


def uplift_summary(
    risk_list: pd.DataFrame, lift: LoadedUplift, costs: dict[str, float], config: Config
) -> dict[str, Any]:
    """summary.json's uplift figures (flat, so MLflow logs them as metrics) and where they came from:
    expected saves from each contacted customer's measured uplift instead of the assumed success rate."""
    figures = uplift_figures(risk_list)
    return {
        "expected_saves": figures.pop("expected_saves"),
        "expected_saves_basis": "uplift model (each contacted customer's best play)",
        **figures,
        "uplift": {
            "model_uri": lift.uri,
            "model_version": lift.version,
            "sleeping_dog_tolerance": config.uplift.sleeping_dog_tolerance,
            "applicable_plays": config.uplift.plays,
            "at_risk_without_uplift": int((risk_list["at_risk"] & risk_list["best_play"].isna()).sum()),
            "plays": {
                play: {"method": m.method, "cost": costs.get(play), "average_effect": m.average_effect}
                for play, m in lift.model.plays.items()
            },
            "notes": list(lift.model.notes),
        },
    }


def drift_against_training(
    model: ChurnModel, frame: pd.DataFrame, probability: np.ndarray, context: Context, config: Config
) -> tuple[drift.Reference | None, pd.DataFrame | None]:
    """The model's training reference and this run's drift table against it (None, None for a model
    saved without a reference: the run goes on, and summary.json says so)."""
    reference = drift.Reference.from_dict(model.reference)
    if reference is None:
        return None, None
    return reference, drift.compare(reference, frame, probability, config.drift, context.unseen_shares())


def _lap(start: float, timings: dict[str, float] | None = None) -> float:
    return time.perf_counter() - start - sum((timings or {}).values())


# ---------------------------------------------------------------------------------------------------
# I/O.


def load(uri: str, config: Config) -> tuple[ChurnModel, str | None]:
    """The model and its registry version (None for a directory or run URI); a clear error if missing."""
    try:
        ref = registry.resolve(uri)
        model = load_model(ref.uri)
    except ModelLoadError:
        raise  # already says what the model is and why it cannot be used
    except Exception as exc:  # MLflow raises several types for "not there"; all mean the same to a user
        raise ChurnmlError(
            f"cannot load model {uri!r} from {tracking_uri(config)}: {str(exc).splitlines()[0][:300]}\n"
            "Train and register one first (`churnml train -c <config>`), or pass --model with a model URI "
            "(models:/<name>@<alias>, models:/<name>/<version>, runs:/<run_id>/model) or a model directory."
        ) from exc
    return model, ref.version


def write_outputs(
    tmp: Path,
    risk_list: pd.DataFrame,
    groups: pd.DataFrame,
    summary: dict[str, Any],
    typical: dict[str, Any],
    out_dir: Path,
    drifted: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Risk list (CSV + Parquet), group summary, typical values, the drift table (when the model has a
    reference) and the run history into ``tmp``; returns the history (one row per run in this output
    directory)."""
    io.write_csv(tmp / f"{RISK_LIST}.csv", risk_list)
    if drifted is not None:
        io.write_csv(tmp / DRIFT_FILE, drifted)
    io.write_parquet(tmp / f"{RISK_LIST}.parquet", risk_list, metadata={"summary": summary})
    io.write_csv(tmp / GROUPS_FILE, groups)
    io.write_json(tmp / TYPICAL_FILE, typical)
    old = out_dir / HISTORY_FILE
    history = extend_history(pd.read_csv(old) if old.exists() else None, summary)
    io.write_csv(tmp / HISTORY_FILE, history)
    return history


def write_partitioned(target: Path, risk_list: pd.DataFrame, partitions: int) -> Path:
    """The whole ranked list as one Parquet file per customer partition (``part-00003.parquet``, rows in
    rank order), what a cluster job or a warehouse loads in parallel (``dd.read_parquet``); the CSV and the
    report stay whole for people."""
    target.mkdir(parents=True)
    for k, part in enumerate(split_frame(risk_list, partitions)):
        io.write_parquet(target / f"part-{k:05d}.parquet", part)
    return target


def log_run(tmp: Path, summary: dict[str, Any], config: Config, drifted: pd.DataFrame | None = None) -> str:
    """An MLflow run of this scoring in the config's experiment: settings, figures (every drift figure
    too, ``drift.psi.<feature>``...) and the outputs."""
    with mlflow.start_run(run_name=f"score-{summary['as_of'][:10]}", tags=ownership.tags()) as active:
        mlflow.set_tags({"churnml.stage": "score", "churnml.model_uri": summary["model_uri"]})
        mlflow.log_params(
            {
                "as_of": summary["as_of"],
                "model_uri": summary["model_uri"],
                "model_version": summary["model_version"],
                "rank_by": summary["rank_by"],
                "at_risk_threshold": summary["at_risk_threshold"],
                "bands": json.dumps(summary["bands"]),
                "explain": config.scoring.explain,
                "explain_device": config.scoring.device,
                "uplift_model_uri": (summary.get("uplift") or {}).get("model_uri"),
            }
        )
        numbers = {
            k: float(v)
            for k, v in {**summary, **summary.get("timings", {})}.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        }
        mlflow.log_metrics(numbers | (drift.metrics(drifted) if drifted is not None else {}))
        for path in sorted(tmp.iterdir()):  # this run's outputs; earlier runs' lists are in their runs
            if path.is_dir() and path.name != ARCHIVE_DIR:
                mlflow.log_artifacts(str(path), artifact_path=f"scoring/{path.name}")
            elif path.name != ARCHIVE_DIR:
                mlflow.log_artifact(str(path), artifact_path="scoring")
        return active.info.run_id
