"""Greedy micro-batching of concurrent requests within one worker.

BentoML's adaptive batching takes exactly one batched argument, and ``/score_history`` has four. Here a
request that finds the worker idle runs at once, alone (no added wait); requests that arrive while a batch
runs wait for it and then run together as the next batch. Under load the batches grow by themselves, and
a fixed cost per call (the contract checks and feature builders on one customer's history) is paid once
per batch instead of once per request.
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
    raised by ``work`` goes to every request of its batch; a request cancelled while it waits (its
    client left) is skipped when answers are handed out.
    """

    def __init__(
        self,
        work: Callable[[list[Item]], Sequence[Answer]],
        max_size: int,
        size: Callable[[Item], int] = lambda _: 1,
    ) -> None:
        self.work, self.max_size, self.size = work, max_size, size
        self.batches = 0  # how many calls of ``work`` so far (for tests and metrics)
        self._waiting: list[tuple[Item, asyncio.Future[Answer]]] = []
        self._runner: asyncio.Task[None] | None = None

    async def __call__(self, item: Item) -> Answer:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Answer] = loop.create_future()
        self._waiting.append((item, future))
        if self._runner is None or self._runner.done():
            self._runner = loop.create_task(self._run())
        return await future

    def _next_batch(self) -> list[tuple[Item, asyncio.Future[Answer]]]:
        taken, total = 0, 0
        for item, future in self._waiting:
            if future.cancelled():
                taken += 1
                continue
            total += self.size(item)
            if total > self.max_size and taken > 0:
                break
            taken += 1
        batch, self._waiting = self._waiting[:taken], self._waiting[taken:]
        return [(item, future) for item, future in batch if not future.cancelled()]

    async def _run(self) -> None:
        while self._waiting:
            batch = self._next_batch()
            if not batch:
                continue
            self.batches += 1
            try:
                answers = await anyio.to_thread.run_sync(self.work, [item for item, _ in batch])
            except Exception as exc:  # each request of the batch answers with it
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            for (_, future), answer in zip(batch, answers, strict=True):
                if not future.done():
                    future.set_result(answer)
