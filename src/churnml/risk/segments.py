"""Retention segments and lifecycle stages: the vocabulary every retention team already uses.

Pure functions of the scored customers' features, so the list, the report and the service agree:

- **segment** (first rule that applies): ``cancelled_past_due`` (no active subscription any more, or a
  failed payment within ``past_due_days`` and no successful one since), ``new`` (tenure below
  ``new_days``: still onboarding), ``inactive`` (no activity for ``inactive_days`` or ever),
  ``slipping_away`` (no activity for ``slipping_days``), else ``active``;
- **lifecycle stage** from tenure: the feature catalogue's ``lifecycle_stage`` (onboarding < 30 d,
  early < 90 d, established < 365 d, mature).

The features behind the rules are asked of the model's catalogue specs by what they compute, never by
name: data without transactions or subscriptions simply has no past-due or cancelled customers.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from churnml.config import SegmentConfig
from churnml.features.catalogue import FeatureSpec, find_feature, lifecycle_stage

# What the rules read, as catalogue queries (FeatureSpec fields).
FAILED_PAYMENT_RECENCY = {"aggregate": "days_since_last", "table": "transactions", "row_filter": "failed"}
PAYMENT_RECENCY = {"aggregate": "days_since_last", "table": "transactions", "row_filter": "paid"}
ACTIVE_SUBSCRIPTION = {"aggregate": "active", "table": "subscriptions"}

SEGMENTS: dict[str, str] = {
    "cancelled_past_due": "Recently cancelled / past due",
    "new": "New (onboarding)",
    "inactive": "Inactive",
    "slipping_away": "Slipping away",
    "active": "Active",
}


def _column(frame: pd.DataFrame, name: str | None) -> np.ndarray:
    """A float column, or all-missing when the model has no such feature."""
    if name is None or name not in frame.columns:
        return np.full(len(frame), np.nan)
    return pd.to_numeric(frame[name], errors="coerce").to_numpy(dtype=float, na_value=np.nan)


def past_due(frame: pd.DataFrame, specs: Sequence[FeatureSpec], days: int) -> np.ndarray:
    """A failed payment in the last ``days`` days, and no successful payment after it."""
    failed = _column(frame, find_feature(specs, **FAILED_PAYMENT_RECENCY))
    paid = _column(frame, find_feature(specs, **PAYMENT_RECENCY))
    recent = failed <= days
    return recent & (np.isnan(paid) | (paid > failed))


def cancelled(frame: pd.DataFrame, specs: Sequence[FeatureSpec]) -> np.ndarray:
    """Customers with no active subscription (still scored under the inactivity label definition)."""
    active = _column(frame, find_feature(specs, **ACTIVE_SUBSCRIPTION))
    return active == 0


def segment(
    tenure_days: np.ndarray,
    days_since_activity: np.ndarray,
    is_past_due: np.ndarray,
    is_cancelled: np.ndarray,
    config: SegmentConfig,
) -> np.ndarray:
    """Segment name per customer (see the module doc for the rules and their order)."""
    tenure = np.asarray(tenure_days, dtype=float)
    quiet = np.asarray(days_since_activity, dtype=float)
    never = np.isnan(quiet)
    conditions = [
        np.asarray(is_cancelled, bool) | np.asarray(is_past_due, bool),
        tenure < config.new_days,
        never | (quiet >= config.inactive_days),
        quiet >= config.slipping_days,
    ]
    return np.select(conditions, list(SEGMENTS)[:4], default="active").astype(object)


def segments_of(
    frame: pd.DataFrame,
    specs: Sequence[FeatureSpec],
    tenure_days: np.ndarray,
    config: SegmentConfig,
    activity: str | None,
) -> pd.DataFrame:
    """``segment`` and ``lifecycle_stage`` columns for scored customers (their feature frame and the
    model's specs); ``activity`` is the days-since-last-activity feature."""
    return pd.DataFrame(
        {
            "segment": segment(
                tenure_days,
                _column(frame, activity),
                past_due(frame, specs, config.past_due_days),
                cancelled(frame, specs),
                config,
            ),
            "lifecycle_stage": lifecycle_stage(tenure_days),
        },
        index=frame.index,
    )
