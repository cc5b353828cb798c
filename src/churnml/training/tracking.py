"""MLflow tracking: where runs go, the parent run of a pipeline run, and one nested run per Optuna trial.

The default store is embedded: ``sqlite:///<output.dir>/mlflow.db`` with artifacts in
``<output.dir>/mlartifacts``, so nothing needs a server. ``tracking.uri`` in the config, else
``$MLFLOW_TRACKING_URI``, points it at a real server. Nothing is set at import time: ``session`` sets the
URI for the duration of a pipeline run and restores the previous one afterwards.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import mlflow
import optuna
import pandas as pd
from mlflow import MlflowClient
from mlflow.data.code_dataset_source import CodeDatasetSource
from mlflow.data.pandas_dataset import PandasDataset
from mlflow.entities import Metric, Param, RunTag
from mlflow.models import infer_signature
from mlflow.tracking.context import registry as context_registry
from mlflow.types import Schema

from churnml import io, ownership
from churnml.config import Config
from churnml.redact import redact
from churnml.training.split import Split

PARENT_TAG = "mlflow.parentRunId"
URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def tracking_uri(config: Config) -> str:
    """Config first, then the environment, then the embedded SQLite store under ``output.dir``."""
    if config.tracking.uri:
        return config.tracking.uri
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(Path(config.output.dir) / 'mlflow.db').resolve()}"


def is_embedded(uri: str) -> bool:
    return uri.startswith("sqlite:")


def artifact_location(config: Config) -> str:
    return (Path(config.output.dir) / "mlartifacts").resolve().as_uri()


def experiment_name(config: Config) -> str:
    return config.tracking.experiment or config.name


def ui_command(config: Config) -> str:
    """The command that opens the MLflow UI on this config's runs."""
    uri = tracking_uri(config)
    if not is_embedded(uri):
        return f"open {uri}"
    return f"mlflow ui --backend-store-uri {uri} --port 5000   # then open http://127.0.0.1:5000"


