"""The micro-batcher behind ``/score_history`` (``churnml.serving.batching``), with a stand-in ``work``
on real threads and real asyncio: who runs together, who waits and how long, and that every request
gets an answer or an error, never a hang. (Scoring batches: test_history_batches.py.)
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import TYPE_CHECKING, Any

from churnml.serving.batching import Batcher

if TYPE_CHECKING:
    pass


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


def _bounded(awaitable: Any, seconds: float = 2.0) -> Any:
    """The awaitable's result or exception, or "hang" when it has none after ``seconds``."""

    async def bounded() -> Any:
        try:
            return await asyncio.wait_for(awaitable, seconds)
        except TimeoutError:
            return "hang"
        except BaseException as exc:  # the answer under test
            return exc

    return bounded()


class Fatal(BaseException):
    pass


def test_no_request_hangs_when_the_work_dies_or_miscounts() -> None:
    def dies(items: list[int]) -> list[str]:
        if 1 in items:
            raise Fatal("a BaseException in the worker thread")
        return [f"answer {item}" for item in items]

    def miscounts(items: list[int]) -> list[str]:
        return ["one answer"] * (len(items) + 1)

    async def scenario(work: Any) -> list[Any]:
        batcher: Batcher[int, str] = Batcher(work, max_size=100)
        first = asyncio.ensure_future(_bounded(batcher(0)))
        await asyncio.sleep(0.01)
        rest = [asyncio.ensure_future(_bounded(batcher(k))) for k in (1, 2)]
        return await asyncio.gather(first, *rest)

    answers = asyncio.run(scenario(dies))
    assert answers[0] == "answer 0"
    assert all(isinstance(a, RuntimeError) and "BaseException in the worker" in str(a) for a in answers[1:])
    answers = asyncio.run(scenario(miscounts))
    assert "hang" not in answers and all(isinstance(a, ValueError) for a in answers)


def test_a_batcher_serves_one_event_loop_after_another() -> None:
    batcher: Batcher[int, str] = Batcher(Recorder(seconds=0.0), max_size=100, max_wait_s=0.05)

    async def both() -> Any:
        return await _bounded(asyncio.gather(batcher(0), batcher(1)))

    for _ in range(2):  # each asyncio.run is a new loop
        assert asyncio.run(both()) == ["answer 0", "answer 1"]


def test_a_full_batch_does_not_wait_for_more() -> None:
    work = Recorder(seconds=0.01)

    async def scenario() -> float:
        batcher: Batcher[int, str] = Batcher(work, max_size=1, max_wait_s=0.5)
        started = time.perf_counter()
        await asyncio.gather(*(batcher(k) for k in range(4)))
        return time.perf_counter() - started

    elapsed = asyncio.run(scenario())
    assert work.batches == [[0], [1], [2], [3]]
    assert elapsed < 0.4
