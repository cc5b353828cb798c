"""Uplift rows: every past contact or holdout as a (customer, list date) row with point-in-time features.

Why the list date is the cutoff: a retention list is drawn up before its contacts go out, so what the
model may know about a customer is what was known that morning. The cutoff is the list's day at
midnight (the contact's day, or with ``uplift.list_days`` the first day of a list worked through over
several days); features see only rows strictly before it, so neither the contact itself nor anything that
happened after it (the outcome it is meant to change) leaks into the features. The outcome is the churn
model's own label at that cutoff (``churnml.features.labels``): churn within the horizon.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import FeatureConfig, LabelConfig
from churnml.contract import ARMS
from churnml.data.dataset import Dataset
from churnml.errors import DataValidationError, example_rows
from churnml.features import FeatureSpec, build_features, feature_catalogue
from churnml.features.labels import make_label_times
from churnml.risk.review import play_names

TREATMENT, HOLDOUT = ARMS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UpliftRows:
    """``frame``: customer_id, cutoff, play, treated (bool), label (Int8, <NA> not yet observed), then
    one column per feature spec."""

    frame: pd.DataFrame
    specs: tuple[FeatureSpec, ...]
    label_settings: dict[str, Any]

    @property
    def labeled(self) -> pd.DataFrame:
        return self.frame.loc[self.frame["label"].notna()]

    @property
    def feature_names(self) -> list[str]:
        return [spec.name for spec in self.specs]


def contact_lists(contacts: pd.DataFrame, list_days: int = 1) -> pd.DataFrame:
    """One row per customer and list: the customer's first row of the list, its play and whether the
    customer was contacted (arm ``treatment``) or held out. A list is the contacts within ``list_days``
    of its first contact day, and that day is its date (``list_dates``)."""
    day = contacts["contacted_at"].dt.floor("D")
    frame = contacts.assign(cutoff=day.map(list_dates(day, list_days))).sort_values(
        ["customer_id", "contacted_at"], kind="stable"
    )
    first = frame.drop_duplicates(["customer_id", "cutoff"]).reset_index(drop=True)
    return pd.DataFrame(
        {
            "customer_id": first["customer_id"],
            "cutoff": first["cutoff"],
            "play": play_names(first["play"]).to_numpy(),
            "treated": first["arm"].eq(TREATMENT).to_numpy(),
        }
    )


def list_dates(days: pd.Series, list_days: int) -> dict[pd.Timestamp, pd.Timestamp]:
    """Each contact day's list date: the first day of a run of days within ``list_days`` of it, so that
    a campaign sent over a week is one list and its customers' features and labels start the same day
    (each day as its own list would split it into lists of a few customers each)."""
    dates: dict[pd.Timestamp, pd.Timestamp] = {}
    start = None
    for day in sorted(pd.Timestamp(d) for d in days.dropna().unique()):
        if start is None or day - start >= pd.Timedelta(days=list_days):
            start = day
        dates[day] = start
    return dates


def build_uplift_rows(
    dataset: Dataset,
    labels: LabelConfig,
    features: FeatureConfig,
    specs: Sequence[FeatureSpec] | None = None,
    list_days: int = 1,
) -> UpliftRows:
    """Rows for every (customer, list date) of the ``contacts`` table that the label counts as a
    customer at that date, with the churn label and the features as of the date (``contact_lists``)."""
    lists, cutoffs = _lists_of(dataset, list_days)
    label_times = make_label_times(dataset, labels, cutoffs)
    rows = lists.merge(label_times.frame, on=["customer_id", "cutoff"], how="inner")
    if len(rows) < len(lists):
        log.warning(
            "uplift: %d of %d contact rows are of customers the label does not count at their list date "
            "(not signed up before it, or no longer a customer): left out",
            len(lists) - len(rows),
            len(lists),
        )
    rows = rows.sort_values(["cutoff", "customer_id"], kind="stable").reset_index(drop=True)
    specs = tuple(feature_catalogue(dataset, features) if specs is None else specs)
    built = build_features(dataset, rows[["customer_id", "cutoff"]], features, specs)
    frame = pd.concat([rows, built[[spec.name for spec in specs]]], axis=1)
    return UpliftRows(frame=frame, specs=specs, label_settings=label_times.settings)


def _lists_of(dataset: Dataset, list_days: int) -> tuple[pd.DataFrame, list[pd.Timestamp]]:
    """The contacts table's lists (``contact_lists``) and their dates; without contacts, a named error."""
    contacts = dataset.get("contacts")
    if contacts is None or contacts.empty:
        raise DataValidationError(
            "contacts", None, "uplift needs a contacts table with treatment and holdout rows; there is none"
        )
    lists = contact_lists(contacts, list_days)
    cutoffs = sorted(pd.Timestamp(c) for c in lists["cutoff"].unique())
    days = pd.Series(cutoffs)
    if list_days == 1 and len(days) >= 3 and (days.diff().dt.days.dropna() <= 3).mean() >= 0.5:
        log.warning(
            "uplift: contacts fall on %d days, most of them within 3 days of the one before: each day is "
            "a list of its own (uplift.test_lists holds out the latest days). If a list is worked through "
            "over several days, set uplift.list_days (e.g. 7)",
            len(days),
        )
    arms = lists.groupby("play")["treated"].agg(["sum", "size"])
    if not ((arms["sum"] > 0) & (arms["sum"] < arms["size"])).any():
        counts = ", ".join(
            f"{play}: {int(row['sum'])} contacted, {int(row['size'] - row['sum'])} held out"
            for play, row in arms.iterrows()
        )
        raise DataValidationError(
            "contacts",
            "arm",
            "uplift needs a play with both contacted (treatment) and held-out (holdout) customers to "
            f"measure what a contact changes; no play has both ({counts})",
            example_rows(contacts),
        )
    return lists, cutoffs


