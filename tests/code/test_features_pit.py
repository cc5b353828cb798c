"""Point-in-time correctness of the feature engine, proven on random histories.

Three properties: (1) nothing at or after a cutoff can move a feature at that cutoff (rows deleted,
added or rewritten, later facts such as closed_at moved around later); (2) the fast engine agrees with
a slow row-by-row reference written straight from the rules; (3) partitioned builds, query order and
absent tables behave. Hypothesis draws small histories over every table.
"""

from __future__ import annotations

import math
from dataclasses import replace
from itertools import pairwise

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.config import FeatureConfig
from churnml.contract import FAILED_PAYMENT_STATUSES, TABLES
from churnml.data.dataset import Dataset
from churnml.features import FeatureSpec, build_features, feature_catalogue
from churnml.features.catalogue import HIGH_PRIORITIES, LIFECYCLE_STAGES
from churnml.features.engine import compute

ORIGIN = pd.Timestamp("2025-01-01")
DAY = pd.Timedelta(days=1)
HORIZON_H = 24 * 150  # random times fall in the first 150 days
CONFIG = FeatureConfig(windows=[7, 30], trend_window=14)
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ---------------------------------------------------------------------------------------------------
# Random histories. Times are hours plus a sub-second part, so rows in the same second as a cutoff but
# before or after it occur (the engine searches whole seconds, then fixes up sub-second order).

IDS = ("a", "b-2", "C3", "d")
# Later facts may even precede their row's time (bad data): they count only once the row itself exists.
SUBSECOND = st.sampled_from([0, 0, 250_000_000, 750_000_000])


@st.composite
def moments(draw, low: int = 0, high: int = HORIZON_H) -> pd.Timestamp:
    return ORIGIN + pd.Timedelta(hours=draw(st.integers(low, high))) + pd.Timedelta(draw(SUBSECOND), "ns")


def maybe(strategy):
    return st.one_of(st.none(), strategy)


