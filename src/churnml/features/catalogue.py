"""The feature catalogue: every feature churnml builds, declared once as data.

Why: training, scoring, serving and explanations all need the same list of features, what each one
means and how to phrase it to a person. A :class:`FeatureSpec` says which table and aggregate a feature
comes from, over which window, and carries a reason template and a signal id so explanations can say
"No login for 21 days" and add up all windows of one signal. The engine (``engine.py``) computes any
spec; this module only decides which specs a dataset supports.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnml.config import FeatureConfig
from churnml.contract import CUSTOMERS, FAILED_PAYMENT_STATUSES
from churnml.data.dataset import Dataset

FAMILIES = (
    "recency",
    "frequency",
    "monetary",
    "engagement",
    "support",
    "billing",
    "tenure",
    "profile",
    "contacts",
)
TOP_EVENT_TYPES = 10  # event types with their own features: the most frequent ones (plus login-like ones)
MAX_CATEGORIES = 1000  # a text attribute with more distinct values is an identifier, not a feature
LONG_WINDOW_DAYS = 30  # means and rates use windows at least this long: shorter ones are mostly empty
LOGIN_LIKE = re.compile(r"log_?in|sign_?in|session_?start", re.IGNORECASE)
HIGH_PRIORITIES = frozenset({"high", "urgent", "critical", "blocker", "p0", "p1"})
PROMOTION_CHANNEL = "promotion"
# Lifecycle stages by tenure: (name, tenure below which it applies; None = no upper bound).
LIFECYCLE_STAGES: tuple[tuple[str, int | None], ...] = (
    ("onboarding", 30),
    ("early", 90),
    ("established", 365),
    ("mature", None),
)
__all__ = ["FAMILIES", "FeatureSpec", "catalogue_table", "feature_catalogue"]


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: where it comes from, how it is aggregated and how to explain it.

    ``reason`` is a ``str.format`` template with ``{value}``; ``signal`` groups the features of one
    underlying behaviour (all windows of login activity...) so explanations can sum them. The remaining
    fields are the aggregate's parameters: ``column`` (value column aggregated or copied),
    ``event_type`` (events of one type), ``row_filter`` (a named row subset: paid, failed,
    high_priority, plan_change, downgrade, reactivation, treated), ``time`` (a later-fact timestamp the aggregate
    is anchored on, e.g. tickets.closed_at), ``event_types`` (the types counted by ``distinct``) and
    ``categories`` (the levels of a categorical feature). Plain values only, so specs round-trip JSON.
    """

    name: str
    family: str
    table: str
    aggregate: str
    window_days: int | None
    dtype: str
    reason: str
    signal: str
    actionable: bool = True
    description: str = ""
    column: str | None = None
    event_type: str | None = None
    row_filter: str | None = None
    time: str | None = None
    event_types: tuple[str, ...] | None = None
    categories: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        # JSON turns tuples into lists; keep specs hashable and equal after a round trip.
        for name in ("event_types", "categories"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, tuple):
                object.__setattr__(self, name, tuple(value))

    def explain(self, value: object) -> str:
        """The reason template filled with a value (the template's own text if the value does not fit)."""
        try:
            return self.reason.format(value=value)
        except (TypeError, ValueError):
            return re.sub(r"\{value[^}]*\}", str(value), self.reason)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (how a model and a training set store their specs)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, fields: Mapping[str, Any]) -> FeatureSpec:
        """The spec ``to_dict`` wrote (unknown keys are an error: a spec from a newer churnml)."""
        return cls(**fields)


def lifecycle_index(tenure_days: np.ndarray) -> np.ndarray:
    """Index into ``LIFECYCLE_STAGES`` per tenure in days (-1 where tenure is missing)."""
    tenure = np.asarray(tenure_days, dtype=float)
    index = np.full(len(tenure), -1, np.int64)
    for code in reversed(range(len(LIFECYCLE_STAGES))):
        limit = LIFECYCLE_STAGES[code][1]
        index[(tenure < limit) if limit is not None else ~np.isnan(tenure)] = code
    return index


def lifecycle_stage(tenure_days: np.ndarray) -> np.ndarray:
    """Lifecycle stage name per tenure in days (None where tenure is missing): the ``lifecycle_stage``
    feature's levels and the risk list's column, from this one rule."""
    names = np.array([name for name, _ in LIFECYCLE_STAGES] + [None], dtype=object)
    return names[lifecycle_index(tenure_days)]


