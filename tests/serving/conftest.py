"""One trained model and one real server for the serving tests.

A small model is trained and registered as champion in a temporary MLflow store once per session; the
BentoML service then runs on a free 127.0.0.1 port, started with ``bentoml.serve`` exactly as in
production (its own worker process), with an API key and a CORS origin configured so that those paths
are exercised too. Tracking URIs and keys are passed explicitly: a developer's environment never leaks in.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from churnml import serve
from churnml.config import Config, load_config
from churnml.dataset import Dataset
from churnml.model import ChurnModel
from churnml.serving_schemas import customer_history
from churnml.simulate import simulate
from churnml.training_set import build_training_set

ROOT = Path(__file__).resolve().parents[2]
API_KEY = "test-key-0123456789"
ORIGIN = "https://crm.example.com"
MAX_RECORDS = 50
RECONNECT_EVERY = 4
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
    api_key: str = API_KEY
    origin: str = ORIGIN
    max_records: int = MAX_RECORDS
    reconnect_every: int = RECONNECT_EVERY

    def post(self, path: str, body: object, key: str | None = API_KEY, **kwargs) -> requests.Response:
        headers = {"X-API-Key": key} if key else {}
        return requests.post(f"{self.url}{path}", json=body, headers=headers, timeout=60, **kwargs)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Trained:
    from churnml.pipelines import train

    directory = tmp_path_factory.mktemp("serving-store")
    overrides = [
        *TRAIN,
        f"output.dir={directory}",
        f"tracking.uri=sqlite:///{directory / 'mlflow.db'}",
        *SERVE,
    ]
    config = load_config(None, overrides)
    sim = config.simulate
    dataset = simulate(
        sim.customers, sim.months, sim.seed, dt.date.fromisoformat(str(sim.start))
    ).to_dataset()
    result = train.run(config, training_set=build_training_set(dataset, config.labels, config.features))
    assert result.decision is not None and result.decision.promoted
    return Trained(
        config, overrides, dataset, result.model, f"{config.tracking.registered_model}/{result.version}"
    )


@pytest.fixture(scope="session")
def live(trained: Trained) -> Iterator[Live]:
    import bentoml

    env = {
        serve.ENV_OVERRIDES: json.dumps(trained.overrides),
        serve.ENV_CONFIG: "",
        serve.ENV_MODEL_URI: "",
        "CHURNML_API_KEY": API_KEY,
        "BENTOML_DO_NOT_TRACK": "true",
    }
    saved = {name: os.environ.get(name) for name in [*env, "MLFLOW_TRACKING_URI"]}
    os.environ.update(env)
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    try:
        with bentoml.serve(
            serve.SERVICE, host="127.0.0.1", port=free_port(), working_dir=str(ROOT)
        ) as server:
            serve.wait_ready(server.url, timeout_s=180)
            yield Live(server.url, trained)
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
