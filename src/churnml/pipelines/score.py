"""Scoring pipeline: customers active at the as-of date → features → calibrated probability → value,
bands, segments, ranking → SHAP drivers and risk groups for the customers that need them → trend
against the previous run → risk list, group summary and HTML report, swapped in atomically and logged
to an MLflow scoring run.

``run`` reads top to bottom as those steps; each is a function of churnml's modules.
"""

from __future__ import annotations

import json
import logging
import time
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import pandas as pd

from churnml import io, ownership
from churnml.config import Config, LabelConfig
from churnml.data.dataset import Dataset
from churnml.errors import ChurnmlError, ModelLoadError
from churnml.features import build_features
from churnml.features.catalogue import recency_feature
from churnml.features.labels import make_label_times
from churnml.pipelines import features
from churnml.risk import report
from churnml.risk.explain import Explainer, contributions, model_typical_values, typical_values
from churnml.risk.report import Explained
from churnml.risk.risk_list import (
    Playbook,
    add_trend,
    assign_groups,
    band_of,
    customer_value,
    driver_columns,
    group_summary,
    headline,
    load_playbook,
    rank,
    with_plays,
)
from churnml.risk.segments import segments_of
from churnml.training import registry
from churnml.training.model import ChurnModel, load_model
from churnml.training.tracking import session, tracking_uri

log = logging.getLogger(__name__)

RISK_LIST = "risk_list"  # .csv and .parquet
GROUPS_FILE = "risk_groups.csv"
REPORT_FILE = "risk_report.html"
SUMMARY_FILE = "summary.json"
TYPICAL_FILE = "typical_values.json"
HISTORY_FILE = "history.csv"


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


def score_dir(config: Config) -> Path:
    return Path(config.scoring.out_dir or Path(config.output.dir) / config.name / "score")


def default_model_uri(config: Config) -> str:
    return registry.champion_uri(config.tracking.registered_model)


def run(
    config: Config,
    as_of: Any = None,
    model_uri: str | None = None,
    dataset: Dataset | None = None,
    base_dir: Path | None = None,
) -> ScoreResult:
    """Score every customer active at ``as_of`` (default: config, else the end of the data)."""
    timings: dict[str, float] = {}
    clock = time.perf_counter()
    dataset = dataset or features.load_data(config, base_dir)
    as_of = resolve_as_of(dataset, as_of if as_of is not None else config.scoring.as_of)
    playbook = load_playbook(config.risk.playbook)
    uri = model_uri or config.scoring.model_uri or default_model_uri(config)
    out_dir = score_dir(config)
    with tracked(config, uri):
        model, version = load(uri, config)
        timings["load_s"] = _lap(clock)
        frame = active_customer_features(dataset, model, as_of, config)
        timings["features_s"] = _lap(clock, timings)
        scored = score(frame, model, dataset, as_of, config)
        timings["score_s"] = _lap(clock, timings)
        scored, explained, typical, stats = explain(scored, frame, model, playbook, config)
        timings["explain_s"] = _lap(clock, timings)
        previous = read_previous(out_dir)
        risk_list = finish(scored, previous, playbook, config, as_of, version)
        groups = group_summary(risk_list, playbook)
        summary = {
            "as_of": as_of.isoformat(),
            "model_uri": uri,
            "model_version": version,
            "previous_as_of": None if previous is None else previous.attrs.get("as_of"),
            "value_basis": scored.attrs["value_basis"],
            "typical_values_source": typical["source"],
            "bands": dict(config.risk.bands),
            "at_risk_threshold": config.risk.at_risk_threshold,
            "rank_by": config.risk.rank_by,
            **stats,
            **headline(risk_list),
        }
        run_id = None
        with io.atomic_dir(out_dir) as tmp:
            history = write_outputs(tmp, risk_list, groups, summary, typical, out_dir)
            started = time.perf_counter()
            report.write_report(
                tmp / REPORT_FILE, risk_list, groups, summary, explained, model, playbook, config, history
            )
            timings["report_s"] = time.perf_counter() - started
            summary["timings"] = {**timings, "total_s": time.perf_counter() - clock}
            io.write_json(tmp / SUMMARY_FILE, summary)
            if config.scoring.log_to_mlflow:
                run_id = log_run(tmp, summary, config)
    return ScoreResult(risk_list, groups, summary, out_dir, uri, run_id, explained)


def tracked(config: Config, uri: str) -> AbstractContextManager[Any]:
    """The MLflow session, unless neither the model nor the outputs involve MLflow (a model directory
    and ``scoring.log_to_mlflow=false``): then no tracking store is created or touched."""
    if not config.scoring.log_to_mlflow and Path(uri).is_dir():
        return nullcontext()
    return session(config)


def _lap(start: float, timings: dict[str, float] | None = None) -> float:
    return time.perf_counter() - start - sum((timings or {}).values())


# ---------------------------------------------------------------------------------------------------
# Steps.


