"""Concurrent ``/score_history`` requests scored together (``Scorer.score_histories``, behind
``churnml.serving.batching``): each answer must be the one the request gets alone, bit for bit, and each
error must stay with its own request. In process on the trained model, and on the live server with
concurrent clients. (The batcher itself: test_batching.py.)
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest
import requests

from churnml.serving.loading import load_served_model
from churnml.serving.schemas import history_model
from churnml.serving.scorer import ClientError, HistoryRequest, Scorer

if TYPE_CHECKING:
    from servers import Live, Trained

pytestmark = pytest.mark.xdist_group("serving")  # the trained model and server of the serving tests

AS_OF = pd.Timestamp("2025-08-17 06:00:00")


# ---------------------------------------------------------------------------------------------------
# The scorer's batched path.


@pytest.fixture(scope="module")
def scorer(trained: Trained) -> Scorer:
    return Scorer(load_served_model(trained.config), trained.config)


def _histories(trained: Trained, count: int) -> list[dict]:
    customers = trained.dataset.customers
    signed_up = customers.loc[customers["signup_at"] < AS_OF - pd.Timedelta(days=60), "customer_id"]
    return [trained.history(c) for c in signed_up.iloc[:count]]


def _dump(answer: list | ClientError) -> Any:
    if isinstance(answer, ClientError):
        return ("error", str(answer), answer.loc)
    return [json.loads(row.model_dump_json()) for row in answer]


def test_requests_scored_together_answer_as_if_scored_alone(trained: Trained, scorer: Scorer) -> None:
    validate = history_model(trained.model, trained.config.serving.max_rows).model_validate
    one, two, three = (validate(h) for h in _histories(trained, 3))
    # The same customer under an id written as a spreadsheet writes an integral number: the contract
    # reads "0042.0" as "0042", and the answer gives the id as it was sent.
    copy = _histories(trained, 1)[0]
    renamed = validate(copy | {"customer": copy["customer"] | {"customer_id": "0042.0"}})
    earlier = (AS_OF - pd.Timedelta(days=45)).to_pydatetime()
    requests = [
        HistoryRequest([one, two], AS_OF.to_pydatetime(), 3, True),
        HistoryRequest([one], earlier, 1, False),  # a customer of the first request, at another moment
        HistoryRequest([three, renamed], AS_OF.to_pydatetime(), 5, True),
        HistoryRequest([two], (AS_OF - pd.Timedelta(days=4000)).to_pydatetime(), 3, False),  # not signed up
    ]
    together = scorer.score_histories(requests)
    alone = [scorer.score_histories([request])[0] for request in requests]
    assert [_dump(a) for a in together] == [_dump(a) for a in alone]
    assert isinstance(together[3], ClientError) and together[3].loc[-1] == "signup_at"
    assert [row.customer_id for row in together[2]] == [three.customer.customer_id, "0042.0"]
    assert together[2][1].features == together[0][0].features  # "0042.0" scored with one's rows
    assert len(together[1][0].drivers) <= 1 and together[1][0].features is None


def test_a_request_breaking_the_contract_leaves_the_others_answered(trained: Trained, scorer: Scorer) -> None:
    raw = _histories(trained, 2)
    broken = json.loads(json.dumps(raw[1]))
    broken["subscriptions"][0]["end_at"] = "2000-01-01T00:00:00"  # ends before it starts
    validate = history_model(trained.model, trained.config.serving.max_rows).model_validate
    good = HistoryRequest([validate(raw[0])], AS_OF.to_pydatetime(), 3, False)
    bad = HistoryRequest([validate(broken)], AS_OF.to_pydatetime(), 3, False)
    answers = scorer.score_histories([good, bad, good])
    assert _dump(answers[0]) == _dump(answers[2]) == _dump(scorer.score_histories([good])[0])
    assert isinstance(answers[1], ClientError)
    assert answers[1].loc == ["customers", "subscriptions", "end_at"]
    assert _dump(answers[1]) == _dump(scorer.score_histories([bad])[0])


def test_a_request_checked_for_stray_rows_is_scored_alone(trained: Trained, scorer: Scorer) -> None:
    """The stray-row rule looks at the whole data once it is large enough: a long history refused alone
    (rows far past all its other activity) must not pass because another request fills the gap."""
    validate = history_model(trained.model, trained.config.serving.max_rows).model_validate
    base = _histories(trained, 2)
    january = pd.date_range("2024-01-01", periods=6000, freq="10min")
    strays = pd.date_range("2024-06-01", periods=6, freq="D")
    only_events = {"subscriptions": [], "transactions": [], "tickets": [], "messages": []}
    long = (
        base[0]
        | only_events
        | {
            "customer": base[0]["customer"] | {"signup_at": "2023-06-01T00:00:00"},
            "events": [{"timestamp": t.isoformat(), "event_type": "login"} for t in [*january, *strays]],
        }
    )
    daily = (
        base[1]
        | only_events
        | {
            "customer": base[1]["customer"] | {"signup_at": "2023-06-01T00:00:00"},
            "events": [
                {"timestamp": t.isoformat(), "event_type": "login"}
                for t in pd.date_range("2024-02-01", "2024-06-20", freq="D")
            ],
        }
    )
    at = pd.Timestamp("2024-07-01").to_pydatetime()
    requests = [
        HistoryRequest([validate(long)], at, 3, False),
        HistoryRequest([validate(daily)], at, 3, False),
    ]
    together = scorer.score_histories(requests)
    alone = [scorer.score_histories([request])[0] for request in requests]
    assert isinstance(alone[0], ClientError) and "after all other activity" in str(alone[0])
    assert [_dump(a) for a in together] == [_dump(a) for a in alone]


def test_a_fault_on_one_request_fails_that_request_only(
    trained: Trained, scorer: Scorer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Not a client error but a fault (a bug on some data): the batch is scored again request by request,
    and only the request that causes it gets it (its 500)."""
    validate = history_model(trained.model, trained.config.serving.max_rows).model_validate
    good, bad = (validate(h) for h in _histories(trained, 2))
    real = scorer.history_features

    def faulty(histories: Any, as_of: Any, ids: Any) -> pd.DataFrame:
        if any(h.customer.customer_id == bad.customer.customer_id for h in histories):
            raise RuntimeError("a fault on one customer's data")
        return real(histories, as_of, ids)

    monkeypatch.setattr(scorer, "history_features", faulty)
    at = AS_OF.to_pydatetime()
    answers = scorer.score_histories(
        [HistoryRequest([good], at, 3, False), HistoryRequest([bad], at, 3, False)]
    )
    assert isinstance(answers[0], list) and len(answers[0]) == 1
    assert isinstance(answers[1], RuntimeError) and not isinstance(answers[1], ClientError)


