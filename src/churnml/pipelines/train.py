"""Training pipeline: training set → rolling-origin folds → candidates (Optuna-tuned XGBoost, robust
XGBoost, logistic regression) chosen by pooled out-of-fold figures → calibration on those → the test
cutoff → refit on every labeled cutoff → MLflow run with nested trial runs → registry.

``run`` reads top to bottom as the steps of the job; each step is a function of ``churnml.training``
(this module wires them and does the MLflow I/O; the refit's rules are in ``training/refit.py``).
The test figures, and the champion/challenger decision, are those of the *development* model (fitted
before the test cutoff); the shipped model is then refitted on every labeled cutoff
(``model.refit_on: all``), so it knows the latest churners, and calibrated on every out-of-time
prediction there is: the folds' and the development model's on the test cutoff. The shipped model
carries the test cutoff's reference profile, what scoring measures drift against (``risk.drift``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import numpy as np
import optuna
import pandas as pd

from churnml import __version__, io, ownership
from churnml.config import Config
from churnml.engine import Engine, concat_in_order, open_engine
from churnml.engine.boosting import PartFiles
from churnml.engine.cluster import DaskEngine
from churnml.features.training_set import TrainingSet, write_training_set_on_workers
from churnml.pipelines import features, review
from churnml.risk import drift
from churnml.training.calibrate import Calibrator, fit_calibrator
from churnml.training.candidates import (
    Candidate,
    booster_candidate,
    choose,
    logreg_candidate,
    robust_candidate,
)
from churnml.training.evaluate import Evaluation, evaluate, holdout_figures, metric_value
from churnml.training.mlflow_model import log_model
from churnml.training.model import ChurnModel
from churnml.training.refit import comparable_model, labels_end, labels_end_of, refit_calibration_set
from churnml.training.registry import Decision, register_and_decide
from churnml.training.split import (
    Split,
    cross_validation_part,
    cross_validation_rows,
    sample_share,
    sampled_split,
    split_by_time,
)
from churnml.training.tracking import TrialLogger, log_inputs, log_study, session
from churnml.training.tune import BoosterRows, CVData, FrameRows, booster_params, study_name, tune

__all__ = ["TrainResult", "labels_end_of", "run", "train_dir"]

log = logging.getLogger(__name__)

HEADLINE = ("roc_auc", "pr_auc", "log_loss", "brier", "ece", "lift_top10", "best_profit", "best_fraction")


@dataclass(frozen=True)
class TrainResult:
    model: ChurnModel  # shipped: refitted on every labeled cutoff (model.refit_on)
    evaluated: ChurnModel  # fitted before the test cutoff: the model the evaluation describes
    candidates: tuple[Candidate, ...]
    candidate_tests: dict[str, dict[str, float]]
    split: Split
    study: optuna.Study | None
    evaluation: Evaluation
    run_id: str
    model_uri: str
    version: str | None
    decision: Decision | None
    out_dir: Path


def train_dir(config: Config) -> Path:
    return Path(config.output.dir) / config.name / "train"


def run(
    config: Config,
    training_set: TrainingSet | None = None,
    base_dir: Path | None = None,
    announce: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train, choose, calibrate, evaluate, refit, track and register a churn model (builds the training
    set if not given). On a Dask ``config.engine`` the Optuna trials run on the workers in parallel and
    the candidates' final boosters are trained by them (``xgboost.dask``); the best trial's
    cross-validation, the other candidates and calibration stay in this process. One engine serves
    both the training set and the boosters (a second LocalCluster would cost its start-up again)."""
    with open_engine(config.engine, config.model.nthread, announce) as engine, ExitStack() as stack:
        on_workers = True
        if training_set is None and config.split.cv_customers is not None:
            held = features.read_on_workers(config, base_dir, engine, stack)
            if held is not None:  # out of core: the workers write the training set and keep nothing
                assert isinstance(engine, DaskEngine)
                labels, plan = _out_of_core(config, held, engine)
                return _train(config, labels, engine, plan)
            on_workers = False  # tried already: the data is loaded here
        if training_set is None:
            training_set = features.run(config, base_dir, engine=engine, on_workers=on_workers).training_set
        return _train(config, training_set, engine)