def find_feature(specs: Iterable[FeatureSpec], **fields: object) -> str | None:
    """Name of the first spec (catalogue order) whose fields equal ``fields``, else None.

    Downstream code asks for a feature by what it computes (``aggregate="active", table="subscriptions"``)
    rather than by a name the catalogue may change or a dataset may lack.
    """
    return next(
        (s.name for s in specs if all(getattr(s, key) == value for key, value in fields.items())), None
    )


def raw_category_columns(spec: FeatureSpec) -> tuple[tuple[str, str], ...]:
    """``(table, column)`` of each raw value a categorical feature reads (none for other features).

    A feature of the current subscription (``plan``) falls back on the customers column of the same name
    (``churnml.features.engine``), so that column is read too. The service refuses unseen values in these
    columns; drift counts the customers who have one.
    """
    if spec.dtype != "category" or not spec.column or not spec.categories:
        return ()
    sources = [(spec.table, spec.column)]
    if spec.aggregate == "current" and spec.table != "customers":
        sources.append(("customers", spec.column))
    return tuple(sources)


# Aggregates whose lifetime value (no window) builds up over the customer's history: a short history keeps
# them low or missing ("no login yet") whatever the customer does.
HISTORY_AGGREGATES = frozenset(
    {
        "count",
        "sum",
        "active_days",
        "distinct",
        "days_since_last",
        "days_since_first",
        "span_days",
        "repeat_days",
        "repeat_mean",
        "gap_mean",
        "gap_std",
        "overdue_ratio",
    }
)
TWO_WINDOW_AGGREGATES = frozenset({"trend", "active_days_trend"})  # a window against the one before it


def history_days(spec: FeatureSpec, lifetime_days: int) -> int:
    """Days of history a feature needs before a low or missing value says something about behaviour
    rather than about a short history: its window (both windows of a trend), ``lifetime_days`` for a
    lifetime aggregate that builds up over history, 0 for attributes, current state and the tenure
    family (which measures the history itself)."""
    if spec.family == "tenure":
        return 0
    if spec.window_days is not None:
        return spec.window_days * (2 if spec.aggregate in TWO_WINDOW_AGGREGATES else 1)
    return lifetime_days if spec.aggregate in HISTORY_AGGREGATES else 0


def recency_feature(specs: Iterable[FeatureSpec], configured: str | None = None) -> str | None:
    """Days-since-last-activity feature: the configured one, else the first float feature of the
    'recency' family in catalogue order (the recency baseline and the "slipping away" segment's input)."""
    return configured if configured is not None else find_feature(specs, family="recency", dtype="float64")


# ---------------------------------------------------------------------------------------------------
# What the dataset has.


def _frame(dataset: Dataset, table: str) -> pd.DataFrame | None:
    return dataset.get(table)


def _has(dataset: Dataset, table: str, column: str | None = None) -> bool:
    frame = _frame(dataset, table)
    return frame is not None and (column is None or column in frame.columns)


def _has_value(dataset: Dataset, table: str, column: str, values: frozenset[str]) -> bool:
    """Whether the column exists and holds at least one of the values (case-insensitive)."""
    frame = _frame(dataset, table)
    if frame is None or column not in frame.columns:
        return False
    present = {str(v).lower() for v in frame[column].dropna().unique()}
    return bool(present & values)


def _categories(*columns: pd.Series) -> tuple[str, ...]:
    values: set[str] = set()
    for column in columns:
        values.update(str(v) for v in column.dropna().unique())
    return tuple(sorted(values))


def slug(text: str) -> str:
    """A lower-case identifier for a value used inside feature names ("Core feature use" -> core_feature_use)."""
    return re.sub(r"[^0-9a-z]+", "_", str(text).lower()).strip("_") or "x"


def event_types(dataset: Dataset) -> tuple[str, ...]:
    """Event types with their own features: the top N by frequency (ties by name) plus login-like ones.

    Returned in name order, so feature order does not move when frequencies shift a little.
    """
    return top_event_types(event_type_counts(dataset))


def event_type_counts(dataset: Dataset) -> pd.Series:
    """Rows per event type (missing types left out): what :func:`top_event_types` ranks. Counts of
    customer partitions add up to the whole data's."""
    if not _has(dataset, "events", "event_type") or len(dataset.tables["events"]) == 0:
        return pd.Series([], dtype="int64")
    counts = pc.value_counts(pa.array(dataset.tables["events"]["event_type"]).drop_null())
    names = [str(v) for v in counts.field("values").to_pylist()]
    return pd.Series(np.asarray(counts.field("counts"), dtype="int64"), index=names)


