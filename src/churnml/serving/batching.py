"""Micro-batching of concurrent requests within one worker.

BentoML's adaptive batching takes exactly one batched argument, and ``/score_history`` has four. Here
requests that arrive while a batch runs wait for it and then run together as the next batch, so a fixed
cost per call (the contract checks and feature builders on one customer's history) is paid once per batch.

Greedy batching alone settles into a relay under steady concurrency: with two clients on a worker, one
request always arrives while the other's batch runs, so each waits a whole batch and batches never grow.
So a batch may also wait, up to ``max_wait_s``, for as many requests as were outstanding during the
previous batch: the clients just answered usually send their next request within a millisecond or two.
A lone client never waits (one request outstanding), and a client that leaves costs the wait once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

import anyio.to_thread

Item = TypeVar("Item")
Answer = TypeVar("Answer")


class Batcher(Generic[Item, Answer]):
    """Runs ``work`` (a list of items -> one answer per item, in order) on a thread, one batch at a time.

    A batch holds as many waiting items as fit in ``max_size`` by ``size`` (at least one). An exception
    raised by ``work`` (or a wrong number of answers) goes to every request of its batch; a request
    cancelled while it waits (its client left) is skipped. No request is left waiting: should the runner
    itself die, every request it holds or has waiting gets the error.
    """

    def __init__(
        self,
        work: Callable[[list[Item]], Sequence[Answer]],
        max_size: int,
        size: Callable[[Item], int] = lambda _: 1,
        max_wait_s: float = 0.0,
        on_batch: Callable[[int], object] | None = None,
    ) -> None:
        self.work, self.max_size, self.size, self.max_wait_s = work, max_size, size, max_wait_s
        self.on_batch = on_batch  # told each batch's number of requests (the service's metric)
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._arrived: asyncio.Event | None = None  # made in the loop that waits on it
        self._running = 0  # requests in the batch now running
        self._peak = 0  # most requests outstanding (running + waiting) since the running batch began
        self._expected = 1  # that peak during the last batch: how many to wait for
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((item, future))
        self._peak = max(self._peak, self._running + len(self._waiting))
        if self._arrived is not None:
            self._arrived.set()
        if self._runner is None or self._runner.done():
            self._arrived = asyncio.Event()  # this loop's (a runner lives in one loop)
            self._runner = loop.create_task(self._run())
        return await future

    async def _gather(self, arrived: asyncio.Event) -> None:
        """Wait, at most ``max_wait_s``, until as many requests wait as the last batch saw outstanding,
        or enough to fill a batch."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while (left := deadline - loop.time()) > 0:
            live = [item for item, future in self._waiting if not future.cancelled()]
            if len(live) >= self._expected or sum(map(self.size, live)) >= self.max_size:
                return
            arrived.clear()
            try:
                await asyncio.wait_for(arrived.wait(), left)
            except TimeoutError:
                return

    def _next_batch(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        taken, total = 0, 0
        for item, future in self._waiting:
            if not future.cancelled():
                total += self.size(item)
                if total > self.max_size and taken > 0:
                    break
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return [(item, future) for item, future in batch if not future.cancelled()]

    async def _run(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Answer]]] = []
        try:
            while self._waiting:
                if self.max_wait_s > 0 and self._arrived is not None:
                    await self._gather(self._arrived)
                batch = self._next_batch()
                if not batch:
                    continue
                if self.on_batch is not None:
                    self.on_batch(len(batch))
                self._running = len(batch)
                self._peak = self._running + len(self._waiting)
                try:
                    answers = await anyio.to_thread.run_sync(self.work, [item for item, _ in batch])
                    if len(answers) != len(batch):
                        raise ValueError(f"{len(answers)} answers to a batch of {len(batch)} requests")
                    for (_, future), answer in zip(batch, answers, strict=True):
                        if not future.done():
                            future.set_result(answer)
                except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
                    raise
                except BaseException as exc:  # each request of the batch answers with it
                    _fail(
                        batch, exc if isinstance(exc, Exception) else RuntimeError(f"scoring failed: {exc!r}")
                    )
                finally:
                    self._expected, self._running = self._peak, 0
                batch = []
        except BaseException as exc:  # the runner itself is going (cancelled, interpreter exit): no hangs
            _fail(batch + self._waiting, exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            self._waiting = []
            raise


def _fail(batch: Sequence[tuple[object, asyncio.Future]], exc: Exception) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)