def resolve_as_of(dataset: Dataset, as_of: Any) -> pd.Timestamp:
    """The as-of moment: the end of the data by default; never after it (nothing is known there)."""
    if as_of is None:
        return pd.Timestamp(dataset.end)
    try:
        moment = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        raise ChurnmlError(f"--as-of: cannot read {as_of!r} as a date (use YYYY-MM-DD)") from None
    if moment.tzinfo is not None:
        moment = moment.tz_convert(None)
    if moment > dataset.end:
        raise ChurnmlError(
            f"as-of date {moment} is after the end of the data ({dataset.end}): nothing is known about "
            "customers then. Use a date up to the end of the data, or leave --as-of out."
        )
    return moment


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


def label_config(model: ChurnModel, config: Config) -> LabelConfig:
    """Eligibility as the model was trained: its label definition, else the config's."""
    trained = model.info.get("labels") or {}
    settings = config.labels.model_dump()
    for key in ("definition", "horizon_days", "grace_days", "active_days"):
        if trained.get(key) is not None:
            settings[key] = trained[key]
    return LabelConfig.model_validate(settings)


def active_customer_features(
    dataset: Dataset, model: ChurnModel, as_of: pd.Timestamp, config: Config
) -> pd.DataFrame:
    """Features at ``as_of`` of every customer the label builder would label there (same eligibility)."""
    eligible = make_label_times(dataset, label_config(model, config), [as_of]).frame
    if eligible.empty:
        raise ChurnmlError(f"no active customers at {as_of}: nothing to score")
    specs = list(model.specs)
    return build_features(dataset, eligible[["customer_id", "cutoff"]], config.features, specs=specs)


def score(
    frame: pd.DataFrame, model: ChurnModel, dataset: Dataset, as_of: pd.Timestamp, config: Config
) -> pd.DataFrame:
    """Probability, value, revenue at risk, band, segment and lifecycle stage, ranked."""
    probability = model.predict_proba(frame)
    value, basis = customer_value(frame, config.risk)
    signup = frame["customer_id"].map(dataset.customers.set_index("customer_id")["signup_at"])
    tenure = ((as_of - pd.to_datetime(signup)) / pd.Timedelta(days=1)).to_numpy(dtype=float)
    activity = recency_feature(
        model.specs, config.risk.segments.activity_feature or config.evaluation.recency_feature
    )
    scored = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "churn_probability": probability,
            "risk_band": band_of(probability, config.risk.bands),
            "at_risk": probability >= config.risk.at_risk_threshold,
            "revenue_at_risk": probability * value,
            "customer_value": value,
            "tenure_days": tenure,
        }
    )
    scored = pd.concat([scored, segments_of(frame, tenure, config.risk.segments, activity)], axis=1)
    scored["row"] = np.arange(len(scored))  # position in ``frame``
    ranked = rank(scored, config.risk.rank_by)
    ranked.attrs["value_basis"] = basis
    return ranked


def rows_to_explain(scored: pd.DataFrame, config: Config) -> np.ndarray:
    """Ranked positions that get drivers: the at-risk (or everyone) and the head of the ranking, in
    ranking order, capped at ``explain_max``."""
    settings = config.scoring
    if settings.explain == "all":
        chosen = np.arange(len(scored))
    else:
        head = np.arange(min(settings.explain_top, len(scored)))
        chosen = np.union1d(np.flatnonzero(scored["at_risk"].to_numpy(bool)), head)
    cap = settings.explain_max
    return chosen if cap is None else chosen[:cap]


def explain(
    scored: pd.DataFrame, frame: pd.DataFrame, model: ChurnModel, playbook: Playbook, config: Config
) -> tuple[pd.DataFrame, Explained, dict[str, Any], dict[str, Any]]:
    """Drivers and risk groups of the customers that need them, plus a random sample for global drivers.

    One ``pred_contribs`` pass covers both sets. Returns the list with driver/group columns, the
    contributions (with the feature values behind them), the typical values used and counts.
    """
    settings = config.scoring
    explain_pos = rows_to_explain(scored, config)
    rng = np.random.default_rng(config.seed)
    sample_size = min(settings.global_sample, len(scored))
    sample_pos = np.sort(rng.choice(len(scored), size=sample_size, replace=False))
    positions = np.union1d(explain_pos, sample_pos).astype(int)
    subset = frame.iloc[scored["row"].to_numpy()[positions]].reset_index(drop=True)
    started = time.perf_counter()
    contribs = contributions(model, subset, settings.batch_size, settings.device, settings.nthread)
    contrib_seconds = time.perf_counter() - started

    typical = _typical(model, frame, scored, config)
    explainer = Explainer.of(model, typical["values"], config.risk.exclude_from_reasons)
    is_explained = np.isin(positions, explain_pos)
    local = np.flatnonzero(is_explained)
    drivers = explainer.drivers(subset.iloc[local], contribs[local], config.risk.top_k)
    groups = assign_groups(explainer.signals.sum(contribs[local]), explainer.signals, playbook)

    out = scored.copy()
    columns = driver_columns(drivers, config.risk.top_k)
    for name, values in columns.items():
        out[name] = pd.Series([None] * len(out), dtype=object)
        out.loc[positions[local], name] = pd.Series(values, index=positions[local], dtype=object)
    out["risk_group"] = pd.Series([None] * len(out), dtype=object)
    at_risk_local = out["at_risk"].to_numpy(bool)[positions[local]]
    out.loc[positions[local][at_risk_local], "risk_group"] = groups[at_risk_local]
    out.attrs.update(scored.attrs)

    customers = pd.DataFrame(
        {
            "customer_id": scored["customer_id"].to_numpy()[positions],
            "rank": scored["rank"].to_numpy()[positions],
            "explained": is_explained,
            "sampled": np.isin(positions, sample_pos),
        }
    )
    explained = Explained(customers, contribs, model.prepare(subset))
    stats = {
        "customers_explained": len(explain_pos),
        "rows_contributions": len(positions),
        "contributions_seconds": contrib_seconds,
        "explain_device": settings.device,
        "trees": model.iteration_range[1] if model.linear is None else 0,
    }
    return out, explained, typical, stats


