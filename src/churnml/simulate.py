"""A fast, deterministic simulator of a subscription software business, with the ground truth of churn.

Why: features, models and explanations need data where the answer is known. Every renewal decision is
drawn from a logistic model of the customer's *observable* recent behaviour (usage, support, payments,
onboarding, acquisition channel, tenure, plan), and the truth table keeps each factor's log-odds
contribution, so an oracle AUC and the true drivers of each churn can be checked.

The simulation steps day by day with numpy operations over all customers (no per-customer loop), with
one child random generator per component, so the same seed gives byte-identical tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow as pa

from churnml.contract import TABLES
from churnml.dataset import Dataset
from churnml.io import write_csv, write_json, write_parquet

VERSION = "1"
PREHISTORY_DAYS = 365  # customers sign up from a year before `start`, so the first cutoffs have history
DAY_S = 86_400
NO_TIME = -1  # "no timestamp" in the int64 seconds used internally; becomes NaT
NAT = np.iinfo(np.int64).min

PLANS = ("free", "basic", "pro")
SIZES = ("1-10", "11-50", "51-200", "201+")
SIZE_P = (0.45, 0.30, 0.17, 0.08)
PLAN_P_BY_SIZE = np.array([[0.30, 0.60, 0.10], [0.20, 0.55, 0.25], [0.10, 0.45, 0.45], [0.05, 0.35, 0.60]])
SEATS_BY_SIZE = ((1, 6), (3, 16), (10, 41), (20, 81))  # uniform integer ranges [low, high)
CHANNELS = ("organic", "paid_search", "referral", "partner", "promotion")
CHANNEL_P = (0.35, 0.25, 0.12, 0.10, 0.18)
PROMOTION = CHANNELS.index("promotion")
COUNTRIES = ("US", "GB", "DE", "FR", "CA", "IN", "AU", "NL", "ES", "BR")
COUNTRY_P = (0.35, 0.12, 0.12, 0.08, 0.07, 0.06, 0.05, 0.05, 0.05, 0.05)

ACTIVITY_EVENTS = (
    "login",
    "core_feature_use",
    "report_created",
    "export",
    "teammate_invite",
    "integration_setup",
)
ONBOARDING_EVENTS = ("onboarding_webinar", "onboarding_consultation")
EVENT_TYPES = ACTIVITY_EVENTS + ONBOARDING_EVENTS
EVENT_MIX_BY_PLAN = np.array(
    [
        [0.50, 0.30, 0.10, 0.05, 0.03, 0.02],
        [0.44, 0.30, 0.12, 0.07, 0.04, 0.03],
        [0.38, 0.30, 0.13, 0.09, 0.06, 0.04],
    ]
)
BASE_RATE_BY_PLAN = np.array([0.45, 0.75, 1.05])  # activity events per weekday before heterogeneity
RATE_BY_SIZE = np.array([1.0, 1.15, 1.3, 1.45])
WEEKEND_FACTOR = 0.3
TRICKLE_FACTOR, TRICKLE_DAYS = 0.03, 45  # a churned customer's rare logins after leaving
DISENGAGED_LOG_RATE = -2.3  # a fully disengaged customer keeps exp(-2.3) ~ 10% of their usage

PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_P = (0.25, 0.50, 0.18, 0.07)
MEDIAN_RESOLUTION_H = np.array([60.0, 30.0, 12.0, 4.0])
CATEGORIES = ("how_to", "bug", "feature_request", "account", "billing")
CATEGORY_P = (0.37, 0.32, 0.17, 0.14, 0.0)  # billing tickets come from failed payments
BILLING_CATEGORY = CATEGORIES.index("billing")
TICKET_SLOTS, FAIL_SLOTS, WINDOW = 6, 3, 30

CAMPAIGNS = ("newsletter", "product_update", "upgrade_offer", "winback")
CAMPAIGN_HOUR = np.array([10, 15, 11, 9])
CAMPAIGN_OPEN_OFFSET = np.array([0.0, 0.3, -0.2, -0.5])

PENDING, ACTIVE, CHURNED = 0, 1, 2


@dataclass(frozen=True)
class Coefficients:
    """Log-odds weights of the churn model at each renewal; docs/simulator.md mirrors these numbers."""

    base: float = -3.55
    engagement_level: float = 0.55  # x log((typical + 2) / (recent + 2)), clipped to [-1, 3]
    engagement_trend: float = 1.1  # x log((prior + 2) / (recent + 2)), clipped to [0, 3]; tenure >= 60 d
    typical_events_30d: float = 16.0
    support_low_satisfaction: float = 0.8  # per ticket rated <= 2, closed in the last 60 days (max 2)
    support_backlog: float = 0.6  # per ticket open for more than 3 days (max 2)
    support_slow: float = 0.3  # per ticket closed in the last 60 days after more than 3 days (max 2)
    billing_failed: float = 0.8  # per failed payment attempt in the last 35 days (max 3)
    no_onboarding: float = 0.5
    onboarded: float = -0.35
    promotion: float = 0.8
    tenure_new: float = 1.1  # x exp(-(tenure_months - 1) / 3)
    tenure_months_scale: float = 3.0
    plan_free: float = 0.35
    plan_pro: float = -0.3


COEF = Coefficients()
FACTORS = ("engagement", "support", "billing", "onboarding", "promotion", "tenure", "plan")
FACTOR_LABELS = {
    "engagement": "fading usage",
    "support": "support trouble",
    "billing": "failed payments",
    "onboarding": "weak onboarding",
    "promotion": "promotion-acquired",
    "tenure": "new customer",
    "plan": "plan",
    "none": "no risk factor",
}
BILLING = FACTORS.index("billing")


@dataclass(frozen=True)
class Simulation:
    """Simulated contract tables, the ground truth of every renewal decision, and how they were made."""

    tables: dict[str, pd.DataFrame]
    truth: pd.DataFrame
    end: pd.Timestamp
    params: dict

    def to_dataset(self) -> Dataset:
        return Dataset(tables=dict(self.tables), end=self.end)


# ---------------------------------------------------------------------------------------------------
# The churn model: pure functions of what a feature builder can observe before the renewal.


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def engagement_contribution(
    recent_30d: np.ndarray, prior_30d: np.ndarray, tenure_days: np.ndarray, coef: Coefficients = COEF
) -> np.ndarray:
    """Fading usage: low activity vs a typical customer, plus a drop vs the customer's own previous month.

    The trend needs two full months of tenure, so new customers are judged on their level only.
    """
    level = np.clip(np.log((coef.typical_events_30d + 2) / (recent_30d + 2)), -1.0, 3.0)
    trend = np.clip(np.log((prior_30d + 2) / (recent_30d + 2)), 0.0, 3.0)
    return coef.engagement_level * level + coef.engagement_trend * np.where(tenure_days >= 60, trend, 0.0)


def support_contribution(
    low_satisfaction: np.ndarray, backlog: np.ndarray, slow: np.ndarray, coef: Coefficients = COEF
) -> np.ndarray:
    """Support trouble: unhappy ratings, tickets left open, slow resolutions (each capped at two)."""
    return (
        coef.support_low_satisfaction * np.minimum(low_satisfaction, 2)
        + coef.support_backlog * np.minimum(backlog, 2)
        + coef.support_slow * np.minimum(slow, 2)
    )


def billing_contribution(failed_35d: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """Failed payments: each failed attempt of the last cycle (retries included, capped at three)."""
    return coef.billing_failed * np.minimum(failed_35d, 3)


def onboarding_contribution(onboarded: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """Weak onboarding: no webinar/consultation raises risk, having one lowers it."""
    return np.where(onboarded, coef.onboarded, coef.no_onboarding)


def promotion_contribution(channel: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """Promotion-acquired customers came for the discount and leave more easily."""
    return np.where(channel == PROMOTION, coef.promotion, 0.0)


def tenure_contribution(tenure_days: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """New customers: risk is highest at the first renewal and fades over the first months."""
    months = tenure_days / 30.44
    return coef.tenure_new * np.exp(-np.maximum(months - 1.0, 0.0) / coef.tenure_months_scale)


def plan_contribution(plan: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """Free users leave more easily; pro teams are invested."""
    return np.array([coef.plan_free, 0.0, coef.plan_pro])[plan]


def true_cause_codes(contributions: np.ndarray) -> np.ndarray:
    """Index into FACTORS of the largest positive contribution per row; len(FACTORS) means 'none'."""
    best = contributions.argmax(axis=1)
    positive = contributions.max(axis=1) > 0
    return np.where(positive, best, len(FACTORS))


# ---------------------------------------------------------------------------------------------------
# Customers, calendar and mutable state.


@dataclass(frozen=True)
class _Calendar:
    origin: pd.Timestamp
    n_days: int
    end_s: int  # seconds from origin to end
    dom: np.ndarray
    weekday: np.ndarray
    campaign: np.ndarray  # per day: index into CAMPAIGNS, or -1 (at most one campaign a day)


def _calendar(start: date, months: int) -> _Calendar:
    origin = pd.Timestamp(start) - pd.Timedelta(days=PREHISTORY_DAYS)
    end = pd.Timestamp(start) + pd.DateOffset(months=months)
    days = pd.date_range(origin, end - pd.Timedelta(days=1), freq="D")
    dom, weekday, month = days.day.to_numpy(), days.weekday.to_numpy(), days.month.to_numpy()
    index = np.arange(len(days))
    campaign = np.full(len(days), -1, dtype=np.int8)
    campaign[(weekday == 1) & ((index // 7) % 2 == 0)] = CAMPAIGNS.index("newsletter")
    campaign[(weekday == 3) & (dom <= 7)] = CAMPAIGNS.index("product_update")
    campaign[(dom == 15) & (month % 3 == 0)] = CAMPAIGNS.index("upgrade_offer")
    campaign[dom == 20] = CAMPAIGNS.index("winback")
    return _Calendar(
        origin=origin,
        n_days=len(days),
        end_s=int((end - origin).total_seconds()),
        dom=dom.astype(np.int8),
        weekday=weekday.astype(np.int8),
        campaign=campaign,
    )


def _business_seconds(rng: np.random.Generator, size: int, mean_h: float = 13.0, sd_h: float = 3.2) -> np.ndarray:
    """Seconds into the day, clustered around office hours."""
    hours = np.clip(rng.normal(mean_h, sd_h, size), 0.0, 23.999)
    return (hours * 3600).astype(np.int64)


def _fee(plan: np.ndarray, seats: np.ndarray) -> np.ndarray:
    """Monthly fee: free 0, basic 29, pro 99 plus 9 per seat beyond five."""
    pro = 99.0 + 9.0 * np.maximum(seats - 5, 0)
    return np.select([plan == 0, plan == 1], [0.0, 29.0], pro)


@dataclass(frozen=True)
class _Customers:
    """Static attributes, drawn once; index = customer code (customer_id C000001 is code 0)."""

    signup_day: np.ndarray
    signup_sec: np.ndarray
    size: np.ndarray
    plan: np.ndarray
    seats: np.ndarray
    channel: np.ndarray
    country: np.ndarray
    onboarded: np.ndarray
    onboard_day: np.ndarray
    onboard_sec: np.ndarray
    onboard_type: np.ndarray
    base_rate: np.ndarray
    fit: np.ndarray  # unobserved propensity to disengage
    pfail: np.ndarray
    card_expiry: np.ndarray
    opt_in: np.ndarray
    open_base: np.ndarray
    friction: np.ndarray  # propensity to need support
    event_mix: np.ndarray  # cumulative type probabilities per customer, (n, len(ACTIVITY_EVENTS))

    @property
    def n(self) -> int:
        return len(self.signup_day)


def _draw_customers(rng: np.random.Generator, n: int, n_days: int) -> _Customers:
    """Signups grow over time (from a year before start to a month before end); ids follow signup order."""
    span = max(n_days - 30, 1)
    growth = 0.6
    u = np.sort(rng.random(n))
    signup_day = (np.log1p(u * np.expm1(growth)) / growth * span).astype(np.int32)
    size = rng.choice(len(SIZES), n, p=SIZE_P).astype(np.int8)
    plan_u = rng.random(n)
    plan = (plan_u[:, None] > PLAN_P_BY_SIZE[size].cumsum(axis=1)[:, :-1]).sum(axis=1).astype(np.int8)
    low, high = np.array(SEATS_BY_SIZE).T
    seats = (low[size] + rng.random(n) * (high[size] - low[size])).astype(np.int32)
    channel = rng.choice(len(CHANNELS), n, p=CHANNEL_P).astype(np.int8)
    p_onboard = np.array([0.15, 0.40, 0.60])[plan] + np.where(size >= 2, 0.1, 0.0)
    p_onboard = p_onboard - np.where(channel == PROMOTION, 0.1, 0.0)
    onboard_day = signup_day + rng.integers(2, 22, n).astype(np.int32)
    onboarded = (rng.random(n) < p_onboard) & (onboard_day < n_days)
    consult_p = np.array([0.1, 0.3, 0.55])[plan]
    mix = EVENT_MIX_BY_PLAN[plan].copy()
    mix[:, ACTIVITY_EVENTS.index("teammate_invite")] *= np.array([0.4, 1.0, 1.6, 2.2])[size]
    mix /= mix.sum(axis=1, keepdims=True)
    return _Customers(
        signup_day=signup_day,
        signup_sec=_business_seconds(rng, n),
        size=size,
        plan=plan,
        seats=seats,
        channel=channel,
        country=rng.choice(len(COUNTRIES), n, p=COUNTRY_P).astype(np.int8),
        onboarded=onboarded,
        onboard_day=onboard_day,
        onboard_sec=_business_seconds(rng, n, 12.0, 2.0),
        onboard_type=(rng.random(n) < consult_p).astype(np.int8),
        base_rate=BASE_RATE_BY_PLAN[plan] * RATE_BY_SIZE[size] * rng.lognormal(0.0, 0.6, n),
        fit=rng.normal(0.0, 0.5, n),
        pfail=np.where(rng.random(n) < 0.12, 0.22, 0.02),
        card_expiry=signup_day + rng.integers(30, 4 * 365, n).astype(np.int32),
        opt_in=rng.random(n) < 0.75,
        open_base=rng.normal(-0.6, 0.8, n),
        friction=rng.lognormal(0.0, 0.7, n) * np.array([1.0, 1.3, 1.6, 2.0])[size],
        event_mix=mix.cumsum(axis=1),
    )


@dataclass
class _State:
    """Everything that changes during the simulation, one entry per customer."""

    status: np.ndarray
    plan: np.ndarray
    mrr: np.ndarray
    billing_day: np.ndarray
    cycle_start: np.ndarray
    current_sub: np.ndarray
    churn_day: np.ndarray
    voluntary: np.ndarray
    reactivated: np.ndarray
    drift: np.ndarray
    disengagement: np.ndarray
    phase: np.ndarray  # 0 engaged, 1 slipping away, 2 recovering
    speed: np.ndarray
    card_expiry: np.ndarray
    daily_counts: np.ndarray  # ring buffer of the last 2 * WINDOW days of activity counts
    ticket_open: np.ndarray  # last TICKET_SLOTS tickets, in (fractional) simulation days
    ticket_close: np.ndarray
    ticket_sat: np.ndarray
    ticket_n: np.ndarray
    fail_time: np.ndarray  # last FAIL_SLOTS failed payment attempts, in simulation days
    fail_n: np.ndarray
    pain_start: np.ndarray
    pain_end: np.ndarray


def _initial_state(cust: _Customers, rng: np.random.Generator) -> _State:
    n = cust.n
    return _State(
        status=np.zeros(n, np.int8),
        plan=cust.plan.copy(),
        mrr=_fee(cust.plan, cust.seats),
        billing_day=np.zeros(n, np.int8),
        cycle_start=np.zeros(n, np.int32),
        current_sub=np.arange(n, dtype=np.int64),
        churn_day=np.full(n, -(10**6), np.int32),
        voluntary=np.zeros(n, bool),
        reactivated=np.zeros(n, bool),
        drift=np.zeros(n, np.float64),
        disengagement=np.zeros(n, np.float64),
        phase=np.zeros(n, np.int8),
        speed=1.0 / rng.uniform(15.0, 50.0, n),
        card_expiry=cust.card_expiry.copy(),
        daily_counts=np.zeros((n, 2 * WINDOW), np.int16),
        ticket_open=np.full((n, TICKET_SLOTS), np.nan),
        ticket_close=np.full((n, TICKET_SLOTS), np.nan),
        ticket_sat=np.full((n, TICKET_SLOTS), np.nan),
        ticket_n=np.zeros(n, np.int64),
        fail_time=np.full((n, FAIL_SLOTS), np.nan),
        fail_n=np.zeros(n, np.int64),
        pain_start=np.full(n, np.inf),
        pain_end=np.full(n, -np.inf),
    )


@dataclass
class _Log:
    """Rows produced during the run, as lists of array chunks (concatenated once at the end)."""

    event_cust: list = field(default_factory=list)
    event_count: list = field(default_factory=list)
    event_day: list = field(default_factory=list)
    sub: dict = field(default_factory=lambda: {"cust": [], "start": [], "plan": [], "mrr": []})
    sub_end: dict = field(default_factory=lambda: {"row": [], "end": []})
    n_subs: int = 0
    tx: dict = field(default_factory=lambda: {"cust": [], "time": [], "amount": [], "failed": []})
    ticket: dict = field(
        default_factory=lambda: {
            "cust": [],
            "opened": [],
            "closed": [],
            "priority": [],
            "category": [],
            "sat": [],
        }
    )
    message: dict = field(
        default_factory=lambda: {"cust": [], "sent": [], "opened": [], "clicked": [], "campaign": []}
    )
    truth: dict = field(
        default_factory=lambda: {
            "cust": [],
            "day": [],
            "contrib": [],
            "prob": [],
            "churned": [],
            "cause": [],
        }
    )


def _append(store: dict, **columns: np.ndarray) -> None:
    for key, value in columns.items():
        store[key].append(value)


def _push(buffer: np.ndarray, counter: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """Write into each customer's ring buffer of recent items (``idx`` must be unique)."""
    slots = buffer.shape[1]
    buffer[idx, counter[idx] % slots] = values
    counter[idx] += 1