# The out-of-time split, and where the boosters' rows are when cross-validation sees a sample of the
# customers (split.cv_customers): the development and the labeled rows of every customer.
Plan = tuple[Split, BoosterRows | None, BoosterRows | None]


def _out_of_core(config: Config, held: Any, engine: DaskEngine) -> tuple[TrainingSet, Plan]:
    """The training set built and written per partition by the workers, which keep nothing of it; the
    client gathers its cutoff and label columns and the rows cross-validation reads (the sampled
    customers' and the test cutoff's, from the files, at full precision), and the boosters read the
    files again (``engine.boosting.PartFiles``). Returns the set's labels (as its frame) and the plan."""
    directory = features.training_set_dir(config)
    written = write_training_set_on_workers(held, config.labels, config.features, engine, directory)
    settings = written.label_settings
    bounds = split_by_time(written.labels, settings, config.split).boundaries
    share = sample_share(written.customers, config.split.cv_customers)
    test_cutoff = pd.Timestamp(bounds["test_cutoff"])
    pieces = engine.map(cross_validation_part, written.files, share, config.seed, test_cutoff, name="cv-rows")
    rows = concat_in_order(pieces, ["cutoff", "customer_id"])
    split = sampled_split(rows, bounds, settings, config.split, share, config.seed)
    del pieces, rows  # the split holds its own rows
    files = written.files
    development = PartFiles(engine, files, _cutoffs(bounds["train_cutoffs"]), bounds["train_rows"])
    labeled = PartFiles(engine, files, _cutoffs(bounds["labeled_cutoffs"]), bounds["labeled_rows"])
    labels = TrainingSet(written.labels, written.specs, settings, written.fingerprint)
    return labels, (split, development, labeled)


def _train(
    config: Config, training_set: TrainingSet, engine: Engine, plan: Plan | None = None
) -> TrainResult:
    """The job on ``training_set`` (with a ``plan`` made out of core, its frame holds only the cutoff and
    label columns)."""
    split, development, labeled = plan or _split(config, training_set, engine)
    specs = training_set.specs
    data = CVData.of(specs, split, config.model.nthread, config.tune.search_negatives, config.seed)
    name = study_name(config, training_set.fingerprint, split.boundaries)
    with (
        session(config) as experiment_id,
        mlflow.start_run(run_name=f"train-{config.name}", tags=ownership.tags()) as parent,
    ):
        log_inputs(config, training_set.fingerprint, training_set.label_settings, split)
        candidates, study = _candidates(
            config, data, split, specs, name, experiment_id, parent.info.run_id, engine
        )
        oof = split.out_of_fold
        chosen = choose(
            candidates,
            config.model.select_by,
            config.model.select_rule,
            data.y,
            oof["customer_id"],
            config.seed,
        )
        info = {
            "churnml_version": __version__,
            "data_fingerprint": training_set.fingerprint,
            "labels": training_set.label_settings,
            "split": split.boundaries,
            "study": name if study is not None else None,
            "cross_validation": {c.name: c.cv for c in candidates},
        }
        evaluated = {
            c.name: c.fit(specs, split.development, data, config, engine, development)
            .with_calibrator(_calibrator(c.margin, oof, config, log_as="evaluated"))
            .with_info(**info, labels_end=labels_end(split.development, split))
            for c in candidates
        }
        model = evaluated[chosen.name]
        sample = split.boundaries.get("cross_validation")
        if sample is not None and sample["share"] < 1 and chosen.rounds is None:
            log.warning(
                "the chosen candidate is the logistic regression, fitted on the %s sampled customers' rows "
                "only (split.cv_customers); model.select_rule=best, or model.candidates without logreg, "
                "ships a booster fitted on every row",
                f"{sample['customers']:,}",
            )
        tests = {n: _test_figures(m, split.test, config) for n, m in evaluated.items()}
        campaign, success_source = review.campaign_in_use(config)
        mlflow.log_params(
            {
                "campaign.success_rate_used": campaign.success_rate,
                "campaign.success_rate_source": success_source,
            }
        )
        evaluation = evaluate(
            model, split.development, split.test, config.evaluation, campaign, config.customer_value
        )
        shipped = _refit(config, chosen, model, specs, split, data, engine, labeled).with_info(**info)
        shipped = shipped.with_reference(_reference(shipped, split.test, evaluation.model.probability))
        _log_candidates(candidates, tests, chosen)
        mlflow.log_params(
            {
                "calibration.chosen": shipped.calibrator.method,
                "calibration.evaluated": model.calibrator.method,
            }
        )
        out_dir = _write_outputs(shipped, model, evaluation, train_dir(config))
        mlflow.log_metrics(evaluation.metrics())
        mlflow.log_artifacts(str(out_dir / "evaluation"), "evaluation")
        model_info = log_model(shipped, split.test.head(5), evaluated=model)
        version, decision = _register(config, model_info.model_uri, split.test, evaluation, chosen.name)
    return TrainResult(
        shipped,
        model,
        tuple(candidates),
        tests,
        split,
        study,
        evaluation,
        parent.info.run_id,
        model_info.model_uri,
        version,
        decision,
        out_dir,
    )