def top_event_types(counts: pd.Series) -> tuple[str, ...]:
    """The event types of :func:`event_types` from rows per type (index: the type's text)."""
    names = [str(v) for v in counts.index]
    sizes = counts.to_numpy()
    ranked = sorted(zip(names, sizes, strict=True), key=lambda item: (-item[1], item[0]))
    chosen = {name for name, _ in ranked[:TOP_EVENT_TYPES]}
    chosen |= {name for name in names if LOGIN_LIKE.search(name)}
    return tuple(sorted(chosen))


def _long_windows(config: FeatureConfig) -> list[int]:
    return [w for w in config.windows if w >= LONG_WINDOW_DAYS] or [max(config.windows)]


def _label(event_type: str) -> str:
    return slug(event_type).replace("_", " ")


# ---------------------------------------------------------------------------------------------------
# One function per family: each returns the specs the dataset supports, in a fixed order.


def _spec(**kwargs) -> FeatureSpec:
    kwargs.setdefault("dtype", "float64")
    return FeatureSpec(**kwargs)


def _recency(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    common = {"family": "recency", "aggregate": "days_since_last", "window_days": None}
    if _has(dataset, "events"):
        specs.append(
            _spec(
                name="days_since_last_event",
                table="events",
                reason="No product activity for {value:.0f} days",
                signal="activity",
                description="Days since the last event of any type.",
                **common,
            )
        )
        specs.append(
            _spec(
                name="activity_overdue_ratio",
                table="events",
                aggregate="overdue_ratio",
                window_days=None,
                family="recency",
                reason="Inactive for {value:.1f} times the usual gap between active days",
                signal="activity",
                description="days_since_last_event / activity_gap_days_mean (above 1: later than usual); "
                "NaN with fewer than 2 active days.",
            )
        )
        for kind in kinds:
            specs.append(
                _spec(
                    name=f"days_since_last_{slug(kind)}",
                    table="events",
                    event_type=kind,
                    reason=f"No {_label(kind)} for {{value:.0f}} days",
                    signal=f"{slug(kind)}_activity",
                    description=f"Days since the last '{kind}' event.",
                    **common,
                )
            )
    if _has(dataset, "transactions"):
        paid = "paid" if _has(dataset, "transactions", "status") else None
        specs.append(
            _spec(
                name="days_since_last_payment",
                table="transactions",
                row_filter=paid,
                reason="No successful payment for {value:.0f} days",
                signal="payments",
                description="Days since the last transaction that did not fail.",
                **common,
            )
        )
        specs.append(
            _spec(
                name="purchase_overdue_ratio",
                table="transactions",
                aggregate="overdue_ratio",
                row_filter=paid,
                window_days=None,
                family="recency",
                reason="Last purchase was {value:.1f} times the usual gap between purchases ago",
                signal="purchase_rhythm",
                description="days_since_last_payment / purchase_gap_days_mean: how overdue the next "
                "purchase is (above 1: later than usual); NaN with fewer than 2 purchase days.",
            )
        )
        if paid:
            specs.append(
                _spec(
                    name="days_since_last_failed_payment",
                    table="transactions",
                    row_filter="failed",
                    reason="Last failed payment {value:.0f} days ago",
                    signal="failed_payments",
                    description="Days since the last transaction with a failed status.",
                    **common,
                )
            )
    if _has(dataset, "tickets"):
        specs.append(
            _spec(
                name="days_since_last_ticket",
                table="tickets",
                reason="Last support ticket opened {value:.0f} days ago",
                signal="support_tickets",
                description="Days since the last ticket was opened.",
                **common,
            )
        )
    if _has(dataset, "messages", "opened_at"):
        specs.append(
            _spec(
                name="days_since_last_message_open",
                table="messages",
                time="opened_at",
                reason="No email opened for {value:.0f} days",
                signal="email_engagement",
                description="Days since the customer last opened a message (opens before the cutoff only).",
                **common,
            )
        )
    return specs


def _windowed(
    windows: list[int], make: Callable[..., FeatureSpec], lifetime: bool = False
) -> list[FeatureSpec]:
    """One spec per window (suffix ``_{w}d``), plus a lifetime one (suffix ``_total``) when asked."""
    specs = [make(w, f"{w}d") for w in windows]
    return specs + ([make(None, "total")] if lifetime else [])


def _in(window: int | None) -> str:
    return f"in the last {window} days" if window else "so far"


def _frequency(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    common = {"family": "frequency", "aggregate": "count"}
    if _has(dataset, "events"):
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"events_count_{sfx}",
                table="events",
                window_days=w,
                reason=f"{{value:.0f}} product events {_in(w)}",
                signal="activity",
                description="Events of any type.",
                **common,
            ),
            lifetime=True,
        )
        for kind in kinds:
            specs += _windowed(
                config.windows,
                lambda w, sfx, kind=kind: _spec(
                    name=f"events_{slug(kind)}_count_{sfx}",
                    table="events",
                    event_type=kind,
                    window_days=w,
                    reason=f"{{value:.0f}} {_label(kind)} events {_in(w)}",
                    signal=f"{slug(kind)}_activity",
                    description=f"Events of type '{kind}'.",
                    **common,
                ),
                lifetime=True,
            )
        specs += _rhythm(
            "activity",
            "events",
            None,
            "activity",
            "an event",
            (
                "Active every {value:.1f} days on average",
                "Time between active days varies by {value:.1f} days",
            ),
        )
    if _has(dataset, "transactions"):
        paid = "paid" if _has(dataset, "transactions", "status") else None
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"transactions_count_{sfx}",
                table="transactions",
                window_days=w,
                reason=f"{{value:.0f}} payment attempts {_in(w)}",
                signal="payments",
                description="Transactions of any status.",
                **common,
            ),
            lifetime=True,
        )
        specs += _rhythm(
            "purchase",
            "transactions",
            paid,
            "purchase_rhythm",
            "a successful transaction",
            ("Buys every {value:.0f} days on average", "Time between purchases varies by {value:.0f} days"),
        )
        specs.append(
            _spec(
                name="repeat_purchase_days_total",
                family="frequency",
                table="transactions",
                aggregate="repeat_days",
                row_filter=paid,
                window_days=None,
                reason="{value:.0f} repeat purchases so far",
                signal="purchase_rhythm",
                description="BTYD frequency: distinct calendar days with a successful transaction, minus "
                "the first one; 0 with one purchase day or none.",
            )
        )
    if _has(dataset, "messages"):
        specs += _windowed(
            _long_windows(config),
            lambda w, sfx: _spec(
                name=f"messages_count_{sfx}",
                table="messages",
                window_days=w,
                reason=f"{{value:.0f}} emails received {_in(w)}",
                signal="email_engagement",
                description="Messages sent to the customer.",
                **common,
            ),
            lifetime=True,
        )
    return specs


