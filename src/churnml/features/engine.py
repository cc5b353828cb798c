"""Point-in-time feature values for (customer, cutoff) pairs, computed from catalogue specs.

The rule: a feature at cutoff t sees a row only if its table's time column is strictly before t, and a
later fact on that row (a ticket's closed_at and satisfaction, a message's opened_at, a subscription's
end_at) only if that fact happened strictly before t too. A later fact is therefore treated as its own
event at max(row time, fact time): it exists at t exactly when that moment is before t.

All queries run at once per table (see ``timeline.py``): O((rows + queries) log rows), no loop over
customers or cutoffs. Nothing crosses customers, so partitions of customers give identical results.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import cache, cached_property

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnml.config import FeatureConfig
from churnml.contract import FAILED_PAYMENT_STATUSES, TABLES
from churnml.data.dataset import Dataset
from churnml.features.catalogue import (
    HIGH_PRIORITIES,
    LIFECYCLE_STAGES,
    FeatureSpec,
    feature_catalogue,
    lifecycle_index,
)
from churnml.features.timeline import (
    DAY_NS,
    NAT,
    NEVER,
    Clock,
    Days,
    Timeline,
    count_below,
    last_at_least,
    local_cumsum,
    range_sum,
)

__all__ = ["AGGREGATES", "build_features", "compute"]
HOUR_NS = 3600 * 10**9
REACTIVATION_GAP_NS = DAY_NS  # a subscription starting this long after the previous ended is a comeback


def _ns(column: pd.Series) -> np.ndarray:
    """Timestamps as int64 nanoseconds (NaT -> NAT), whatever the datetime64 unit."""
    if column.dtype == _NS:  # the contract's dtype: a view, without to_numpy's conversion machinery
        return np.asarray(column.values).view(np.int64)
    return np.asarray(column.to_numpy(dtype="datetime64[ns]")).view(np.int64)


_NS = np.dtype("datetime64[ns]")


def _text(column: pd.Series) -> pa.ChunkedArray | pa.Array:
    """A column's values as Arrow text, written as pandas' ``str`` dtype writes them (missing stays
    null); no copy when the column already has that dtype (the data contract's text columns)."""
    return pa.array(column if column.dtype == "str" else column.astype("str"))


def _lookup(values: pd.Series, keys: pa.Array, missing: int) -> np.ndarray:
    """Position of each value in ``keys`` (``missing`` where absent) via Arrow's hash lookup."""
    found = pc.index_in(_text(values), value_set=keys)
    return np.asarray(found.fill_null(missing)).astype(np.int64)


# Cached per query (one value per query); everything else cached is of the data (timelines, masks,
# running sums), built once and shared by every batch of queries.
QUERY_KEYS = frozenset({"position", "start", "visits", "current_subscription"})
# Queries computed together: what is cached per query (window positions: a few dozen arrays) is held for
# one batch at a time rather than for every query at once.
QUERY_BATCH = 65_536


class _Context:
    """Everything the aggregates share: customer codes, queries, and lazily built, cached timelines.

    Queries are kept sorted by (customer, cutoff) so binary searches walk memory in order.
    """

    def __init__(
        self,
        dataset: Dataset,
        customer_ids: pa.Array,
        codes: np.ndarray,
        t_ns: np.ndarray,
        event_types: set[str],
        clock: Clock | None = None,
        shared: dict[tuple, object] | None = None,
    ) -> None:
        self.dataset = dataset
        self.customer_ids = customer_ids  # sorted: a customer's code is its position here
        self.n_customers = len(customer_ids)  # the code of customers missing from the customers table
        self.codes = codes
        self.t = t_ns
        self.event_types = event_types  # every event type some spec filters on
        self.clock = clock or _clock(dataset, t_ns, self.n_customers + 1)
        self._shared: dict[tuple, object] = {} if shared is None else shared  # of the data
        self._queries: dict[tuple, object] = {}  # of these queries (QUERY_KEYS)

    def batch(self, rows: slice) -> _Context:
        """The same data (and everything cached of it) for the queries ``rows`` only."""
        return _Context(
            self.dataset,
            self.customer_ids,
            self.codes[rows],
            self.t[rows],
            self.event_types,
            self.clock,
            self._shared,
        )

    def cached(self, key: tuple, make: Callable[[], object]):
        cache = self._queries if key[0] in QUERY_KEYS else self._shared
        if key not in cache:
            cache[key] = make()
        return cache[key]

    # -- tables ------------------------------------------------------------------------------------

    def frame(self, table: str) -> pd.DataFrame:
        return self.dataset.tables[table]

    @cached_property
    def _columns(self) -> dict[str, frozenset[str]]:
        return {name: frozenset(frame.columns) for name, frame in self.dataset.tables.items()}

    def has(self, table: str, column: str | None = None) -> bool:
        columns = self._columns.get(table)
        return columns is not None and (column is None or column in columns)

    def row_codes(self, table: str) -> np.ndarray:
        return self.cached(
            ("codes", table),
            lambda: _lookup(self.frame(table)["customer_id"], self.customer_ids, self.n_customers),
        )

    def base(self, table: str) -> Timeline:
        """All rows of a table by (customer, time column)."""

        def make() -> Timeline:
            frame = self.frame(table)
            rows = np.arange(len(frame), dtype=np.int32 if len(frame) < 2**31 else np.int64)  # indices only
            return Timeline.build(
                self.row_codes(table), _ns(frame[TABLES[table].time_column]), rows, self.clock
            )

        return self.cached(("base", table), make)

    def column(self, table: str, column: str) -> np.ndarray:
        """A numeric column (or derived one) in the table's row order, float64."""

        def make() -> np.ndarray:
            frame = self.frame(table)
            if table == "tickets" and column == "resolution_hours":
                opened, closed = _ns(frame["opened_at"]), _ns(frame["closed_at"])
                hours = (closed - opened) / HOUR_NS
                return np.where(closed == NAT, np.nan, hours)
            return frame[column].to_numpy(dtype=np.float64, na_value=np.nan)

        return self.cached(("column", table, column), make)

    def fact_ns(self, table: str, column: str) -> np.ndarray:
        """When a later fact became known, per base-timeline row: max(row time, fact); NEVER if missing."""

        def make() -> np.ndarray:
            base = self.base(table)
            fact = _ns(self.frame(table)[column])[base.rows]
            return np.where(fact == NAT, NEVER, np.maximum(fact, base.ns))

        return self.cached(("fact", table, column), make)

    def mask(self, table: str, row_filter: str) -> np.ndarray:
        """Rows (in base-timeline order) that a named filter keeps."""
        return self.cached(("mask", table, row_filter), lambda: _row_mask(self, table, row_filter))

    def event_type_index(self) -> tuple[np.ndarray, dict[str, int]]:
        """Per base events row, the index of its type among the types the specs mention (-1 other)."""

        def make() -> tuple[np.ndarray, dict[str, int]]:
            types = sorted(self.event_types)
            index = _lookup(self.frame("events")["event_type"], pa.array(types, pa.string()), -1)
            small = np.int8 if len(types) < 127 else np.int32  # one per events row: 1 byte, not 8
            return index.astype(small)[self.base("events").rows], {name: k for k, name in enumerate(types)}

        return self.cached(("event_type_index",), make)

    # -- timelines and positions -------------------------------------------------------------------

    def timeline(
        self,
        table: str,
        event_type: str | None = None,
        row_filter: str | None = None,
        time: str | None = None,
        column: str | None = None,
    ) -> Timeline:
        """The rows a spec aggregates: optional event type, named filter, non-null value column, and
        anchored on a later-fact time when ``time`` is given (rows without that fact are left out)."""
        key = ("timeline", table, event_type, row_filter, time, column)
        return self.cached(key, lambda: self._make_timeline(table, event_type, row_filter, time, column))

    def _make_timeline(self, table, event_type, row_filter, time, column) -> Timeline:
        base = self.base(table)
        keep = np.ones(len(base), bool)
        if event_type is not None:
            index, position = self.event_type_index()
            keep &= index == position[event_type]
        if row_filter is not None:
            keep &= self.mask(table, row_filter)
        if column is not None:
            keep &= ~np.isnan(self.column(table, column)[base.rows])
        if time is not None:
            eff = self.fact_ns(table, time)
            keep &= eff != NEVER
            return Timeline.build(base.codes[keep], eff[keep], base.rows[keep], self.clock)
        return base if keep.all() else base.subset(keep)

    def position(self, tl: Timeline, days_back: float = 0) -> np.ndarray:
        """Per query, the first row of ``tl`` at or after t - days_back (rows before it are visible)."""
        key = ("position", id(tl), days_back)
        return self.cached(key, lambda: tl.position(self.codes, self.t - int(days_back * DAY_NS)))

    def start(self, tl: Timeline) -> np.ndarray:
        return self.cached(("start", id(tl)), lambda: tl.start(self.codes))

    def window(self, tl: Timeline, days: int | None, shift: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """Row range [a, b) of ``tl`` in [t - shift - days, t - shift) (from the first row when days is None)."""
        b = self.position(tl, shift)
        a = self.start(tl) if days is None else self.position(tl, shift + days)
        return a, b

    # -- customers -----------------------------------------------------------------------------------

    @cached_property
    def customer_rows(self) -> np.ndarray:
        """customers-table row of each query's customer; -1 for customers not in the table."""
        order = np.full(self.n_customers + 1, -1, np.int64)
        order[self.row_codes("customers")] = np.arange(len(self.frame("customers")))
        return order[self.codes]

    @cached_property
    def signed_up(self) -> np.ndarray:
        """Whether the customer had signed up before the cutoff: static facts are known from then on."""
        signup = _ns(self.frame("customers")["signup_at"])
        rows = self.customer_rows
        at = np.where(rows >= 0, signup[np.maximum(rows, 0)], NAT)
        return (at != NAT) & (at < self.t)

    @cached_property
    def tenure_days(self) -> np.ndarray:
        signup = _ns(self.frame("customers")["signup_at"])[np.maximum(self.customer_rows, 0)]
        return np.where(self.signed_up, (self.t - signup) / DAY_NS, np.nan)

    def customer_value(self, column: str) -> np.ndarray:
        """A numeric customers column per query, NaN before signup or for unknown customers."""
        values = self.column("customers", column)
        return np.where(self.signed_up, values[np.maximum(self.customer_rows, 0)], np.nan)

    def customer_codes(self, column: str, categories: Sequence[str]) -> np.ndarray:
        codes = _category_codes(self.frame("customers")[column], categories)
        return np.where(self.signed_up, codes[np.maximum(self.customer_rows, 0)], -1)


def _clock(dataset: Dataset, t_ns: np.ndarray, n_codes: int) -> Clock:
    """A clock covering every timestamp of every table (row times and later facts alike)."""
    lows, highs = [], []
    for name, frame in dataset.tables.items():
        for column in TABLES[name].timestamps if name in TABLES else ():
            if column in frame.columns and len(frame):
                values = _ns(frame[column])
                values = values[values != NAT]
                if len(values):
                    lows.append(values.min())
                    highs.append(values.max())
    if not lows:
        lows = highs = [int(t_ns.min()) if len(t_ns) else 0]
    return Clock.covering(int(min(lows)), int(max(highs)), n_codes)


@cache
def _category_index(categories: tuple[str, ...]) -> pd.Index:
    """A spec's categories as a text Index, built once: building it (and its hash table, which the Index
    keeps) cost more than the lookups on a small table, once per call."""
    return pd.Index(list(categories), dtype="str")


def _column_of(spec: FeatureSpec) -> str:
    """The value column the catalogue declares for ``spec``'s aggregate (an error naming it if not)."""
    if spec.column is None:
        raise ValueError(f"feature {spec.name!r}: aggregate {spec.aggregate!r} needs a column")
    return spec.column


def _categories_of(spec: FeatureSpec) -> tuple[str, ...]:
    if spec.categories is None:
        raise ValueError(f"feature {spec.name!r}: a categorical feature needs its categories")
    return spec.categories


def _window_of(spec: FeatureSpec) -> int:
    if spec.window_days is None:
        raise ValueError(f"feature {spec.name!r}: aggregate {spec.aggregate!r} needs a window")
    return spec.window_days


@cache
def _value_set(values: tuple[str, ...]) -> pa.Array:
    return pa.array(values, pa.string())


def _category_codes(column: pd.Series, categories: Sequence[str]) -> np.ndarray:
    """Codes of a text column's values among ``categories`` (-1 missing or unseen): one Arrow hash lookup."""
    codes = pc.index_in(_text(column), value_set=_value_set(tuple(categories)))
    return np.asarray(codes.fill_null(-1), dtype=np.int64)


def _lower_in(column: pd.Series, values: frozenset[str]) -> np.ndarray:
    """Whether each value, lower-cased, is one of ``values`` (missing: no)."""
    found = pc.is_in(pc.utf8_lower(_text(column)), value_set=_value_set(tuple(sorted(values))))
    return np.asarray(found.fill_null(False), dtype=bool)


def _row_mask(ctx: _Context, table: str, row_filter: str) -> np.ndarray:
    base = ctx.base(table)
    frame = ctx.frame(table)
    if row_filter in ("paid", "failed"):
        failed = _lower_in(frame["status"], FAILED_PAYMENT_STATUSES)[base.rows]
        return failed if row_filter == "failed" else ~failed
    if row_filter == "treated":
        return (frame["arm"] == "treatment").to_numpy(dtype=bool, na_value=False)[base.rows]
    if row_filter == "high_priority":
        return _lower_in(frame["priority"], HIGH_PRIORITIES)[base.rows]
    if table == "subscriptions" and row_filter in ("plan_change", "downgrade", "reactivation"):
        # Compared with the customer's previous subscription: both started before any cutoff that sees
        # this one, and a comeback needs the previous end to precede this start, so it is known too.
        same = np.zeros(len(base), bool)
        same[1:] = base.codes[1:] == base.codes[:-1]
        prev = np.maximum(np.arange(len(base)) - 1, 0)
        if row_filter == "plan_change":
            plan = frame["plan"].to_numpy(dtype=object)[base.rows]
            known = frame["plan"].notna().to_numpy(bool)[base.rows]
            return same & known & known[prev] & (plan != plan[prev])
        if row_filter == "downgrade":
            mrr = ctx.column(table, "mrr")[base.rows]
            return same & (mrr < mrr[prev])
        end = _ns(frame["end_at"])[base.rows]
        return same & (end[prev] != NAT) & (base.ns - end[prev] >= REACTIVATION_GAP_NS)
    raise ValueError(f"unknown row filter {row_filter!r} for table {table!r}")


# ---------------------------------------------------------------------------------------------------
# Aggregates: each takes the context and a spec, returns float64 values (or category codes) per query.


def _gather(values: np.ndarray, index: np.ndarray, ok: np.ndarray, fill: float = np.nan) -> np.ndarray:
    if len(values) == 0:
        return np.full(len(index), fill, dtype=np.result_type(values.dtype, type(fill)))
    return np.where(ok, values[np.clip(index, 0, len(values) - 1)], fill)


def _spec_timeline(ctx: _Context, spec: FeatureSpec, column: str | None = None) -> Timeline:
    return ctx.timeline(spec.table, spec.event_type, spec.row_filter, spec.time, column)


def _count(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    a, b = ctx.window(_spec_timeline(ctx, spec), spec.window_days)
    return (b - a).astype(np.float64)


def _sums(ctx: _Context, spec: FeatureSpec) -> tuple[np.ndarray, np.ndarray]:
    tl = _spec_timeline(ctx, spec, spec.column)
    cumsum = ctx.cached(
        ("cumsum", id(tl), spec.column),
        lambda: local_cumsum(tl.codes, ctx.column(spec.table, _column_of(spec))[tl.rows]),
    )
    a, b = ctx.window(tl, spec.window_days)
    return range_sum(cumsum, ctx.start(tl), a, b), (b - a)


def _sum(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    return _sums(ctx, spec)[0]


def _mean(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    total, count = _sums(ctx, spec)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _last(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    tl = _spec_timeline(ctx, spec, spec.column)
    p = ctx.position(tl)
    values = ctx.column(spec.table, _column_of(spec))[tl.rows]
    return _gather(values, p - 1, p > ctx.start(tl))


def _days_since_last(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    tl = _spec_timeline(ctx, spec)
    p = ctx.position(tl)
    last = _gather(tl.ns, p - 1, p > ctx.start(tl), fill=NAT)
    return np.where(last != NAT, (ctx.t - last) / DAY_NS, np.nan)


def _days(ctx: _Context, tl: Timeline) -> Days:
    """The distinct (customer, calendar day) pairs of a timeline, built once per timeline."""
    return ctx.cached(("days", id(tl)), lambda: Days.of(tl.codes, tl.ns))


def _active_days_between(ctx: _Context, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distinct calendar days among events rows [a, b) of one customer."""
    return _days(ctx, ctx.base("events")).between(a, b)[2].astype(np.float64)


def _active_days(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    return _active_days_between(ctx, *ctx.window(ctx.base("events"), spec.window_days))


def _distinct(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    total = np.zeros(len(ctx.t))
    for kind in spec.event_types or ():
        a, b = ctx.window(ctx.timeline("events", kind), spec.window_days)
        total += b > a
    return total


# -- Rhythm: gaps between distinct days (BTYD purchase statistics, and the same for activity days).
# Visits are distinct calendar days with a row, so several purchases (or 50 events) on one day are one
# visit; gaps are whole days between consecutive visits, so they add up exactly to the span.


class _Visits:
    """The visits of a spec's rows in its window, per query: row range [a, b), first and last visit
    (indices into ``days``) and their number ``n``; ``first_day`` / ``last_day`` are calendar days."""

    def __init__(self, ctx: _Context, tl: Timeline, window_days: int | None) -> None:
        self.tl, self.days = tl, _days(ctx, tl)
        self.a, self.b = ctx.window(tl, window_days)
        self.first, self.last, self.n = self.days.between(self.a, self.b)
        self.first_day = _gather(self.days.day, self.first, self.n > 0, fill=0)
        self.last_day = _gather(self.days.day, self.last, self.n > 0, fill=0)

    @property
    def span(self) -> np.ndarray:
        """Whole days from the first visit to the last (int; 0 without visits)."""
        return self.last_day - self.first_day


def _visits(ctx: _Context, spec: FeatureSpec, column: str | None = None) -> _Visits:
    tl = _spec_timeline(ctx, spec, column)
    return ctx.cached(("visits", id(tl), spec.window_days), lambda: _Visits(ctx, tl, spec.window_days))


def _repeat_days(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Visits after the first (BTYD frequency); 0 without any."""
    return np.maximum(_visits(ctx, spec).n - 1, 0).astype(np.float64)


def _span_days(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Whole days from the first visit to the last (BTYD recency); NaN without visits."""
    v = _visits(ctx, spec)
    return np.where(v.n > 0, v.span, np.nan)


def _days_since_first(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Days from the start of the first visit's calendar day to t (BTYD T); NaN without visits."""
    v = _visits(ctx, spec)
    return np.where(v.n > 0, (ctx.t - v.first_day * DAY_NS) / DAY_NS, np.nan)


def _gap_mean(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Mean whole days between consecutive visits (span / gaps); NaN with fewer than 2 visits."""
    v = _visits(ctx, spec)
    return np.where(v.n >= 2, v.span / np.maximum(v.n - 1, 1), np.nan)


def _gap_std(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Sample standard deviation (ddof=1) of the gaps; NaN with fewer than 2 gaps (3 visits).

    From exact integer sums: k * sum(gap^2) - span^2 over k (k - 1), with k gaps summing to the span."""
    v = _visits(ctx, spec)
    sq = v.days.sq
    squares = _gather(sq, v.last, v.n > 0, fill=0) - _gather(sq, v.first, v.n > 0, fill=0)
    k = np.maximum(v.n - 1, 0)
    spread = (k * squares - v.span * v.span) / np.maximum(k * (k - 1), 1)
    return np.where(v.n >= 3, np.sqrt(np.maximum(spread, 0.0)), np.nan)


def _overdue_ratio(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Days since the last row / the mean gap: above 1, the next visit is later than usual."""
    v = _visits(ctx, spec)
    ok = v.n >= 2
    last = _gather(v.tl.ns, v.b - 1, ok, fill=NAT)
    mean_gap = v.span / np.maximum(v.n - 1, 1)
    return np.where(ok, (ctx.t - last) / DAY_NS / np.maximum(mean_gap, 1), np.nan)


def _repeat_mean(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Mean per-visit total of ``column`` over the visits after the first (BTYD monetary value);
    rows without a value are left out, as in ``sum``. NaN without a repeat visit."""
    v = _visits(ctx, spec, spec.column)
    tl = v.tl
    cumsum = ctx.cached(
        ("cumsum", id(tl), spec.column),
        lambda: local_cumsum(tl.codes, ctx.column(spec.table, _column_of(spec))[tl.rows]),
    )
    # The first row of the second visit: the first row whose running day count passes the first visit.
    second = np.minimum(np.searchsorted(v.days.starts, v.first + 2, side="left"), v.b)
    repeat = range_sum(cumsum, ctx.start(tl), second, v.b)
    return np.where(v.n >= 2, repeat / np.maximum(v.n - 1, 1), np.nan)


def _change(last: np.ndarray, prev: np.ndarray) -> np.ndarray:
    return (last - prev) / (prev + 1.0)


def _trend(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    tl, w = ctx.base("events"), _window_of(spec)
    a, b = ctx.window(tl, w)
    c, _ = ctx.window(tl, w, shift=w)
    return _change((b - a).astype(np.float64), (a - c).astype(np.float64))


def _active_days_trend(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    tl, w = ctx.base("events"), _window_of(spec)
    a, b = ctx.window(tl, w)
    c, _ = ctx.window(tl, w, shift=w)
    return _change(_active_days_between(ctx, a, b), _active_days_between(ctx, c, a))


def _rate(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """Share of the rows in the window that pass the filter, or whose later fact is known by t."""
    base = ctx.timeline(spec.table)
    a, b = ctx.window(base, spec.window_days)
    if spec.time is None:
        hit_a, hit_b = ctx.window(ctx.timeline(spec.table, row_filter=spec.row_filter), spec.window_days)
        hits = hit_b - hit_a
    else:
        known = ctx.fact_ns(spec.table, spec.time)
        if spec.row_filter is not None:
            known = np.where(ctx.mask(spec.table, spec.row_filter), known, NEVER)
        hits = count_below(known, a, b, ctx.t)
    n = b - a
    return np.where(n > 0, hits / np.maximum(n, 1), np.nan)


def _open_at_cutoff(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    opened = ctx.window(ctx.base("tickets"), None)
    closed = ctx.window(ctx.timeline("tickets", time="closed_at"), None)
    return ((opened[1] - opened[0]) - (closed[1] - closed[0])).astype(np.float64)


def _oldest_open_age(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """The first ticket (by opening) not closed before t is the oldest open one. Its index is a binary
    search on the running maximum of closing times, which never decreases within a customer."""
    base = ctx.base("tickets")

    def make() -> Timeline:
        closing = ctx.fact_ns("tickets", "closed_at")
        running = pd.Series(closing).groupby(base.codes, sort=False).cummax().to_numpy(np.int64)
        return Timeline.build(base.codes, running, base.rows, ctx.clock)

    running = ctx.cached(("running_close",), make)
    first_open = running.position(ctx.codes, ctx.t)
    opened_before = ctx.position(base)
    opened = _gather(base.ns, first_open, first_open < opened_before, fill=NAT)
    return np.where(opened != NAT, (ctx.t - opened) / DAY_NS, np.nan)


def _current_subscription(ctx: _Context) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per query: row of the latest subscription active at t (-1 none), position and start of the
    customer's subscriptions started before t."""

    def make() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        base = ctx.base("subscriptions")
        lo, p = ctx.window(base, None)
        ends = ctx.fact_ns("subscriptions", "end_at")
        return last_at_least(ends, lo, p, ctx.t), p, lo

    return ctx.cached(("current_subscription",), make)


def _current(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    """A subscription attribute at t: the active subscription's, else (plan only) the latest one's,
    else (no subscription yet or no subscriptions table) the customers table's."""
    categorical = spec.dtype == "category"
    if categorical:
        fallback = (
            ctx.customer_codes(_column_of(spec), _categories_of(spec))
            if ctx.has("customers", spec.column)
            else None
        )
    else:
        fallback = ctx.customer_value(_column_of(spec)) if ctx.has("customers", spec.column) else None
    if fallback is None:
        fallback = np.full(len(ctx.t), -1 if categorical else np.nan)
    if spec.table != "subscriptions" or not ctx.has("subscriptions", spec.column):
        return fallback
    active, p, lo = _current_subscription(ctx)
    base = ctx.base("subscriptions")
    if categorical:
        values = _category_codes(ctx.frame("subscriptions")[_column_of(spec)], _categories_of(spec))[
            base.rows
        ]
        latest = np.where(active >= 0, active, p - 1)
        return np.where(p > lo, _gather(values, latest, p > lo, fill=-1), fallback)
    values = ctx.column("subscriptions", _column_of(spec))[base.rows]
    ended = 0.0  # every subscription has ended: nothing recurring any more
    return np.where(active >= 0, _gather(values, active, active >= 0), np.where(p > lo, ended, fallback))


def _active(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    return (_current_subscription(ctx)[0] >= 0).astype(np.float64)


def _subscription_age(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    active = _current_subscription(ctx)[0]
    start = _gather(ctx.base("subscriptions").ns, active, active >= 0, fill=NAT)
    return np.where(start != NAT, (ctx.t - start) / DAY_NS, np.nan)


def _static(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    if spec.dtype == "category":
        return ctx.customer_codes(_column_of(spec), _categories_of(spec))
    column = ctx.frame("customers")[spec.column]
    if spec.row_filter is not None:  # a flag: the attribute equals this value
        flag = np.asarray(pc.equal(_text(column), spec.row_filter).fill_null(False), dtype=np.float64)
        values = np.where(column.notna().to_numpy(bool), flag, np.nan)
    else:
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    return np.where(ctx.signed_up, _gather(values, ctx.customer_rows, ctx.customer_rows >= 0), np.nan)


def _tenure(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    return ctx.tenure_days


def _lifecycle(ctx: _Context, spec: FeatureSpec) -> np.ndarray:
    levels = list(spec.categories or ())
    remap = np.array([levels.index(name) if name in levels else -1 for name, _ in LIFECYCLE_STAGES] + [-1])
    return remap[lifecycle_index(ctx.tenure_days)]


AGGREGATES: dict[str, Callable[[_Context, FeatureSpec], np.ndarray]] = {
    "count": _count,
    "sum": _sum,
    "mean": _mean,
    "last": _last,
    "days_since_last": _days_since_last,
    "active_days": _active_days,
    "distinct": _distinct,
    "trend": _trend,
    "active_days_trend": _active_days_trend,
    "rate": _rate,
    "open_at_cutoff": _open_at_cutoff,
    "oldest_open_age": _oldest_open_age,
    "current": _current,
    "active": _active,
    "subscription_age": _subscription_age,
    "static": _static,
    "tenure": _tenure,
    "lifecycle": _lifecycle,
    "repeat_days": _repeat_days,
    "span_days": _span_days,
    "days_since_first": _days_since_first,
    "gap_mean": _gap_mean,
    "gap_std": _gap_std,
    "overdue_ratio": _overdue_ratio,
    "repeat_mean": _repeat_mean,
}


# Columns a row filter or derived column reads.
_FILTER_COLUMNS = {
    "paid": "status",
    "failed": "status",
    "high_priority": "priority",
    "plan_change": "plan",
    "downgrade": "mrr",
    "reactivation": "end_at",
}
_DERIVED_COLUMNS = {"resolution_hours": ("opened_at", "closed_at")}


def _available(ctx: _Context, spec: FeatureSpec) -> bool:
    """Whether the dataset has what a spec reads (specs reused on other data may ask for more)."""
    if spec.aggregate == "current":  # falls back to the customers table on its own
        return ctx.has(spec.table) or ctx.has("customers", spec.column)
    if not ctx.has(spec.table):
        return False
    needed = [*_DERIVED_COLUMNS.get(spec.column or "", (spec.column,)), spec.time]
    if spec.aggregate != "static":  # on a static spec the filter is a value, not a column
        needed.append(_FILTER_COLUMNS.get(spec.row_filter or ""))
    if spec.event_type or spec.event_types:
        needed.append("event_type")
    if spec.aggregate in ("open_at_cutoff", "oldest_open_age"):
        needed.append("closed_at")
    return all(ctx.has(spec.table, column) for column in needed if column is not None)


def _missing(spec: FeatureSpec, n: int) -> np.ndarray:
    return np.full(n, -1 if spec.dtype == "category" else np.nan)


def _sorted_customer_ids(dataset: Dataset) -> pa.Array:
    ids = _text(dataset.customers["customer_id"])
    ids = ids.combine_chunks() if isinstance(ids, pa.ChunkedArray) else ids
    return ids.take(pc.array_sort_indices(ids))


def compute(
    dataset: Dataset,
    customer_ids: pd.Series,
    t_ns: np.ndarray,
    specs: Sequence[FeatureSpec],
    batch_size: int = QUERY_BATCH,
) -> dict[str, np.ndarray]:
    """Values per spec for queries in the given order: float64 arrays, category specs as int codes.
    Queries are computed ``batch_size`` at a time (each query's values depend on its own customer and
    cutoff only, so any batching gives the same values)."""
    ids = _sorted_customer_ids(dataset)
    codes = _lookup(customer_ids, ids, len(ids))
    # By cutoff, then customer: a batch of queries is mostly one cutoff's customers, in code order, so
    # binary searches still walk the timelines in order.
    order = np.lexsort((codes, t_ns))
    in_order = bool(np.all(order == np.arange(len(order))))  # one customer's query, say: no scatter back
    types = {
        kind
        for spec in specs
        for kind in (spec.event_types or ()) + ((spec.event_type,) if spec.event_type else ())
    }
    for spec in specs:
        if spec.aggregate not in AGGREGATES:
            raise ValueError(f"feature {spec.name!r}: unknown aggregate {spec.aggregate!r}")
    sorted_codes, sorted_t = codes[order], t_ns[order]
    clock = _clock(dataset, sorted_t, len(ids) + 1)
    out: dict[str, np.ndarray] = {}
    for table_specs in _by_table(dataset, specs):
        # What is cached of one table's data lives while its specs are computed, then goes: the largest
        # table first, while few outputs are written (the peak is its caches plus the outputs so far).
        ctx = _Context(dataset, ids, sorted_codes, sorted_t, types, clock)
        for start in range(0, max(len(order), 1), batch_size):
            rows = slice(start, start + batch_size)
            batch = ctx.batch(rows)
            for spec in table_specs:
                found = (
                    AGGREGATES[spec.aggregate](batch, spec)
                    if _available(batch, spec)
                    else _missing(spec, len(batch.t))
                )
                if spec.name not in out:
                    out[spec.name] = np.empty(len(order), dtype=found.dtype)
                out[spec.name][order[rows] if not in_order else rows] = found
            del batch
        del ctx
    return out


def _by_table(dataset: Dataset, specs: Sequence[FeatureSpec]) -> list[list[FeatureSpec]]:
    """Specs grouped by their table, the table with the most rows first (spec order kept within)."""
    groups: dict[str, list[FeatureSpec]] = {}
    for spec in specs:
        groups.setdefault(spec.table, []).append(spec)
    size = {name: len(frame) for name, frame in dataset.tables.items()}
    return [groups[t] for t in sorted(groups, key=lambda t: -size.get(t, 0))]  # stable: ties keep order


def _cutoff_columns(cutoffs: pd.DataFrame) -> tuple[pd.Series, np.ndarray]:
    missing = {"customer_id", "cutoff"} - set(cutoffs.columns)
    if missing:
        raise ValueError(f"cutoffs need columns customer_id and cutoff; missing {sorted(missing)}")
    cutoff = cutoffs["cutoff"]
    if isinstance(cutoff.dtype, pd.DatetimeTZDtype):
        raise ValueError("cutoffs must be tz-naive, like the dataset's timestamps")
    t_ns = _ns(pd.Series(pd.to_datetime(cutoff)))
    if (t_ns == NAT).any():
        raise ValueError("cutoffs contain missing values (NaT)")
    return cutoffs["customer_id"].reset_index(drop=True), t_ns


def _partitions(dataset: Dataset, customer_ids: pd.Series, parts: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Split customers into ``parts`` contiguous groups of sorted ids: (customer ids, query positions)."""
    ids = _sorted_customer_ids(dataset)
    groups = np.array_split(np.arange(len(ids)), parts)
    codes = _lookup(customer_ids, ids, 0)  # queries for unknown customers go with the first group
    bounds = np.array([g[0] if len(g) else len(ids) for g in groups])
    group_of = np.searchsorted(bounds, codes, side="right") - 1
    return [
        (np.asarray(ids.take(pa.array(group)).to_pylist(), dtype=object), np.flatnonzero(group_of == k))
        for k, group in enumerate(groups)
    ]


def _assemble(
    customer_ids: pd.Series, t_ns: np.ndarray, values: dict[str, np.ndarray], specs: Sequence[FeatureSpec]
) -> pd.DataFrame:
    columns: dict[str, object] = {
        "customer_id": customer_ids.reset_index(drop=True),
        "cutoff": pd.Series(t_ns.view("datetime64[ns]")),
    }
    for spec in specs:
        if spec.dtype == "category":
            columns[spec.name] = pd.Categorical.from_codes(
                values[spec.name].astype(np.int64), categories=_category_index(tuple(spec.categories or ()))
            )
        else:
            columns[spec.name] = values[spec.name].astype(np.float64, copy=False)
    return pd.DataFrame(columns)


def build_features(
    dataset: Dataset,
    cutoffs: pd.DataFrame,
    config: FeatureConfig,
    specs: Sequence[FeatureSpec] | None = None,
) -> pd.DataFrame:
    """One row per cutoffs row (same order, index reset): customer_id, cutoff, then one column per spec.

    ``specs`` defaults to the dataset's catalogue; pass a training set's specs to score new data with
    exactly the same columns. With ``config.partitions > 1`` customers are split into groups built
    independently (as a distributed run would) and the results concatenated: identical values.
    """
    specs = list(feature_catalogue(dataset, config) if specs is None else specs)
    customer_ids, t_ns = _cutoff_columns(cutoffs)
    if config.partitions <= 1 or len(customer_ids) == 0:
        return _assemble(customer_ids, t_ns, compute(dataset, customer_ids, t_ns, specs), specs)
    values = {spec.name: _missing(spec, len(t_ns)) for spec in specs}
    for ids, rows in _partitions(dataset, customer_ids, config.partitions):
        if len(rows) == 0:
            continue
        part = compute(dataset.subset(ids), customer_ids.iloc[rows].reset_index(drop=True), t_ns[rows], specs)
        for name, column in part.items():
            values[name][rows] = column
    return _assemble(customer_ids, t_ns, values, specs)
