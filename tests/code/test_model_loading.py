"""Loading a model never runs its code or unpickles it: only churnml's JSON files are read, from a
directory or through MLflow, and anything else is a clear refusal (booby-trapped models below)."""

from __future__ import annotations

import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churnml.config import load_config
from churnml.errors import ChurnmlError, ModelLoadError
from churnml.features.catalogue import FeatureSpec
from churnml.training.mlflow_model import log_model
from churnml.training.model import BOOSTER_FILE, CALIBRATOR_FILE, SPEC_FILE, ChurnModel, load_model
from churnml.training.tracking import session

SPECS = [
    FeatureSpec(
        name="days_since_last_login", family="recency", table="events", aggregate="count", window_days=None,
        dtype="float64", reason="No login for {value:.0f} days", signal="login",
    )
]  # fmt: skip


class Trap:
    """Unpickling this writes the marker file: proof that a pickle was loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.write_text, (self.marker, "pwned"))


def _trap_code(marker: Path) -> str:
    return f"from pathlib import Path\nPath({str(marker)!r}).write_text('pwned')\n"


@pytest.fixture(scope="module")
def model() -> ChurnModel:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"customer_id": range(500), "days_since_last_login": rng.exponential(10, 500)})
    y = (rng.random(500) < 1 / (1 + np.exp(3 - 0.1 * frame["days_since_last_login"]))).astype(int)
    untrained = ChurnModel.untrained(frame, SPECS)
    matrix = xgb.DMatrix(untrained.prepare(frame), label=y)
    booster = xgb.train({"max_depth": 2, "nthread": 1, "objective": "binary:logistic"}, matrix, 5)
    return untrained.with_booster(booster, best_iteration=4)


def _booby_trap(directory: Path, marker: Path) -> None:
    """What the red team did: an edited pyfunc module and a pickle beside the model's files."""
    (directory / "churn_pyfunc.py").write_text(_trap_code(marker))
    (directory / "python_model.pkl").write_bytes(pickle.dumps(Trap(marker)))
    (directory / "MLmodel").write_text("python_function:\n  loader_module: churn_pyfunc\n")


def test_a_booby_trapped_directory_is_refused_and_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    trap = tmp_path / "trap"
    trap.mkdir()
    _booby_trap(trap, marker)
    with pytest.raises(ModelLoadError, match="never runs code"):
        load_model(trap)
    assert not marker.exists()


def test_trapped_files_beside_a_real_model_are_never_read(tmp_path: Path, model: ChurnModel) -> None:
    marker = tmp_path / "marker"
    directory = model.save(tmp_path / "model")
    _booby_trap(directory, marker)
    loaded = load_model(directory)
    assert not marker.exists()
    frame = pd.DataFrame({"days_since_last_login": [1.0, 40.0]})
    np.testing.assert_array_equal(loaded.predict_proba(frame), model.predict_proba(frame))


def test_an_mlflow_model_with_trapped_code_and_pickle_loads_only_its_json(
    tmp_path: Path, model: ChurnModel
) -> None:
    marker = tmp_path / "marker"
    config = load_config(None, [f"output.dir={tmp_path}", "name=trap"])
    with session(config), mlflow.start_run() as run:
        log_model(model, pd.DataFrame({"customer_id": [1], "days_since_last_login": [3.0]}))
        uri = f"runs:/{run.info.run_id}/model"
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri))
    stored = next(Path(tmp_path / "mlartifacts").rglob("MLmodel")).parent
    _booby_trap(stored, marker)
    shutil.copy(stored / "python_model.pkl", stored / "artifacts" / "churn_model" / "booster.pkl")
    with session(config):
        loaded = load_model(uri)
    assert not marker.exists()
    assert loaded.columns == model.columns and local.exists()


@pytest.mark.parametrize(
    ("name", "content"),
    [
        (BOOSTER_FILE, "{not json"),
        (CALIBRATOR_FILE, '{"method": 1}'),
        (SPEC_FILE, "[]"),
        (BOOSTER_FILE, None),
    ],
)
def test_corrupt_or_missing_files_are_a_clear_error(
    tmp_path: Path, model: ChurnModel, name: str, content: str | None
) -> None:
    directory = model.save(tmp_path / "model")
    if content is None:
        (directory / name).unlink()
    else:
        (directory / name).write_text(content)
    with pytest.raises(ModelLoadError, match=r"missing or corrupt|not a churnml model"):
        load_model(directory)


def test_an_unknown_uri_is_a_clear_error(tmp_path: Path) -> None:
    config = load_config(None, [f"output.dir={tmp_path}", "name=none"])
    with session(config), pytest.raises(ChurnmlError, match="cannot fetch"):
        load_model("runs:/0123456789abcdef/model")


def test_the_cli_refuses_a_trapped_model_without_a_traceback(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    trap = tmp_path / "trap"
    trap.mkdir()
    _booby_trap(trap, marker)
    result = subprocess.run(
        [str(Path(sys.executable).with_name("churnml")), "score", "--model", str(trap), f"output.dir={tmp_path}", "simulate.customers=200"],
        capture_output=True, text=True, check=False, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    assert "not a churnml model" in " ".join((result.stderr + result.stdout).split())
    assert not marker.exists()


def test_a_model_logged_before_the_stage_packages_still_loads_as_a_pyfunc(
    tmp_path: Path, model: ChurnModel
) -> None:
    """Older models' code files import ``churnml.mlflow_model``: MLflow must still build their pyfunc."""
    config = load_config(None, [f"output.dir={tmp_path}", "name=old"])
    frame = pd.DataFrame({"customer_id": [1, 2], "days_since_last_login": [3.0, 40.0]})
    with session(config), mlflow.start_run() as run:
        log_model(model, frame)
    (code,) = [p for p in Path(tmp_path / "mlartifacts").rglob("*.py") if "ChurnPyfunc" in p.read_text()]
    old = code.read_text().replace("churnml.training.mlflow_model", "churnml.mlflow_model")
    assert "from churnml.mlflow_model import ChurnPyfunc" in old
    code.write_text(old)
    with session(config):
        predicted = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(frame)
    assert np.allclose(predicted, model.predict_proba(frame), rtol=0, atol=1e-12)