def _rhythm(
    what: str, table: str, row_filter: str | None, signal: str, days: str, reasons: tuple[str, str]
) -> list[FeatureSpec]:
    """Mean and spread of the whole days between consecutive distinct days with a row (all time).

    Days, not rows: several purchases (or 50 events) on one day are one visit, not zero-day gaps that
    would drown the rhythm; whole days make the gaps add up exactly to the span.
    """
    common = {"family": "frequency", "table": table, "row_filter": row_filter, "window_days": None}
    return [
        _spec(
            name=f"{what}_gap_days_mean",
            aggregate="gap_mean",
            reason=reasons[0],
            signal=signal,
            description=f"Mean whole days between consecutive calendar days with {days}; NaN with fewer "
            "than 2 such days.",
            **common,
        ),
        _spec(
            name=f"{what}_gap_days_std",
            aggregate="gap_std",
            reason=reasons[1],
            signal=signal,
            description="Sample standard deviation (ddof=1) of those gaps; NaN with fewer than 3 such days.",
            **common,
        ),
    ]


def _monetary(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    if _has(dataset, "transactions"):
        paid = "paid" if _has(dataset, "transactions", "status") else None
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"payments_amount_{sfx}",
                family="monetary",
                table="transactions",
                aggregate="sum",
                column="amount",
                row_filter=paid,
                window_days=w,
                reason=f"{{value:,.2f}} paid {_in(w)}",
                signal="payments",
                description="Sum of the amounts of transactions that did not fail.",
            ),
            lifetime=True,
        )
        specs += _windowed(
            _long_windows(config),
            lambda w, sfx: _spec(
                name=f"payment_amount_mean_{sfx}",
                family="monetary",
                table="transactions",
                aggregate="mean",
                column="amount",
                row_filter=paid,
                window_days=w,
                reason=f"Average payment of {{value:,.2f}} {_in(w)}",
                signal="payments",
                description="Mean amount of transactions that did not fail.",
            ),
        )
        specs.append(
            _spec(
                name="repeat_purchase_value_mean",
                family="monetary",
                table="transactions",
                aggregate="repeat_mean",
                column="amount",
                row_filter=paid,
                window_days=None,
                reason="Repeat purchases average {value:,.2f} a day",
                signal="purchase_value",
                description="BTYD monetary value: mean total amount per repeat purchase day (days with a "
                "successful transaction after the first); NaN without a repeat purchase day.",
            )
        )
    mrr_table = _current_table(dataset, "mrr")
    if mrr_table:
        specs.append(
            _spec(
                name="mrr",
                family="monetary",
                table=mrr_table,
                aggregate="current",
                column="mrr",
                window_days=None,
                reason="Monthly recurring revenue of {value:,.2f}",
                signal="mrr",
                actionable=False,
                description="MRR of the latest subscription active at the cutoff (0 when all have ended); "
                "customers.mrr when the customer has no subscription yet or there is no subscriptions table.",
            )
        )
    return specs