def _split(config: Config, training_set: TrainingSet, engine: Engine) -> Plan:
    """The out-of-time split of the training set this process holds; with ``split.cv_customers`` the
    sampled customers' (``training.split.sampled_split``), the boosters fitted on every development and
    labeled row of the frame."""
    full = split_by_time(training_set.frame, training_set.label_settings, config.split)
    if config.split.cv_customers is None:
        return full, None, None
    bounds, frame = full.boundaries, training_set.frame
    share = sample_share(frame["customer_id"].nunique(), config.split.cv_customers)
    rows = cross_validation_rows(frame, share, config.seed, pd.Timestamp(bounds["test_cutoff"]))
    split = sampled_split(rows, bounds, training_set.label_settings, config.split, share, config.seed)
    return split, FrameRows(full.development, engine), FrameRows(full.labeled, engine)


def _cutoffs(dates: Sequence[str]) -> tuple[pd.Timestamp, ...]:
    return tuple(pd.Timestamp(d) for d in dates)


def _candidates(
    config: Config,
    data: CVData,
    split: Split,
    specs: Sequence[Any],
    name: str,
    experiment_id: str,
    parent_run_id: str,
    engine: Engine,
) -> tuple[list[Candidate], optuna.Study | None]:
    """Cross-validate every configured candidate on the same folds (the tuned one's trials on a Dask
    ``engine``'s workers)."""
    candidates, study = [], None
    for kind in dict.fromkeys(config.model.candidates):
        if kind == "xgboost_tuned":
            trials = TrialLogger(parent_run_id, experiment_id, config.tune.metric)
            study, best = tune(config, data, name, callbacks=[trials], engine=engine)
            log_study(study, config.tune.metric, best.score)
            params = booster_params(config.model, config.tune.metric, config.seed, study.best_trial.params)
            candidates.append(booster_candidate(kind, params, best, data.y))
        elif kind == "xgboost_robust":
            candidates.append(robust_candidate(config, data))
        else:
            candidates.append(logreg_candidate(config, specs, split, data.y))
    return candidates, study


def _calibrator(
    margin: np.ndarray, rows: pd.DataFrame, config: Config, log_as: str | None = None
) -> Calibrator:
    """Calibrator of out-of-time margins of ``rows`` (method chosen by cross-validation by customer);
    ``log_as`` logs the cross-validated log loss of each method as ``calibration_cv_log_loss_<method>``."""
    settings = config.calibration
    calibrator, scores = fit_calibrator(
        margin,
        rows["label"].to_numpy(dtype=np.int64),
        rows["customer_id"],
        settings.method,
        settings.folds,
        config.seed,
    )
    if log_as is not None and mlflow.active_run() is not None:
        suffix = "" if log_as == "shipped" else f"_{log_as}"
        mlflow.log_metrics({f"calibration_cv_log_loss_{m}{suffix}": v for m, v in scores.items()})
    return calibrator