def control_rows(
    dataset: Dataset,
    labels: LabelConfig,
    features: FeatureConfig,
    specs: Sequence[FeatureSpec],
    list_days: int = 1,
) -> pd.DataFrame:
    """Customers of the list dates who had no contact row in that list (neither contacted nor held out),
    with the churn label and features as of the date: more rows for the churn-without-contact model.

    Valid controls only where the list chose customers by what the features show (a risk rule or
    churnml's own list): then, among customers who look alike, being left off the list is as good as
    random. Rows on no list carry no play (``play`` is missing)."""
    lists, cutoffs = _lists_of(dataset, list_days)
    everyone = make_label_times(dataset, labels, cutoffs).frame
    listed = pd.MultiIndex.from_frame(lists[["customer_id", "cutoff"]])
    keys = pd.MultiIndex.from_frame(everyone[["customer_id", "cutoff"]])
    rows = everyone.loc[~keys.isin(listed)].reset_index(drop=True).assign(play=None, treated=False)
    return scoring_rows(dataset, features, specs, rows)


def scoring_rows(
    dataset: Dataset, features: FeatureConfig, specs: Sequence[FeatureSpec], customers: pd.DataFrame
) -> pd.DataFrame:
    """Features as of each row's ``cutoff`` for ``customers`` (customer_id, cutoff, any other columns
    kept): the same builders as the training rows."""
    built = build_features(dataset, customers[["customer_id", "cutoff"]], features, specs)
    names = [spec.name for spec in specs]
    return pd.concat([customers.reset_index(drop=True), built[names]], axis=1)


def split_by_list(
    rows: UpliftRows, test_lists: int, label_window_days: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Labeled rows of earlier lists (to train on) and of the latest ``test_lists`` fully labeled list
    dates (to evaluate on), out of time. Train rows whose label window (horizon plus grace) ends after
    the first test date are dropped: on that date their outcome was not known yet."""
    labeled = rows.labeled
    per_list = rows.frame.groupby("cutoff")["label"].agg(["size", "count"])
    complete = sorted(per_list.index[per_list["size"] == per_list["count"]])
    if len(complete) <= test_lists:
        raise DataValidationError(
            "contacts",
            "contacted_at",
            f"uplift needs more than {test_lists} fully labeled list dates (uplift.test_lists) to hold "
            f"some out; the contacts table has {len(complete)}",
        )
    test_dates = complete[-test_lists:]
    first_test = test_dates[0]
    test = labeled.loc[labeled["cutoff"].isin(test_dates)].reset_index(drop=True)
    known = labeled["cutoff"] + pd.Timedelta(days=label_window_days) <= first_test
    train = labeled.loc[known].reset_index(drop=True)
    return train, test


def treated_share(frame: pd.DataFrame) -> float:
    """Share of rows contacted (NaN without rows)."""
    return float(np.mean(frame["treated"])) if len(frame) else float("nan")
