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