def _current_table(dataset: Dataset, column: str) -> str | None:
    """Where the current value of a subscription attribute comes from: subscriptions, else customers."""
    if _has(dataset, "subscriptions", column):
        return "subscriptions"
    return "customers" if _has(dataset, "customers", column) else None


def _engagement(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    common = {"family": "engagement", "table": "events"}
    if _has(dataset, "events"):
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"active_days_{sfx}",
                aggregate="active_days",
                window_days=w,
                reason=f"Active on {{value:.0f}} of the last {w} days"
                if w
                else "Active on {value:.0f} days so far",
                signal="activity",
                description="Calendar days with at least one event.",
                **common,
            ),
            lifetime=True,
        )
        if kinds:
            specs += _windowed(
                config.windows,
                lambda w, sfx: _spec(
                    name=f"distinct_event_types_{sfx}",
                    aggregate="distinct",
                    event_types=kinds,
                    window_days=w,
                    reason=f"Used {{value:.0f}} different features {_in(w)}",
                    signal="feature_breadth",
                    description="How many of the catalogue's event types occurred.",
                    **common,
                ),
            )
        t = config.trend_window
        specs.append(
            _spec(
                name=f"events_trend_{t}d",
                aggregate="trend",
                window_days=t,
                reason=f"Activity changed by {{value:+.0%}} in the last {t} days vs the {t} days before",
                signal="activity_trend",
                description=f"(events in the last {t} days - events in the {t} days before) / (the latter + 1).",
                **common,
            )
        )
        specs.append(
            _spec(
                name=f"active_days_trend_{t}d",
                aggregate="active_days_trend",
                window_days=t,
                reason=f"Active days changed by {{value:+.0%}} in the last {t} days vs the {t} days before",
                signal="activity_trend",
                description="Same as events_trend with active days instead of events.",
                **common,
            )
        )
        if _has(dataset, "events", "value"):
            specs += _windowed(
                config.windows,
                lambda w, sfx: _spec(
                    name=f"events_value_sum_{sfx}",
                    aggregate="sum",
                    column="value",
                    window_days=w,
                    reason=f"Usage value of {{value:,.1f}} {_in(w)}",
                    signal="usage_value",
                    description="Sum of events.value (missing values count as 0).",
                    **common,
                ),
            )
    for column, verb in (("opened_at", "Opened"), ("clicked_at", "Clicked")):
        if _has(dataset, "messages", column):
            specs += _windowed(
                _long_windows(config),
                lambda w, sfx, column=column, verb=verb: _spec(
                    name=f"message_{verb.lower()[:-2]}_rate_{sfx}",
                    family="engagement",
                    table="messages",
                    aggregate="rate",
                    time=column,
                    window_days=w,
                    reason=f"{verb} {{value:.0%}} of emails {_in(w)}",
                    signal="email_engagement",
                    description=f"Share of messages sent in the window whose {column} is before the cutoff.",
                ),
            )
    return specs


