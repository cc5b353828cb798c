"""Training pipeline: training set → out-of-time split → Optuna-tuned XGBoost → calibration → evaluation
against baselines → MLflow run with nested trial runs → registry with champion/challenger promotion.

``run`` reads top to bottom as the seven steps of the job; each step is a function of churnml's modules.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
import optuna
import pandas as pd

from churnml import __version__, io
from churnml.calibrate import fit_calibrator
from churnml.config import Config
from churnml.evaluate import Evaluation, evaluate, metric_value
from churnml.mlflow_model import log_model
from churnml.model import ChurnModel, load_model
from churnml.pipelines import features
from churnml.registry import Decision, register_and_decide
from churnml.split import Split, split_by_time
from churnml.tracking import TrialLogger, log_inputs, log_study, session
from churnml.training_set import TrainingSet
from churnml.tune import Matrices, fit_model, study_name, tune

HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "best_profit", "best_fraction")


@dataclass(frozen=True)
class TrainResult:
    model: ChurnModel
    split: Split
    study: optuna.Study
    evaluation: Evaluation
    run_id: str
    model_uri: str
    version: str | None
    decision: Decision | None
    out_dir: Path


def train_dir(config: Config) -> Path:
    return Path(config.output.dir) / config.name / "train"


def run(config: Config, training_set: TrainingSet | None = None, base_dir: Path | None = None) -> TrainResult:
    """Train, calibrate, evaluate, track and register a churn model (builds the training set if not given)."""
    training_set = training_set or features.run(config, base_dir).training_set
    split = split_by_time(training_set.frame, training_set.label_settings, config.split, config.seed)
    untrained = ChurnModel.untrained(split.train, training_set.specs)
    data = Matrices.of(untrained.xy(split.train), untrained.xy(split.validation), config.model.nthread)
    name = study_name(config, training_set.fingerprint, split.boundaries)
    with session(config) as experiment_id, mlflow.start_run(run_name=f"train-{config.name}") as parent:
        log_inputs(config, training_set.fingerprint, training_set.label_settings, split)
        trials = TrialLogger(parent.info.run_id, experiment_id, config.tune.metric)
        study = tune(config, data, name, callbacks=[trials])
        log_study(study, config.tune.metric)
        fit_rows = split.fit_rows(config.model.refit_on)
        model = fit_model(config, study.best_trial, untrained, untrained.xy(fit_rows))
        model = _calibrate(model, split.calibration, config).with_info(
            churnml_version=__version__,
            data_fingerprint=training_set.fingerprint,
            labels=training_set.label_settings,
            split=split.boundaries,
            study=name,
        )
        evaluation = evaluate(model, fit_rows, split.test, config.evaluation, config.campaign, config.seed)
        out_dir = _write_outputs(model, evaluation, train_dir(config))
        mlflow.log_metrics(evaluation.metrics())
        mlflow.log_artifacts(str(out_dir / "evaluation"), "evaluation")
        info = log_model(model, split.test.head(5))
        version, decision = _register(config, info.model_uri, split.test, evaluation)
    return TrainResult(
        model, split, study, evaluation, parent.info.run_id, info.model_uri, version, decision, out_dir
    )


def _calibrate(model: ChurnModel, calibration: pd.DataFrame, config: Config) -> ChurnModel:
    """Fit the calibrator on the held-out calibration slice; log the choice and its CV scores."""
    y = calibration["label"].to_numpy(dtype=np.int64)
    settings = config.calibration
    calibrator, scores = fit_calibrator(
        model.margin(calibration), y, calibration["customer_id"], settings.method, settings.folds, config.seed
    )
    mlflow.log_param("calibration.chosen", calibrator.method)
    mlflow.log_metrics({f"calibration_cv_log_loss_{method}": value for method, value in scores.items()})
    return model.with_calibrator(calibrator)


def _write_outputs(model: ChurnModel, evaluation: Evaluation, directory: Path) -> Path:
    """The model's plain files and the evaluation (metrics, tables, plots), swapped in atomically."""
    with io.atomic_dir(directory) as tmp:
        model.save(tmp / "model")
        evaluation.write(tmp / "evaluation")
    return directory


def _register(
    config: Config, model_uri: str, test: pd.DataFrame, evaluation: Evaluation
) -> tuple[str | None, Decision | None]:
    """Register as challenger; promote to champion if it beats the champion on these same test rows."""
    settings = config.tracking
    if not settings.register_model:
        return None, None
    y = test["label"].to_numpy(dtype=np.int64)
    metric = settings.promotion_metric
    tags = {f"test_{k}": f"{evaluation.model.metrics[k]:.6f}" for k in HEADLINE}
    tags |= {"test_cutoff": str(test["cutoff"].iloc[0].date()), "run_id": mlflow.active_run().info.run_id}
    version, decision = register_and_decide(
        model_uri,
        settings.registered_model,
        metric,
        evaluation.model.metrics[metric],
        lambda uri: metric_value(metric, y, load_model(uri).predict_proba(test)),
        settings.min_improvement,
        tags,
    )
    mlflow.set_tags(decision.as_tags() | {"registry.version": version})
    mlflow.log_metric("promotion_challenger_score", decision.challenger)
    if decision.champion is not None:
        mlflow.log_metric("promotion_champion_score", decision.champion)
    return version, decision
