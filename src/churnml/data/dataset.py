"""The in-memory dataset every stage works on: validated contract tables plus the end of the data."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

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
        digest = hashlib.sha256(str(self.end).encode())
        for name in sorted(self.tables):
            frame = self.tables[name]
            digest.update(name.encode())
            digest.update(",".join(map(str, frame.columns)).encode())
            digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
        return digest.hexdigest()[:16]

    def subset(self, customer_ids) -> Dataset:
        """The same dataset restricted to some customers (a partition for distributed builds)."""
        keep = pd.Index(customer_ids)
        tables = {
            name: frame.loc[frame["customer_id"].isin(keep)].reset_index(drop=True)
            for name, frame in self.tables.items()
        }
        return Dataset(tables=tables, end=self.end, warnings=self.warnings)
