"""Shared fixtures for model tests: one small simulated training set and one MLflow SQLite store.

Creating a SQLite tracking store runs MLflow's migrations (seconds), so it happens once per session and
each user gets a copy of the file. Tracking URIs are always passed explicitly, so a developer's
``MLFLOW_TRACKING_URI`` never leaks into the tests.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from mlflow import MlflowClient

from churnml.config import Config, load_config
from churnml.data.simulate import simulate
from churnml.features.training_set import TrainingSet, build_training_set

# Small but real: 1,500 simulated customers over 9 months, a 4-trial study with short boosting.
FAST = [
    "tune.n_trials=4",
    "tune.startup_trials=2",
    "tune.pruner_warmup=1.0",
    "tune.progress_bar=false",
    "model.max_rounds=300",
    "model.early_stopping_rounds=20",
    "model.nthread=1",  # small data: one thread is faster than two sharing a busy machine
]


@pytest.fixture(scope="session")
def training_set() -> TrainingSet:
    config = load_config(None, ["simulate.customers=1500", "simulate.months=9", "simulate.seed=7"])
    sim = simulate(
        config.simulate.customers, config.simulate.months, config.simulate.seed, config.simulate.start
    )
    return build_training_set(sim.to_dataset(), config.labels, config.features)


@pytest.fixture(scope="session")
def mlflow_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty, migrated MLflow store, created once."""
    db = tmp_path_factory.mktemp("mlflow-template") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{db}").search_experiments()
    return db


@pytest.fixture(scope="session")
def make_config(mlflow_template: Path) -> Callable[..., Config]:
    """``make_config(directory, *overrides)``: a fast config whose outputs and MLflow store live in
    ``directory`` (the store a copy of the template, unless one is already there)."""

    def make(directory: Path, *overrides: str) -> Config:
        directory.mkdir(parents=True, exist_ok=True)
        db = directory / "mlflow.db"
        if not db.exists():
            shutil.copy(mlflow_template, db)
        return load_config(
            None, [*FAST, f"output.dir={directory}", f"tracking.uri=sqlite:///{db}", *overrides]
        )

    return make