def _support(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    if not _has(dataset, "tickets"):
        return []
    common = {"family": "support", "table": "tickets"}
    specs = _windowed(
        config.windows,
        lambda w, sfx: _spec(
            name=f"tickets_count_{sfx}",
            aggregate="count",
            window_days=w,
            reason=f"{{value:.0f}} support tickets {_in(w)}",
            signal="support_tickets",
            description="Tickets opened.",
            **common,
        ),
        lifetime=True,
    )
    if _has_value(dataset, "tickets", "priority", HIGH_PRIORITIES):
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"tickets_high_priority_{sfx}",
                aggregate="count",
                row_filter="high_priority",
                window_days=w,
                reason=f"{{value:.0f}} high-priority tickets {_in(w)}",
                signal="support_tickets",
                description=f"Tickets opened with priority in {sorted(HIGH_PRIORITIES)} (case-insensitive).",
                **common,
            ),
        )
    if not _has(dataset, "tickets", "closed_at"):
        return specs
    specs += [
        _spec(
            name="tickets_open",
            aggregate="open_at_cutoff",
            window_days=None,
            reason="{value:.0f} support tickets still open",
            signal="support_backlog",
            description="Tickets opened before the cutoff and not closed before it.",
            **common,
        ),
        _spec(
            name="oldest_open_ticket_age_days",
            aggregate="oldest_open_age",
            window_days=None,
            reason="A support ticket has been open for {value:.0f} days",
            signal="support_backlog",
            description="Age of the oldest ticket open at the cutoff; NaN when none is open.",
            **common,
        ),
    ]
    long = _long_windows(config)
    specs += _windowed(
        long,
        lambda w, sfx: _spec(
            name=f"ticket_resolution_hours_mean_{sfx}",
            aggregate="mean",
            column="resolution_hours",
            time="closed_at",
            window_days=w,
            reason=f"Tickets took {{value:.0f}} hours to resolve on average {_in(w)}",
            signal="support_resolution",
            description="Mean hours from opened_at to closed_at of tickets closed in the window.",
            **common,
        ),
    )
    if _has(dataset, "tickets", "satisfaction"):
        specs.append(
            _spec(
                name="satisfaction_last",
                aggregate="last",
                column="satisfaction",
                time="closed_at",
                window_days=None,
                reason="Last support satisfaction rating was {value:g}",
                signal="support_satisfaction",
                description="Satisfaction of the last rated ticket closed before the cutoff.",
                **common,
            )
        )
        specs += _windowed(
            long,
            lambda w, sfx: _spec(
                name=f"satisfaction_mean_{sfx}",
                aggregate="mean",
                column="satisfaction",
                time="closed_at",
                window_days=w,
                reason=f"Average support satisfaction of {{value:.1f}} {_in(w)}",
                signal="support_satisfaction",
                description="Mean satisfaction of rated tickets closed in the window.",
                **common,
            ),
            lifetime=True,
        )
    return specs


