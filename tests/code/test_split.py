"""The out-of-time split: segment order, purged label windows, the calibration hold-out, clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.config import SplitConfig
from churnml.errors import ChurnmlError
from churnml.split import customer_fraction, fully_labeled_cutoffs, label_window_days, split_by_time

SUBSCRIPTION = {"definition": "subscription", "horizon_days": 30, "grace_days": 7}


def frame_for(cutoffs: list[str], customers: int = 40, unlabeled: int = 1, seed: int = 0) -> pd.DataFrame:
    """Every customer at every cutoff; the last ``unlabeled`` cutoffs have no label yet."""
    rng = np.random.default_rng(seed)
    stamps = pd.to_datetime(cutoffs)
    frame = pd.DataFrame(
        [(f"c{i:03d}", c) for c in stamps for i in range(customers)], columns=["customer_id", "cutoff"]
    )
    label = pd.array(rng.integers(0, 2, len(frame)), dtype="Int8")
    label[frame["cutoff"].isin(stamps[len(stamps) - unlabeled :]).to_numpy()] = pd.NA
    return frame.assign(label=label, x=rng.normal(size=len(frame)))


MONTHLY = [f"2025-{m:02d}-01" for m in range(1, 13)]


def test_monthly_cutoffs_purge_the_month_before_each_boundary() -> None:
    split = split_by_time(frame_for(MONTHLY), SUBSCRIPTION, SplitConfig(), seed=1)
    b = split.boundaries
    # 2025-12 is unlabeled; 11 is the test; 10's 37-day window reaches past 11-01, so validation is 09,
    # and 08 (window ends 09-07) is purged before validation.
    assert b["test_cutoff"] == "2025-11-01"
    assert b["validation_cutoffs"] == ["2025-09-01"]
    assert b["train_cutoffs"] == [f"2025-{m:02d}-01" for m in range(1, 8)]
    assert b["purged_cutoffs"] == ["2025-08-01", "2025-10-01"]
    assert b["label_window_days"] == 37
    assert len(split.test) == 40 and split.test["label"].notna().all()


def test_segments_are_ordered_and_labels_never_reach_the_next_segment() -> None:
    weekly = [d.date().isoformat() for d in pd.date_range("2025-01-06", periods=30, freq="W-MON")]
    split = split_by_time(
        frame_for(weekly, unlabeled=5), SUBSCRIPTION, SplitConfig(validation_cutoffs=2), seed=1
    )
    window = pd.Timedelta(days=37)
    test_cutoff = split.test["cutoff"].iloc[0]
    first_validation = pd.concat([split.validation, split.calibration])["cutoff"].min()
    assert (split.train["cutoff"] + window <= first_validation).all()
    for part in (split.train, split.validation, split.calibration):
        assert (part["cutoff"] + window <= test_cutoff).all()
        assert part["label"].notna().all()
    assert split.train["cutoff"].max() < first_validation <= split.calibration["cutoff"].max() < test_cutoff


def test_calibration_slice_is_a_stable_customer_hash() -> None:
    frame = frame_for(MONTHLY, customers=400)
    a = split_by_time(frame, SUBSCRIPTION, SplitConfig(calibration_fraction=0.3), seed=5)
    b = split_by_time(
        frame.sample(frac=1.0, random_state=0), SUBSCRIPTION, SplitConfig(calibration_fraction=0.3), seed=5
    )
    assert set(a.validation["customer_id"]).isdisjoint(a.calibration["customer_id"])
    assert set(a.calibration["customer_id"]) == set(b.calibration["customer_id"])
    assert 0.2 < len(a.calibration) / (len(a.calibration) + len(a.validation)) < 0.4


def test_customer_fraction_is_deterministic_and_seeded() -> None:
    ids = pd.Series([f"c{i}" for i in range(1000)])
    u = customer_fraction(ids, 1)
    assert np.array_equal(u, customer_fraction(ids, 1))
    assert not np.array_equal(u, customer_fraction(ids, 2))
    assert ((u >= 0) & (u < 1)).all() and 0.45 < u.mean() < 0.55


def test_inactivity_labels_have_no_grace() -> None:
    assert label_window_days({"horizon_days": 90, "grace_days": None}) == 90
    assert label_window_days(SUBSCRIPTION) == 37


def test_train_cutoffs_keeps_the_most_recent() -> None:
    split = split_by_time(frame_for(MONTHLY), SUBSCRIPTION, SplitConfig(train_cutoffs=2), seed=1)
    assert split.boundaries["train_cutoffs"] == ["2025-06-01", "2025-07-01"]


def test_partially_labeled_cutoff_is_not_a_test_cutoff() -> None:
    frame = frame_for(MONTHLY)
    frame.loc[(frame["cutoff"] == "2025-11-01") & (frame["customer_id"] == "c000"), "label"] = pd.NA
    assert pd.Timestamp("2025-11-01") not in fully_labeled_cutoffs(frame)
    assert split_by_time(frame, SUBSCRIPTION, SplitConfig(), seed=1).boundaries["test_cutoff"] == "2025-10-01"


@pytest.mark.parametrize(
    ("config", "cutoffs", "message"),
    [
        (SplitConfig(test_cutoff=dt.date(2025, 12, 1)), MONTHLY, "not a fully labeled cutoff"),
        (SplitConfig(), MONTHLY[:4], "need 2 labeled cutoffs"),
        (SplitConfig(validation_cutoffs=9), MONTHLY, "need 10 labeled cutoffs"),
        (SplitConfig(validation_cutoffs=8), MONTHLY, "no training cutoff"),
    ],
)
def test_impossible_splits_say_why(config: SplitConfig, cutoffs: list[str], message: str) -> None:
    with pytest.raises(ChurnmlError, match=message):
        split_by_time(frame_for(cutoffs), SUBSCRIPTION, config, seed=1)


@settings(max_examples=40, deadline=None)
@given(
    n_cutoffs=st.integers(4, 20),
    step_days=st.integers(1, 40),
    horizon=st.integers(1, 60),
    grace=st.integers(0, 10),
    validation=st.integers(1, 3),
)
def test_no_label_window_crosses_a_boundary(
    n_cutoffs: int, step_days: int, horizon: int, grace: int, validation: int
) -> None:
    cutoffs = [
        d.date().isoformat() for d in pd.date_range("2025-01-01", periods=n_cutoffs, freq=f"{step_days}D")
    ]
    labels = {"horizon_days": horizon, "grace_days": grace}
    try:
        split = split_by_time(
            frame_for(cutoffs, customers=30), labels, SplitConfig(validation_cutoffs=validation), seed=0
        )
    except ChurnmlError:
        return  # too few cutoffs for this window: refused, never a leaky split
    window = pd.Timedelta(days=horizon + grace)
    test_cutoff = split.test["cutoff"].iloc[0]
    held = pd.concat([split.validation, split.calibration])
    assert (split.train["cutoff"] + window <= held["cutoff"].min()).all()
    assert (held["cutoff"] + window <= test_cutoff).all()
    assert held["cutoff"].nunique() == validation
