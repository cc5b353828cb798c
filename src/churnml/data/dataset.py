"""The in-memory dataset every stage works on: validated contract tables plus the end of the data."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from churnml.data.row_hash import row_hashes
from churnml.errors import DataWarning


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

    def fingerprint_parts(self) -> dict[str, tuple[str, int, int]]:
        """Per table: its columns, its rows and the sum (modulo 2**64) of its rows' hashes. Sums of
        customer partitions add up to the whole data's, so workers that each hold one partition give
        the fingerprint of the whole (:func:`combine_fingerprints`) without it being in one place. A
        table's rows are in a canonical order (customer, time), so a sum loses nothing that matters."""
        parts = {}
        for name, frame in self.tables.items():
            hashes = row_hashes(frame)  # pandas' hash_pandas_object(frame, index=False), in place
            parts[name] = (",".join(map(str, frame.columns)), len(frame), int(hashes.sum(dtype="uint64")))
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
