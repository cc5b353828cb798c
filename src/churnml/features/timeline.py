"""Sorted (customer, time) keys: every point-in-time window query becomes two binary searches.

Why: features at many cutoffs for millions of rows must not loop over customers or rescan tables per
cutoff. Rows of one table are kept sorted by (customer code, time); a single int64 key per row,
``code * span + whole seconds``, lets ``np.searchsorted`` find, for any number of (customer, t) queries
at once, the first row of that customer at or after t. Sub-second precision is restored by a short
fix-up pass, so "strictly before t" is exact to the nanosecond.

Everything here is per customer: results for a customer depend only on that customer's rows, which is
what lets partitions of customers be built independently with identical results.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
import pandas as pd

from churnml.data.order import is_sorted

SECOND_NS = 1_000_000_000
DAY_NS = 86_400 * SECOND_NS
NAT = np.iinfo(np.int64).min
NEVER = np.iinfo(np.int64).max  # "not happened (yet)": later than any cutoff
MAX_PASSES = 64  # vectorised passes over short ranges before the few long ones are done one by one


@dataclass(frozen=True)
class Clock:
    """Maps nanosecond times to whole seconds from ``base_ns``; real rows land in [1, span - 2].

    Queries are clipped to [0, span - 1], which keeps "rows before t" correct for any t outside the data.
    """

    base_ns: int
    span: int

    @classmethod
    def covering(cls, lo_ns: int, hi_ns: int, n_codes: int) -> Clock:
        span = (hi_ns - lo_ns) // SECOND_NS + 3
        if n_codes * span >= 2**62:
            raise ValueError(
                "too many customers over too long a time span for 64-bit (customer, second) keys"
            )
        return cls(base_ns=int(lo_ns), span=int(span))

    def row_seconds(self, ns: np.ndarray) -> np.ndarray:
        """Seconds of row times; NEVER maps past every real time (NaT rows must be dropped first).

        In place on one new array: each full-size temporary is fresh memory, whose page faults cost
        more than the arithmetic on a table of millions of rows."""
        never = ns == NEVER
        sec = np.where(never, self.base_ns, ns)
        sec -= self.base_ns
        sec //= SECOND_NS
        sec += 1
        sec[never] = self.span - 1
        return sec

    def query_seconds(self, ns: np.ndarray) -> np.ndarray:
        # Clipping first keeps the arithmetic far from int64 overflow for extreme query times.
        clipped = np.clip(ns, self.base_ns - SECOND_NS, self.base_ns + self.span * SECOND_NS)
        return (clipped - self.base_ns) // SECOND_NS + 1

    def query_key(self, codes: np.ndarray, ns: np.ndarray) -> np.ndarray:
        return codes * self.span + np.clip(self.query_seconds(ns), 0, self.span - 1)


@dataclass(frozen=True)
class Timeline:
    """Rows sorted by (customer code, time); ``rows`` maps them back to the source table's rows."""

    key: np.ndarray
    ns: np.ndarray
    rows: np.ndarray
    clock: Clock

    @classmethod
    def build(cls, codes: np.ndarray, ns: np.ndarray, rows: np.ndarray, clock: Clock) -> Timeline:
        """Drop rows without a time, sort by (code, time) only when not already sorted (cheap check)."""
        keep = ns != NAT
        if not keep.all():
            codes, ns, rows = codes[keep], ns[keep], rows[keep]
        if not is_sorted(codes, ns):
            order = np.lexsort((ns, codes))
            codes, ns, rows = codes[order], ns[order], rows[order]
        key = clock.row_seconds(ns)
        key += codes * clock.span
        timeline = cls(key=key, ns=ns, rows=rows, clock=clock)
        timeline.__dict__["codes"] = codes  # held already (the caller's, or made here): not derived again
        return timeline

    def subset(self, keep: np.ndarray) -> Timeline:
        """The rows where ``keep`` is true, still sorted."""
        index = np.flatnonzero(keep)
        return Timeline(self.key[index], self.ns[index], self.rows[index], self.clock)

    @cached_property
    def codes(self) -> np.ndarray:
        return self.key // self.clock.span

    def __len__(self) -> int:
        return len(self.ns)

    def start(self, codes: np.ndarray) -> np.ndarray:
        """Index of each customer's first row (its rows are [start, position(code, NEVER)))."""
        return np.searchsorted(self.key, codes * self.clock.span, side="left")

    def position(self, codes: np.ndarray, t_ns: np.ndarray) -> np.ndarray:
        """Index of the first row of customer ``code`` whose time is not strictly before ``t``."""
        q = self.clock.query_key(codes, t_ns)
        pos = np.searchsorted(self.key, q, side="left")
        # Rows in the same whole second as t may still be strictly before it: step over them.
        n = len(self.key)
        todo = np.flatnonzero(pos < n)
        while todo.size:
            p = pos[todo]
            todo = todo[(self.key[p] == q[todo]) & (self.ns[p] < t_ns[todo])]
            pos[todo] += 1
            todo = todo[pos[todo] < n]
        return pos


