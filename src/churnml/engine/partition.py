"""Customer partitions: every table's rows of a customer land in the same partition.

Why a hash of the id's text: the partition of a customer must not depend on row order, on which process
computes it or on which other customers exist, so that a partition built from files, from a database or
from another partition holds the same customers. pandas' ``hash_array`` is SipHash with a fixed key:
the same id gives the same partition in every process and every run.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np
import pandas as pd

from churnml.data.dataset import Dataset


def partition_of(customer_ids: Iterable[object], partitions: int) -> np.ndarray:
    """Partition number (0 .. partitions - 1) of each customer id, from a stable hash of its text."""
    codes, ids = pd.factorize(pd.Series(customer_ids).astype("str"))  # hash each distinct id once
    hashes = pd.util.hash_array(np.asarray(ids.to_numpy(dtype=object, na_value=""), dtype=object))
    part = (hashes % np.uint64(partitions)).astype(np.int64)
    return part[codes] if len(part) else np.zeros(len(codes), np.int64)


def partition_count(customers: int, workers: int, partitions: int | None, per_partition: int) -> int:
    """Partitions to use: as configured, else enough for ``per_partition`` customers, at least one per worker."""
    if partitions is not None:
        return partitions
    return max(workers, math.ceil(customers / per_partition), 1)


def _layout(customer_ids: pd.Series, partitions: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows grouped by partition (stable: original order within one) and each partition's bounds."""
    part = partition_of(customer_ids, partitions)
    order = np.argsort(part, kind="stable")
    return order, np.searchsorted(part[order], np.arange(partitions + 1))


def split_frame(frame: pd.DataFrame, partitions: int) -> list[pd.DataFrame]:
    """``frame`` (with a customer_id column) split by customer partition, each in its original row order."""
    order, bounds = _layout(frame["customer_id"], partitions)
    return [frame.iloc[order[bounds[k] : bounds[k + 1]]].reset_index(drop=True) for k in range(partitions)]


def iter_partitions(dataset: Dataset, partitions: int) -> Iterator[Dataset]:
    """The dataset as ``partitions`` datasets of disjoint customers, one at a time (so a caller sending
    each elsewhere holds one copy at most). Each holds all tables' rows of its customers, in their
    original order (a table may be empty), and the whole dataset's end. Empty partitions are kept:
    partition k is always the same customers."""
    layout = {name: _layout(frame["customer_id"], partitions) for name, frame in dataset.tables.items()}
    for k in range(partitions):
        tables = {}
        for name, frame in dataset.tables.items():
            order, bounds = layout[name]
            tables[name] = frame.iloc[order[bounds[k] : bounds[k + 1]]].reset_index(drop=True)
        yield Dataset(tables=tables, end=dataset.end, warnings=dataset.warnings)


def split_dataset(dataset: Dataset, partitions: int) -> list[Dataset]:
    """All partitions of :func:`iter_partitions` at once."""
    return list(iter_partitions(dataset, partitions))
