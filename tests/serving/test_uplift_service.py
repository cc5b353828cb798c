"""The service with an uplift model registered beside the churn model: over real HTTP, each endpoint gives
the uplift, best play, net value, sleeping-dog flag and per-play uplift that `churnml score` puts in the
risk list for the same customer at the same moment; bad input stays a clear 4xx.

A business with a retention programme (contacts with randomised holdouts) is simulated, a churn model
trained and registered, `churnml uplift` fitted and registered as `churn-model-uplift@champion`, and the
service started as ``churnml serve`` starts it: it finds the uplift model the way `churnml score` does.
"""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import requests
import yaml
from helpers import feature_records
from servers import (
    API_KEY,
    MAX_RECORDS,
    SERVE,
    TRAIN,
    Trained,
    bento_example_answer,
    build_bento,
    running_server,
)

from churnml.config import load_config
from churnml.data.simulate import simulate
from churnml.features.training_set import build_training_set
from churnml.pipelines import score, train, uplift
from churnml.serving.schemas import Prediction, UpliftFields
from churnml.uplift.targeting import play_column

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving-uplift")]

AS_OF = pd.Timestamp("2025-08-17 06:00:00")
BIN = Path(sys.executable).parent
UPLIFT_FIELDS = set(UpliftFields.model_fields)


class Served:
    def __init__(self, url: str, trained: Trained, fitted: uplift.UpliftResult) -> None:
        self.url, self.trained, self.fitted = url, trained, fitted

    def post(self, path: str, body: object) -> requests.Response:
        return requests.post(f"{self.url}{path}", json=body, headers={"X-API-Key": API_KEY}, timeout=120)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    directory = tmp_path_factory.mktemp("uplift-store")
    overrides = [
        *[o for o in TRAIN if not o.startswith("simulate.")],
        "uplift.min_treated=150",
        "uplift.min_held_out=60",
        "uplift.max_rounds=120",
        f"output.dir={directory}",
        f"tracking.uri=sqlite:///{directory / 'mlflow.db'}",
        *SERVE,
    ]
    config = load_config(None, overrides)
    dataset = simulate(2000, 8, 5, dt.date(2025, 1, 1), programme=True, exploration=0.1).to_dataset()
    result = train.run(config, training_set=build_training_set(dataset, config.labels, config.features))
    fitted = uplift.run(config, dataset=dataset)
    assert fitted.model_version == "1"
    trained = Trained(
        config, overrides, dataset, result.model, f"{config.tracking.registered_model}/{result.version}"
    )
    with running_server(trained, tmp_path_factory) as (url, _):
        yield Served(url, trained, fitted)