@dataclass(frozen=True)
class Days:
    """The distinct calendar days of a timeline's rows, per customer, for gaps between active days.

    Why days and not rows: 50 events (or three purchases) on one day are one visit, not 49 zero gaps.
    ``starts[i]`` counts (customer, day) firsts up to row i, so row i lies on distinct day
    ``starts[i] - 1`` (a global index into ``day`` and ``sq``). ``sq`` is the running sum of squared
    gaps in whole days to the customer's previous distinct day (0 at its first): integers, so the
    differences taken for any row range are exact and never depend on other customers' rows.
    """

    starts: np.ndarray  # per row: running count of (customer, day) firsts
    day: np.ndarray  # per distinct day: the calendar day number (days since 1970-01-01)
    sq: np.ndarray  # per distinct day: running sum of squared gaps to the previous day

    @classmethod
    def of(cls, codes: np.ndarray, ns: np.ndarray) -> Days:
        """From a timeline's (sorted) codes and row times."""
        day = ns // DAY_NS
        first = np.ones(len(day), bool)
        first[1:] = (codes[1:] != codes[:-1]) | (day[1:] != day[:-1])
        index = np.flatnonzero(first)
        days = day[index]
        gap = np.zeros(len(days), np.int64)
        if len(days) > 1:
            same = codes[index[1:]] == codes[index[:-1]]
            gap[1:] = np.where(same, days[1:] - days[:-1], 0)
        # One per row: 4 bytes while a count fits (between() hands out int64 again).
        count = np.int32 if len(first) < 2**31 else np.int64
        return cls(starts=np.cumsum(first, dtype=count), day=days, sq=np.cumsum(gap * gap))

    def between(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For rows [a, b) of one customer: (first distinct day index, last one, how many days; 0 if none)."""
        if len(self.starts) == 0:
            zero = np.zeros(len(a), np.int64)
            return zero, zero, zero
        first = self.starts[np.clip(a, 0, len(self.starts) - 1)].astype(np.int64) - 1
        last = self.starts[np.clip(b - 1, 0, len(self.starts) - 1)].astype(np.int64) - 1
        return first, last, np.where(b > a, last - first + 1, 0)


def local_cumsum(codes: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Inclusive running sum that restarts at each customer: a customer's sums never see other customers."""
    if len(values) == 0:
        return values.astype(np.float64)
    return pd.Series(values, copy=False).groupby(codes, sort=False).cumsum().to_numpy(np.float64)


def range_sum(cumsum: np.ndarray, lo: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Sum over rows [a, b) of one customer whose rows start at ``lo``, from a :func:`local_cumsum`."""
    if len(cumsum) == 0:
        return np.zeros(len(a))
    upper = np.where(b > lo, cumsum[np.maximum(b - 1, 0)], 0.0)
    lower = np.where(a > lo, cumsum[np.maximum(a - 1, 0)], 0.0)
    return np.where(b > a, upper - lower, 0.0)


def count_below(values: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per query, how many rows i in [a, b) have ``values[i] < t`` (ranges are short: a few passes)."""
    total = np.zeros(len(a), np.int64)
    length = b - a
    todo = np.flatnonzero(length > 0)
    step = 0
    while todo.size and step < MAX_PASSES:
        total[todo] += values[a[todo] + step] < t[todo]
        step += 1
        todo = todo[length[todo] > step]
    for q in todo:  # the rare long ranges
        total[q] += int(np.count_nonzero(values[a[q] + step : b[q]] < t[q]))
    return total


def last_at_least(values: np.ndarray, a: np.ndarray, b: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Per query, the last row i in [a, b) with ``values[i] >= t``, or -1 (searching backwards from b)."""
    found = np.full(len(a), -1, np.int64)
    todo = np.flatnonzero(b > a)
    step = 1
    while todo.size and step <= MAX_PASSES:
        i = b[todo] - step
        hit = values[i] >= t[todo]
        found[todo[hit]] = i[hit]
        todo = todo[~hit]
        todo = todo[b[todo] - step > a[todo]]
        step += 1
    for q in todo:
        hits = np.flatnonzero(values[a[q] : b[q] - step + 1] >= t[q])
        if hits.size:
            found[q] = a[q] + hits[-1]
    return found
