"""Where the data steps run: in this process (``local``) or on a Dask cluster (``dask``), with the same
steps and the same results.

A step is a plain function of one part (a customer partition's ``Dataset``, or a frame of rows) plus
shared arguments computed once on the whole data. An engine splits the data by customer
(``churnml.engine.partition``), runs the step on every part and returns the results in partition order;
the caller puts them back in its canonical row order. The local engine has one part, the whole
dataset, so the local path is exactly the single-process code. (Not to be confused with
``churnml.features.engine``, which computes feature values inside one part.)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Protocol, TypeVar

import pandas as pd

from churnml.config import EngineConfig
from churnml.data.dataset import Dataset

__all__ = ["Engine", "LocalEngine", "concat_in_order", "open_engine"]

T = TypeVar("T")
log = logging.getLogger(__name__)


class Engine(Protocol):
    kind: str
    threads: int  # threads a step may use (XGBoost, SHAP)

    def partitions(self, customers: int) -> int:
        """How many customer partitions a dataset of this many customers is split into."""
        ...

    def split(self, dataset: Dataset) -> Iterator[Dataset]:
        """The dataset as customer partitions (one for the local engine)."""
        ...

    def map(self, step: Callable[..., T], parts: Iterable[Any], *shared: Any, name: str = "step") -> list[T]:
        """``[step(part, *shared) for part in parts]``, wherever the engine runs them."""
        ...

    def row_parts(self, frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
        """Contiguous pieces of ``frame`` of at most ``rows`` rows to map over (row-wise steps: SHAP)."""
        ...

    def describe(self) -> str: ...


class LocalEngine:
    """Everything in this process, the whole dataset as one part."""

    kind = "local"

    def __init__(self, threads: int = 2) -> None:
        self.threads = threads

    def partitions(self, customers: int) -> int:
        return 1

    def split(self, dataset: Dataset) -> Iterator[Dataset]:
        yield dataset

    def map(self, step: Callable[..., T], parts: Iterable[Any], *shared: Any, name: str = "step") -> list[T]:
        return [step(part, *shared) for part in parts]

    def row_parts(self, frame: pd.DataFrame, rows: int) -> list[pd.DataFrame]:
        return [frame]  # the step batches on its own

    def describe(self) -> str:
        return "engine: local (one process)"


def concat_in_order(parts: Sequence[pd.DataFrame], by: list[str]) -> pd.DataFrame:
    """Partition results as one frame in the order of ``by`` (unique keys: the order is total, whatever
    the partitioning); a single part is returned as it is, already in that order."""
    if len(parts) == 1:
        return parts[0]
    frame = pd.concat(parts, ignore_index=True)
    return frame.sort_values(by, kind="stable").reset_index(drop=True)


@contextmanager
def open_engine(
    config: EngineConfig, threads: int = 2, announce: Callable[[str], None] | None = None
) -> Iterator[Engine]:
    """The configured engine for the duration of a run; a LocalCluster started here is closed after it.
    ``announce`` receives, for Dask, one line saying where work runs and the dashboard's address."""
    if config.kind == "local":
        engine = LocalEngine(threads)
        log.info(engine.describe())
        yield engine
        return
    from churnml.engine.cluster import dask_engine  # Dask is an optional extra

    with dask_engine(config) as dask:
        (announce or log.info)(dask.describe())
        yield dask
        if log.isEnabledFor(logging.INFO):
            try:
                log.info(dask.describe_memory())
            except Exception as exc:
                log.info("workers' peak memory not known: %s", exc)