def _new_subscriptions(log: _Log, state: _State, idx: np.ndarray, start_s: np.ndarray) -> None:
    rows = log.n_subs + np.arange(len(idx), dtype=np.int64)
    _append(log.sub, cust=idx.astype(np.int32), start=start_s, plan=state.plan[idx].copy(), mrr=state.mrr[idx].copy())
    log.n_subs += len(idx)
    state.current_sub[idx] = rows


def _end_subscriptions(log: _Log, state: _State, idx: np.ndarray, end_s: np.ndarray) -> None:
    _append(log.sub_end, row=state.current_sub[idx].copy(), end=end_s)


# ---------------------------------------------------------------------------------------------------
# One simulated day, in order: signups, renewals (at midnight), win-backs, behaviour, events, tickets,
# campaigns.


@dataclass(frozen=True)
class _Rngs:
    customers: np.random.Generator
    behaviour: np.random.Generator
    activity: np.random.Generator
    churn: np.random.Generator
    payments: np.random.Generator
    support: np.random.Generator
    marketing: np.random.Generator
    details: np.random.Generator


def _rngs(seed: int) -> _Rngs:
    children = np.random.default_rng(seed).spawn(8)
    return _Rngs(*children)


def _signups(t: int, idx: np.ndarray, cust: _Customers, cal: _Calendar, state: _State, log: _Log) -> None:
    state.status[idx] = ACTIVE
    state.billing_day[idx] = min(int(cal.dom[t]), 28)
    state.cycle_start[idx] = t
    paid = idx[state.plan[idx] > 0]
    time = t * DAY_S + cust.signup_sec[paid] + 30
    _append(log.tx, cust=paid.astype(np.int32), time=time, amount=state.mrr[paid].copy(), failed=np.zeros(len(paid), bool))