def _sorted(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Enforce the dataset invariants the engine relies on: dtypes and (customer_id, time) order."""
    spec = TABLES[table]
    for column in spec.timestamps:
        if column in frame:
            frame[column] = pd.to_datetime(frame[column]).astype("datetime64[ns]")
    for column in spec.numeric:
        if column in frame:
            frame[column] = frame[column].astype("float64")
    for column in frame.columns:
        if frame[column].dtype == object:
            frame[column] = frame[column].astype("str")
    order = frame.sort_values(["customer_id", spec.time_column], kind="stable").index
    return frame.loc[order].reset_index(drop=True)


def _frame(rows: list[dict], table: str, columns: tuple[str, ...]) -> pd.DataFrame:
    return _sorted(pd.DataFrame(rows, columns=list(columns)), table)


@st.composite
def histories(draw) -> Dataset:
    n = draw(st.integers(1, len(IDS)))
    ids = list(IDS[:n])
    who = st.sampled_from(ids)
    customers = [
        {
            "customer_id": cid,
            "signup_at": draw(moments(0, 24 * 60)),
            "plan": draw(maybe(st.sampled_from(["basic", "pro"]))),
            "mrr": draw(maybe(st.sampled_from([0.0, 29.0, 99.0]))),
            "acquisition_channel": draw(st.sampled_from(["organic", "promotion"])),
            "country": draw(st.sampled_from(["US", "DE"])),
            "seats": draw(st.integers(1, 5)),
        }
        for cid in ids
    ]
    events = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "timestamp": moments(),
                    "event_type": st.sampled_from(["login", "export", "Report Created"]),
                    "value": maybe(st.sampled_from([1.0, 2.5, 10.0])),
                }
            ),
            max_size=25,
        )
    )
    subscriptions = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "start_at": moments(),
                    "days": maybe(st.one_of(st.integers(-3, 0), st.integers(0, 120))),
                    "plan": st.sampled_from(["basic", "pro", "team"]),
                    "mrr": st.sampled_from([0.0, 29.0, 99.0]),
                }
            ),
            max_size=5,
        )
    )
    for sub in subscriptions:
        days = sub.pop("days")
        sub["end_at"] = None if days is None else sub["start_at"] + pd.Timedelta(days=days)
    transactions = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "timestamp": moments(),
                    "amount": st.sampled_from([29.0, 99.0, 10.5]),
                    "status": st.sampled_from(["paid", "failed", "Declined"]),
                }
            ),
            max_size=8,
        )
    )
    tickets = []
    for ticket in draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "opened_at": moments(),
                    "hours": maybe(st.one_of(st.integers(-48, 0), st.integers(0, 24 * 20))),
                    "priority": st.sampled_from(["low", "High", "urgent"]),
                    "satisfaction": maybe(st.sampled_from([1.0, 3.0, 5.0])),
                }
            ),
            max_size=8,
        )
    ):
        hours = ticket.pop("hours")
        ticket["closed_at"] = None if hours is None else ticket["opened_at"] + pd.Timedelta(hours=hours)
        tickets.append(ticket)
    messages = []
    for message in draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "sent_at": moments(),
                    "open_h": maybe(st.one_of(st.integers(-24, 0), st.integers(0, 24 * 10))),
                    "click_h": maybe(st.one_of(st.integers(-24, 0), st.integers(0, 24 * 10))),
                }
            ),
            max_size=8,
        )
    ):
        open_h, click_h = message.pop("open_h"), message.pop("click_h")
        message["opened_at"] = None if open_h is None else message["sent_at"] + pd.Timedelta(hours=open_h)
        message["clicked_at"] = None if click_h is None else message["sent_at"] + pd.Timedelta(hours=click_h)
        messages.append(message)
    contacts = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "customer_id": who,
                    "contacted_at": moments(),
                    "play": st.sampled_from(["billing_outreach", "offer"]),
                    "arm": st.sampled_from(["treatment", "holdout"]),
                    "cost": maybe(st.sampled_from([2.0, 40.0])),
                }
            ),
            max_size=6,
        )
    )
    tables = {
        "customers": _frame(customers, "customers", tuple(customers[0])),
        "events": _frame(events, "events", ("customer_id", "timestamp", "event_type", "value")),
        "subscriptions": _frame(
            subscriptions, "subscriptions", ("customer_id", "start_at", "end_at", "plan", "mrr")
        ),
        "transactions": _frame(
            transactions, "transactions", ("customer_id", "timestamp", "amount", "status")
        ),
        "tickets": _frame(
            tickets, "tickets", ("customer_id", "opened_at", "closed_at", "priority", "satisfaction")
        ),
        "messages": _frame(messages, "messages", ("customer_id", "sent_at", "opened_at", "clicked_at")),
        "contacts": _frame(contacts, "contacts", ("customer_id", "contacted_at", "play", "arm", "cost")),
    }
    tables["customers"]["seats"] = tables["customers"]["seats"].astype("int64")
    return Dataset(tables=tables, end=ORIGIN + pd.Timedelta(hours=HORIZON_H + 24 * 40))


@st.composite
def cutoffs_for(draw, dataset: Dataset) -> pd.Timestamp:
    """A cutoff: often exactly a row's time (the boundary case), otherwise anywhere."""
    times = [
        value
        for name, frame in dataset.tables.items()
        for column in TABLES[name].timestamps
        if column in frame
        for value in frame[column].dropna()
    ]
    anywhere = moments(0, HORIZON_H + 24 * 30)
    return draw(st.one_of(st.sampled_from(times), anywhere) if times else anywhere)


# ---------------------------------------------------------------------------------------------------
# Rewriting the future: anything at or after the cutoff may change without moving a feature.


def _later(draw, t: pd.Timestamp) -> pd.Timestamp:
    return t + pd.Timedelta(minutes=draw(st.integers(0, 60 * 24 * 60))) + pd.Timedelta(draw(SUBSECOND), "ns")


def _later_or_never(draw, t: pd.Timestamp):
    return pd.NaT if draw(st.booleans()) else _later(draw, t)


def rewrite_future(draw, dataset: Dataset, t: pd.Timestamp) -> Dataset:
    tables = {}
    for name, frame in dataset.tables.items():
        frame = frame.copy()
        time = TABLES[name].time_column
        future = frame[time] >= t
        if name != "customers":
            # Delete some future rows, move the others elsewhere in the future, add new future rows.
            drop = future & pd.Series([draw(st.booleans()) for _ in range(len(frame))], dtype=bool)
            frame = frame.loc[~drop].reset_index(drop=True)
            future = frame[time] >= t
            for i in np.flatnonzero(future):
                frame.loc[i, time] = _later(draw, t)
            extra = frame.loc[future].copy()
            frame = pd.concat([frame, extra], ignore_index=True)
        else:  # a customer who signs up later may have any attributes
            for i in np.flatnonzero(future):
                frame.loc[i, "signup_at"] = _later(draw, t)
                frame.loc[i, "country"] = draw(st.sampled_from(["FR", "US"]))
                frame.loc[i, "seats"] = draw(st.integers(6, 9))
                frame.loc[i, "acquisition_channel"] = draw(st.sampled_from(["partner", "promotion"]))
                frame.loc[i, "mrr"] = draw(st.sampled_from([1.0, 2.0]))
        future = frame[time] >= t
        if name == "events":
            for i in np.flatnonzero(future):
                frame.loc[i, "event_type"] = draw(st.sampled_from(["login", "export", "new_type"]))
                frame.loc[i, "value"] = draw(st.sampled_from([7.0, np.nan]))
        if name == "transactions":
            for i in np.flatnonzero(future):
                frame.loc[i, "status"] = draw(st.sampled_from(["paid", "failed"]))
                frame.loc[i, "amount"] = 1.0
        if name == "subscriptions":
            for i in np.flatnonzero(future):
                frame.loc[i, "plan"] = draw(st.sampled_from(["basic", "enterprise"]))
                frame.loc[i, "mrr"] = 5.0
            # An end not yet known at t may become any later end, or none.
            for i in np.flatnonzero(frame["end_at"].isna() | (frame["end_at"] >= t)):
                frame.loc[i, "end_at"] = _later_or_never(draw, t)
        if name == "tickets":
            for i in np.flatnonzero(frame["closed_at"].isna() | (frame["closed_at"] >= t)):
                frame.loc[i, "closed_at"] = _later_or_never(draw, t)
                frame.loc[i, "satisfaction"] = draw(st.sampled_from([np.nan, 2.0, 4.0]))
            for i in np.flatnonzero(future):
                frame.loc[i, "priority"] = draw(st.sampled_from(["low", "urgent"]))
        if name == "contacts":
            for i in np.flatnonzero(future):
                frame.loc[i, "arm"] = draw(st.sampled_from(["treatment", "holdout"]))
                frame.loc[i, "play"] = "success_call"
        if name == "messages":
            for column in ("opened_at", "clicked_at"):
                for i in np.flatnonzero(frame[column].isna() | (frame[column] >= t)):
                    frame.loc[i, column] = _later_or_never(draw, t)
        tables[name] = _sorted(frame, name)
    return Dataset(tables=tables, end=dataset.end + pd.Timedelta(days=60))


def _queries(dataset: Dataset, t: pd.Timestamp) -> pd.DataFrame:
    ids = [*dataset.customers["customer_id"], "unknown"]
    return pd.DataFrame({"customer_id": pd.Series(ids, dtype="str"), "cutoff": t}).astype(
        {"cutoff": "datetime64[ns]"}
    )


def assert_same_features(left: pd.DataFrame, right: pd.DataFrame, specs: list[FeatureSpec]) -> None:
    for spec in specs:
        a, b = left[spec.name], right[spec.name]
        if spec.dtype == "category":
            same = (a.astype(object).fillna("<NA>") == b.astype(object).fillna("<NA>")).all()
        else:
            same = np.array_equal(a.to_numpy(), b.to_numpy(), equal_nan=True)
        assert same, f"{spec.name} differs:\n{pd.concat([left['customer_id'], a, b], axis=1)}"


@SETTINGS
@given(data=st.data())
def test_the_future_never_moves_a_feature(data) -> None:
    dataset = data.draw(histories())
    t = data.draw(cutoffs_for(dataset))
    rewritten = rewrite_future(data.draw, dataset, t)
    specs = feature_catalogue(dataset, CONFIG)
    before = build_features(dataset, _queries(dataset, t), CONFIG, specs)
    after = build_features(rewritten, _queries(dataset, t), CONFIG, specs)
    assert_same_features(before, after, specs)


# ---------------------------------------------------------------------------------------------------
# A slow reference: each feature recomputed row by row from the rules, for one customer and cutoff.


def _fact_time(rows: pd.DataFrame, table: str, column: str) -> pd.Series:
    """When a later fact became known: max(row time, fact); NaT when it has not happened."""
    base = rows[TABLES[table].time_column]
    fact = rows[column]
    return fact.where(fact.isna(), np.maximum(fact, base))


def _flags(subs: pd.DataFrame, flag: str) -> pd.Series:
    prev = subs.shift(1)
    if flag == "plan_change":
        return prev["plan"].notna() & subs["plan"].notna() & (subs["plan"] != prev["plan"])
    if flag == "downgrade":
        return subs["mrr"] < prev["mrr"]
    return prev["end_at"].notna() & (subs["start_at"] - prev["end_at"] >= DAY)


_FILTERED: dict[tuple, object] = {}  # per-example memo: many specs share their rows
VALUE_AGGREGATES = ("sum", "mean", "last", "repeat_mean")  # rows without a value are left out
RHYTHM_AGGREGATES = (
    "repeat_days",
    "span_days",
    "days_since_first",
    "gap_mean",
    "gap_std",
    "overdue_ratio",
    "repeat_mean",
)


def _filtered(dataset: Dataset, spec: FeatureSpec, cid: str) -> pd.DataFrame:
    uses_column = spec.aggregate in VALUE_AGGREGATES
    key = (
        id(dataset),
        spec.table,
        spec.event_type,
        spec.row_filter,
        spec.time,
        spec.column,
        uses_column,
        cid,
    )
    if key not in _FILTERED:
        _FILTERED[key] = _filter_rows(dataset, spec, cid)
    return _FILTERED[key]


def _filter_rows(dataset: Dataset, spec: FeatureSpec, cid: str) -> pd.DataFrame:
    frame = dataset.tables[spec.table]
    rows = frame.loc[frame["customer_id"] == cid].copy()
    if spec.table == "subscriptions" and spec.row_filter in ("plan_change", "downgrade", "reactivation"):
        rows = rows.loc[_flags(rows, spec.row_filter).to_numpy()]
    elif spec.row_filter in ("paid", "failed"):
        failed = rows["status"].str.lower().isin(FAILED_PAYMENT_STATUSES)
        rows = rows.loc[failed if spec.row_filter == "failed" else ~failed]
    elif spec.row_filter == "treated":
        rows = rows.loc[rows["arm"] == "treatment"]
    elif spec.row_filter == "high_priority":
        rows = rows.loc[rows["priority"].str.lower().isin(HIGH_PRIORITIES)]
    if spec.event_type is not None:
        rows = rows.loc[rows["event_type"] == spec.event_type]
    if spec.column == "resolution_hours":
        rows["resolution_hours"] = (rows["closed_at"] - rows["opened_at"]) / pd.Timedelta(hours=1)
    anchor = TABLES[spec.table].time_column
    rows["_at"] = rows[anchor] if spec.time is None else _fact_time(rows, spec.table, spec.time)
    if spec.column is not None and spec.aggregate in VALUE_AGGREGATES and spec.column in rows:
        rows = rows.loc[rows[spec.column].notna()]
    return rows.loc[rows["_at"].notna()]


def _in_window(rows: pd.DataFrame, t: pd.Timestamp, days: int | None, shift: int = 0) -> pd.DataFrame:
    end = t - pd.Timedelta(days=shift)
    keep = rows["_at"] < end
    if days is not None:
        keep &= rows["_at"] >= end - pd.Timedelta(days=days)
    return rows.loc[keep]


def _signed_up(dataset: Dataset, cid: str, t: pd.Timestamp) -> pd.Series | None:
    key = (id(dataset), "customer", cid, t)
    if key not in _FILTERED:
        _FILTERED[key] = _customer_at(dataset, cid, t)
    return _FILTERED[key]


def _customer_at(dataset: Dataset, cid: str, t: pd.Timestamp) -> pd.Series | None:
    customers = dataset.customers
    row = customers.loc[customers["customer_id"] == cid]
    if row.empty or not row["signup_at"].iloc[0] < t:
        return None
    return row.iloc[0]


def _current_subscription(dataset: Dataset, cid: str, t: pd.Timestamp):
    subs = dataset.tables["subscriptions"]
    subs = subs.loc[(subs["customer_id"] == cid) & (subs["start_at"] < t)]
    ends = _fact_time(subs, "subscriptions", "end_at")
    active = subs.loc[(ends.isna() | (ends >= t)).to_numpy()]
    return subs, (active.iloc[-1] if len(active) else None)


def reference(dataset: Dataset, spec: FeatureSpec, cid: str, t: pd.Timestamp):
    agg, w = spec.aggregate, spec.window_days
    customer = _signed_up(dataset, cid, t)
    if agg in ("static", "tenure", "lifecycle"):
        if customer is None:
            return None
        if agg == "tenure":
            return (t - customer["signup_at"]) / DAY
        if agg == "lifecycle":
            tenure = (t - customer["signup_at"]) / DAY
            return next(name for name, limit in LIFECYCLE_STAGES if limit is None or tenure < limit)
        value = customer[spec.column]
        if spec.row_filter is not None:
            return float(value == spec.row_filter)
        return float(value) if spec.dtype == "float64" else value
    if agg in ("current", "active", "subscription_age"):
        fallback = None if customer is None else customer.get(spec.column)
        if spec.table == "customers":
            return fallback
        subs, active = _current_subscription(dataset, cid, t)
        if agg == "active":
            return float(active is not None)
        if agg == "subscription_age":
            return None if active is None else (t - active["start_at"]) / DAY
        if active is not None:
            return active[spec.column]
        if len(subs):
            return subs.iloc[-1][spec.column] if spec.column == "plan" else 0.0
        return fallback
    if agg in ("active_days", "active_days_trend", "trend", "distinct"):
        events = _filtered(dataset, replace(spec, event_type=None), cid)

        def active_days(days: int, shift: int = 0) -> int:
            return _in_window(events, t, days, shift)["_at"].dt.floor("D").nunique()

        if agg == "active_days":
            return float(active_days(w))
        if agg == "distinct":
            seen = set(_in_window(events, t, w)["event_type"])
            return float(len(seen & set(spec.event_types)))
        if agg == "trend":
            last, prev = len(_in_window(events, t, w)), len(_in_window(events, t, w, shift=w))
        else:
            last, prev = active_days(w), active_days(w, shift=w)
        return (last - prev) / (prev + 1)
    if agg == "rate":
        rows = _in_window(_filtered(dataset, replace(spec, row_filter=None, time=None), cid), t, w)
        if rows.empty:
            return None
        if spec.time is None:
            hits = _filtered(dataset, spec, cid)
            hits = _in_window(hits, t, w)
        else:
            known = _fact_time(rows, spec.table, spec.time)
            hits = rows.loc[(known < t).to_numpy()]
        return len(hits) / len(rows)
    if agg in ("open_at_cutoff", "oldest_open_age"):
        tickets = _in_window(_filtered(dataset, replace(spec, time=None), cid), t, None)
        closed = _fact_time(tickets, "tickets", "closed_at")
        still_open = tickets.loc[(closed.isna() | (closed >= t)).to_numpy()]
        if agg == "open_at_cutoff":
            return float(len(still_open))
        return None if still_open.empty else (t - still_open["opened_at"].min()) / DAY
    rows = _in_window(_filtered(dataset, spec, cid), t, w)
    if agg in RHYTHM_AGGREGATES:
        return _rhythm_reference(rows, spec, t)
    if agg == "count":
        return float(len(rows))
    if agg == "sum":
        return float(rows[spec.column].sum())
    if agg == "mean":
        return None if rows.empty else float(rows[spec.column].mean())
    if agg == "last":
        return None if rows.empty else float(rows.sort_values("_at", kind="stable")[spec.column].iloc[-1])
    if agg == "days_since_last":
        return None if rows.empty else (t - rows["_at"].max()) / DAY
    raise AssertionError(f"no reference for {agg}")


def _rhythm_reference(rows: pd.DataFrame, spec: FeatureSpec, t: pd.Timestamp):
    """Visits are the distinct calendar days with a row; gaps are whole days between consecutive ones."""
    day = rows["_at"].dt.floor("D")
    days = sorted(day.unique())
    n = len(days)
    gaps = [(later - earlier) / DAY for earlier, later in pairwise(days)]
    agg = spec.aggregate
    if agg == "repeat_days":
        return float(max(n - 1, 0))
    if agg == "span_days":
        return None if n == 0 else (days[-1] - days[0]) / DAY
    if agg == "days_since_first":
        return None if n == 0 else (t - days[0]) / DAY
    if agg == "gap_mean":
        return None if n < 2 else float(np.mean(gaps))
    if agg == "gap_std":
        return None if n < 3 else float(np.std(gaps, ddof=1))
    if agg == "overdue_ratio":
        return None if n < 2 else (t - rows["_at"].max()) / DAY / float(np.mean(gaps))
    # repeat_mean: the total per repeat day, averaged over the days after the first
    return None if n < 2 else float(rows.loc[(day > days[0]).to_numpy(), spec.column].sum()) / (n - 1)


def _close(got, want) -> bool:
    missing = want is None or (isinstance(want, float) and math.isnan(want)) or want is pd.NA
    if missing or got is None or (isinstance(got, float) and math.isnan(got)):
        return missing and (got is None or pd.isna(got))
    if isinstance(want, str):
        return got == want
    return math.isclose(float(got), float(want), rel_tol=1e-9, abs_tol=1e-9)


def assert_matches_reference(dataset: Dataset, features: pd.DataFrame, specs: list[FeatureSpec]) -> None:
    _FILTERED.clear()
    for i, row in features.iterrows():
        for spec in specs:
            want = reference(dataset, spec, row["customer_id"], row["cutoff"])
            got = row[spec.name]
            assert _close(got, want), f"row {i} {spec.name}: engine {got!r}, reference {want!r}"


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_engine_matches_row_by_row_reference(data) -> None:
    dataset = data.draw(histories())
    t = data.draw(cutoffs_for(dataset))
    specs = feature_catalogue(dataset, CONFIG)
    queries = _queries(dataset, t)
    features = build_features(dataset, queries, CONFIG, specs)
    assert_matches_reference(dataset, features, specs)


# ---------------------------------------------------------------------------------------------------
# Partitions, order, absent tables.


@settings(max_examples=15, deadline=None)
@given(data=st.data(), partitions=st.integers(2, 5))
def test_partitions_give_identical_results_in_input_order(data, partitions: int) -> None:
    dataset = data.draw(histories())
    ts = [data.draw(cutoffs_for(dataset)) for _ in range(3)]
    queries = pd.concat([_queries(dataset, t) for t in ts], ignore_index=True)
    queries = queries.sample(frac=1.0, random_state=data.draw(st.integers(0, 100))).reset_index(drop=True)
    specs = feature_catalogue(dataset, CONFIG)
    single = build_features(dataset, queries, CONFIG, specs)
    split = build_features(dataset, queries, CONFIG.model_copy(update={"partitions": partitions}), specs)
    pd.testing.assert_frame_equal(single, split, check_exact=True)
    assert single["customer_id"].tolist() == queries["customer_id"].tolist()
    assert (single["cutoff"] == queries["cutoff"]).all()
    # Each row equals the same query built alone: no row depends on another's presence or position.
    for i in range(0, len(queries), 4):
        alone = build_features(dataset, queries.iloc[[i]], CONFIG, specs)
        assert_same_features(single.iloc[[i]].reset_index(drop=True), alone, specs)


@settings(max_examples=15, deadline=None)
@given(data=st.data(), batch_size=st.integers(1, 7))
def test_query_batches_give_identical_values(data, batch_size: int) -> None:
    """Queries computed a few at a time (what bounds the engine's memory: QUERY_BATCH) against all at
    once, at several cutoffs in shuffled order: the same values, bit for bit, in the queries' order."""
    dataset = data.draw(histories())
    ts = [data.draw(cutoffs_for(dataset)) for _ in range(3)]
    queries = pd.concat([_queries(dataset, t) for t in ts], ignore_index=True)
    queries = queries.sample(frac=1.0, random_state=data.draw(st.integers(0, 100))).reset_index(drop=True)
    specs = feature_catalogue(dataset, CONFIG)
    t_ns = queries["cutoff"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    whole = compute(dataset, queries["customer_id"], t_ns, specs, batch_size=len(queries) + 1)
    batched = compute(dataset, queries["customer_id"], t_ns, specs, batch_size=batch_size)
    assert whole.keys() == batched.keys()
    for name, values in whole.items():
        assert values.dtype == batched[name].dtype, name
        np.testing.assert_array_equal(batched[name], values, err_msg=name)


@settings(max_examples=10, deadline=None)
@given(data=st.data())
def test_each_spec_alone_gives_the_values_it_gives_among_all(data) -> None:
    """The engine computes one table's specs at a time and drops that table's caches before the next
    (what bounds its peak): a spec's values must not depend on which specs, of its table or another,
    were computed with it or before it, nor on what they left cached."""
    dataset = data.draw(histories())
    queries = _queries(dataset, data.draw(cutoffs_for(dataset)))
    specs = feature_catalogue(dataset, CONFIG)
    t_ns = queries["cutoff"].to_numpy(dtype="datetime64[ns]").view(np.int64)
    together = compute(dataset, queries["customer_id"], t_ns, specs, batch_size=3)
    reversed_ = compute(dataset, queries["customer_id"], t_ns, specs[::-1], batch_size=3)
    for spec in specs:
        alone = compute(dataset, queries["customer_id"], t_ns, [spec], batch_size=3)[spec.name]
        np.testing.assert_array_equal(alone, together[spec.name], err_msg=spec.name)
        np.testing.assert_array_equal(reversed_[spec.name], together[spec.name], err_msg=spec.name)


@pytest.mark.parametrize(
    "absent", ["events", "subscriptions", "transactions", "tickets", "messages", "contacts"]
)
@settings(max_examples=5, deadline=None)
@given(dataset=histories())
def test_absent_tables_contribute_no_features(absent: str, dataset: Dataset) -> None:
    full = feature_catalogue(dataset, CONFIG)
    tables = {name: frame for name, frame in dataset.tables.items() if name != absent}
    reduced = feature_catalogue(Dataset(tables=tables, end=dataset.end), CONFIG)
    assert not [spec.name for spec in reduced if spec.table == absent]
    assert {spec.name for spec in reduced} < {spec.name for spec in full}
    # Specs of an absent table can still be built (e.g. scoring with a training set's specs): all missing.
    t = ORIGIN + 100 * DAY
    queries = _queries(dataset, t)
    built = build_features(Dataset(tables=tables, end=dataset.end), queries, CONFIG, full)
    # (plan and mrr fall back to the customers table, as they do for customers without subscriptions)
    missing = [spec.name for spec in full if spec.table == absent and spec.aggregate != "current"]
    assert built[missing].isna().all().all()
    assert list(built.columns) == ["customer_id", "cutoff", *[spec.name for spec in full]]
