"""The prediction service over real HTTP: each endpoint, the error cases, authentication, CORS, health and
metrics, and that ``/score_history`` gives the batch pipeline's probability for the same customer and
as-of time."""

from __future__ import annotations

import json
import math
import socket
import time
import uuid
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest
import requests
from helpers import feature_records

from churnml.pipelines import score
from churnml.risk import drift
from churnml.risk.explain import explain_rows
from churnml.risk.risk_list import band_of
from churnml.serving.http import summarize_errors
from churnml.serving.schemas import Prediction, category_columns

if TYPE_CHECKING:
    from servers import Live, Trained

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]

AS_OF = pd.Timestamp("2025-08-17 06:00:00")  # not a cutoff of training: any moment works


@pytest.fixture(scope="session")
def batch(live: Live, tmp_path_factory: pytest.TempPathFactory) -> score.ScoreResult:
    """The batch scoring pipeline at AS_OF on the same data and registered champion."""
    trained = live.trained
    config = trained.config.model_copy(
        update={
            "scoring": trained.config.scoring.model_copy(
                update={"log_to_mlflow": False, "out_dir": str(tmp_path_factory.mktemp("score"))}
            )
        }
    )
    return score.run(config, as_of=AS_OF, dataset=trained.dataset)


@pytest.fixture(scope="session")
def features(trained: Trained) -> pd.DataFrame:
    """Batch features of the customers active at AS_OF (what the pipeline scores)."""
    return score.active_customer_features(trained.dataset, trained.model, AS_OF, trained.config)


records = feature_records  # feature rows as /predict records


# ---------------------------------------------------------------------------------------------------
# Endpoints.


def test_predict_gives_the_models_probability_band_and_version(live: Live, features: pd.DataFrame) -> None:
    trained = live.trained
    frame = features.head(40)
    answer = live.post("/predict", {"records": records(trained.model, frame)})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    expected = trained.model.predict_proba(frame)
    assert [r["customer_id"] for r in body] == frame["customer_id"].tolist()
    np.testing.assert_allclose([r["churn_probability"] for r in body], expected, rtol=0, atol=1e-12)
    assert [r["risk_band"] for r in body] == list(band_of(expected, trained.config.risk.bands))
    assert [r["at_risk"] for r in body] == list(expected >= trained.config.risk.at_risk_threshold)
    assert {r["model_version"] for r in body} == {trained.version}
    # No uplift model in this store: the answers are those of a service without uplift (docs/uplift.md).
    assert all(set(r) == set(Prediction.model_fields) for r in body)


def test_concurrent_predictions_are_batched_without_mixing_answers(
    live: Live, features: pd.DataFrame
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    model = live.trained.model
    frame = features.head(24)
    expected = dict(zip(frame["customer_id"], model.predict_proba(frame), strict=True))
    bodies = [{"records": [r]} for r in records(model, frame)]
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda b: live.post("/predict", b), bodies))
    for answer in answers:
        assert answer.status_code == 200
        (row,) = answer.json()
        assert row["churn_probability"] == pytest.approx(expected[row["customer_id"]], abs=1e-12)


def test_the_served_scorer_takes_the_fast_path_and_gives_predict_proba_exactly(
    trained: Trained, features: pd.DataFrame
) -> None:
    """What each worker builds: records -> matrix -> XGBoost's C API -> calibration, no pandas; and the
    same for /explain and /score_history (a feature frame -> the same matrix)."""
    from churnml.risk.explain import contributions
    from churnml.serving.fast_path import FastPath
    from churnml.serving.loading import load_served_model
    from churnml.serving.schemas import DriverOut, feature_record_model, records_frame
    from churnml.serving.scorer import Scorer, finite_driver

    scorer = Scorer(load_served_model(trained.config), trained.config)
    assert isinstance(scorer.path, FastPath) and scorer.path is scorer.fast
    record_model = feature_record_model(trained.model)
    validated = [record_model.model_validate(r) for r in records(trained.model, features)]
    expected = trained.model.predict_proba(features)
    np.testing.assert_array_equal(scorer.probabilities(validated), expected)
    np.testing.assert_array_equal(scorer.probabilities(validated[:1]), expected[:1])
    # Records and frames encode to the same matrix, whose TreeSHAP values and drivers are the frame
    # path's exactly.
    frame = trained.model.prepare(records_frame(trained.model, validated))
    rows = scorer.fast.records(validated)
    np.testing.assert_array_equal(scorer.fast.frame(features).matrix, rows.matrix)
    np.testing.assert_array_equal(scorer.fast.proba(scorer.fast.frame(features)), expected)
    contribs = contributions(trained.model, frame)
    np.testing.assert_array_equal(scorer.fast.contributions(rows), contribs)
    expected_drivers = [
        [d.as_dict() for d in found] for found in scorer.explainer.drivers(frame, contribs, 3)
    ]
    served = [[d.model_dump() for d in e.drivers] for e in scorer.explain(validated, 3)]
    assert served == [
        [DriverOut(**finite_driver(d)).model_dump() for d in found] for found in expected_drivers
    ]


