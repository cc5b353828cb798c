"""The service under test: the settings of the serving tests' model and server, and starting a server
(``churnml serve``'s command) or a built Bento on a free 127.0.0.1 port. A module of its own, not the
conftest, so that tests import it by a name no other test directory uses."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from helpers import customer_history

from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.serving import launch, loading
from churnml.training.model import ChurnModel

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
ORIGIN = "https://crm.example.com"
MAX_RECORDS = 50
RECONNECT_EVERY = 4
MIN_WINDOW = 120  # served scores before a worker's churnml_score_psi is a number
MAX_BODY_BYTES = 2 * 2**20  # well above the largest test body, small enough to send past it quickly
# Small but real: 800 simulated customers over 9 months, a 2-trial study with short boosting.
TRAIN = [
    "simulate.customers=800",
    "simulate.months=9",
    "simulate.seed=7",
    "tune.n_trials=2",
    "tune.startup_trials=2",
    "tune.progress_bar=false",
    "model.max_rounds=150",
    "model.early_stopping_rounds=20",
    "model.nthread=1",
    # The boosted champion: the service's pandas-free fast path is for trees (a regression champion is
    # served through ChurnModel's own path: test_a_regression_champion_is_served_exactly).
    "model.candidates=[xgboost_tuned]",
]
SERVE = [
    f"serving.max_records={MAX_RECORDS}",
    "serving.max_customers=20",
    f"serving.cors_origins=[{ORIGIN}]",
    f"serving.reconnect_every={RECONNECT_EVERY}",
    f"serving.max_body_bytes={MAX_BODY_BYTES}",
    f"drift.min_window={MIN_WINDOW}",
]


@dataclass(frozen=True)
class Trained:
    config: Config
    overrides: list[str]
    dataset: Dataset
    model: ChurnModel
    version: str

    def history(self, customer_id: str) -> dict:
        return customer_history(self.dataset, customer_id)


@dataclass(frozen=True)
class Live:
    url: str
    trained: Trained
    log: Path
    api_key: str = API_KEY
    origin: str = ORIGIN
    max_records: int = MAX_RECORDS
    reconnect_every: int = RECONNECT_EVERY
    max_body_bytes: int = MAX_BODY_BYTES

    @property
    def auth(self) -> dict[str, str]:
        """The API key as the server reads it (``http.ApiKeyMiddleware``)."""
        return {"X-API-Key": self.api_key}

    def post(self, path: str, body: object, key: str | None = API_KEY, **kwargs) -> requests.Response:
        headers = {"X-API-Key": key} if key else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=60, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_server(
    trained: Trained, tmp_path_factory: pytest.TempPathFactory, extra_env: dict[str, str] | None = None
) -> Iterator[tuple[str, Path]]:
    """The service of ``trained``'s config on a free 127.0.0.1 port, as ``churnml serve`` starts it; yields
    its URL and log file."""
    env = {
        loading.ENV_OVERRIDES: json.dumps(trained.overrides),
        loading.ENV_CONFIG: "",
        loading.ENV_MODEL_URI: "",
        loading.ENV_UPLIFT_MODEL_URI: "",
        "CHURNML_API_KEY": API_KEY,
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONUNBUFFERED": "1",  # each log line reaches the file when it is written
        # BentoML keeps its Prometheus files under $BENTOML_HOME and wipes them when a server starts: the
        # server of the other xdist worker would erase this one's counters (serving/README.md, metrics).
        "BENTOML_HOME": str(tmp_path_factory.mktemp("bentoml-home")),
        **(extra_env or {}),
    }
    environment = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"} | env
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            launch.serve_command(trained.config, "127.0.0.1", port),
            cwd=tmp_path_factory.mktemp("elsewhere"),  # outside the checkout: the service is a package module
            env=environment,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(url, timeout_s=180, server=server, log=log)
        yield url, log
    finally:
        launch.stop(server)


def build_bento(home: Path, overrides: list[str]) -> tuple[dict[str, str], subprocess.CompletedProcess[str]]:
    """``churnml bento`` into BentoML's store under ``home``, with no model, config or MLflow variables of
    this process: the environment it ran in (for :func:`bento_example_answer`) and what it printed."""
    env = {**os.environ, "BENTOML_HOME": str(home / "bentoml"), "BENTOML_DO_NOT_TRACK": "true"}
    unset = ("MLFLOW_TRACKING_URI", loading.ENV_MODEL_URI, loading.ENV_UPLIFT_MODEL_URI, loading.ENV_CONFIG)
    for name in (*unset, loading.ENV_OVERRIDES):
        env.pop(name, None)
    built = subprocess.run(
        [str(Path(sys.executable).parent / "churnml"), "bento", *overrides],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    return env, built


@contextmanager
def bento_example_answer(cwd: Path, env: dict[str, str]) -> Iterator[tuple[dict, requests.Response]]:
    """``bentoml serve churn_service:latest`` from ``cwd`` (the built Bento from BentoML's store, no
    CHURNML_* variables: everything comes from the Bento), and its answer to ``/predict`` with the
    OpenAPI document's own example; yields that example and the answer, then stops the server."""
    bentoml = Path(sys.executable).parent / "bentoml"
    port = free_port()
    server = subprocess.Popen(
        [str(bentoml), "serve", "churn_service:latest", "--host", "127.0.0.1", "--port", str(port)],
        cwd=cwd,
        env={k: v for k, v in env.items() if not k.startswith("CHURNML_")},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        launch.wait_ready(url, timeout_s=120)
        document = requests.get(f"{url}/docs.json", timeout=30).json()
        body = document["paths"]["/predict"]["post"]["requestBody"]["content"]["application/json"]["example"]
        yield body, requests.post(f"{url}/predict", json=body, timeout=30)
    finally:
        launch.stop(server)