def _window_counts(counts: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Activity in the 30 days before day t and in the 30 days before those (ring buffer of 60 days)."""
    recent = (t - 1 - np.arange(WINDOW)) % (2 * WINDOW)
    prior = (t - 1 - WINDOW - np.arange(WINDOW)) % (2 * WINDOW)
    return counts[:, recent].sum(axis=1, dtype=np.int64), counts[:, prior].sum(axis=1, dtype=np.int64)


def _contributions(
    t: int, idx: np.ndarray, cust: _Customers, state: _State, coef: Coefficients
) -> tuple[np.ndarray, np.ndarray]:
    """Per-factor log-odds contributions for the customers renewing on day t, and their recent usage."""
    tenure = t - cust.signup_day[idx] - cust.signup_sec[idx] / DAY_S
    recent, prior = _window_counts(state.daily_counts[idx], t)
    recent = recent * WINDOW / np.clip(tenure, 1.0, WINDOW)
    opened, closed, sat = state.ticket_open[idx], state.ticket_close[idx], state.ticket_sat[idx]
    closed_recent = (closed < t) & (closed >= t - 60)
    low_sat = (closed_recent & (sat <= 2)).sum(axis=1)
    backlog = ((opened < t - 3) & ~(closed < t)).sum(axis=1)
    slow = (closed_recent & (closed - opened > 3)).sum(axis=1)
    fails = state.fail_time[idx]
    failed = ((fails < t) & (fails >= t - 35)).sum(axis=1)
    onboarded = cust.onboarded[idx] & (cust.onboard_day[idx] < t)
    parts = [
        engagement_contribution(recent, prior, tenure, coef),
        support_contribution(low_sat, backlog, slow, coef),
        billing_contribution(failed, coef),
        onboarding_contribution(onboarded, coef),
        promotion_contribution(cust.channel[idx], coef),
        tenure_contribution(tenure, coef),
        plan_contribution(state.plan[idx], coef),
    ]
    return np.column_stack(parts), recent


def _renewals(
    t: int, cust: _Customers, state: _State, log: _Log, rngs: _Rngs, coef: Coefficients
) -> None:
    """Monthly renewal at midnight of the billing day: churn decision, plan changes, payment."""
    due = (state.status == ACTIVE) & (state.billing_day == (min(int(_DOM[0][t]), 99))) & (t - state.cycle_start >= 20)
    idx = np.flatnonzero(due)
    if len(idx) == 0:
        return
    contrib, recent = _contributions(t, idx, cust, state, coef)
    prob = sigmoid(coef.base + contrib.sum(axis=1))
    churned = rngs.churn.random(len(idx)) < prob
    cause = true_cause_codes(contrib)
    _append(
        log.truth,
        cust=idx.astype(np.int32),
        day=np.full(len(idx), t, np.int32),
        contrib=contrib,
        prob=prob,
        churned=churned,
        cause=cause.astype(np.int8),
    )
    _churn(t, idx[churned], cause[churned] == BILLING, state, log, rngs)
    stay = ~churned
    _plan_changes(t, idx[stay], recent[stay], cust, state, log, rngs, coef)
    _payments(t, idx[stay], state, log, rngs)
    state.cycle_start[idx[stay]] = t


def _churn(t: int, idx: np.ndarray, involuntary: np.ndarray, state: _State, log: _Log, rngs: _Rngs) -> None:
    """End the subscription at the renewal date; billing-driven churn shows as a failed dunning run."""
    state.status[idx] = CHURNED
    state.churn_day[idx] = t
    state.voluntary[idx] = ~involuntary
    _end_subscriptions(log, state, idx, np.full(len(idx), t * DAY_S, np.int64))
    lost = idx[involuntary & (state.plan[idx] > 0)]
    for delay in (0, 3, 7):
        time = (t + delay) * DAY_S + rngs.payments.integers(3600, 6 * 3600, len(lost))
        _append(log.tx, cust=lost.astype(np.int32), time=time, amount=state.mrr[lost].copy(), failed=np.ones(len(lost), bool))


def _plan_changes(
    t: int,
    idx: np.ndarray,
    recent: np.ndarray,
    cust: _Customers,
    state: _State,
    log: _Log,
    rngs: _Rngs,
    coef: Coefficients,
) -> None:
    """Busy customers upgrade, quiet pro teams downgrade: a new subscription row from the renewal date."""
    busy = np.clip(np.log((recent + 2) / (coef.typical_events_30d + 2)), -2.0, 2.0)
    plan = state.plan[idx]
    u = rngs.churn.random(len(idx))
    up = ((plan == 0) & (u < 0.03 * np.exp(0.7 * busy))) | ((plan == 1) & (u < 0.012 * np.exp(0.7 * busy)))
    down = (plan == 2) & (u < 0.01 * np.exp(-0.7 * busy))
    change = idx[up | down]
    if len(change) == 0:
        return
    _end_subscriptions(log, state, change, np.full(len(change), t * DAY_S, np.int64))
    state.plan[change] = np.where(up[up | down], state.plan[change] + 1, 1).astype(np.int8)
    state.mrr[change] = _fee(state.plan[change], cust.seats[change])
    _new_subscriptions(log, state, change, np.full(len(change), t * DAY_S, np.int64))


def _payments(t: int, idx: np.ndarray, state: _State, log: _Log, rngs: _Rngs) -> None:
    """Charge the fee; expired cards and flaky payers fail, dunning retries after 3 and 7 days recover."""
    rng = rngs.payments
    pay = idx[state.plan[idx] > 0]
    expired = t >= state.card_expiry[pay]
    first_fail = rng.random(len(pay)) < np.where(expired, 0.75, _PFAIL[0][pay])
    second_fail = first_fail & (rng.random(len(pay)) < 0.5)
    state.card_expiry[pay[expired]] += 3 * 365
    amount = state.mrr[pay]
    times = [(t + delay) * DAY_S + rng.integers(3600, 6 * 3600, len(pay)) for delay in (0, 3, 7)]
    attempts = [np.ones(len(pay), bool), first_fail, second_fail]
    outcomes = [first_fail, second_fail, np.zeros(len(pay), bool)]
    for time, made, failed in zip(times, attempts, outcomes, strict=True):
        _append(log.tx, cust=pay[made].astype(np.int32), time=time[made], amount=amount[made], failed=failed[made])
    for time, failed in zip(times[:2], outcomes[:2], strict=True):
        _push(state.fail_time, state.fail_n, pay[failed], time[failed] / DAY_S)
    asks = first_fail & (rng.random(len(pay)) < 0.3)
    opened = times[0][asks] + rng.integers(1800, 48 * 3600, int(asks.sum()))
    _open_tickets(pay[asks], opened, np.full(int(asks.sum()), BILLING_CATEGORY, np.int8), state, log, rngs)


def _reactivations(t: int, cust: _Customers, cal: _Calendar, state: _State, log: _Log, rngs: _Rngs) -> None:
    """A few voluntary churners come back 1-12 months later with a new subscription."""
    since = t - state.churn_day
    pool = np.flatnonzero(
        (state.status == CHURNED) & state.voluntary & ~state.reactivated & (since >= 30) & (since <= 365)
    )
    back = pool[rngs.churn.random(len(pool)) < 0.0006]
    if len(back) == 0:
        return
    state.status[back] = ACTIVE
    state.reactivated[back] = True
    state.billing_day[back] = min(int(cal.dom[t]), 28)
    state.cycle_start[back] = t
    state.disengagement[back] = 0.0
    state.phase[back] = 0
    state.drift[back] = 0.0
    start = t * DAY_S + _business_seconds(rngs.churn, len(back))
    _new_subscriptions(log, state, back, start)
    paid = state.plan[back] > 0
    _append(log.tx, cust=back[paid].astype(np.int32), time=start[paid] + 30, amount=state.mrr[back[paid]].copy(), failed=np.zeros(int(paid.sum()), bool))


def _behaviour(t: int, cust: _Customers, state: _State, rngs: _Rngs) -> None:
    """Latent disengagement: episodes start at a risk-dependent hazard, deepen over weeks, may recover."""
    rng = rngs.behaviour
    active = np.flatnonzero(state.status == ACTIVE)
    onboarded = cust.onboarded[active] & (cust.onboard_day[active] <= t)
    pain = (state.pain_start[active] <= t) & (t < state.pain_end[active])
    hazard = 0.0011 * np.exp(
        0.6 * (cust.channel[active] == PROMOTION)
        + 0.5 * ~onboarded
        + 1.0 * pain
        + 0.3 * (state.plan[active] == 0)
        + cust.fit[active]
    )
    u = rng.random(len(active))
    phase = state.phase[active]
    phase = np.where((phase == 0) & (u < hazard), 1, np.where((phase == 1) & (u < 1 / 60), 2, phase))
    level = state.disengagement[active]
    level = np.where(phase == 1, np.minimum(level + state.speed[active], 1.0), level)
    level = np.where(phase == 2, np.maximum(level - 1 / 20, 0.0), level)
    phase = np.where((phase == 2) & (level <= 0.0), 0, phase)
    state.phase[active], state.disengagement[active] = phase.astype(np.int8), level
    if t % 7 == 0:
        state.drift[active] = 0.85 * state.drift[active] + rng.normal(0.0, 0.13, len(active))


def _activity_multiplier(t: int, cust: _Customers, state: _State) -> np.ndarray:
    """Current usage relative to the customer's base rate (drift, disengagement, onboarding boost)."""
    onboarded = cust.onboarded & (cust.onboard_day <= t)
    return np.exp(state.drift + DISENGAGED_LOG_RATE * state.disengagement) * np.where(onboarded, 1.25, 1.0)


def _events(t: int, multiplier: np.ndarray, cust: _Customers, cal: _Calendar, state: _State, log: _Log, rngs: _Rngs) -> None:
    """Poisson activity counts for the day; individual events get their type and time at the end."""
    trickle = (state.status == CHURNED) & (t - state.churn_day < TRICKLE_DAYS)
    rate = cust.base_rate * np.select([state.status == ACTIVE, trickle], [multiplier, TRICKLE_FACTOR], 0.0)
    rate *= WEEKEND_FACTOR if cal.weekday[t] >= 5 else 1.0
    idx = np.flatnonzero(rate > 0)
    counts = rngs.activity.poisson(rate[idx])
    busy = counts > 0
    slot = t % (2 * WINDOW)
    state.daily_counts[:, slot] = 0
    state.daily_counts[idx[busy], slot] = np.minimum(counts[busy], np.iinfo(np.int16).max)
    log.event_cust.append(idx[busy].astype(np.int32))
    log.event_count.append(counts[busy].astype(np.int32))
    log.event_day.append(np.full(int(busy.sum()), t, np.int32))


def _open_tickets(
    idx: np.ndarray, opened_s: np.ndarray, category: np.ndarray, state: _State, log: _Log, rngs: _Rngs
) -> None:
    """Resolution time depends on priority and the support team's load; slow answers get bad ratings."""
    rng, m = rngs.support, len(idx)
    if m == 0:
        return
    priority = rng.choice(len(PRIORITIES), m, p=PRIORITY_P).astype(np.int8)
    hours = np.exp(rng.normal(np.log(MEDIAN_RESOLUTION_H[priority]), 0.9))
    day = opened_s // DAY_S
    hours *= np.where((day >= _CRISIS[0]) & (day < _CRISIS[0] + 42), 2.5, 1.0)
    hours *= np.where(rng.random(m) < 0.04, 12.0, 1.0)  # tickets that get stuck
    closed_s = opened_s + (hours * 3600).astype(np.int64)
    score = np.clip(np.round(4.3 - 0.7 * np.log(hours / 24.0) + rng.normal(0.0, 1.0, m)), 1, 5)
    sat = np.where(rng.random(m) < 0.55, score, np.nan)
    _append(log.ticket, cust=idx.astype(np.int32), opened=opened_s, closed=closed_s, priority=priority, category=category, sat=sat)
    opened_d, closed_d = opened_s / DAY_S, closed_s / DAY_S
    _push(state.ticket_open, state.ticket_n.copy(), idx, opened_d)
    _push(state.ticket_close, state.ticket_n.copy(), idx, closed_d)
    _push(state.ticket_sat, state.ticket_n, idx, sat)
    bad = (sat <= 2) | (hours > 72)
    state.pain_start[idx[bad]] = opened_d[bad] + np.minimum(hours[bad] / 24.0, 3.0)
    state.pain_end[idx[bad]] = closed_d[bad] + 30.0


def _tickets(t: int, cust: _Customers, cal: _Calendar, state: _State, log: _Log, rngs: _Rngs) -> None:
    active = np.flatnonzero(state.status == ACTIVE)
    weekday = 1.2 if cal.weekday[t] < 5 else 0.4
    slipping = np.where(state.phase[active] == 1, 1.4, 1.0)
    p = 0.008 * weekday * cust.friction[active] * slipping
    idx = active[rngs.support.random(len(active)) < p]
    sec = _business_seconds(rngs.support, len(idx), 12.0, 3.0)
    sec = np.where(cust.signup_day[idx] == t, np.maximum(sec, cust.signup_sec[idx] + 600), sec)
    category = rngs.support.choice(len(CATEGORIES), len(idx), p=CATEGORY_P).astype(np.int8)
    _open_tickets(idx, t * DAY_S + np.minimum(sec, DAY_S - 1), category, state, log, rngs)


def _campaign(t: int, multiplier: np.ndarray, cust: _Customers, cal: _Calendar, state: _State, log: _Log, rngs: _Rngs) -> None:
    """Send the day's campaign; disengaged and departed customers open less."""
    kind = int(cal.campaign[t])
    if kind < 0:
        return
    since = t - state.churn_day
    churned = state.status == CHURNED
    audience = {
        "newsletter": (state.status == ACTIVE) | (churned & (since < 60)),
        "product_update": (state.status == ACTIVE) | (churned & (since < 60)),
        "upgrade_offer": (state.status == ACTIVE) & (state.plan < 2),
        "winback": churned & (since >= 30) & (since < 120),
    }[CAMPAIGNS[kind]]
    idx = np.flatnonzero(audience & cust.opt_in & (cust.signup_day < t))
    rng, m = rngs.marketing, len(idx)
    sent = t * DAY_S + int(CAMPAIGN_HOUR[kind]) * 3600 + rng.integers(0, 1800, m)
    engaged = np.where(state.status[idx] == ACTIVE, multiplier[idx], 0.15)
    p_open = sigmoid(cust.open_base[idx] + CAMPAIGN_OPEN_OFFSET[kind] + np.log(engaged))
    opened = rng.random(m) < p_open
    clicked = opened & (rng.random(m) < 0.2)
    open_s = np.where(opened, sent + 60 + rng.exponential(8 * 3600, m).astype(np.int64), NO_TIME)
    click_s = np.where(clicked, open_s + 5 + rng.exponential(600, m).astype(np.int64), NO_TIME)
    _append(log.message, cust=idx.astype(np.int32), sent=sent, opened=open_s, clicked=click_s, campaign=np.full(m, kind, np.int8))


# Per-run constants read by helpers above (set by `_run`); module-level to keep helper signatures short.
_DOM: list[np.ndarray] = [np.zeros(0)]
_PFAIL: list[np.ndarray] = [np.zeros(0)]
_CRISIS: list[int] = [0]


def _run(cust: _Customers, cal: _Calendar, rngs: _Rngs, coef: Coefficients) -> tuple[_Log, _State]:
    """Step through the days; each step is vectorised over customers."""
    state = _initial_state(cust, rngs.behaviour)
    log = _Log()
    _new_subscriptions(log, state, np.arange(cust.n), cust.signup_day.astype(np.int64) * DAY_S + cust.signup_sec)
    state.current_sub[:] = np.arange(cust.n)
    _DOM[0], _PFAIL[0] = cal.dom, cust.pfail
    _CRISIS[0] = int(rngs.support.integers(0, max(cal.n_days - 42, 1)))
    first = np.searchsorted(cust.signup_day, np.arange(cal.n_days + 1))
    for t in range(cal.n_days):
        _signups(t, np.arange(first[t], first[t + 1]), cust, cal, state, log)
        _renewals(t, cust, state, log, rngs, coef)
        _reactivations(t, cust, cal, state, log, rngs)
        _behaviour(t, cust, state, rngs)
        multiplier = _activity_multiplier(t, cust, state)
        _events(t, multiplier, cust, cal, state, log, rngs)
        _tickets(t, cust, cal, state, log, rngs)
        _campaign(t, multiplier, cust, cal, state, log, rngs)
    return log, state