def _refit(
    config: Config,
    chosen: Candidate,
    evaluated: ChurnModel,
    specs: Sequence[Any],
    split: Split,
    data: CVData,
    engine: Engine | None = None,
    labeled: BoosterRows | None = None,
) -> ChurnModel:
    """The shipped model: the chosen candidate on every labeled cutoff (``labeled``: where their rows are,
    when cross-validation saw a sample), calibrated on the folds' and the test cutoff's out-of-time
    margins; or, with ``refit_on: development``, the evaluated model itself."""
    if config.model.refit_on == "development":
        return evaluated
    margin, rows = refit_calibration_set(chosen.margin, evaluated, split)
    refit = chosen.fit(specs, split.labeled, data, config, engine, labeled)
    calibrator = _calibrator(margin, rows, config, log_as="shipped")
    return refit.with_calibrator(calibrator).with_info(labels_end=labels_end(split.labeled, split))


def _reference(model: ChurnModel, test: pd.DataFrame, probability: np.ndarray) -> dict[str, Any]:
    """The training data drift is measured against (``churnml.risk.drift``): the test cutoff's customers,
    one snapshot like a scoring run, and their out-of-time probabilities."""
    source = f"test cutoff {test['cutoff'].iloc[0].date()}, {len(test):,} customers"
    return drift.reference_profile(test, model.columns, probability, source).to_dict()


def _test_figures(model: ChurnModel, test: pd.DataFrame, config: Config) -> dict[str, float]:
    y = test["label"].to_numpy(dtype=np.int64)
    return holdout_figures(y, model.predict_proba(test), config.evaluation)


def _log_candidates(
    candidates: list[Candidate], tests: dict[str, dict[str, float]], chosen: Candidate
) -> None:
    """candidate_<name>_cv_<metric> and candidate_<name>_test_<metric> for every candidate, and the winner
    (test_<scorer>_<metric> are the evaluation's: the shipped candidate and the baselines)."""
    metrics = {f"candidate_{c.name}_cv_{k}": v for c in candidates for k, v in c.cv.items()}
    metrics |= {f"candidate_{n}_test_{k}": v for n, figures in tests.items() for k, v in figures.items()}
    mlflow.log_metrics(metrics)
    mlflow.log_params(
        {"model.chosen": chosen.name} | {f"candidate.{c.name}.params": str(c.params) for c in candidates}
    )
    mlflow.set_tag("churnml.candidate", chosen.name)


def _write_outputs(
    shipped: ChurnModel, evaluated: ChurnModel, evaluation: Evaluation, directory: Path
) -> Path:
    """The models' plain files and the evaluation (metrics, tables, plots), swapped in atomically."""
    with io.atomic_dir(directory) as tmp:
        shipped.save(tmp / "model")
        evaluated.save(tmp / "evaluated_model")
        evaluation.write(tmp / "evaluation")
    return directory


def _register(
    config: Config, model_uri: str, test: pd.DataFrame, evaluation: Evaluation, candidate: str
) -> tuple[str | None, Decision | None]:
    """Register as challenger; promote to champion if it beats the champion on these same test rows."""
    settings = config.tracking
    if not settings.register_model:
        return None, None
    y = test["label"].to_numpy(dtype=np.int64)
    metric = settings.promotion_metric
    tags = {f"test_{k}": f"{evaluation.model.metrics[k]:.6f}" for k in HEADLINE}
    test_cutoff = test["cutoff"].iloc[0]
    active = mlflow.active_run()
    assert active is not None, "registration happens inside the training run"
    tags |= {"test_cutoff": str(test_cutoff.date()), "run_id": active.info.run_id}
    tags["candidate"] = candidate

    def champion_score(uri: str) -> float:
        return metric_value(metric, y, comparable_model(uri, test_cutoff).predict_proba(test))

    version, decision = register_and_decide(
        model_uri,
        settings.registered_model,
        metric,
        evaluation.model.metrics[metric],
        champion_score,
        settings.min_improvement,
        tags,
    )
    mlflow.set_tags(decision.as_tags() | {"registry.version": version})
    mlflow.log_metric("promotion_challenger_score", decision.challenger)
    if decision.champion is not None:
        mlflow.log_metric("promotion_champion_score", decision.champion)
    return version, decision
