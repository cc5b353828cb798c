"""The in-memory dataset every stage works on: validated contract tables plus the end of the data."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from churnml.data.row_hash import row_hashes
from churnml.errors import DataWarning

FINGERPRINT_CHUNK_ROWS = 1 << 20  # rows hashed at a time: temporaries of about 8 MB per array


@dataclass(frozen=True)
class Dataset:
    """Validated tables keyed by contract name, with contract column names.

    Invariants guaranteed by ``churnml.data.load.load_dataset`` (and by the simulator):
    - ``customers`` is present with unique ``customer_id``; every activity row's customer exists;
    - timestamp columns are tz-naive ``datetime64[ns]`` (missing = NaT), numeric columns are float64,
      other optional columns are strings/categoricals as read;
    - ``end`` is the moment the data was extracted: no row's time column is after it.
    Tables are never modified in place by any stage.
    """

    tables: Mapping[str, pd.DataFrame]
    end: pd.Timestamp
    warnings: tuple[DataWarning, ...] = field(default=())

    def get(self, name: str) -> pd.DataFrame | None:
        return self.tables.get(name)

    @property
    def customers(self) -> pd.DataFrame:
        return self.tables["customers"]

    def fingerprint(self) -> str:
        """Content hash of all tables and the end date: identical data gives an identical string."""
        return combine_fingerprints(self.end, [self.fingerprint_parts()])

    def fingerprint_parts(
        self, rows_per_chunk: int = FINGERPRINT_CHUNK_ROWS
    ) -> dict[str, tuple[str, int, int]]:
        """Per table: its columns, its rows and the sum (modulo 2**64) of its rows' hashes. Sums of
        customer partitions add up to the whole data's, so workers that each hold one partition give
        the fingerprint of the whole (:func:`combine_fingerprints`) without it being in one place. A
        table's rows are in a canonical order (customer, time), so a sum loses nothing that matters.

        Hashed ``rows_per_chunk`` rows at a time (a row's hash is its own, the sum the same): the
        hashes' temporaries of 23 M events were 1.1 GB, held beside the feature build the fingerprint
        runs next to."""
        parts = {}
        for name, frame in self.tables.items():
            total = 0
            for start in range(0, len(frame), rows_per_chunk):
                chunk = frame.iloc[start : start + rows_per_chunk]
                chunk_sum = int(row_hashes(chunk).sum(dtype=np.uint64))  # pandas' hash_pandas_object
                total = (total + chunk_sum) % 2**64
            parts[name] = (",".join(map(str, frame.columns)), len(frame), total)
        return parts

    def subset(self, customer_ids) -> Dataset:
        """The same dataset restricted to some customers (a partition for distributed builds)."""
        keep = pd.Index(customer_ids)
        tables = {
            name: frame.loc[frame["customer_id"].isin(keep)].reset_index(drop=True)
            for name, frame in self.tables.items()
        }
        return Dataset(tables=tables, end=self.end, warnings=self.warnings)


def combine_fingerprints(end: pd.Timestamp, parts: Iterable[Mapping[str, tuple[str, int, int]]]) -> str:
    """The fingerprint of the data whose partitions have these :meth:`Dataset.fingerprint_parts`."""
    tables: dict[str, tuple[str, int, int]] = {}
    for part in parts:
        for name, (columns, rows, total) in part.items():
            _, before, sum_before = tables.get(name, (columns, 0, 0))
            tables[name] = (columns, before + rows, (sum_before + total) % 2**64)
    digest = hashlib.sha256(str(end).encode())
    for name in sorted(tables):
        columns, rows, total = tables[name]
        digest.update(f"{name}|{columns}|{rows}|{total}".encode())
    return digest.hexdigest()[:16]