def test_a_regression_champion_is_served_exactly(trained: Trained, features: pd.DataFrame) -> None:
    """A logistic-regression champion (the candidate small businesses often get) scores and explains in
    the service exactly as in batch: probabilities, contributions and drivers."""
    from churnml.risk.explain import contributions
    from churnml.serving.loading import LoadedModel
    from churnml.serving.schemas import DriverOut, feature_record_model, records_frame
    from churnml.serving.scorer import ModelPath, Scorer, finite_driver
    from churnml.training.linear import LinearModel

    x = trained.model.prepare(features)
    y = (features["days_since_last_event"].fillna(99) > features["days_since_last_event"].median()).to_numpy()
    categorical = [c.name for c in trained.model.columns if c.dtype == "category"]
    model = trained.model.with_linear(LinearModel.fit(x, y.astype(int), categorical, 0.1))
    scorer = Scorer(LoadedModel(model, "logreg/1", "logreg"), trained.config)
    assert scorer.fast is None and isinstance(scorer.path, ModelPath)
    validated = [feature_record_model(model).model_validate(r) for r in records(model, features)]
    np.testing.assert_array_equal(scorer.probabilities(validated), model.predict_proba(features))
    frame = model.prepare(records_frame(model, validated))
    expected = [
        [DriverOut(**finite_driver(d.as_dict())).model_dump() for d in found]
        for found in scorer.explainer.drivers(frame, contributions(model, frame), 3)
    ]
    served = scorer.explain(validated, 3)
    assert [[d.model_dump() for d in e.drivers] for e in served] == expected
    np.testing.assert_array_equal([e.churn_probability for e in served], model.predict_proba(features))


def test_every_nth_response_asks_the_client_to_reconnect(live: Live, features: pd.DataFrame) -> None:
    """Keep-alive connections spread over the workers: one response in ``reconnect_every`` closes its
    connection, and an HTTP client carries on over a new one."""
    body = {"records": records(live.trained.model, features.head(1))}
    with requests.Session() as session:
        answers = [
            session.post(f"{live.url}/predict", json=body, headers={"X-API-Key": live.api_key}, timeout=60)
            for _ in range(3 * live.reconnect_every)
        ]
    assert all(a.status_code == 200 for a in answers)
    closing = [a.headers.get("connection", "").lower() == "close" for a in answers]
    assert sum(closing) >= 2  # the worker counts every request, so which ones depends on earlier tests
    assert not any(closing[i] and closing[i + 1] for i in range(len(closing) - 1))


def test_explain_gives_the_explain_modules_drivers(live: Live, features: pd.DataFrame) -> None:
    model = live.trained.model
    frame = features.head(5)
    answer = live.post("/explain", {"records": records(model, frame), "top_k": 2})
    assert answer.status_code == 200, answer.text
    expected = explain_rows(model, frame, top_k=2)
    for row, drivers in zip(answer.json(), expected, strict=True):
        assert row["model_version"] == live.trained.version
        assert [d["text"] for d in row["drivers"]] == [d.text for d in drivers]
        assert [d["contribution"] for d in row["drivers"]] == pytest.approx([d.contribution for d in drivers])
        assert all(d["contribution"] > 0 for d in row["drivers"]) and len(row["drivers"]) <= 2


