"""The out-of-time split: rolling-origin folds, purged label windows, the refit rows, clear errors."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.config import SplitConfig
from churnml.errors import ChurnmlError
from churnml.training.split import (
    cross_validation_rows,
    customer_fraction,
    fully_labeled_cutoffs,
    in_sample,
    label_window_days,
    sample_share,
    sampled_split,
    split_by_time,
)

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
    split = split_by_time(frame_for(MONTHLY), SUBSCRIPTION, SplitConfig(folds=1))
    b = split.boundaries
    # 2025-12 is unlabeled; 11 is the test; 10's 37-day window reaches past 11-01, so validation is 09,
    # and 08 (window ends 09-07) is purged from its fold.
    assert b["test_cutoff"] == "2025-11-01"
    assert b["validation_cutoffs"] == ["2025-09-01"]
    assert b["folds"] == [
        {"train_cutoffs": [f"2025-{m:02d}-01" for m in range(1, 8)], "validation_cutoff": "2025-09-01"}
    ]
    assert b["train_cutoffs"] == [f"2025-{m:02d}-01" for m in range(1, 10)]  # development: all before 10
    assert b["purged_cutoffs"] == ["2025-10-01"]
    assert b["labeled_cutoffs"] == MONTHLY[:11]
    assert b["label_window_days"] == 37
    assert len(split.test) == 40 and split.test["label"].notna().all()
    assert len(split.labeled) == 11 * 40 and split.fit_rows("all") is split.labeled
    assert split.fit_rows("development") is split.development


def test_rolling_origin_folds_each_train_on_what_their_validation_cutoff_could_see() -> None:
    split = split_by_time(frame_for(MONTHLY), SUBSCRIPTION, SplitConfig(folds=3))
    b = split.boundaries
    assert b["validation_cutoffs"] == ["2025-07-01", "2025-08-01", "2025-09-01"]
    window = pd.Timedelta(days=37)
    for fold, validation in zip(split.folds, b["validation_cutoffs"], strict=True):
        assert (fold.validation["cutoff"] == pd.Timestamp(validation)).all()
        assert (fold.train["cutoff"] + window <= pd.Timestamp(validation)).all()
    # Each later fold trains on one more month: 01..05, 01..06, 01..07.
    assert [f.train["cutoff"].nunique() for f in split.folds] == [5, 6, 7]
    assert len(split.out_of_fold) == 3 * 40
    assert (
        list(split.out_of_fold["cutoff"].drop_duplicates().dt.strftime("%Y-%m-%d")) == b["validation_cutoffs"]
    )
    assert b["validation_rows"] == 120 and b["validation_churners"] == int(split.out_of_fold["label"].sum())


def test_segments_are_ordered_and_labels_never_reach_the_test() -> None:
    weekly = [d.date().isoformat() for d in pd.date_range("2025-01-06", periods=30, freq="W-MON")]
    split = split_by_time(frame_for(weekly, unlabeled=5), SUBSCRIPTION, SplitConfig(folds=2))
    window = pd.Timedelta(days=37)
    test_cutoff = split.test["cutoff"].iloc[0]
    for part in (split.development, *(f.train for f in split.folds), split.out_of_fold):
        assert (part["cutoff"] + window <= test_cutoff).all()
        assert part["label"].notna().all()
    assert split.labeled["cutoff"].max() == test_cutoff
    assert split.labeled["label"].notna().all()


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
    split = split_by_time(frame_for(MONTHLY), SUBSCRIPTION, SplitConfig(train_cutoffs=2, folds=1))
    assert split.boundaries["folds"][0]["train_cutoffs"] == ["2025-06-01", "2025-07-01"]
    assert split.boundaries["train_cutoffs"] == ["2025-08-01", "2025-09-01"]
    assert split.boundaries["labeled_cutoffs"] == ["2025-10-01", "2025-11-01"]


def test_a_test_cutoff_without_churners_is_refused() -> None:
    frame = frame_for(MONTHLY)
    frame.loc[frame["cutoff"] == "2025-11-01", "label"] = 0
    with pytest.raises(ChurnmlError, match=r"test cutoff 2025-11-01 .* does not hold both labels"):
        split_by_time(frame, SUBSCRIPTION, SplitConfig())


def test_partially_labeled_cutoff_is_not_a_test_cutoff() -> None:
    frame = frame_for(MONTHLY)
    frame.loc[(frame["cutoff"] == "2025-11-01") & (frame["customer_id"] == "c000"), "label"] = pd.NA
    assert pd.Timestamp("2025-11-01") not in fully_labeled_cutoffs(frame)
    assert split_by_time(frame, SUBSCRIPTION, SplitConfig()).boundaries["test_cutoff"] == "2025-10-01"


@pytest.mark.parametrize(
    ("config", "cutoffs", "message"),
    [
        (SplitConfig(test_cutoff=dt.date(2025, 12, 1)), MONTHLY, "not a fully labeled cutoff"),
        (SplitConfig(), MONTHLY[:4], r"split.folds=3 needs 4 labeled cutoffs .* found 1 \(2025-01-01\)"),
        (SplitConfig(folds=9), MONTHLY, "split.folds=9 needs 10 labeled cutoffs"),
        (SplitConfig(folds=8), MONTHLY, "first fold's validation cutoff 2025-02-01 has no earlier cutoff"),
    ],
)
def test_impossible_splits_say_why(config: SplitConfig, cutoffs: list[str], message: str) -> None:
    with pytest.raises(ChurnmlError, match=message):
        split_by_time(frame_for(cutoffs), SUBSCRIPTION, config)


@settings(max_examples=40, deadline=None)
@given(
    n_cutoffs=st.integers(4, 20),
    step_days=st.integers(1, 40),
    horizon=st.integers(1, 60),
    grace=st.integers(0, 10),
    folds=st.integers(1, 3),
)
def test_no_label_window_crosses_a_boundary(
    n_cutoffs: int, step_days: int, horizon: int, grace: int, folds: int
) -> None:
    cutoffs = [
        d.date().isoformat() for d in pd.date_range("2025-01-01", periods=n_cutoffs, freq=f"{step_days}D")
    ]
    labels = {"horizon_days": horizon, "grace_days": grace}
    try:
        split = split_by_time(frame_for(cutoffs, customers=30), labels, SplitConfig(folds=folds))
    except ChurnmlError:
        return  # too few cutoffs for this window: refused, never a leaky split
    window = pd.Timedelta(days=horizon + grace)
    test_cutoff = split.test["cutoff"].iloc[0]
    assert len(split.folds) == folds
    for fold in split.folds:
        validation = fold.validation["cutoff"].iloc[0]
        assert (fold.validation["cutoff"] == validation).all()
        assert (fold.train["cutoff"] + window <= validation).all()
    assert (split.development["cutoff"] + window <= test_cutoff).all()
    assert split.out_of_fold["cutoff"].isin(split.development["cutoff"]).all()


def test_a_sampled_split_cross_validates_some_customers_and_tests_them_all() -> None:
    """split.cv_customers: the folds, development and labeled rows are the sampled customers' (each with
    every row of theirs), the test is every customer, the boundaries are the whole set's; and any part of
    the data (a worker's partition) draws the same customers without seeing the rest."""
    frame = frame_for(MONTHLY, customers=400, seed=3)
    config = SplitConfig(folds=2)
    full = split_by_time(frame, SUBSCRIPTION, config)
    share = sample_share(frame["customer_id"].nunique(), 100)
    assert share == 0.25 and sample_share(400, 400) == 1.0 and sample_share(400, None) == 1.0
    test_cutoff = pd.Timestamp(full.boundaries["test_cutoff"])
    rows = cross_validation_rows(frame, share, seed=7, test_cutoff=test_cutoff)
    halves = [frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :]]
    by_part = pd.concat([cross_validation_rows(h, share, 7, test_cutoff) for h in halves], ignore_index=True)
    pd.testing.assert_frame_equal(by_part, rows)

    split = sampled_split(rows, full.boundaries, SUBSCRIPTION, config, share, seed=7)
    sampled = set(rows.loc[rows["cutoff"] != test_cutoff, "customer_id"])
    assert 70 <= len(sampled) <= 130  # about 100 of 400
    for part in [split.development, split.labeled, *(f.train for f in split.folds), split.out_of_fold]:
        assert set(part["customer_id"]) <= sampled
        per_customer = part.groupby("customer_id")["cutoff"].nunique()
        assert (per_customer == part["cutoff"].nunique()).all()  # every row of a sampled customer
    pd.testing.assert_frame_equal(split.test, full.test)
    assert split.boundaries == {
        **full.boundaries,
        "validation_rows": len(split.out_of_fold),
        "validation_churners": int(split.out_of_fold["label"].sum()),
        "cross_validation": {"share": 0.25, "customers": len(sampled), "rows": len(split.labeled)},
    }
    assert set(split.labeled["cutoff"]) == set(full.labeled["cutoff"])
    chosen = full.development["customer_id"].isin(sampled)
    pd.testing.assert_frame_equal(split.development, full.development.loc[chosen].reset_index(drop=True))
    others = [customer_fraction(frame["customer_id"], s) < share for s in (7, 8)]  # seed, seed + 1 draws
    mine = in_sample(frame["customer_id"], share, 7)
    assert all((mine != other).any() for other in others)
    # A sample that misses a cutoff the whole set's folds use is refused, not silently re-split.
    gap = rows.loc[rows["cutoff"] != pd.Timestamp(full.boundaries["validation_cutoffs"][0])]
    with pytest.raises(ChurnmlError, match=r"split\.cv_customers=100\) is too small"):
        sampled_split(
            gap, full.boundaries, SUBSCRIPTION, config.model_copy(update={"cv_customers": 100}), share, 7
        )
    other = sampled_split(
        cross_validation_rows(frame, share, 8, test_cutoff),
        full.boundaries,
        SUBSCRIPTION,
        config,
        share,
        seed=8,
    )
    assert set(other.labeled["customer_id"]) != sampled  # the seed draws them
