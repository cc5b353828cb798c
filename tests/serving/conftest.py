"""One trained model and one real server for the serving tests.

A small model is trained and registered as champion in a temporary MLflow store once per session; the
BentoML service then runs on a free 127.0.0.1 port, started with the command ``churnml serve`` runs
(``bentoml serve churnml.serving.service:ChurnService``, its own arbiter and worker processes), with an API key
and a CORS origin configured so that those paths are exercised too. The server's output goes to a log
file the tests read. Tracking URIs and keys are passed explicitly: a developer's environment never
leaks in.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from servers import SERVE, TRAIN, Live, Trained, running_server

from churnml.config import load_config
from churnml.data.simulate import simulate
from churnml.features.training_set import build_training_set


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
def live(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with running_server(trained, tmp_path_factory) as (url, log):
        yield Live(url, trained, log)