def test_score_history_equals_the_batch_pipeline(live: Live, batch: score.ScoreResult) -> None:
    """Raw histories, rows after the as-of time included, give the risk list's probability."""
    listed = batch.risk_list.set_index("customer_id")
    # The highest, a middle and the lowest risk customers, and a few more.
    order = listed.sort_values("churn_probability").index
    chosen = [order[-1], order[-2], order[len(order) // 2], order[0], order[1]]
    histories = [live.trained.history(c) for c in chosen]
    assert any(e["timestamp"] >= AS_OF.isoformat() for h in histories for e in h["events"])
    answer = live.post(
        "/score_history",
        {"customers": histories, "as_of": AS_OF.isoformat(), "include_features": True, "top_k": 3},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert [r["customer_id"] for r in body] == chosen
    for row in body:
        expected = listed.loc[row["customer_id"]]
        assert row["churn_probability"] == pytest.approx(expected["churn_probability"], rel=1e-12, abs=1e-15)
        assert row["risk_band"] == expected["risk_band"]
        assert row["model_version"] == live.trained.version
        assert pd.Timestamp(row["as_of"]).tz_convert(None) == AS_OF
        assert row["features"] is not None and len(row["features"]) == len(live.trained.model.columns)
    # Same leading reason; the risk list adds typical values of its scored population, which a service
    # scoring a few customers does not have (unless the model carries them, see explain.typical_values).
    top = body[0]
    listed_reason = listed.loc[top["customer_id"], "driver_1"].split(" (retained customers")[0]
    assert top["drivers"] and top["drivers"][0]["text"].split(" (retained customers")[0] == listed_reason


def test_score_history_features_equal_the_training_feature_builders(
    live: Live, features: pd.DataFrame
) -> None:
    chosen = features["customer_id"].iloc[:3].tolist()
    histories = [live.trained.history(c) for c in chosen]
    body = live.post(
        "/score_history", {"customers": histories, "as_of": AS_OF.isoformat(), "include_features": True}
    ).json()
    expected = features.set_index("customer_id")
    for row in body:
        for name, value in row["features"].items():
            want = expected.loc[row["customer_id"], name]
            if value is None:
                assert pd.isna(want), name
            elif isinstance(value, str):
                assert value == str(want), name
            else:
                assert value == pytest.approx(float(want), rel=1e-12), name


# ---------------------------------------------------------------------------------------------------
# Errors: 4xx naming the field, never a 5xx.


def _example(live: Live, features: pd.DataFrame) -> dict:
    return records(live.trained.model, features.head(1))[0]


def _categorical(live: Live) -> str:
    return next(c.name for c in live.trained.model.columns if c.dtype == "category")


def _numeric(live: Live) -> str:
    return next(c.name for c in live.trained.model.columns if c.dtype != "category")


@pytest.mark.parametrize(
    "case",
    ["unknown", "missing", "string", "boolean", "too_large", "unseen_category", "category_type"],
)
def test_bad_records_get_400_naming_the_field(live: Live, features: pd.DataFrame, case: str) -> None:
    record = _example(live, features)
    numeric, categorical = _numeric(live), _categorical(live)
    field = numeric
    if case == "unknown":
        record["no_such_feature"], field = 1.0, "no_such_feature"
    elif case == "missing":
        del record[numeric]
    elif case == "string":
        record[numeric] = "12"
    elif case == "boolean":
        record[numeric] = True
    elif case == "too_large":
        record[numeric] = 1e39  # finite in JSON, infinite as XGBoost's float32
    elif case == "unseen_category":
        record[categorical], field = "no-such-level", categorical
    elif case == "category_type":
        record[categorical], field = 3, categorical
    answer = live.post("/predict", {"records": [record]})
    assert answer.status_code == 400, answer.text
    body = answer.json()
    assert f"records.0.{field}" in body["error"]
    assert body["detail"][0]["loc"] == ["records", 0, field]
    if case == "unseen_category":
        column = next(c for c in live.trained.model.columns if c.name == categorical)
        assert all(repr(level) in body["error"] for level in column.categories)


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_numbers_get_400(live: Live, features: pd.DataFrame, literal: str) -> None:
    record = _example(live, features)
    record[_numeric(live)] = 0.5
    raw = json.dumps({"records": [record]}).replace("0.5", literal, 1)
    answer = requests.post(
        f"{live.url}/predict",
        data=raw,
        headers={"X-API-Key": live.api_key, "content-type": "application/json"},
        timeout=30,
    )
    assert answer.status_code == 400
    assert "finite" in answer.json()["error"]


def test_malformed_json_oversize_and_empty_batches_get_400(live: Live, features: pd.DataFrame) -> None:
    headers = {"X-API-Key": live.api_key, "content-type": "application/json"}
    broken = requests.post(f"{live.url}/predict", data='{"records": [', headers=headers, timeout=30)
    assert broken.status_code == 400 and "JSON" in broken.json()["error"]
    record = _example(live, features)
    oversize = live.post("/predict", {"records": [record] * (live.max_records + 1)})
    assert oversize.status_code == 400 and f"at most {live.max_records}" in oversize.json()["error"]
    assert live.post("/explain", {"records": []}).status_code == 400
    assert live.post("/explain", {"records": [record], "top_k": 0}).json()["detail"][0]["loc"] == ["top_k"]
    assert live.post("/predict", [record]).status_code == 400  # the list must be under "records"


def test_histories_breaking_the_contract_get_a_4xx_naming_where(live: Live, features: pd.DataFrame) -> None:
    customer = features["customer_id"].iloc[0]
    history = live.trained.history(customer)
    as_of = AS_OF.isoformat()

    ended_before_start = json.loads(json.dumps(history))
    sub = ended_before_start["subscriptions"][0]
    sub["end_at"] = "2000-01-01T00:00:00"
    answer = live.post("/score_history", {"customers": [ended_before_start], "as_of": as_of})
    assert answer.status_code == 422 and "subscriptions.end_at" in answer.json()["error"]

    duplicate = live.post("/score_history", {"customers": [history, history], "as_of": as_of})
    assert duplicate.status_code == 422 and "duplicate" in duplicate.json()["error"]

    early = live.post("/score_history", {"customers": [history], "as_of": "2000-01-01T00:00:00"})
    assert early.status_code == 422 and "signup_at" in early.json()["error"]

    future = live.post("/score_history", {"customers": [history], "as_of": "2999-01-01T00:00:00"})
    assert future.status_code in (400, 422) and "as_of" in future.json()["error"]

    other = json.loads(json.dumps(history))
    other["events"][0]["customer_id"] = "someone-else"
    assert live.post("/score_history", {"customers": [other], "as_of": as_of}).status_code == 400

    typo = json.loads(json.dumps(history))
    typo["events"][0]["timestmp"] = typo["events"][0].pop("timestamp")
    answer = live.post("/score_history", {"customers": [typo], "as_of": as_of})
    assert answer.status_code == 400 and "customers.0.events.0.timestmp" in answer.json()["error"]

    # Year 1 at UTC+00:08 lies before year 1 in UTC (found by schemathesis: it was a 500).
    ancient = json.loads(json.dumps(history))
    ancient["events"][0]["timestamp"] = "0001-01-01T00:00:00+00:08"
    answer = live.post("/score_history", {"customers": [ancient], "as_of": as_of})
    assert answer.status_code == 400 and "customers.0.events.0.timestamp" in answer.json()["error"]


UNSEEN = "no-such-level"


def test_an_unseen_category_is_refused_alike_by_predict_and_score_history(
    live: Live, features: pd.DataFrame
) -> None:
    """One rule for both endpoints: a raw value a categorical feature reads must be a training category;
    the 400 names the field, the value and the categories (score_history used to read it as missing)."""
    history = live.trained.history(features["customer_id"].iloc[0])
    assert history["subscriptions"]
    record = _example(live, features)
    columns = category_columns(live.trained.model)
    assert {("customers", "plan"), ("subscriptions", "plan"), ("customers", "country")} <= set(columns)
    for (table, column), known in columns.items():
        changed = json.loads(json.dumps(history))
        if table == "customers":
            changed["customer"][column], where = UNSEEN, ["customers", 0, "customer", column]
        else:
            changed[table][0][column], where = UNSEEN, ["customers", 0, table, 0, column]
        scored = live.post("/score_history", {"customers": [changed], "as_of": AS_OF.isoformat()})
        predicted = live.post("/predict", {"records": [{**record, column: UNSEEN}]})
        for answer, loc in ((scored, where), (predicted, ["records", 0, column])):
            assert answer.status_code == 400, answer.text
            (item,) = answer.json()["detail"]
            assert item["type"] == "unseen_category" and item["loc"] == loc, item
            assert repr(UNSEEN) in item["msg"] and all(repr(c) in item["msg"] for c in known)
        assert scored.json()["detail"][0]["msg"] == predicted.json()["detail"][0]["msg"]
    # null stays "unknown", as in training.
    changed = json.loads(json.dumps(history))
    changed["customer"]["country"] = None
    assert (
        live.post("/score_history", {"customers": [changed], "as_of": AS_OF.isoformat()}).status_code == 200
    )


def _post_raw(live: Live, path: str, data: object, media: str | None = None) -> requests.Response:
    headers = {**live.auth, **({"content-type": media} if media else {})}
    return requests.post(f"{live.url}{path}", data=data, headers=headers, timeout=60)


PATHS = ["/predict", "/explain", "/score_history"]
FORM = b'--x\r\nContent-Disposition: form-data; name="records"\r\n\r\n[]\r\n--x--\r\n'


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize(
    ("media", "body"),
    [
        ("multipart/form-data", b"garbage"),  # no boundary: BentoML's form parser failed with a 500
        ("multipart/form-data; boundary=x", FORM),
        ("application/x-www-form-urlencoded", b"records=1"),
        ("text/plain", b"{}"),
        ("application/xml", b"<records/>"),
        ("application/vnd.bentoml+pickle", b"\x80\x04N."),
    ],
)
def test_bodies_not_sent_as_json_get_415(live: Live, path: str, media: str, body: bytes) -> None:
    answer = _post_raw(live, path, body, media)
    assert answer.status_code == 415, answer.text
    (item,) = answer.json()["detail"]
    assert item["type"] == "unsupported_media_type" and item["loc"] == ["header", "Content-Type"]


@pytest.mark.parametrize("path", PATHS)
def test_a_body_without_content_type_is_read_as_json(live: Live, features: pd.DataFrame, path: str) -> None:
    garbage = _post_raw(live, path, b"\x00\xffgarbage")
    assert "content-type" not in {k.lower() for k in garbage.request.headers}
    assert garbage.status_code == 400 and "JSON" in garbage.json()["error"]
    if path != "/score_history":
        body = json.dumps({"records": [_example(live, features)]})
        assert _post_raw(live, path, body).status_code == 200
        assert _post_raw(live, path, body, "Application/JSON; charset=utf-8").status_code == 200


def test_a_body_over_the_limit_is_refused_before_it_is_read(live: Live) -> None:
    # Headers only, announcing a body 100x the limit: the 413 comes without waiting for any of it.
    address = urlsplit(live.url)
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {address.netloc}\r\nX-API-Key: {live.api_key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {100 * live.max_body_bytes}\r\n\r\n"
    )
    with socket.create_connection((address.hostname, address.port), timeout=10) as sock:
        sock.sendall(head.encode())
        answer = b""
        while b"}" not in answer.partition(b"\r\n\r\n")[2]:  # the JSON body may come in a later packet
            chunk = sock.recv(65536)
            answer += chunk
            if not chunk:
                break
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert json.loads(answer.partition(b"\r\n\r\n")[2])["detail"][0]["type"] == "body_too_large"
    # A client that sends such a body whole gets the same answer.
    sent = _post_raw(live, "/predict", b" " * (live.max_body_bytes + 1), "application/json")
    assert sent.status_code == 413 and "serving.max_body_bytes" in sent.json()["error"]


def test_a_streamed_body_is_capped_without_content_length(live: Live, features: pd.DataFrame) -> None:
    def chunked(data: bytes, size: int = 64 * 1024):
        yield from (data[start : start + size] for start in range(0, len(data), size))

    body = json.dumps({"records": records(live.trained.model, features.head(3))}).encode()
    small = _post_raw(live, "/predict", chunked(body, 1000), "application/json")
    assert small.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in {k.lower() for k in small.request.headers}
    assert small.status_code == 200 and len(small.json()) == 3
    large = _post_raw(live, "/predict", chunked(b" " * (live.max_body_bytes + 1)), "application/json")
    assert large.status_code == 413 and large.json()["detail"][0]["type"] == "body_too_large"


# ---------------------------------------------------------------------------------------------------
# Authentication, CORS, health, metrics, OpenAPI.


def test_api_key_is_required_and_health_stays_open(live: Live, features: pd.DataFrame) -> None:
    body = {"records": [_example(live, features)]}
    assert live.post("/predict", body, key=None).status_code == 401
    wrong = live.post("/predict", body, key="wrong")
    assert wrong.status_code == 401 and "API key" in wrong.json()["error"]
    bearer = requests.post(
        f"{live.url}/predict", json=body, headers={"Authorization": f"Bearer {live.api_key}"}, timeout=30
    )
    assert bearer.status_code == 200
    for path in ("/livez", "/readyz", "/metrics", "/docs.json"):
        assert requests.get(f"{live.url}{path}", timeout=30).status_code == 200, path


def test_cors_allows_only_the_configured_origin(live: Live) -> None:
    def preflight(origin: str) -> requests.Response:
        headers = {
            "Origin": origin,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type,x-api-key",
        }
        return requests.options(f"{live.url}/predict", headers=headers, timeout=30)

    allowed = preflight(live.origin)
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == live.origin
    assert "access-control-allow-origin" not in preflight("https://evil.example.com").headers


def test_health_and_prometheus_metrics(live: Live) -> None:
    assert requests.get(f"{live.url}/readyz", timeout=30).status_code == 200
    metrics = requests.get(f"{live.url}/metrics", timeout=30).text
    assert "bentoml_service_request_total" in metrics and 'endpoint="/predict"' in metrics


def _values(metrics: str, name: str) -> dict[str, float]:
    """``{labels: value}`` of one metric's series (labels text as /metrics writes it, '' for none)."""
    out = {}
    for line in _series(metrics):
        series, _, value = line.rpartition(" ")
        if series == name or series.startswith(name + "{"):
            out[series[len(name) :]] = float(value)
    return out


def test_metrics_show_the_served_scores_against_the_training_reference(
    live: Live, features: pd.DataFrame
) -> None:
    """Every answered probability counts in its bin of the training reference's score deciles, beside the
    reference's own shares; a worker's rolling PSI appears once it has served drift.min_window scores."""
    trained = live.trained
    reference = drift.Reference.from_dict(trained.model.reference)
    assert reference is not None and reference.score is not None
    before = requests.get(f"{live.url}/metrics", timeout=30).text
    shares = _values(before, "churnml_reference_score_share")
    assert len(shares) == reference.score.bins and sum(shares.values()) == pytest.approx(1, abs=1e-4)
    wanted = trained.config.drift.min_window
    frame = pd.concat([features] * (1 + wanted // len(features)), ignore_index=True).head(wanted)
    for start in range(0, len(frame), live.max_records):
        body = {"records": records(trained.model, frame.iloc[start : start + live.max_records])}
        assert live.post("/predict", body).status_code == 200
    after = requests.get(f"{live.url}/metrics", timeout=30).text
    total = "churnml_served_scores_total"
    counted = {k: v - _values(before, total).get(k, 0.0) for k, v in _values(after, total).items()}
    index = reference.score.bin_index(trained.model.predict_proba(frame))
    labels = drift.ScoreWindow(reference.score, 1).bin_labels()
    expected = {f'{{bin="{labels[b]}"}}': float(n) for b, n in enumerate(np.bincount(index)) if n}
    assert {k: v for k, v in counted.items() if v} == expected
    (psi,) = _values(after, "churnml_score_psi").values()  # one worker
    assert math.isfinite(psi) and psi >= 0


def _series(metrics: str) -> list[str]:
    return [line for line in metrics.splitlines() if line and not line.startswith("#")]


def test_made_up_paths_share_one_metrics_series(live: Live) -> None:
    """Unknown routes are counted under endpoint="other": random paths add no series to /metrics."""

    def call_random_paths(count: int) -> list[str]:
        paths = [f"/{uuid.uuid4().hex}" for _ in range(count)]
        for index, path in enumerate(paths):  # 401 without the key, 404 with it, GET and POST
            headers = live.auth if index % 4 == 0 else {}
            method = requests.post if index % 2 == 0 else requests.get
            method(f"{live.url}{path}", headers=headers, timeout=30)
        return paths

    live.post("/predict", {"records": []})  # a real route has its own series, whatever ran before
    call_random_paths(4)  # the series of "other" and each status exist from here on
    before = requests.get(f"{live.url}/metrics", timeout=30).text
    paths = call_random_paths(30)
    after = requests.get(f"{live.url}/metrics", timeout=30).text
    assert not any(path in after for path in paths)
    assert 'endpoint="other"' in after and 'endpoint="/predict"' in after
    assert len(_series(after)) - len(_series(before)) < 5, len(after) - len(before)


def test_openapi_document_describes_every_request_and_response(live: Live) -> None:
    doc = requests.get(f"{live.url}/docs.json", timeout=30).json()
    assert doc["openapi"].startswith("3.1") and doc["info"]["version"] == live.trained.version
    schemas = doc["components"]["schemas"]
    features = schemas["CustomerFeatures"]
    assert set(features["properties"]) == {"customer_id", *live.trained.model.feature_names}
    assert features["additionalProperties"] is False and features["examples"]
    for path in ("/predict", "/explain", "/score_history"):
        operation = doc["paths"][path]["post"]
        assert operation["requestBody"]["content"]["application/json"]["example"]
        assert {"200", "400", "401", "413", "415"} <= set(operation["responses"])
    for name in ("Prediction", "Explanation", "HistoryScore", "ErrorBody", "CustomerHistory"):
        assert schemas[name].get("examples"), name


# ---------------------------------------------------------------------------------------------------
# Logs.


def _log_after(live: Live, start: int, refused: int, timeout_s: float = 15) -> str:
    """The server's log from byte ``start`` once it holds ``refused`` "refused" lines (or the timeout)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with live.log.open("rb") as log:
            log.seek(start)
            text = log.read().decode(errors="replace")
        if text.count(" refused /") >= refused or time.monotonic() > deadline:
            return text


def test_client_errors_are_logged_in_one_line_without_their_values(
    live: Live, features: pd.DataFrame
) -> None:
    canary = "canary-7f3a9e"  # in every bad request: it must reach no log line
    record = _example(live, features)
    bad = [
        ("/predict", {"records": [{**record, _categorical(live): canary}]}),
        ("/predict", {"records": [{**record, _numeric(live): canary}]}),
        ("/predict", {"records": [{**record, canary: 1.0}]}),
        ("/explain", {"records": [{**record, "customer_id": canary}], "top_k": canary}),
        ("/score_history", {"customers": [{"customer": {"customer_id": canary}}]}),
    ]
    start = live.log.stat().st_size
    for path, body in bad:
        assert live.post(path, body).status_code == 400
    assert _post_raw(live, "/predict", f'{{"records": ["{canary}"', "application/json").status_code == 400
    text = _log_after(live, start, refused=len(bad) + 1)
    lines = [line for line in text.splitlines() if " refused /" in line]
    assert len(lines) == len(bad) + 1, text[-3000:]
    assert all("[INFO]" in line and "validation error" in line for line in lines), lines
    assert canary not in text and "Traceback" not in text and "[ERROR]" not in text, text[-3000:]


# ---------------------------------------------------------------------------------------------------
# Without a server.


def test_error_summary_names_the_fields() -> None:
    detail = [{"loc": ["records", 0, "plan"], "msg": "Input should be 'a' or 'b'"}] * 7
    text = summarize_errors(detail)
    assert text.startswith("records.0.plan: Input should be 'a' or 'b'") and text.endswith("(and 2 more)")


def test_example_record_is_valid_for_the_generated_model(trained: Trained) -> None:
    from churnml.serving.schemas import example_record, feature_record_model, records_frame

    Record = feature_record_model(trained.model)
    parsed = Record.model_validate_json(json.dumps(example_record(trained.model)))
    frame = records_frame(trained.model, [parsed])
    probability = trained.model.predict_proba(frame)
    assert frame.shape == (1, len(trained.model.columns) + 1) and math.isfinite(float(probability[0]))
