"""Concurrent ``/score_history`` requests are scored together (``churnml.serving.batching``): each answer
must be the one the request gets alone, and each error must stay with its own request.

The batcher is tested on its own with a stand-in ``work`` (real threads, real asyncio); the scorer's
batched path on the trained model, in process; and the live server with concurrent clients.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd
import pytest

from churnml.serving.batching import Batcher
from churnml.serving.loading import load_served_model
from churnml.serving.schemas import history_model
from churnml.serving.scorer import ClientError, HistoryRequest, Scorer

if TYPE_CHECKING:
    from conftest import Live, Trained

pytestmark = pytest.mark.xdist_group("serving")  # the trained model and server of the serving tests

AS_OF = pd.Timestamp("2025-08-17 06:00:00")


# ---------------------------------------------------------------------------------------------------
# The batcher alone.


class Recorder:
    """A ``work`` that records its batches and takes ``seconds`` per call (in its thread, as scoring does)."""

    def __init__(self, seconds: float = 0.05, fail_on: object = None) -> None:
        self.seconds, self.fail_on = seconds, fail_on
        self.batches: list[list[Any]] = []
        self.threads: set[int] = set()

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        self.threads.add(threading.get_ident())
        time.sleep(self.seconds)
        if self.fail_on in items:
            raise ValueError(f"bad item {self.fail_on}")
        return [f"answer {item}" for item in items]


def test_requests_arriving_during_a_batch_run_together_next() -> None:
    work = Recorder()

    async def scenario() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(work, max_size=100)
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.01)  # the first batch [0] is running now
        rest = [asyncio.ensure_future(batcher(k)) for k in (1, 2, 3)]
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario())
    assert answers == ["answer 0", "answer 1", "answer 2", "answer 3"]
    assert work.batches == [[0], [1, 2, 3]]
    assert threading.get_ident() not in work.threads  # the event loop never blocks on the work


def test_batches_hold_at_most_max_size_by_size_but_at_least_one_request() -> None:
    work = Recorder(seconds=0.02)

    async def scenario() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(work, max_size=5, size=lambda item: item)
        return await asyncio.gather(*(batcher(k) for k in (2, 2, 2, 9, 1)))

    assert asyncio.run(scenario()) == ["answer 2", "answer 2", "answer 2", "answer 9", "answer 1"]
    assert work.batches == [[2, 2], [2], [9], [1]]


def test_a_batch_waits_for_as_many_requests_as_were_outstanding() -> None:
    """Two closed-loop clients: after a batch of both, the first to come back waits for the other
    (within ``max_wait_s``) instead of running alone and relaying forever."""
    work = Recorder(seconds=0.03)

    async def client(batcher: Batcher[str, str], name: str, pause: float) -> None:
        for k in range(4):
            await batcher(f"{name}{k}")
            await asyncio.sleep(pause)

    async def scenario() -> None:
        batcher: Batcher[str, str] = Batcher(work, max_size=100, max_wait_s=0.5)
        await asyncio.gather(client(batcher, "a", 0.0), client(batcher, "b", 0.01))

    started = time.perf_counter()
    asyncio.run(scenario())
    assert [sorted(batch) for batch in work.batches] == [[f"a{k}", f"b{k}"] for k in range(4)]
    assert time.perf_counter() - started < 1.0  # waited for b, never for the whole max_wait_s


def test_a_lone_client_never_waits() -> None:
    work = Recorder(seconds=0.0)

    async def scenario() -> float:
        batcher: Batcher[int, str] = Batcher(work, max_size=100, max_wait_s=1.0)
        started = time.perf_counter()
        for k in range(5):
            assert await batcher(k) == f"answer {k}"
        return time.perf_counter() - started

    assert asyncio.run(scenario()) < 0.5
    assert work.batches == [[k] for k in range(5)]


def test_a_wait_for_a_client_that_left_ends_at_max_wait() -> None:
    work = Recorder(seconds=0.01)

    async def scenario() -> float:
        batcher: Batcher[int, str] = Batcher(work, max_size=100, max_wait_s=0.2)
        await asyncio.gather(batcher(0), batcher(1))  # two outstanding: the next batch expects two
        started = time.perf_counter()
        assert await batcher(2) == "answer 2"  # the other client is gone
        return time.perf_counter() - started

    waited = asyncio.run(scenario())
    assert 0.15 < waited < 1.0


def test_an_exception_of_the_work_answers_every_request_of_its_batch_only() -> None:
    work = Recorder(fail_on=2)

    async def scenario() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(work, max_size=100)
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(batcher(k)) for k in (1, 2)]
        return await asyncio.gather(first, *rest, return_exceptions=True)

    first, second, third = asyncio.run(scenario())
    assert first == "answer 0"
    assert isinstance(second, ValueError) and isinstance(third, ValueError)


def test_a_request_whose_client_left_is_not_computed() -> None:
    work = Recorder()

    async def scenario() -> list[Any]:
        batcher: Batcher[int, str] = Batcher(work, max_size=100)
        first = asyncio.ensure_future(batcher(0))
        await asyncio.sleep(0.01)
        gone, kept = asyncio.ensure_future(batcher(1)), asyncio.ensure_future(batcher(2))
        await asyncio.sleep(0)
        gone.cancel()
        return await asyncio.gather(first, kept)

    assert asyncio.run(scenario()) == ["answer 0", "answer 2"]
    assert work.batches == [[0], [2]]


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
