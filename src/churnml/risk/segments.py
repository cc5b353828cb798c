"""Retention segments and lifecycle stages: the vocabulary every retention team already uses.

Pure functions of the scored customers' features, so the list, the report and the service agree:

- **segment** (first rule that applies): ``cancelled_past_due`` (no active subscription any more, or a
  failed payment within ``past_due_days`` and no successful one since), ``new`` (tenure below
  ``new_days``: still onboarding), ``inactive`` (no activity for ``inactive_days`` or ever),
  ``slipping_away`` (no activity for ``slipping_days``), else ``active``;
- **lifecycle stage** from tenure, with the feature catalogue's stages (onboarding < 30 d, early < 90 d,
  established < 365 d, mature).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.config import SegmentConfig
from churnml.features.catalogue import LIFECYCLE_STAGES

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


def past_due(frame: pd.DataFrame, days: int) -> np.ndarray:
    """A failed payment in the last ``days`` days, and no successful payment after it."""
    failed = _column(frame, "days_since_last_failed_payment")
    paid = _column(frame, "days_since_last_payment")
    recent = failed <= days
    return recent & (np.isnan(paid) | (paid > failed))


def cancelled(frame: pd.DataFrame) -> np.ndarray:
    """Customers with no active subscription (still scored under the inactivity label definition)."""
    active = _column(frame, "has_active_subscription")
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


def lifecycle_stage(tenure_days: np.ndarray) -> np.ndarray:
    """Lifecycle stage name per customer from tenure in days (missing tenure: None)."""
    tenure = np.asarray(tenure_days, dtype=float)
    stage = np.full(len(tenure), None, dtype=object)
    for name, limit in reversed(LIFECYCLE_STAGES):
        stage[~np.isnan(tenure) & ((tenure < limit) if limit is not None else True)] = name
    return stage


def segments_of(
    frame: pd.DataFrame,
    tenure_days: np.ndarray,
    config: SegmentConfig,
    activity: str | None,
) -> pd.DataFrame:
    """``segment`` and ``lifecycle_stage`` columns for scored customers (their feature frame)."""
    return pd.DataFrame(
        {
            "segment": segment(
                tenure_days,
                _column(frame, activity),
                past_due(frame, config.past_due_days),
                cancelled(frame),
                config,
            ),
            "lifecycle_stage": lifecycle_stage(tenure_days),
        },
        index=frame.index,
    )
