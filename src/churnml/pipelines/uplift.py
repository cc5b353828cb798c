"""Uplift pipeline: contacts history → point-in-time rows → uplift model per play fitted on earlier lists
→ evaluated on the latest lists (out of time, on their randomised arms) → refitted on every list →
files and an MLflow run beside the churn model's.

``run`` is the wiring and this module the I/O; the steps are pure functions of ``churnml.uplift``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd

from churnml import __version__, io, ownership
from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.pipelines import features
from churnml.training import registry
from churnml.training.split import label_window_days
from churnml.training.tracking import TrialLogger, flatten, session
from churnml.uplift.evaluate import qini_curve, ranking_table, save_qini_plot
from churnml.uplift.learner import UpliftModel, fit_uplift, slug
from churnml.uplift.mlflow_model import log_uplift_model
from churnml.uplift.rows import UpliftRows, build_uplift_rows, control_rows, split_by_list
from churnml.uplift.tune import METRIC, PlayTuning, tune_uplift

logger = logging.getLogger("churnml.pipelines.uplift")

__all__ = ["UpliftResult", "run", "uplift_dir"]

MODEL_DIR = "model"
EVALUATION_FILE = "uplift_evaluation.csv"
PLAYS_FILE = "uplift_plays.csv"
SUMMARY_FILE = "summary.json"
QINI_PLOT = "qini.png"


@dataclass(frozen=True)
class UpliftResult:
    model: UpliftModel  # shipped: fitted on every labeled list
    evaluated: UpliftModel  # fitted on the lists before the test lists: the one the evaluation describes
    evaluation: pd.DataFrame  # per play (and "all plays") and ranking: Qini, AUUC, uplift at budget
    test_lists: list[str]
    run_id: str | None
    out_dir: Path
    model_version: str | None = None  # registry version of the shipped model (champion), None unregistered
    tuning: dict[str, PlayTuning] = field(default_factory=dict)  # per play: its study and settings


def uplift_dir(config: Config) -> Path:
    return Path(config.output.dir) / config.name / "uplift"


def run(config: Config, dataset: Dataset | None = None, base_dir: Path | None = None) -> UpliftResult:
    """Fit, evaluate out of time, refit and record the uplift model of every play in the contacts table."""
    dataset = dataset or features.load_data(config, base_dir)
    settings = config.uplift
    rows = build_uplift_rows(dataset, config.labels, config.features, list_days=settings.list_days)
    controls = (
        control_rows(dataset, config.labels, config.features, rows.specs, settings.list_days)
        if settings.controls == "all"
        else None
    )
    window = label_window_days(rows.label_settings)
    train, test = split_by_list(rows, settings.test_lists, window)
    first_test = test["cutoff"].min()
    nthread = config.model.nthread
    before = _before(controls, first_test, window)
    tuning = tune_uplift(
        train, rows.specs, rows.label_settings, settings, config.seed, window, nthread, before
    )
    params = {play: tuned.params for play, tuned in tuning.items()}
    evaluated = fit_uplift(train, rows.specs, settings, config.seed, nthread, before, params)
    evaluation, curves = evaluate_model(evaluated, test, settings.budget)
    shipped = fit_uplift(rows.labeled, rows.specs, settings, config.seed, nthread, _labeled(controls), params)
    test_lists = sorted({str(pd.Timestamp(c).date()) for c in test["cutoff"]})
    out_dir = _write(uplift_dir(config), shipped, evaluation, curves, test_lists, rows, tuning)
    run_id, version = (
        _log(config, out_dir, shipped, evaluation, test_lists, tuning)
        if config.scoring.log_to_mlflow
        else (None, None)
    )
    return UpliftResult(shipped, evaluated, evaluation, test_lists, run_id, out_dir, version, tuning)


def _before(controls: pd.DataFrame | None, first_test: pd.Timestamp, window: int) -> pd.DataFrame | None:
    if controls is None:
        return None
    known = controls["label"].notna() & (controls["cutoff"] + pd.Timedelta(days=window) <= first_test)
    return controls.loc[known].reset_index(drop=True)


def _labeled(controls: pd.DataFrame | None) -> pd.DataFrame | None:
    return None if controls is None else controls.loc[controls["label"].notna()].reset_index(drop=True)


def evaluate_model(
    model: UpliftModel, test: pd.DataFrame, budget: float
) -> tuple[pd.DataFrame, dict[str, pd.DataFrame]]:
    """On the test lists' contacted and held-out customers: the uplift ranking against the risk ranking
    (churn without contact) and a random one, per play and over all plays; Qini curves of all plays.

    Test rows of a play the model never saw (first used after the training lists) have no uplift: they
    are left out with a warning, not ranked last in silence."""
    unknown = ~test["play"].isin(list(model.plays))
    if unknown.any():
        counts = test.loc[unknown, "play"].astype(str).value_counts().to_dict()
        logger.warning("uplift evaluation leaves out plays the model has not seen: %s (rows)", counts)
        test = test.loc[~unknown].reset_index(drop=True)
    uplift = model.effect(test, test["play"])
    risk = model.churn_without(test, test["play"])
    random = np.random.default_rng(0).random(len(test))
    churned = test["label"].to_numpy(dtype=np.float64)
    treated = test["treated"].to_numpy(dtype=bool)
    tables = []
    groups = [("all plays", np.ones(len(test), bool))]
    groups += [(str(p), (test["play"] == p).to_numpy()) for p in sorted(test["play"].astype(str).unique())]
    for play, mask in groups:
        scores = {"uplift": uplift[mask], "random": random[mask]}
        if np.isfinite(risk[mask]).all():
            scores["risk"] = risk[mask]
        tables.append(ranking_table(churned[mask], treated[mask], scores, budget).assign(play=play))
    table = pd.concat(tables, ignore_index=True)
    table = table[["play", *[c for c in table.columns if c != "play"]]]
    curves = {
        name: qini_curve(churned, treated, score) for name, score in (("uplift", uplift), ("random", random))
    }
    if np.isfinite(risk).all():
        curves["risk"] = qini_curve(churned, treated, risk)
    return table, curves


def _write(
    directory: Path,
    model: UpliftModel,
    evaluation: pd.DataFrame,
    curves: dict[str, pd.DataFrame],
    test_lists: list[str],
    rows: UpliftRows,
    tuning: dict[str, PlayTuning],
) -> Path:
    with io.atomic_dir(directory) as tmp:
        model.save(tmp / MODEL_DIR)
        io.write_csv(tmp / EVALUATION_FILE, evaluation)
        io.write_csv(tmp / PLAYS_FILE, model.summary().drop(columns=["rounds"]))
        save_qini_plot(curves, tmp / QINI_PLOT, "Qini curve, test lists (all plays)", column="qini")
        io.write_json(
            tmp / SUMMARY_FILE,
            {
                "churnml_version": __version__,
                "test_lists": test_lists,
                "rows": len(rows.frame),
                "labeled_rows": len(rows.labeled),
                "info": model.info,
                "notes": list(model.notes),
                "all_plays": _figures(evaluation),
                "tuning": {play: tuned.summary() for play, tuned in tuning.items()},
            },
        )
    return directory


def _figures(evaluation: pd.DataFrame) -> dict[str, float]:
    """The all-plays figures per ranking, flat (for summary.json and MLflow metrics)."""
    rows = evaluation.loc[evaluation["play"] == "all plays"]
    return {
        f"{metric}_{row['ranking']}": float(row[metric])
        for _, row in rows.iterrows()
        for metric in ("qini", "auuc", "uplift_at_budget")
        if np.isfinite(row[metric])
    }


def _log(
    config: Config,
    out_dir: Path,
    model: UpliftModel,
    evaluation: pd.DataFrame,
    test_lists: list[str],
    tuning: dict[str, PlayTuning],
) -> tuple[str, str | None]:
    """An MLflow run ``uplift-<name>`` in the churn model's experiment: settings, figures, the model's
    JSON files and the evaluation (tag ``churnml.stage=uplift``); the model logged as a pyfunc and, with
    ``tracking.register_model``, registered as a version of ``<registered model>-uplift`` and made
    champion (where `churnml score` and the service look for it). The newest always takes the alias:
    two runs' test lists differ, so their Qini coefficients are not comparable. Each play's tuning trials
    are nested runs, as the churn model's are (``TrialLogger``)."""
    with session(config), mlflow.start_run(run_name=f"uplift-{config.name}", tags=ownership.tags()) as run:
        mlflow.set_tag("churnml.stage", "uplift")
        mlflow.log_params(
            {
                **flatten(config.uplift.model_dump(mode="json"), "uplift."),
                "test_lists": ",".join(test_lists),
                "plays_modelled": ",".join(p for p, m in model.plays.items() if m.method != "average"),
                "plays_average": ",".join(p for p, m in model.plays.items() if m.method == "average"),
            }
        )
        mlflow.log_metrics(_figures(evaluation))
        _log_tuning(tuning, run.info.run_id, run.info.experiment_id)
        mlflow.log_artifacts(str(out_dir), "uplift")
        info = log_uplift_model(model)
        version = None
        if config.tracking.register_model:
            name = config.uplift_registered_model()
            tags = {"test_lists": ",".join(test_lists), **_figures(evaluation)}
            version = str(registry.register(info.model_uri, name, tags).version)
            registry.promote(name, version, reason=f"newest uplift model (run {run.info.run_id})")
            mlflow.set_tag("churnml.uplift_model", f"{name}/{version}")
    return run.info.run_id, version


def _log_tuning(tuning: dict[str, PlayTuning], run_id: str, experiment_id: str) -> None:
    """Each play's trials as nested runs (tagged with the play), its chosen settings as parameters and
    the validation losses of the robust and the best settings as metrics."""
    trials = TrialLogger(run_id, experiment_id, METRIC)
    for play, tuned in tuning.items():
        if tuned.study is not None:
            for trial in tuned.study.trials:
                trials(tuned.study, trial)
        key = slug(play).replace("-", "_")
        mlflow.log_params(
            {f"tuned.{key}.{k}": v for k, v in tuned.params.items()} or {f"tuned.{key}": "none"}
        )
        losses = {"default": tuned.default_loss, "best": tuned.best_loss}
        mlflow.log_metrics({f"tune_{key}_{k}_{METRIC}": v for k, v in losses.items() if np.isfinite(v)})
