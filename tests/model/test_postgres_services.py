"""Training against shared services on a real PostgreSQL (tests/conftest.py): an ``mlflow server`` whose
backend store is PostgreSQL, and an Optuna study in PostgreSQL that a second run resumes, as several
machines sharing one study would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import optuna
import pytest
from mlflow import MlflowClient

from churnml.config import Config
from churnml.features.training_set import TrainingSet
from churnml.pipelines import train
from churnml.redact import mask_url

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("postgres_services")]


@pytest.fixture
def mlflow_server(postgres_database: Callable[[], str], tmp_path: Path, free_port: int) -> Iterator[str]:
    """``mlflow server`` on 127.0.0.1 with a PostgreSQL backend store, serving artifacts from tmp_path."""
    log = (tmp_path / "mlflow-server.log").open("w")
    command = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", postgres_database(),
               "--artifacts-destination", str(tmp_path / "artifacts"), "--host", "127.0.0.1",
               "--port", str(free_port), "--workers", "1"]  # fmt: skip
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 180  # migrations of a new store take a while on a busy machine
        while True:
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                pytest.fail(
                    f"mlflow server did not start:\n{(tmp_path / 'mlflow-server.log').read_text()[-3000:]}"
                )
            time.sleep(0.5)
        yield url
    finally:
        os.killpg(server.pid, signal.SIGTERM)  # the server and its uvicorn worker
        try:
            server.wait(timeout=3)  # a throwaway store: no need to wait for idle keep-alive clients
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


def test_train_tracks_to_an_mlflow_server_on_postgres_and_resumes_its_study_there(
    mlflow_server: str,
    postgres_database: Callable[[], str],
    make_config: Callable[..., Config],
    training_set: TrainingSet,
    tmp_path: Path,
) -> None:
    storage = postgres_database()
    if urlsplit(storage).password is None:
        # The throwaway server trusts local connections, so this password is accepted and never checked:
        # it is here to show that the run records keep it masked.
        storage = storage.replace("@", ":not-to-be-logged@", 1)
    password = urlsplit(storage).password
    assert password
    # The services are what is tested: the smallest training that tunes, registers and resumes.
    services = [f"tracking.uri={mlflow_server}", f"tune.storage={storage}", "model.candidates=[xgboost_tuned]",
                "split.folds=2"]  # fmt: skip
    first = train.run(make_config(tmp_path / "a", *services, "tune.n_trials=2"), training_set=training_set)
    assert first.study is not None
    first_trials = [(t.number, t.params) for t in first.study.trials]
    second = train.run(make_config(tmp_path / "b", *services, "tune.n_trials=3"), training_set=training_set)

    # One study in PostgreSQL, resumed: the second run added a third trial to the first run's two.
    assert second.study is not None and second.study.study_name == first.study.study_name
    study = optuna.load_study(study_name=second.study.study_name, storage=storage)
    assert len(first_trials) == 2 and len(study.trials) == 3
    assert [(t.number, t.params) for t in study.trials[:2]] == first_trials

    # Both runs, with their figures, and both registered versions are on the server.
    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    for result in (first, second):
        run = client.get_run(result.run_id)
        assert run.info.status == "FINISHED"
        assert run.data.metrics["test_roc_auc"] == pytest.approx(result.evaluation.model.metrics["roc_auc"])
        assert run.data.params["tune.storage"] == mask_url(storage) != storage
        logged = Path(client.download_artifacts(result.run_id, "config.json", str(tmp_path)))
        assert password not in logged.read_text() and mask_url(storage) in logged.read_text()
    name = "churn-model"
    versions = {v.version: v for v in client.search_model_versions(f"name='{name}'")}
    assert sorted(versions) == sorted([first.version, second.version]) == ["1", "2"]
    assert {v.run_id for v in versions.values()} == {first.run_id, second.run_id}
    assert all(v.status == "READY" for v in versions.values())
    champion = client.get_model_version_by_alias(name, "champion")
    assert champion.version in versions
