"""Hand-computed label times for both churn definitions."""

from __future__ import annotations

import pandas as pd
import pytest

from churnml.config import CutoffSchedule, LabelConfig
from churnml.data.dataset import Dataset
from churnml.errors import ChurnmlError
from churnml.features.labels import cutoff_dates, make_label_times, subscription_spells

T = pd.Timestamp
NaT = pd.NaT


def _dataset(tables: dict[str, pd.DataFrame], end: str) -> Dataset:
    return Dataset(tables=tables, end=T(end))


def _customers(ids_signups: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": list(ids_signups),
            "signup_at": pd.to_datetime(list(ids_signups.values())).astype("datetime64[ns]"),
        }
    )


@pytest.fixture
def subscription_data() -> Dataset:
    rows = [
        ("A", "2025-01-01", "2025-03-15"),  # ends inside the horizon, never renewed -> churn
        ("B", "2025-01-01", "2025-03-10"),  # ends, renewed 4 days later (grace 7) -> retained
        ("B", "2025-03-14", None),
        ("C", "2025-01-01", "2025-02-20"),  # gone before the cutoff -> excluded
        ("E", "2025-01-01", None),  # active throughout -> retained
        ("F", "2025-01-01", "2025-04-15"),  # ends after the horizon -> retained at 03-01
        ("G", "2025-01-01", "2025-03-31"),  # ends exactly at cutoff + horizon -> retained
        ("H", "2025-01-01", "2025-03-01"),  # ends exactly at the cutoff: still active then -> churn
        ("I", "2025-01-01", "2025-03-15"),  # renewal 10 days later (> grace) -> churn
        ("I", "2025-03-25", None),
    ]
    subs = pd.DataFrame(rows, columns=["customer_id", "start_at", "end_at"])
    subs["start_at"] = pd.to_datetime(subs["start_at"]).astype("datetime64[ns]")
    subs["end_at"] = pd.to_datetime(subs["end_at"]).astype("datetime64[ns]")
    customers = _customers(
        {c: "2025-01-01" for c in "ABCEFGHI"} | {"D": "2025-03-05"}  # D signs up after the cutoff
    )
    return _dataset({"customers": customers, "subscriptions": subs}, end="2025-05-01")


def test_subscription_labels_by_hand(subscription_data: Dataset) -> None:
    config = LabelConfig(definition="subscription", horizon_days=30, grace_days=7)
    labels = make_label_times(subscription_data, config, cutoffs=[T("2025-03-01")]).frame
    got = dict(zip(labels["customer_id"], labels["label"].astype(int), strict=True))
    assert got == {"A": 1, "B": 0, "E": 0, "F": 0, "G": 0, "H": 1, "I": 1}
    assert labels["cutoff"].eq(T("2025-03-01")).all()


def test_unobserved_horizon_is_unlabeled(subscription_data: Dataset) -> None:
    config = LabelConfig(definition="subscription", horizon_days=30, grace_days=7)
    # 04-20 + 30 + 7 days runs past the end of the data (05-01): rows kept, label missing.
    labels = make_label_times(subscription_data, config, cutoffs=[T("2025-03-01"), T("2025-04-20")])
    late = labels.frame.loc[labels.frame["cutoff"] == T("2025-04-20")]
    assert len(late) > 0 and late["label"].isna().all()
    assert set(late["customer_id"]) == {"B", "E", "I"}  # F ended 04-15 (<04-20); B and I renewed
    assert labels.settings["definition"] == "subscription" and labels.settings["horizon_days"] == 30
    assert labels.summary().set_index("cutoff").loc[T("2025-04-20"), "labeled"] == 0


def test_spells_merge_renewals_within_grace(subscription_data: Dataset) -> None:
    spells = subscription_spells(subscription_data.tables["subscriptions"], pd.Timedelta(days=7))
    b = spells.loc[spells["customer_id"] == "B"]
    assert len(b) == 1 and b["start"].iloc[0] == T("2025-01-01") and pd.isna(b["end"].iloc[0])
    assert (spells["customer_id"] == "I").sum() == 2


