"""The command line, as a user runs it: real files, clear errors, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from churnml.cli import app
from churnml.io import read_parquet_metadata

runner = CliRunner()


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sim")
    result = runner.invoke(
        app, ["simulate", "--customers", "400", "--months", "6", "--seed", "3", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    return out


def test_simulate_writes_contract_tables(simulated: Path) -> None:
    names = {p.name for p in simulated.iterdir()}
    assert {"customers.parquet", "events.parquet", "truth_renewals.parquet", "simulation.json"} <= names


def test_features_from_a_directory(simulated: Path, tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["features", f"data.dir={simulated}", f"output.dir={tmp_path}", "labels.cutoffs.min_history_days=30"],
    )
    assert result.exit_code == 0, result.output
    path = tmp_path / "churnml" / "training_set" / "training_set.parquet"
    frame = pd.read_parquet(path)
    metadata = read_parquet_metadata(path)
    assert {"customer_id", "cutoff", "label"} <= set(frame.columns)
    assert [f["name"] for f in metadata["features"]] == list(frame.columns[3:])
    assert metadata["labels"]["definition"] == "subscription"
    assert "churn rate" in result.output and "features:" in result.output


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["features", "data.dir=/no/such/dir"], "customers"),
        (["features", "labels.horizon_days=-5"], "labels.horizon_days"),
        (["simulate", "--out", "x", "--format", "xlsx"], "--format"),
    ],
)
def test_user_errors_are_one_clear_message(args: list[str], expected: str) -> None:
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert expected in result.output
    assert "Traceback" not in result.output


def test_config_keys_are_listed() -> None:
    result = runner.invoke(app, ["config", "--keys"])
    assert result.exit_code == 0 and "labels.horizon_days" in result.output


def test_serve_without_a_champion_is_one_clear_error(tmp_path: Path) -> None:
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    result = runner.invoke(
        app, ["serve", f"output.dir={tmp_path}", f"tracking.uri=sqlite:///{tmp_path / 'mlflow.db'}"]
    )
    assert result.exit_code == 2, result.output
    assert "churn-model" in result.output and "churnml train" in result.output
    assert "Traceback" not in result.output
    # MLflow's URIs are process-wide: looking for the model must not leave them pointing at its store.
    assert (mlflow.get_tracking_uri(), mlflow.get_registry_uri()) == before
