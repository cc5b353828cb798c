"""The training run records its data: the shipped model's rows and the test rows as MLflow datasets."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import mlflow
from mlflow import MlflowClient

from churnml.config import Config
from churnml.features.training_set import TrainingSet
from churnml.training.split import split_by_time
from churnml.training.tracking import log_inputs, session


def test_training_run_has_its_training_and_test_rows_as_dataset_inputs(
    tmp_path: Path, make_config: Callable[..., Config], training_set: TrainingSet
) -> None:
    config = make_config(tmp_path)
    split = split_by_time(training_set.frame, training_set.label_settings, config.split)
    with session(config), mlflow.start_run() as run:
        log_inputs(config, training_set.fingerprint, training_set.label_settings, split)
        inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
    by_context = {next(t.value for t in i.tags if t.key == "mlflow.data.context"): i.dataset for i in inputs}
    assert set(by_context) == {"training", "test"}
    expected_rows = {"training": len(split.fit_rows(config.model.refit_on)), "test": len(split.test)}
    for context, dataset in by_context.items():
        assert dataset.name == f"training-set-{training_set.fingerprint[:12]}-{context}"
        assert json.loads(dataset.profile)["num_rows"] == expected_rows[context]
        columns = {c["name"] for c in json.loads(dataset.schema)["mlflow_colspec"]}
        assert {"customer_id", "label", *(s.name for s in training_set.specs)} <= columns
    assert by_context["training"].digest != by_context["test"].digest


def test_other_features_of_the_same_rows_are_another_dataset(
    tmp_path: Path, make_config: Callable[..., Config], training_set: TrainingSet
) -> None:
    """MLflow reuses a dataset record of the same name and digest: a training set with other feature
    columns (same raw data, same rows) must get its own digest, or the run would show the old schema."""
    config = make_config(tmp_path)
    dropped = training_set.specs[0].name
    digests, schemas = [], []
    for frame in (training_set.frame, training_set.frame.drop(columns=[dropped])):
        split = split_by_time(frame, training_set.label_settings, config.split)
        with session(config), mlflow.start_run() as run:
            log_inputs(config, training_set.fingerprint, training_set.label_settings, split)
            inputs = MlflowClient().get_run(run.info.run_id).inputs.dataset_inputs
        training = next(i.dataset for i in inputs if any(t.value == "training" for t in i.tags))
        digests.append(training.digest)
        schemas.append({c["name"] for c in json.loads(training.schema)["mlflow_colspec"]})
    assert digests[0] != digests[1]
    assert dropped in schemas[0] and dropped not in schemas[1]