def _billing(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    specs: list[FeatureSpec] = []
    if _has(dataset, "transactions", "status"):
        common = {"family": "billing", "table": "transactions", "row_filter": "failed"}
        specs += _windowed(
            config.windows,
            lambda w, sfx: _spec(
                name=f"failed_payments_{sfx}",
                aggregate="count",
                window_days=w,
                reason=f"{{value:.0f}} failed payments {_in(w)}",
                signal="failed_payments",
                description=f"Transactions with status in {sorted(FAILED_PAYMENT_STATUSES)}.",
                **common,
            ),
        )
        specs += _windowed(
            _long_windows(config),
            lambda w, sfx: _spec(
                name=f"failed_payment_share_{sfx}",
                aggregate="rate",
                window_days=w,
                reason=f"{{value:.0%}} of payment attempts failed {_in(w)}",
                signal="failed_payments",
                description="Failed transactions / all transactions in the window; NaN without transactions.",
                **common,
            ),
        )
    plan_table = _current_table(dataset, "plan")
    if plan_table:
        columns = [
            dataset.tables[t]["plan"] for t in ("subscriptions", "customers") if _has(dataset, t, "plan")
        ]
        specs.append(
            _spec(
                name="plan",
                family="billing",
                table=plan_table,
                aggregate="current",
                column="plan",
                window_days=None,
                dtype="category",
                categories=_categories(*columns),
                reason="On the {value} plan",
                signal="plan",
                description="Plan of the latest subscription active at the cutoff, else of the latest one "
                "started before it, else customers.plan.",
            )
        )
    if _has(dataset, "subscriptions"):
        flags = [("plan_change", "plan changes", "plan")] if _has(dataset, "subscriptions", "plan") else []
        if _has(dataset, "subscriptions", "mrr"):
            flags.append(("downgrade", "downgrades", "mrr"))
        for flag, words, column in flags:
            specs += _windowed(
                _long_windows(config),
                lambda w, sfx, flag=flag, words=words, column=column: _spec(
                    name=f"{flag}s_{sfx}",
                    family="billing",
                    table="subscriptions",
                    aggregate="count",
                    row_filter=flag,
                    window_days=w,
                    reason=f"{{value:.0f}} {words} {_in(w)}",
                    signal="plan_changes",
                    description=f"Subscriptions started in the window whose {column} differs from "
                    f"(downgrade: is below) the customer's previous subscription's.",
                ),
                lifetime=True,
            )
    if _has(dataset, "customers", "acquisition_channel"):
        channel = dataset.customers["acquisition_channel"]
        specs.append(
            _static("acquisition_channel", "billing", "acquisition", channel, "Acquired through {value}")
        )
        specs.append(
            _spec(
                name="promotion",
                family="billing",
                table="customers",
                aggregate="static",
                column="acquisition_channel",
                row_filter=PROMOTION_CHANNEL,
                window_days=None,
                reason="Acquired through a promotion",
                signal="acquisition",
                actionable=False,
                description=f"1 when acquisition_channel is '{PROMOTION_CHANNEL}', else 0.",
            )
        )
    return specs


def _tenure(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    common = {"family": "tenure", "window_days": None, "actionable": False}
    specs = [
        _spec(
            name="tenure_days",
            table="customers",
            aggregate="tenure",
            reason="Customer for {value:.0f} days",
            signal="tenure",
            description="Days from signup_at to the cutoff.",
            **common,
        ),
        _spec(
            name="lifecycle_stage",
            table="customers",
            aggregate="lifecycle",
            dtype="category",
            categories=tuple(name for name, _ in LIFECYCLE_STAGES),
            reason="In the {value} stage of the customer lifecycle",
            signal="tenure",
            description="By tenure: "
            + ", ".join(f"{name} < {days} d" if days else name for name, days in LIFECYCLE_STAGES),
            **common,
        ),
    ]
    if _has(dataset, "transactions"):
        paid = "paid" if _has(dataset, "transactions", "status") else None
        specs += [
            _spec(
                name="purchase_span_days",
                table="transactions",
                aggregate="span_days",
                row_filter=paid,
                reason="Bought over {value:.0f} days from first to last purchase",
                signal="purchase_history",
                description="BTYD recency: whole days from the first to the last calendar day with a "
                "successful transaction; 0 with one such day, NaN with none.",
                **common,
            ),
            _spec(
                name="days_since_first_purchase",
                table="transactions",
                aggregate="days_since_first",
                row_filter=paid,
                reason="First purchase {value:.0f} days ago",
                signal="purchase_history",
                description="BTYD T: days from the start of the first purchase's calendar day to the "
                "cutoff; NaN without a purchase.",
                **common,
            ),
        ]
    if not _has(dataset, "subscriptions"):
        return specs
    return [
        *specs,
        _spec(
            name="has_active_subscription",
            table="subscriptions",
            aggregate="active",
            reason="Has an active subscription: {value:.0f}",
            signal="subscription_status",
            description="1 when a subscription started before the cutoff has not ended before it.",
            **common,
        ),
        _spec(
            name="subscription_age_days",
            table="subscriptions",
            aggregate="subscription_age",
            reason="Current subscription started {value:.0f} days ago",
            signal="subscription_age",
            description="Days since the active subscription started; NaN without one.",
            **common,
        ),
        _spec(
            name="subscriptions_count_total",
            table="subscriptions",
            aggregate="count",
            reason="{value:.0f} subscriptions so far",
            signal="reactivations",
            description="Subscriptions started before the cutoff (plan changes start new ones).",
            **common,
        ),
        _spec(
            name="reactivations_total",
            table="subscriptions",
            aggregate="count",
            row_filter="reactivation",
            reason="Came back {value:.0f} times after cancelling",
            signal="reactivations",
            description="Subscriptions started at least a day after the previous one ended.",
            **common,
        ),
    ]


def _static(name: str, family: str, signal: str, column: pd.Series, reason: str) -> FeatureSpec:
    numeric = pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column)
    return _spec(
        name=name,
        family=family,
        table="customers",
        aggregate="static",
        column=column.name,
        window_days=None,
        dtype="float64" if numeric else "category",
        categories=None if numeric else _categories(column),
        reason=reason,
        signal=signal,
        actionable=False,
        description=f"customers.{column.name}, known at signup.",
    )


def _profile(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    """Static attributes: the contract's country and company_size, then any extra customer column."""
    customers = dataset.customers
    used = {"customer_id", "signup_at", "plan", "mrr", "acquisition_channel"}
    specs = []
    for column in customers.columns:
        series = customers[column]
        if column in used or pd.api.types.is_datetime64_any_dtype(series):
            continue
        numeric = pd.api.types.is_numeric_dtype(series) or pd.api.types.is_bool_dtype(series)
        if not numeric and series.nunique() > MAX_CATEGORIES:
            continue
        extra = column not in CUSTOMERS.columns
        name = f"customer_{slug(column)}" if extra else column
        reason = f"{column.replace('_', ' ').capitalize()}: {{value}}"
        specs.append(_static(name, "profile", slug(column), series, reason))
    return specs


def _contacts(dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...]) -> list[FeatureSpec]:
    """What the retention team did: contacts made (the treatment arm; a holdout was not contacted).

    Not reasons by default (``actionable=False``): customers are contacted because they were at risk,
    so "contacted last week" goes with risk without being a cause a manager can act on.
    """
    if not _has(dataset, "contacts"):
        return []
    common = {"family": "contacts", "table": "contacts", "row_filter": "treated", "actionable": False}
    return [
        _spec(
            name="days_since_last_contact",
            aggregate="days_since_last",
            window_days=None,
            reason="Last contacted by the retention team {value:.0f} days ago",
            signal="retention_contacts",
            description="Days since the last retention contact (contacts.arm = treatment).",
            **common,
        ),
        *_windowed(
            _long_windows(config),
            lambda w, sfx: _spec(
                name=f"contacts_count_{sfx}",
                aggregate="count",
                window_days=w,
                reason=f"Contacted by the retention team {{value:.0f}} times {_in(w)}",
                signal="retention_contacts",
                description="Retention contacts made (contacts.arm = treatment).",
                **common,
            ),
            lifetime=True,
        ),
    ]


_BUILDERS: dict[str, Callable[[Dataset, FeatureConfig, tuple[str, ...]], list[FeatureSpec]]] = {
    "recency": _recency,
    "frequency": _frequency,
    "monetary": _monetary,
    "engagement": _engagement,
    "support": _support,
    "billing": _billing,
    "tenure": _tenure,
    "profile": _profile,
    "contacts": _contacts,
}


def feature_catalogue(
    dataset: Dataset, config: FeatureConfig, kinds: tuple[str, ...] | None = None
) -> list[FeatureSpec]:
    """The features this dataset supports, in a fixed order, after the config's family and name filters.

    Absent tables and optional columns contribute no features; event-type features cover the most
    frequent types. Category levels are read from the whole dataset, so partitions and later scoring
    runs that reuse these specs share them. ``kinds``: the event types when settled elsewhere (from
    partitions' counts, :func:`top_event_types`), else counted on ``dataset``.
    """
    families = FAMILIES if config.include_families is None else tuple(config.include_families)
    unknown = sorted(set(families) - set(FAMILIES))
    if unknown:
        raise ValueError(f"unknown feature families {unknown}; known: {list(FAMILIES)}")
    excluded = set(config.exclude)
    kinds = event_types(dataset) if kinds is None else kinds
    specs: list[FeatureSpec] = []
    seen: set[str] = set()
    for family in FAMILIES:
        if family not in families:
            continue
        for spec in _BUILDERS[family](dataset, config, kinds):
            if spec.name in excluded or spec.name in seen:
                continue
            seen.add(spec.name)
            specs.append(spec)
    return specs


def catalogue_table(specs: list[FeatureSpec]) -> pd.DataFrame:
    """A readable table of specs (for docs and ``churnml`` listings)."""
    return pd.DataFrame(
        {
            "name": [s.name for s in specs],
            "family": [s.family for s in specs],
            "table": [s.table for s in specs],
            "aggregate": [s.aggregate for s in specs],
            "window_days": [s.window_days for s in specs],
            "dtype": [s.dtype for s in specs],
            "signal": [s.signal for s in specs],
            "reason": [s.reason for s in specs],
        }
    )