def _typical(model: ChurnModel, frame: pd.DataFrame, scored: pd.DataFrame, config: Config) -> dict[str, Any]:
    """Typical values of retained customers: stored with the model (training label-0 rows), else the
    medians of this run's customers below the at-risk threshold (the predicted stayers)."""
    stored = model_typical_values(model)
    if stored:
        return {"source": "model (retained training customers)", "values": stored}
    low = scored.loc[~scored["at_risk"], "row"].to_numpy()
    reference = frame.iloc[low] if len(low) else frame
    values = typical_values(model.prepare(reference), model.feature_names)
    return {"source": f"scored customers below the at-risk threshold ({len(low):,})", "values": values}


def finish(
    scored: pd.DataFrame,
    previous: pd.DataFrame | None,
    playbook: Playbook,
    config: Config,
    as_of: pd.Timestamp,
    version: str | None,
) -> pd.DataFrame:
    """Plays, trend and the published column order."""
    listed = with_plays(scored, playbook)
    listed = add_trend(listed, previous)
    listed["as_of"] = as_of
    listed["model_version"] = version
    drivers = [f"driver_{k + 1}" for k in range(config.risk.top_k)]
    order = [
        "rank",
        "customer_id",
        "churn_probability",
        "risk_band",
        "at_risk",
        "revenue_at_risk",
        "customer_value",
        "segment",
        "lifecycle_stage",
        "tenure_days",
        "risk_group",
        *drivers,
        "play",
        "play_owner",
        "previous_probability",
        "probability_change",
        "newly_at_risk",
        "as_of",
        "model_version",
    ]
    return listed[order]


def read_previous(out_dir: Path) -> pd.DataFrame | None:
    """The previous run's risk list in the output directory (for the trend), if there is one."""
    path = out_dir / f"{RISK_LIST}.parquet"
    if not path.exists():
        return None
    try:
        previous = pd.read_parquet(path, columns=["customer_id", "churn_probability", "at_risk", "as_of"])
    except Exception as exc:  # an unreadable old file must not stop today's list
        log.warning("previous risk list %s unreadable (%s): no trend this run", path, exc)
        return None
    previous.attrs["as_of"] = str(previous["as_of"].iloc[0]) if len(previous) else None
    return previous


def write_outputs(
    tmp: Path,
    risk_list: pd.DataFrame,
    groups: pd.DataFrame,
    summary: dict[str, Any],
    typical: dict[str, Any],
    out_dir: Path,
) -> pd.DataFrame:
    """Risk list (CSV + Parquet), group summary, typical values and the run history into ``tmp``;
    returns the history (one row per run in this output directory)."""
    io.write_csv(tmp / f"{RISK_LIST}.csv", risk_list)
    io.write_parquet(tmp / f"{RISK_LIST}.parquet", risk_list, metadata={"summary": summary})
    io.write_csv(tmp / GROUPS_FILE, groups)
    io.write_json(tmp / TYPICAL_FILE, typical)
    keys = ["as_of", "customers_scored", "customers_at_risk", "revenue_at_risk", "expected_churners"]
    history = pd.DataFrame([{key: summary[key] for key in keys}])
    old = out_dir / HISTORY_FILE
    if old.exists():
        history = pd.concat([pd.read_csv(old), history], ignore_index=True)
    io.write_csv(tmp / HISTORY_FILE, history)
    return history


def log_run(tmp: Path, summary: dict[str, Any], config: Config) -> str:
    """An MLflow run of this scoring in the config's experiment: settings, figures and the outputs."""
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
            }
        )
        numbers = {
            k: float(v)
            for k, v in {**summary, **summary.get("timings", {})}.items()
            if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
        }
        mlflow.log_metrics(numbers)
        mlflow.log_artifacts(str(tmp), artifact_path="scoring")
        return active.info.run_id