def test_overlapping_subscriptions_are_one_spell() -> None:
    """An add-on (or seat change) during an open subscription: subscribed while any is, churned when the
    last ends. The open end once overflowed (``Timestamp.max + grace``)."""
    rows = [
        ("A", "2025-01-01", None),  # open base plan
        ("A", "2025-02-01", "2025-03-10"),  # add-on inside it, ends: not churn
        ("B", "2025-01-01", "2025-03-20"),  # base plan ends inside the horizon ...
        ("B", "2025-02-01", "2025-04-20"),  # ... but an overlapping add-on runs past it: retained
        ("C", "2025-01-01", "2025-03-05"),
        ("C", "2025-02-01", "2025-03-15"),  # both end inside the horizon: churn at the later end
    ]
    subs = pd.DataFrame(rows, columns=["customer_id", "start_at", "end_at"])
    for column in ("start_at", "end_at"):
        subs[column] = pd.to_datetime(subs[column]).astype("datetime64[ns]")
    dataset = _dataset(
        {"customers": _customers(dict.fromkeys("ABC", "2025-01-01")), "subscriptions": subs}, "2025-06-01"
    )
    for grace in (0, 7, 3660):
        spells = subscription_spells(subs, pd.Timedelta(days=grace))
        assert len(spells) == 3 and spells.groupby("customer_id").size().eq(1).all()
    assert pd.isna(spells.set_index("customer_id").loc["A", "end"])
    config = LabelConfig(
        horizon_days=30, grace_days=7, cutoffs=CutoffSchedule(dates=[T("2025-03-01").date()])
    )
    labels = make_label_times(dataset, config).frame.set_index("customer_id")["label"]
    assert labels.to_dict() == {"A": 0, "B": 0, "C": 1}


@pytest.fixture
def event_data() -> Dataset:
    rows = [
        ("A", "2025-02-20"), ("A", "2025-03-10"),  # active before, active after -> retained
        ("B", "2025-02-25"),  # active before, nothing after -> churn
        ("C", "2025-01-15"),  # last activity > 30 days before the cutoff -> already gone, excluded
        ("D", "2025-02-28"), ("D", "2025-03-01"),  # activity exactly at the cutoff counts as after -> retained
        ("E", "2025-02-28"), ("E", "2025-03-31"),  # next activity exactly at cutoff + horizon -> churn
    ]  # fmt: skip
    events = pd.DataFrame(rows, columns=["customer_id", "timestamp"])
    events["timestamp"] = pd.to_datetime(events["timestamp"]).astype("datetime64[ns]")
    events["event_type"] = "login"
    customers = _customers({c: "2025-01-01" for c in "ABCDE"})
    return _dataset({"customers": customers, "events": events}, end="2025-06-01")


def test_inactivity_labels_by_hand(event_data: Dataset) -> None:
    config = LabelConfig(definition="inactivity", horizon_days=30, active_days=30)
    labels = make_label_times(event_data, config, cutoffs=[T("2025-03-01")]).frame
    got = dict(zip(labels["customer_id"], labels["label"].astype(int), strict=True))
    assert got == {"A": 0, "B": 1, "D": 0, "E": 1}


def test_subscription_definition_needs_subscriptions(event_data: Dataset) -> None:
    with pytest.raises(ChurnmlError, match="subscriptions"):
        make_label_times(event_data, LabelConfig(definition="subscription"), cutoffs=[T("2025-03-01")])


def test_cutoff_schedule(event_data: Dataset) -> None:
    monthly = cutoff_dates(event_data, CutoffSchedule(freq="MS", min_history_days=30))
    assert monthly[0] == T("2025-03-01")  # data starts 01-15, +30 days and monthly[-1] == T("2025-06-01")
    explicit = cutoff_dates(event_data, CutoffSchedule(dates=["2025-04-01", "2025-03-01"]))
    assert explicit == [T("2025-03-01"), T("2025-04-01")]
    with pytest.raises(ChurnmlError, match="after the end of the data"):
        cutoff_dates(event_data, CutoffSchedule(dates=["2025-07-01"]))
