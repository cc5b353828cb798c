"""Label times: one row per (customer, cutoff) saying whether that customer churned after the cutoff.

Labels look into the future on purpose; features never do. The settings that made a label table travel
with it (``LabelTimes.settings``) so every training set knows how its labels were defined.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import CutoffSchedule, LabelConfig
from churnml.contract import ACTIVITY_TABLES, TABLES
from churnml.data.dataset import Dataset
from churnml.errors import ChurnmlError

DAY = pd.Timedelta(days=1)
# The reach of a subscription without an end: later than any end the data contract allows (ends are at
# most ten years past now), and far enough from ``Timestamp.max`` that adding a grace period cannot overflow.
OPEN_END = pd.Timestamp("2200-01-01")


@dataclass(frozen=True)
class LabelTimes:
    """``frame``: customer_id, cutoff, label (Int8: 1 churned, 0 retained, <NA> horizon not observed)."""

    frame: pd.DataFrame
    settings: dict[str, Any]

    @property
    def labeled(self) -> pd.DataFrame:
        return self.frame.loc[self.frame["label"].notna()]

    def summary(self) -> pd.DataFrame:
        """Customers, labeled customers and churn rate per cutoff."""
        grouped = self.frame.groupby("cutoff", sort=True)["label"]
        return pd.DataFrame(
            {
                "customers": grouped.size(),
                "labeled": grouped.count(),
                "churned": grouped.sum(min_count=1),
                "churn_rate": grouped.mean(),
            }
        ).reset_index()


def data_start(dataset: Dataset) -> pd.Timestamp:
    """Earliest moment any activity table records."""
    starts = [
        frame[TABLES[name].time_column].min()
        for name, frame in dataset.tables.items()
        if name in ACTIVITY_TABLES and len(frame)
    ]
    if not starts:
        raise ChurnmlError("the dataset has no activity rows: nothing to label")
    return min(starts)


def cutoff_dates(dataset: Dataset, schedule: CutoffSchedule) -> list[pd.Timestamp]:
    """The cutoffs a schedule gives on this dataset (explicit dates win over start/end/freq)."""
    if schedule.dates:
        cutoffs = sorted({pd.Timestamp(d) for d in schedule.dates})
    else:
        start = (
            pd.Timestamp(schedule.start)
            if schedule.start
            else data_start(dataset).normalize() + pd.Timedelta(days=schedule.min_history_days)
        )
        end = pd.Timestamp(schedule.end) if schedule.end else dataset.end
        try:
            cutoffs = list(pd.date_range(start, end, freq=schedule.freq))
        except ValueError as exc:
            raise ChurnmlError(f"labels.cutoffs.freq: {exc}") from None
    late = [c for c in cutoffs if c > dataset.end]
    if late:
        raise ChurnmlError(
            f"labels.cutoffs: cutoff {late[0].date()} is after the end of the data ({dataset.end}); "
            "nothing is known about it"
        )
    if not cutoffs:
        raise ChurnmlError(
            f"labels.cutoffs: the schedule gives no cutoff up to the end of the data ({dataset.end})"
        )
    return cutoffs


def _grid(customers: pd.DataFrame, cutoffs: list[pd.Timestamp]) -> pd.DataFrame:
    """Every customer that had signed up strictly before each cutoff."""
    grid = customers[["customer_id", "signup_at"]].merge(
        pd.DataFrame({"cutoff": pd.DatetimeIndex(cutoffs).astype("datetime64[ns]")}), how="cross"
    )
    return grid.loc[grid["signup_at"] < grid["cutoff"], ["customer_id", "cutoff"]]


def subscription_spells(subscriptions: pd.DataFrame, grace: pd.Timedelta) -> pd.DataFrame:
    """Merge each customer's subscriptions into spells; a gap no longer than ``grace`` is a renewal.

    Overlapping subscriptions (an add-on, a seat change, a plan switch that starts before the old one
    ends) are one spell: the customer is subscribed while any of them is, and churns when the last ends.
    Returns customer_id, start, end (NaT = still active at the end of the data).
    """
    subs = subscriptions[["customer_id", "start_at", "end_at"]].sort_values(
        ["customer_id", "start_at"], kind="stable"
    )
    open_end = subs["end_at"].fillna(OPEN_END)
    reach = open_end.groupby(subs["customer_id"], sort=False).cummax()
    previous_reach = reach.groupby(subs["customer_id"], sort=False).shift()
    new_spell = previous_reach.isna() | (subs["start_at"] > previous_reach + grace)
    spell = new_spell.cumsum()
    spells = (
        pd.DataFrame(
            {"customer_id": subs["customer_id"], "start": subs["start_at"], "end": open_end, "spell": spell}
        )
        .groupby("spell", sort=True)
        .agg(customer_id=("customer_id", "first"), start=("start", "min"), end=("end", "max"))
        .reset_index(drop=True)
    )
    spells["end"] = spells["end"].where(spells["end"] != OPEN_END)
    return spells


def _subscription_labels(dataset: Dataset, grid: pd.DataFrame, config: LabelConfig) -> pd.DataFrame:
    subscriptions = dataset.get("subscriptions")
    if subscriptions is None:
        raise ChurnmlError(
            "labels.definition=subscription needs the 'subscriptions' table; "
            "use labels.definition=inactivity for usage-only data"
        )
    horizon, grace = config.horizon_days * DAY, config.grace_days * DAY
    spells = subscription_spells(subscriptions, grace)
    pairs = grid.merge(spells, on="customer_id", how="inner")
    # Active at the cutoff: the spell began before it and had not ended before it.
    active = (pairs["start"] < pairs["cutoff"]) & (pairs["end"].isna() | (pairs["end"] >= pairs["cutoff"]))
    pairs = pairs.loc[active].drop_duplicates(["customer_id", "cutoff"])
    churned = pairs["end"].notna() & (pairs["end"] < pairs["cutoff"] + horizon)
    # A renewal may only be ruled out once the grace period after the horizon is in the data.
    observed = pairs["cutoff"] + horizon + grace <= dataset.end
    label = pd.array(np.where(churned, 1, 0), dtype="Int8")
    label[~observed.to_numpy()] = pd.NA
    return pairs[["customer_id", "cutoff"]].assign(label=label)


def _activity(dataset: Dataset) -> pd.DataFrame:
    """Customer-initiated activity: product events, or payments where there are no events."""
    for name in ("events", "transactions"):
        frame = dataset.get(name)
        if frame is not None:
            column = TABLES[name].time_column
            return frame[["customer_id", column]].rename(columns={column: "at"})
    raise ChurnmlError("labels.definition=inactivity needs an 'events' or 'transactions' table")


def _inactivity_labels(dataset: Dataset, grid: pd.DataFrame, config: LabelConfig) -> pd.DataFrame:
    activity = _activity(dataset).dropna().sort_values("at", kind="stable")
    queries = grid.sort_values("cutoff", kind="stable")
    before = pd.merge_asof(
        queries,
        activity.rename(columns={"at": "last_before"}).assign(key=lambda f: f["last_before"]),
        left_on="cutoff",
        right_on="key",
        by="customer_id",
        direction="backward",
        allow_exact_matches=False,
    )
    after = pd.merge_asof(
        queries,
        activity.rename(columns={"at": "next_after"}).assign(key=lambda f: f["next_after"]),
        left_on="cutoff",
        right_on="key",
        by="customer_id",
        direction="forward",
        allow_exact_matches=True,
    )
    pairs = queries.assign(
        last_before=before["last_before"].to_numpy(), next_after=after["next_after"].to_numpy()
    )
    active = pairs["last_before"] >= pairs["cutoff"] - config.active_days * DAY
    pairs = pairs.loc[active]
    horizon_end = pairs["cutoff"] + config.horizon_days * DAY
    churned = pairs["next_after"].isna() | (pairs["next_after"] >= horizon_end)
    observed = horizon_end <= dataset.end
    label = pd.array(np.where(churned, 1, 0), dtype="Int8")
    label[~observed.to_numpy()] = pd.NA
    return pairs[["customer_id", "cutoff"]].assign(label=label)


def make_label_times(
    dataset: Dataset, config: LabelConfig, cutoffs: list[pd.Timestamp] | None = None
) -> LabelTimes:
    """Label every eligible customer at every cutoff.

    Eligible: signed up strictly before the cutoff and still a customer at it (an active subscription,
    or recent activity for the inactivity definition). Cutoffs whose horizon is not fully observed in
    the data keep their rows with a missing label: they can be scored, not trained on.
    """
    cutoffs = cutoffs if cutoffs is not None else cutoff_dates(dataset, config.cutoffs)
    grid = _grid(dataset.customers, cutoffs)
    build = _subscription_labels if config.definition == "subscription" else _inactivity_labels
    frame = (
        build(dataset, grid, config)
        .sort_values(["cutoff", "customer_id"], kind="stable")
        .reset_index(drop=True)
    )
    return LabelTimes(frame=frame, settings=label_settings(config, cutoffs, dataset.end))


def label_settings(config: LabelConfig, cutoffs: list[pd.Timestamp], end: pd.Timestamp) -> dict[str, Any]:
    """What made a label table (saved beside it): the definition, its windows, the cutoffs, the data end."""
    return {
        "definition": config.definition,
        "horizon_days": config.horizon_days,
        "grace_days": config.grace_days if config.definition == "subscription" else None,
        "active_days": config.active_days if config.definition == "inactivity" else None,
        "cutoffs": [c.isoformat() for c in cutoffs],
        "data_end": end.isoformat(),
    }