# ---------------------------------------------------------------------------------------------------
# The live server.


@pytest.mark.slow
def test_concurrent_score_history_requests_get_their_own_answers(live: Live) -> None:
    histories = _histories(live.trained, 6)
    bodies = [
        {"customers": [h], "as_of": (AS_OF - pd.Timedelta(days=7 * k)).isoformat(), "top_k": 1 + k % 3}
        for k, h in enumerate(histories)
    ]
    bodies.append({"customers": [histories[0], histories[0]], "as_of": AS_OF.isoformat()})  # 422 alone
    alone = [live.post("/score_history", body) for body in bodies]
    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        for _ in range(3):
            together = list(pool.map(lambda body: live.post("/score_history", body), bodies * 2))
            for sent, answer in zip(bodies * 2, together, strict=True):
                expected = alone[bodies.index(sent)]
                assert answer.status_code == expected.status_code, answer.text
                assert answer.json() == expected.json()
    assert alone[-1].status_code == 422 and "duplicate" in alone[-1].json()["error"]
    # Operators see how many requests went together: a histogram on /metrics.
    metrics = requests.get(f"{live.url}/metrics", timeout=30).text
    counts = [
        line for line in metrics.splitlines() if line.startswith("churnml_history_batch_requests_count")
    ]
    assert counts and float(counts[0].split()[-1]) >= 1
    single = [
        line
        for line in metrics.splitlines()
        if line.startswith('churnml_history_batch_requests_bucket{le="1.0"')
    ]
    assert single and float(counts[0].split()[-1]) > float(single[0].split()[-1])  # some batches held several
