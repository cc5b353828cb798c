"""The Dask engine: a client of a running scheduler (``engine.scheduler``) or of a LocalCluster started
for the run, mapping steps over customer partitions.

Each partition is sent to one worker, chosen round robin, and its step runs there; shared arguments (the
feature specs, the cutoffs, a model) are sent once to every worker. Results come back in partition
order. Dask's own serialisation carries data between our processes; nothing is written to disk.
"""

from __future__ import annotations

import importlib.util
import itertools
import logging
import math
import resource
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from churnml.config import EngineConfig
from churnml.data.dataset import Dataset
from churnml.engine.partition import iter_partitions, partition_count
from churnml.errors import ChurnmlError

T = TypeVar("T")


class DaskEngine:
    """Steps run on the workers of ``client``; ``partitions`` None = from the customer count."""

    kind = "dask"

    def __init__(self, client: Any, config: EngineConfig) -> None:
        self.client = client
        self.config = config
        self.workers = sorted(client.scheduler_info(n_workers=-1)["workers"])
        if not self.workers:
            raise ChurnmlError(f"engine.scheduler {config.scheduler}: the cluster has no workers")
        threads = [w["nthreads"] for w in client.scheduler_info(n_workers=-1)["workers"].values()]
        self.threads = max(1, min(threads))

    def partitions(self, customers: int) -> int:
        return partition_count(
            customers, len(self.workers), self.config.partitions, self.config.customers_per_partition
        )

    def split(self, dataset: Dataset) -> Iterator[Dataset]:
        return iter_partitions(dataset, self.partitions(len(dataset.customers)))

    def map(self, step: Callable[..., T], parts: Iterable[Any], *shared: Any, name: str = "step") -> list[T]:
        """``[step(part, *shared) for part in parts]`` on the workers; a part may be a result that
        :meth:`keep` left on a worker, and the step then runs where it lies."""
        futures = self._submit(step, parts, shared, name)
        # Each result comes here as soon as it is done and is let go on the worker: a worker holds the
        # partitions it is working on, not every result it has made (40 training-set parts of 25,000
        # customers each pushed 3 GiB workers past their limit at 1M customers).
        position = {future.key: k for k, future in enumerate(futures)}
        results: list[Any] = [None] * len(futures)
        for future in self._finished(futures, name):
            results[position[future.key]] = future.result()
            future.release()
        del futures
        return results

    def keep(
        self, step: Callable[..., Any], parts: Iterable[Any], *shared: Any, name: str = "step"
    ) -> list[Any]:
        """:meth:`map`, but each result stays on the worker that made it: its future, in part order, for
        later steps (``map``/``keep`` take them as parts), gone when the last reference to it is. What
        leaves a training set out of core on the workers (``churnml.features.training_set``)."""
        futures = self._submit(step, parts, shared, name)
        for _ in self._finished(futures, name):
            pass
        return futures

    def _finished(self, futures: list[Any], name: str) -> Iterator[Any]:
        """Each future as it finishes, with a progress bar. The first that failed raises its step's error
        here, after the others are cancelled (those not started never run): a failed step does not keep
        the cluster busy, nor write after its caller gave up."""
        from distributed import as_completed

        with progress_bar(name, len(futures), self.config.progress) as update:
            try:
                for done, future in enumerate(as_completed(futures), 1):
                    if future.status == "error":
                        future.result()
                    yield future
                    update(done)
            except BaseException:
                self.client.cancel(futures)
                raise

    def _submit(
        self, step: Callable[..., Any], parts: Iterable[Any], shared: tuple[Any, ...], name: str
    ) -> list[Any]:
        from distributed import Future

        token = uuid.uuid4().hex[:8]
        client = self.client
        # Once to every worker, not once per task: a model or the specs are the same for every part.
        common = [client.scatter([value], broadcast=True, hash=False)[0] for value in shared]
        futures = []
        for k, part in enumerate(parts):  # one part in memory here at a time when ``parts`` is lazy
            key = f"{name}-{k}-{token}"
            if isinstance(part, Future):  # a kept result: run where it lies (no copy between workers)
                where = list(client.who_has([part]).get(part.key, ())) or None
                futures.append(client.submit(step, part, *common, key=key, workers=where, pure=False))
                continue
            worker = self.workers[k % len(self.workers)]
            data = client.scatter([part], workers=[worker], hash=False)[0]
            futures.append(client.submit(step, data, *common, key=key, workers=[worker], pure=False))
            del part, data
        return futures

    def row_parts(self, frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
        pieces = max(len(self.workers), math.ceil(len(frame) / max(rows, 1)))
        bounds = np.linspace(0, len(frame), pieces + 1).astype(int)
        return [frame.iloc[a:b] for a, b in itertools.pairwise(bounds) if b > a] or [frame]

    def worker_memory(self) -> dict[str, tuple[int, int | None]]:
        """Per worker: peak resident memory of its process so far and its memory limit, in bytes."""
        peaks = self.client.run(peak_memory)
        info = self.client.scheduler_info(n_workers=-1)["workers"]
        return {address: (peaks[address], info[address].get("memory_limit") or None) for address in peaks}

    def describe_memory(self) -> str:
        """The workers' peak memory against their limits, one line (``churnml -v`` logs it after a run):
        how close a run came to the limit, and so what the next size needs."""
        gib = 2.0**30
        peaks = [
            f"{peak / gib:.2f}" + (f" of {limit / gib:.2f}" if limit else "")
            for peak, limit in sorted(self.worker_memory().values(), key=lambda pair: pair[0])
        ]
        return f"workers' peak memory (GiB, since each worker started): {', '.join(peaks)}"

    def describe(self) -> str:
        where = self.config.scheduler or "LocalCluster"
        parts = self.config.partitions or (
            f"one per {self.config.customers_per_partition:,} customers, at least one per worker"
        )
        link = dashboard_link(self.client)
        dashboard = f"; dashboard {link}" if link else ""
        if self.config.scheduler is None and self.config.dashboard and not has_dashboard():
            # Without bokeh the scheduler's HTTP server still answers, but its pages do not exist.
            dashboard = "; no dashboard (pip install bokeh)"
        elif self.config.scheduler is not None and not link:
            dashboard = "; the scheduler serves no dashboard"
        return (
            f"engine: dask on {where}, {len(self.workers)} workers x {self.threads} threads, "
            f"partitions: {parts}{dashboard}"
        )


@contextmanager
def progress_bar(description: str, total: int | None, show: bool) -> Iterator[Callable[[int], None]]:
    """A bar on the console while a step waits on the cluster; yields ``update(done)``. Rich's, as the
    CLI's other output: on a terminal it redraws in place, elsewhere (a CI log) it prints its last state
    once. ``show`` False: nothing (tests, or output parsed by a program)."""
    if not show:
        yield lambda done: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns) as bar:
        task = bar.add_task(description, total=total)
        yield lambda done: bar.update(task, completed=done)