@contextmanager
def store(config: Config) -> Iterator[str]:
    """Point MLflow's tracking and registry at the configured store; yield its URI; restore after.

    MLflow keeps both URIs process-wide, and its setters also write them into ``os.environ`` (which
    setting None does not undo), so both are restored exactly: a server or a test that loads a model never
    leaves the next caller, or a subprocess, looking at its store.
    """
    environment = {name: os.environ.get(name) for name in URI_VARIABLES}
    previous = mlflow.get_tracking_uri() if mlflow.tracking.is_tracking_uri_set() else None
    uri = tracking_uri(config)
    if is_embedded(uri):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield uri
    finally:
        mlflow.set_tracking_uri(previous)  # type: ignore[arg-type]  # None: back to "not set"
        mlflow.set_registry_uri(environment["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]  # set explicitly only if it was
        for name, value in environment.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextmanager
def session(config: Config) -> Iterator[str]:
    """Point MLflow at the configured store and experiment (created if missing); yield its id."""
    with store(config) as uri:
        client = MlflowClient()
        name = experiment_name(config)
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            location = artifact_location(config) if is_embedded(uri) else None
            experiment_id = client.create_experiment(name, artifact_location=location)
        else:
            experiment_id = experiment.experiment_id
        mlflow.set_experiment(experiment_id=experiment_id)
        fail_orphaned_runs(client, experiment_id)
        yield experiment_id


def fail_orphaned_runs(client: MlflowClient, experiment_id: str) -> list[str]:
    """Mark FAILED the runs still RUNNING whose process (on this host) is gone: a killed ``train`` or
    ``score`` never ended its run, and the UI would show it running for ever. Returns their ids."""
    running = client.search_runs(
        [experiment_id],
        filter_string=f"attributes.status = 'RUNNING' and tags.`{ownership.HOST_TAG}` = '{ownership.HOST}'",
        max_results=1000,
    )
    orphans = [run.info.run_id for run in running if ownership.orphaned(run.data.tags)]
    for run_id in orphans:
        client.set_terminated(run_id, status="FAILED")
    return orphans


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config as ``section.key`` -> text, for MLflow params."""
    flat: dict[str, str] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = str(value)[:6000]
    return flat


class TrialLogger:
    """Optuna callback: each finished trial becomes a nested MLflow run under the parent run.

    Uses MlflowClient with explicit run ids (not the fluent active-run stack), so it is safe with
    parallel trials, and replaces optuna_integration's deprecated MLflowCallback.
    """

    def __init__(self, parent_run_id: str, experiment_id: str, metric: str):
        self.parent_run_id, self.experiment_id, self.metric = parent_run_id, experiment_id, metric
        self.client = MlflowClient()

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        run = self.client.create_run(
            self.experiment_id,
            run_name=f"trial-{trial.number:03d}",
            tags={
                PARENT_TAG: self.parent_run_id,
                "optuna.study": study.study_name,
                "optuna.state": trial.state.name,
            },
        )
        finished = trial.datetime_complete or trial.datetime_start or datetime.now()
        timestamp = int(finished.timestamp() * 1000)
        metrics = (
            [Metric(f"valid_{self.metric}", float(trial.value), timestamp, 0)]
            if trial.value is not None
            else []
        )
        if trial.intermediate_values:
            last = trial.intermediate_values[max(trial.intermediate_values)]
            metrics.append(Metric(f"valid_{self.metric}_last_report", float(last), timestamp, 0))
        params = [Param(k, str(v)) for k, v in trial.params.items()]
        params.append(Param("trial_number", str(trial.number)))
        tags = [RunTag(f"optuna.{k}", str(v)) for k, v in trial.user_attrs.items()]
        self.client.log_batch(run.info.run_id, metrics=metrics, params=params, tags=tags)
        status = "FINISHED" if trial.state != optuna.trial.TrialState.FAIL else "FAILED"
        self.client.set_terminated(run.info.run_id, status=status)


def child_runs(client: MlflowClient, experiment_id: str, parent_run_id: str) -> list[Any]:
    """Nested runs of a parent run (the trial runs)."""
    return client.search_runs(
        [experiment_id], filter_string=f"tags.`{PARENT_TAG}` = '{parent_run_id}'", max_results=10_000
    )


def log_inputs(config: Config, fingerprint: str, label_settings: dict[str, Any], split: Split) -> None:
    """Parent-run params: the whole config, the data fingerprint, label settings and split boundaries;
    the rows as MLflow datasets (:func:`log_datasets`)."""
    dumped = redact(config.model_dump(mode="json"))  # a password in data.url or tune.storage stays out
    params = flatten(dumped)
    params["data_fingerprint"] = fingerprint
    params.update(flatten({k: v for k, v in label_settings.items() if k != "cutoffs"}, "label_settings."))
    params.update(split.params())
    mlflow.log_params(params)
    test_cutoff = split.boundaries["test_cutoff"]
    mlflow.set_tags({"churnml.data_fingerprint": fingerprint, "churnml.test_cutoff": test_cutoff})
    mlflow.log_dict(io.strict(dumped), "config.json")
    mlflow.log_dict(io.strict(split.boundaries), "split.json")
    log_datasets(split, fingerprint, config.model.refit_on)


SCHEMA_ROWS = 1000  # rows the logged datasets' schemas are inferred from


class TrainingRows(PandasDataset):
    """An MLflow pandas dataset described without reading every row: MLflow infers the schema from the
    whole frame (13 s for 100k rows x 130 columns here) and hashes it for the digest (2 s); the schema of
    the first rows says the same, and the digest is given (:func:`log_datasets`)."""

    @property
    def schema(self) -> Schema | None:
        with warnings.catch_warnings():
            # The schema describes the rows; it is never enforced, so MLflow's integer-column hint is noise.
            warnings.filterwarnings(
                "ignore", message="Hint: Inferred schema contains integer", category=UserWarning
            )
            return infer_signature(self.df.head(SCHEMA_ROWS)).inputs


def log_datasets(split: Split, fingerprint: str, refit_on: str) -> None:
    """The shipped model's training rows and the test cutoff's rows as the run's dataset inputs (name,
    digest, schema, row count; not the data), so the UI and ``run.inputs`` say what the model saw.
    Both are named after the data fingerprint, which says which raw data built the training set; the
    digest hashes that fingerprint with the columns and the rows' customers, cutoffs and labels (MLflow
    reuses a dataset record of the same name and digest, so other features must give another digest)."""
    name = f"training-set-{fingerprint[:12]}"
    source = CodeDatasetSource(tags=context_registry.resolve_tags())  # as mlflow.data.from_pandas does
    for context, rows in (("training", split.fit_rows(refit_on)), ("test", split.test)):
        keys = pd.util.hash_pandas_object(rows[["customer_id", "cutoff", "label"]], index=False).to_numpy()
        columns = "\x1f".join(map(str, rows.columns)).encode()
        digest = hashlib.sha256(fingerprint.encode() + columns + keys.tobytes()).hexdigest()[:16]
        dataset = TrainingRows(rows, source=source, targets="label", name=f"{name}-{context}", digest=digest)
        mlflow.log_input(dataset, context=context, tags={"churnml.data_fingerprint": fingerprint})


def log_study(study: optuna.Study, metric: str, score: float | None = None) -> None:
    """Tuning summary on the parent run (each trial has its own nested run). ``score``: the best trial's
    pooled metric on every row, when the search trained on a sample (the trial's own value is then
    ``search_<metric>``)."""
    states = [t.state for t in study.trials]
    best = study.best_trial
    assert best.value is not None  # the best trial is a complete one
    mlflow.log_params(
        {f"best.{k}": v for k, v in best.params.items()} | {"optuna.study_name": study.study_name}
    )
    mlflow.log_metrics(
        {
            f"valid_{metric}": float(best.value if score is None else score),
            f"search_{metric}": float(best.value),
            "tune_trials_complete": float(states.count(optuna.trial.TrialState.COMPLETE)),
            "tune_trials_pruned": float(states.count(optuna.trial.TrialState.PRUNED)),
            "best_trial": float(best.number),
        }
    )