@pytest.fixture(scope="module")
def listed(served: Served, tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """`churnml score`'s risk list at AS_OF with the registered uplift champion, by customer."""
    config = served.trained.config
    config = config.model_copy(
        update={
            "scoring": config.scoring.model_copy(
                update={"log_to_mlflow": False, "out_dir": str(tmp_path_factory.mktemp("score"))}
            )
        }
    )
    result = score.run(config, as_of=AS_OF, dataset=served.trained.dataset)
    assert result.summary["uplift"]["model_version"] == "1"
    return result.risk_list.set_index("customer_id")


def chosen_customers(listed: pd.DataFrame) -> list[str]:
    """Customers of every kind: at risk with a best play (the highest and lowest net value), sleeping
    dogs if any, at risk without a modelled play, and customers not at risk."""
    with_play = listed.loc[listed["best_play"].notna()].sort_values("net_value")
    assert len(with_play) >= 6
    picks = [*with_play.index[-3:], *with_play.index[:3]]
    picks += list(listed.index[listed["sleeping_dog"]][:2])
    picks += list(listed.index[~listed["at_risk"]][:3])
    return list(dict.fromkeys(picks))


def assert_like_the_risk_list(rows: list[dict], listed: pd.DataFrame, served: Served) -> list[str]:
    """Every row's uplift fields equal the risk list's where the same play applies (the customer's risk
    group's); returns the customers whose risk group differs. Those are customers younger than a feature's
    window: the list tells newness from behaviour by its scored population's typical values, which a
    service scoring a few customers does not have (docs/uplift.md, "In the service")."""
    plays = list(served.fitted.model.plays)
    other_group = []
    for row in rows:
        expected = listed.loc[row["customer_id"]]
        assert row["churn_probability"] == pytest.approx(expected["churn_probability"], rel=1e-9)
        assert set(row["uplift_by_play"]) == set(plays)
        assert row["uplift_model_version"] == "churn-model-uplift/1"
        applies = {p for p in plays if row["uplift_by_play"][p] is not None}
        if applies != {p for p in plays if not pd.isna(expected[play_column(p)])}:
            other_group.append(row["customer_id"])
            continue
        assert row["best_play"] == (None if pd.isna(expected["best_play"]) else expected["best_play"])
        for field in ("uplift", "net_value"):
            if pd.isna(expected[field]):
                assert row[field] is None, (row["customer_id"], field)
            else:
                assert row[field] == pytest.approx(expected[field], rel=1e-6, abs=1e-9), field
        assert row["sleeping_dog"] == bool(expected["sleeping_dog"])
        for play in applies:
            assert row["uplift_by_play"][play] == pytest.approx(
                expected[play_column(play)], rel=1e-6, abs=1e-9
            )
    longest = max(served.trained.config.features.windows)
    for customer in other_group:
        assert listed.loc[customer, "tenure_days"] < longest, customer
    assert len(other_group) <= max(len(rows) // 10, 1), other_group
    return other_group


def test_score_history_gives_the_risk_lists_uplift(served: Served, listed: pd.DataFrame) -> None:
    chosen = chosen_customers(listed)
    histories = [served.trained.history(c) for c in chosen]
    answer = served.post("/score_history", {"customers": histories, "as_of": AS_OF.isoformat()})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["customer_id"] for r in body] == chosen
    assert_like_the_risk_list(body, listed, served)
    # Real targeting happened: some customers have a play with a positive uplift, the others none.
    assert any(r["best_play"] is not None and r["uplift"] > 0 for r in body)
    assert all(r["best_play"] is None for r in body if not r["at_risk"])


@pytest.mark.parametrize("path", ["/predict", "/explain"])
def test_feature_records_give_the_risk_lists_uplift(served: Served, listed: pd.DataFrame, path: str) -> None:
    trained = served.trained
    # Every kind of customer, then at-risk ones up to the request limit: their play is their risk group's.
    at_risk = list(listed.index[listed["at_risk"]])
    chosen = list(dict.fromkeys([*chosen_customers(listed), *at_risk]))[:MAX_RECORDS]
    frame = score.active_customer_features(trained.dataset, trained.model, AS_OF, trained.config)
    frame = frame.set_index("customer_id").loc[chosen].reset_index()
    answer = served.post(path, {"records": feature_records(trained.model, frame)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["customer_id"] for r in body] == chosen
    assert_like_the_risk_list(body, listed, served)
    assert set(body[0]) >= set(Prediction.model_fields) | UPLIFT_FIELDS


def test_bad_input_is_still_a_clear_4xx(served: Served, listed: pd.DataFrame) -> None:
    trained = served.trained
    frame = score.active_customer_features(trained.dataset, trained.model, AS_OF, trained.config).head(2)
    record = feature_records(trained.model, frame)[0]
    answer = served.post("/predict", {"records": [{**record, "not_a_feature": 1.0}]})
    assert answer.status_code == 400 and "not_a_feature" in answer.json()["error"]
    history = served.trained.history(str(listed.index[0]))
    history["customer"]["signup_at"] = "2025-09-01T00:00:00"
    answer = served.post("/score_history", {"customers": [history], "as_of": AS_OF.isoformat()})
    assert answer.status_code == 422 and "signup_at" in answer.json()["error"]


def test_the_openapi_document_describes_the_uplift_fields(served: Served) -> None:
    document = requests.get(f"{served.url}/docs.json", timeout=30).json()
    schemas = document["components"]["schemas"]
    for name in ("UpliftPrediction", "UpliftExplanation", "UpliftHistoryScore"):
        assert set(schemas[name]["properties"]) >= UPLIFT_FIELDS, name
        assert "example" in schemas[name] or "examples" in schemas[name], name


def test_the_bento_packs_the_uplift_model_beside_the_champion(served: Served, tmp_path: Path) -> None:
    """`churnml bento` with an uplift champion: both models in the Bento, and served from BentoML's store
    alone (no MLflow store, an empty directory) the answers carry the uplift fields."""
    env, _ = build_bento(tmp_path, served.trained.overrides)
    (bento_yaml,) = (tmp_path / "bentoml" / "bentos" / "churn_service").glob("*/bento.yaml")
    (service,) = yaml.safe_load(bento_yaml.read_text())["services"]
    assert sorted(m["tag"] for m in service["models"]) == ["churn-model-uplift:v1", "churn-model:v1"]

    with bento_example_answer(tmp_path, env) as (_, answer):
        assert answer.status_code == 200, answer.text
        (prediction,) = answer.json()
        assert prediction["uplift_model_version"] == "churn-model-uplift/1"
        assert set(prediction["uplift_by_play"]) == set(served.fitted.model.plays)