@contextmanager
def _quiet(name: str) -> Iterator[None]:
    """Dask's INFO lines (every worker start and stop) only when churnml itself logs at INFO (-v)."""
    logger = logging.getLogger(name)
    before = logger.level
    if not logging.getLogger().isEnabledFor(logging.INFO):
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(before)


def dashboard_link(client: Any) -> str | None:
    """The scheduler's dashboard address, None when it serves none (a client of a running scheduler
    raises KeyError then, a LocalCluster's gives an empty string)."""
    try:
        return client.dashboard_link or None
    except KeyError:
        return None


def has_dashboard() -> bool:
    """Whether this process can serve the Dask dashboard (it needs bokeh, which dask[distributed] lacks)."""
    return importlib.util.find_spec("bokeh") is not None


def peak_memory() -> int:
    """This process's peak resident memory in bytes: VmHWM, the high-water mark of its own memory map.

    Not ``getrusage``'s ru_maxrss: Linux carries that across fork and exec, so a LocalCluster's worker
    would report the client's peak from the moment it was spawned."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: the best there is


@contextmanager
def dask_engine(config: EngineConfig) -> Iterator[DaskEngine]:
    """Connect to ``config.scheduler``, or start a LocalCluster of worker processes and close it after."""
    try:
        from distributed import Client, LocalCluster
    except ImportError as exc:
        raise ChurnmlError(
            "engine.kind=dask needs Dask: pip install 'churnml[dask]' (dask[distributed])"
        ) from exc
    with ExitStack() as stack:
        stack.enter_context(_quiet("distributed"))
        if config.scheduler is not None:
            try:
                client = stack.enter_context(Client(config.scheduler))
            except (OSError, TimeoutError, ValueError) as exc:
                raise ChurnmlError(f"engine.scheduler {config.scheduler}: cannot connect: {exc}") from exc
        else:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=config.workers,
                    threads_per_worker=config.threads_per_worker,
                    processes=True,
                    memory_limit=config.memory_limit or 0,
                    dashboard_address=":0",  # any free port: several clusters may share a machine
                    scheduler_kwargs={"dashboard": config.dashboard and has_dashboard()},
                )
            )
            client = stack.enter_context(Client(cluster))
        yield DaskEngine(client, config)
