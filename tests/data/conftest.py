"""Small hand-made contract tables: a few customers with a little of every kind of activity.

Each fixture returns a fresh frame, so a test may break one without affecting another.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pytest


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "signup_at": ["2024-01-01", "2024-01-15", "2024-02-01 09:30:00"],
            "plan": ["basic", "pro", "basic"],
            "mrr": [20.0, 80.0, 20.0],
            "seats": [1, 5, 2],  # an extra static attribute: kept
        }
    )


@pytest.fixture
def events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c2", "c1", "c1", "c3", "c1"],
            "timestamp": [
                "2024-03-01 10:00:00",
                "2024-03-02 08:00:00",
                "2024-02-01 12:00:00",
                "2024-03-05 16:00:00",
                "2024-02-01 12:00:00",
            ],
            "event_type": ["login", "export", "login", "login", "report"],
            "value": [1.0, 3.0, None, 1.0, 2.0],
        }
    )


@pytest.fixture
def subscriptions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "start_at": ["2024-01-01", "2024-01-15", "2024-02-01"],
            "end_at": ["2024-02-01", None, None],
            "plan": ["basic", "pro", "basic"],
            "mrr": [20.0, 80.0, 20.0],
        }
    )


@pytest.fixture
def transactions() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c2", "c3"],
            "timestamp": ["2024-01-01", "2024-01-15", "2024-02-15", "2024-02-01"],
            "amount": [20.0, 80.0, 80.0, 20.0],
            "status": ["paid", "paid", "failed", "paid"],
        }
    )


@pytest.fixture
def tickets() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2"],
            "opened_at": ["2024-01-20 09:00", "2024-02-20 10:00"],
            "closed_at": ["2024-01-21 09:00", None],
            "priority": ["high", "low"],
            "satisfaction": [4.0, None],
            "category": ["billing", "bug"],
        }
    )


@pytest.fixture
def messages() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "sent_at": ["2024-02-01 08:00", "2024-02-01 08:00", "2024-03-01 08:00"],
            "opened_at": ["2024-02-01 09:00", None, None],
            "clicked_at": ["2024-02-01 09:05", None, None],
            "campaign": ["winback", "winback", "newsletter"],
        }
    )


@pytest.fixture
def tables(customers, events, subscriptions, transactions, tickets, messages) -> dict[str, pd.DataFrame]:
    """Every contract table, as a user would hand them over (string timestamps, contract names)."""
    return {
        "customers": customers,
        "events": events,
        "subscriptions": subscriptions,
        "transactions": transactions,
        "tickets": tickets,
        "messages": messages,
    }


@pytest.fixture
def write_tables(tmp_path: Path) -> Callable[..., Path]:
    """Write frames as ``<dir>/<name>.<ext>`` (parquet, csv, csv.gz, tsv) and return the directory."""

    def write(frames: dict[str, pd.DataFrame], ext: str = "csv", subdir: str = "data") -> Path:
        directory = tmp_path / subdir
        directory.mkdir(parents=True, exist_ok=True)
        for name, frame in frames.items():
            path = directory / f"{name}.{ext}"
            if ext == "parquet":
                frame.to_parquet(path, index=False)
            else:
                frame.to_csv(path, index=False, sep="\t" if ext == "tsv" else ",")
        return directory

    return write
