"""Request bodies from data churnml already holds: feature rows as ``/predict`` records, a customer's rows
of every table as a ``/score_history`` customer."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.contract import CUSTOMERS
from churnml.data.dataset import Dataset
from churnml.training.model import ChurnModel


def _json_value(value: Any) -> Any:
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    return value.item() if isinstance(value, np.generic) else value


def feature_records(model: ChurnModel, frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Feature rows (e.g. of a training set) as ``/predict`` records: missing -> null, categories as text."""
    out = []
    for row in frame.to_dict("records"):
        record: dict[str, Any] = {"customer_id": str(row["customer_id"])}
        for column in model.columns:
            value = _json_value(row[column.name])
            record[column.name] = (
                None if value is None else (str(value) if column.dtype == "category" else float(value))
            )
        out.append(record)
    return out


def customer_history(dataset: Dataset, customer_id: str) -> dict[str, Any]:
    """One customer's rows of every table as a ``/score_history`` customer (JSON-ready, ISO timestamps)."""

    def rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
        own = frame.loc[frame["customer_id"] == customer_id].drop(columns="customer_id")
        return [{k: _json_value(v) for k, v in row.items()} for row in own.to_dict("records")]

    customer = rows(dataset.customers)[0] | {"customer_id": customer_id}
    return {"customer": customer} | {
        name: rows(frame) for name, frame in dataset.tables.items() if name != CUSTOMERS.name
    }
