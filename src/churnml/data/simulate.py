"""A fast, deterministic simulator of a subscription software business, with the ground truth of churn.

Why: features, models and explanations need data where the answer is known. Every renewal decision is
drawn from a logistic model of the customer's *observable* recent behaviour (usage, support, payments,
onboarding, acquisition channel, tenure, plan), and the truth table keeps each factor's log-odds
contribution, so an oracle AUC and the true drivers of each churn can be checked.

The simulation steps day by day with numpy operations over all customers (no per-customer loop), with
one child random generator per component, so the same seed gives byte-identical tables.

Customers are simulated in blocks of ``BLOCK_CUSTOMERS``, each with its own generators, so a business
of any size can be simulated and written a few blocks at a time (``simulate_chunks``,
``write_simulation_chunks``) with memory bounded by the chunk, not the business; block 0 draws exactly
what one global run drew before blocks existed, so every simulation of up to one block is unchanged.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import date
from pathlib import Path
from typing import Any, Literal, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa

from churnml.contract import TABLES
from churnml.data.dataset import Dataset
from churnml.io import atomic_dir, write_csv, write_json, write_parquet

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

# The retention programme (``simulate(..., programme=True)``; docs/simulator.md, "Retention programme").
# On the first day of every simulated month it ranks active customers by their current risk, takes the
# top SELECT_SHARE, holds out HOLDOUT_SHARE of them at random and contacts the others with the play of
# their main problem (the playbook's play for that factor). A contact moves the log-odds of the
# customer's next renewal decision only, by an effect that depends on the customer (``contact_effect``).
SELECT_SHARE = 0.10
HOLDOUT_SHARE = 0.2
# Sleeping dogs: customers whom any contact pushes out (a trait, drawn once). Who they are follows what a
# business can see (Ascarza, Iyengar & Schleicher, JMR 2016: a proactive contact raised churn among
# customers it reminded that they pay for more than they use): a paying customer who barely uses the
# product (base activity below DORMANT_RATE events a weekday) is one with probability DOG_P_DORMANT, any
# other customer with DOG_P_OTHER (a hidden trait). About 6% of customers in all, half of them dormant payers.
DOG_P_DORMANT = 0.5
DOG_P_OTHER = 0.03
DORMANT_RATE = 0.4
SLEEPING_DOG_EFFECT = 0.9
# Exploration (``simulate(..., exploration=share)``, off by default): each month the team also contacts a
# random ``share`` of the other eligible customers, whatever their risk, with EXPLORE_HOLDOUT_SHARE held
# out: how retention teams learn who responds, where the risk rule alone never contacts the low-risk.
EXPLORE_HOLDOUT_SHARE = 0.5
LONG_GONE = 0.5  # latent disengagement above which re-engagement no longer helps
MIN_TENURE_DAYS = 7  # too new to be judged at risk
# Per factor of the main problem: the play (the default playbook's name for it), channel and cost.
PLAYS = (
    "Re-engagement campaign",  # engagement
    "Success-manager call",  # support
    "Billing outreach",  # billing
    "Webinar invitation",  # onboarding
    "Loyalty offer",  # promotion
    "First-renewal check-in",  # tenure
    "Plan review",  # plan
    "Account review",  # none: no risk factor
)
PLAY_CHANNELS = ("email", "phone", "email", "email", "email", "phone", "phone", "phone")
PLAY_COSTS = (2.0, 40.0, 5.0, 5.0, 25.0, 15.0, 20.0, 20.0)

# Customers are simulated in blocks of this many, each with its own generators (``_block_rngs``): the
# unit of chunked simulation. 2**17 keeps every size used so far (tests, benchmarks up to 100,000
# customers) in one block, so their tables are byte-identical to the single-block simulator's.
BLOCK_CUSTOMERS = 2**17
BLOCK_KEY = 1_000  # first spawn-key word of blocks >= 1: never one of the root seed's component children

PENDING, ACTIVE, CHURNED = 0, 1, 2
BASE_PFAIL, FLAKY_PFAIL, FLAKY_SHARE = 0.02, 0.35, 0.15  # first-attempt failure chance of a payment
HAZARD_BASE = 0.0011  # daily chance that an engaged customer starts slipping away (before risk factors)
RECOVERY_RATE = 1 / 60  # daily chance that a slipping customer turns around


@dataclass(frozen=True)
class Coefficients:
    """Log-odds weights of the churn model at each renewal; docs/simulator.md mirrors these numbers."""

    base: float = -4.05
    engagement_level: float = 0.7  # x log((typical + 2) / (recent + 2)), clipped to [-1, 3]
    engagement_trend: float = 1.5  # x log((prior + 2) / (recent + 2)), clipped to [0, 3]; tenure >= 60 d
    typical_events_30d: float = 16.0
    support_low_satisfaction: float = 0.8  # per ticket rated <= 2, closed in the last 60 days (max 2)
    support_backlog: float = 0.6  # per ticket open for more than 3 days (max 2)
    support_slow: float = 0.3  # per ticket closed in the last 60 days after more than 3 days (max 2)
    billing_failed: float = 1.25  # per failed payment attempt in the last 35 days (max 3)
    no_onboarding: float = 0.5
    onboarded: float = -0.35
    promotion: float = 0.8
    tenure_new: float = 1.0  # at the first renewal, fading as f = exp(-(tenure_months - 1) / 3) ...
    tenure_loyal: float = -0.3  # ... towards this: tenure_new * f + tenure_loyal * (1 - f)
    tenure_months_scale: float = 3.0
    plan_free: float = 0.35
    plan_pro: float = -0.3


COEF = Coefficients()
# The summed factor contributions at signal 1 (seed 7, 10,000 customers x 12 months, 74k renewals): their
# mean and standard deviation re-centre the intercept when the signal strength changes (`centred_base`).
CONTRIB_MEAN, CONTRIB_SD = 0.60, 1.25
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
    contact_truth: pd.DataFrame | None = None  # the retention programme's truth, when it ran
    uplift_truth: pd.DataFrame | None = None  # every eligible customer's potential outcomes, when it ran

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
    """New customers: risk is highest at the first renewal and turns into loyalty over the first months."""
    fade = np.exp(-np.maximum(tenure_days / 30.44 - 1.0, 0.0) / coef.tenure_months_scale)
    return coef.tenure_new * fade + coef.tenure_loyal * (1.0 - fade)


def plan_contribution(plan: np.ndarray, coef: Coefficients = COEF) -> np.ndarray:
    """Free users leave more easily; pro teams are invested."""
    return np.array([coef.plan_free, 0.0, coef.plan_pro])[plan]


def centred_base(signal: float, coef: Coefficients = COEF) -> float:
    """Intercept that keeps the expected churn per renewal about the same when the factors are scaled.

    The log-odds are ``b + signal * C`` with ``C`` the summed factor contributions. With ``C`` roughly
    normal (mean ``CONTRIB_MEAN``, sd ``CONTRIB_SD``), the mean of ``sigmoid(b + s C)`` is about
    ``sigmoid((b + s mu) / sqrt(1 + pi s^2 sd^2 / 8))`` (the probit approximation); ``b(s)`` keeps that
    argument at its value for ``s = 1``, where it is exactly ``coef.base``.
    """
    mu, spread = CONTRIB_MEAN, np.pi * CONTRIB_SD**2 / 8
    widen = float(np.sqrt((1 + spread * signal**2) / (1 + spread)))
    return coef.base + ((coef.base + mu) * (widen - 1.0) + (1.0 - signal) * mu)


def true_cause_codes(contributions: np.ndarray) -> np.ndarray:
    """Index into FACTORS of the largest positive contribution per row; len(FACTORS) means 'none'."""
    best = contributions.argmax(axis=1)
    positive = contributions.max(axis=1) > 0
    return np.where(positive, best, len(FACTORS))


def contact_effect(
    play: np.ndarray, contrib: np.ndarray, disengagement: np.ndarray, channel: np.ndarray, dog: np.ndarray
) -> np.ndarray:
    """Change in a contacted customer's renewal log-odds (negative = the contact helps).

    ``play`` indexes ``PLAYS``; ``contrib`` are the renewal's factor contributions (columns ``FACTORS``).
    Each play works on its own problem and only where the problem can still be fixed: billing outreach
    gets most failing cards updated, re-engagement brings back the slipping-away but not the long gone,
    the loyalty offer holds price-sensitive promotion customers (others barely care), the success-manager
    call repairs support trouble, onboarding and first-renewal calls help the not yet onboarded and the
    new. Sleeping dogs leave more often whatever the play.
    """
    engagement, support, billing, onboarding, _, tenure, _ = contrib.T
    effect = np.select(
        [play == k for k in range(len(PLAYS))],
        [
            np.where(disengagement < LONG_GONE, -0.6 * np.maximum(engagement, 0.0), 0.0),
            -0.6 * np.maximum(support, 0.0),
            -0.8 * np.maximum(billing, 0.0),
            np.where(onboarding > 0, -0.4, 0.0),
            np.where(channel == PROMOTION, -0.9, -0.15),
            -0.35 * np.maximum(tenure, 0.0),
            np.full(len(play), -0.2),
            np.full(len(play), -0.1),
        ],
    )
    return np.where(dog, SLEEPING_DOG_EFFECT, effect)


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
    dom, weekday, month = days.day.to_numpy(), days.day_of_week.to_numpy(), days.month.to_numpy()
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


def _business_seconds(
    rng: np.random.Generator, size: int, mean_h: float = 13.0, sd_h: float = 3.2
) -> np.ndarray:
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
        pfail=np.where(rng.random(n) < FLAKY_SHARE, FLAKY_PFAIL, BASE_PFAIL),
        card_expiry=signup_day + rng.integers(30, 4 * 365, n).astype(np.int32),
        opt_in=rng.random(n) < 0.75,
        open_base=rng.normal(-0.6, 0.8, n),
        friction=rng.lognormal(0.0, 0.7, n) * np.array([1.0, 1.3, 1.6, 2.0])[size],
        event_mix=mix.cumsum(axis=1),
    )


def sleeping_dogs(u: np.ndarray, cust: _Customers) -> np.ndarray:
    """Sleeping dogs from one uniform draw per customer: dormant payers (a paid plan, base activity below
    ``DORMANT_RATE``) with probability ``DOG_P_DORMANT``, everyone else with ``DOG_P_OTHER``."""
    dormant_payer = (cust.plan > 0) & (cust.base_rate < DORMANT_RATE)
    return u < np.where(dormant_payer, DOG_P_DORMANT, DOG_P_OTHER)


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
    contact_row: np.ndarray  # row of the programme log awaiting this customer's next renewal, or -1
    potential_row: np.ndarray  # row of the potential-outcome log awaiting the next renewal, or -1


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
        contact_row=np.full(n, -1, np.int64),
        potential_row=np.full(n, -1, np.int64),
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
            "contact": [],
        }
    )
    contact: dict = field(
        default_factory=lambda: {"cust": [], "time": [], "play": [], "treated": [], "dog": []}
    )
    n_contacts: int = 0
    outcome: dict = field(
        default_factory=lambda: {"row": [], "day": [], "without": [], "with_contact": [], "churned": []}
    )
    # Every eligible customer at every programme date, contacted or not: the play they would get and, at
    # their next renewal, the churn probability without and with that contact (potential outcomes).
    potential: dict = field(default_factory=lambda: {"cust": [], "day": [], "play": [], "listed": []})
    n_potential: int = 0
    potential_outcome: dict = field(
        default_factory=lambda: {"row": [], "day": [], "without": [], "with_contact": [], "churned": []}
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
    _append(
        log.sub,
        cust=idx.astype(np.int32),
        start=start_s,
        plan=state.plan[idx].copy(),
        mrr=state.mrr[idx].copy(),
    )
    log.n_subs += len(idx)
    state.current_sub[idx] = rows


def _end_subscriptions(log: _Log, state: _State, idx: np.ndarray, end_s: np.ndarray) -> None:
    _append(log.sub_end, row=state.current_sub[idx].copy(), end=end_s)


# ---------------------------------------------------------------------------------------------------
# One simulated day, in order: signups, renewals (at midnight), win-backs, behaviour, events, tickets,
# campaigns. Times are int64 seconds from the calendar origin until the frames are built.


@dataclass(frozen=True)
class _Rngs:
    """One independent generator per component, so changing one component leaves the others' draws alone."""

    customers: np.random.Generator
    behaviour: np.random.Generator
    activity: np.random.Generator
    churn: np.random.Generator
    payments: np.random.Generator
    support: np.random.Generator
    marketing: np.random.Generator
    details: np.random.Generator
    programme: np.random.Generator | None = None  # drawn only when the programme runs


@dataclass(frozen=True)
class _World:
    """What stays fixed during a run."""

    cust: _Customers
    cal: _Calendar
    rngs: _Rngs
    coef: Coefficients  # with the intercept re-centred for the signal strength
    crisis_start: int  # first day of a six-week stretch where support is overloaded
    signal: float = 1.0  # multiplies every factor's log-odds contribution at the renewals
    sleeping_dog: np.ndarray | None = None  # per customer; None = no retention programme
    forecast: bool = False  # renewals record their probability but nobody leaves (`churn_forecast`)
    exploration: float = 0.0  # share of the other eligible customers contacted at random each month


def _signups(t: int, idx: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    state.status[idx] = ACTIVE
    state.billing_day[idx] = min(int(w.cal.dom[t]), 28)
    state.cycle_start[idx] = t
    paid = idx[state.plan[idx] > 0]
    _append(
        log.tx,
        cust=paid.astype(np.int32),
        time=t * DAY_S + w.cust.signup_sec[paid] + 30,
        amount=state.mrr[paid].copy(),
        failed=np.zeros(len(paid), bool),
    )


def _window_counts(counts: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """Activity in the 30 days before day t and in the 30 days before those (ring buffer of 60 days)."""
    recent = (t - 1 - np.arange(WINDOW)) % (2 * WINDOW)
    prior = (t - 1 - WINDOW - np.arange(WINDOW)) % (2 * WINDOW)
    return counts[:, recent].sum(axis=1, dtype=np.int64), counts[:, prior].sum(axis=1, dtype=np.int64)


def _contributions(t: int, idx: np.ndarray, w: _World, state: _State) -> tuple[np.ndarray, np.ndarray]:
    """Per-factor log-odds for the customers renewing at midnight of day t, and their 30-day usage."""
    cust, coef = w.cust, w.coef
    tenure = t - cust.signup_day[idx] - cust.signup_sec[idx] / DAY_S
    recent, prior = _window_counts(state.daily_counts[idx], t)
    recent = recent * WINDOW / np.clip(tenure, 1.0, WINDOW)  # per 30 days of tenure for new customers
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


def _renewals(t: int, w: _World, state: _State, log: _Log) -> None:
    """Monthly renewal at midnight of the billing day: churn decision, then plan change and payment."""
    due = (state.status == ACTIVE) & (state.billing_day == w.cal.dom[t]) & (t - state.cycle_start >= 20)
    idx = np.flatnonzero(due)
    if len(idx) == 0:
        return
    contrib, recent = _contributions(t, idx, w, state)
    contrib = contrib * w.signal
    logit = w.coef.base + contrib.sum(axis=1)
    if w.sleeping_dog is None:
        contact = np.zeros(len(idx))
    else:
        contact, awaited, change = _contact_effects(idx, contrib, w, state, log)
    prob = sigmoid(logit + contact)
    churned = (w.rngs.churn.random(len(idx)) < prob) & (not w.forecast)
    cause = true_cause_codes(contrib)
    _append(
        log.truth,
        cust=idx.astype(np.int32),
        day=np.full(len(idx), t, np.int32),
        contrib=contrib,
        prob=prob,
        churned=churned,
        cause=cause.astype(np.int8),
        contact=contact,
    )
    if w.sleeping_dog is not None and len(awaited):
        _append(
            log.outcome,
            row=state.contact_row[idx[awaited]],
            day=np.full(len(awaited), t, np.int32),
            without=sigmoid(logit[awaited]),
            with_contact=sigmoid(logit[awaited] + change),
            churned=churned[awaited],
        )
        state.contact_row[idx[awaited]] = -1
    if w.sleeping_dog is not None:
        _potential_outcomes(idx, contrib, logit, churned, t, w, state, log)
    _churn(t, idx[churned], cause[churned] == BILLING, w, state, log)
    stay = ~churned
    _plan_changes(t, idx[stay], recent[stay], w, state, log)
    _payments(t, idx[stay], w, state, log)
    state.cycle_start[idx[stay]] = t


def _contact_effects(
    idx: np.ndarray, contrib: np.ndarray, w: _World, state: _State, log: _Log
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-odds change of a contact awaiting each of these renewals (0 for holdouts and everyone else).

    Also returns the positions of the renewals that a programme row awaits and that row's log-odds
    change had the customer been contacted (so holdouts get their counterfactual too).
    """
    assert w.sleeping_dog is not None  # only called when the programme runs
    rows = state.contact_row[idx]
    awaited = np.flatnonzero(rows >= 0)
    plays = _cat(log.contact["play"], np.int8)[rows[awaited]]
    treated = _cat(log.contact["treated"], bool)[rows[awaited]]
    who = idx[awaited]
    change = contact_effect(
        plays, contrib[awaited], state.disengagement[who], w.cust.channel[who], w.sleeping_dog[who]
    )
    effect = np.zeros(len(idx))
    effect[awaited] = np.where(treated, change, 0.0)
    return effect, awaited, change


def _potential_outcomes(
    idx: np.ndarray,
    contrib: np.ndarray,
    logit: np.ndarray,
    churned: np.ndarray,
    t: int,
    w: _World,
    state: _State,
    log: _Log,
) -> None:
    """For renewals awaited by a potential-outcome row: churn probability without and with its play."""
    assert w.sleeping_dog is not None
    rows = state.potential_row[idx]
    awaited = np.flatnonzero(rows >= 0)
    if len(awaited) == 0:
        return
    who = idx[awaited]
    plays = _cat(log.potential["play"], np.int8)[rows[awaited]]
    change = contact_effect(
        plays, contrib[awaited], state.disengagement[who], w.cust.channel[who], w.sleeping_dog[who]
    )
    _append(
        log.potential_outcome,
        row=rows[awaited],
        day=np.full(len(awaited), t, np.int32),
        without=sigmoid(logit[awaited]),
        with_contact=sigmoid(logit[awaited] + change),
        churned=churned[awaited],
    )
    state.potential_row[who] = -1


def _programme(t: int, w: _World, state: _State, log: _Log) -> None:
    """The month's retention list: the riskiest active customers, a random holdout, a play each; with
    exploration also a random share of the others, half of them held out."""
    if w.sleeping_dog is None or w.rngs.programme is None:
        return
    cust = w.cust
    tenure = t - cust.signup_day - cust.signup_sec / DAY_S
    idx = np.flatnonzero((state.status == ACTIVE) & (tenure >= MIN_TENURE_DAYS))
    if len(idx) == 0:
        return
    contrib, _ = _contributions(t, idx, w, state)
    contrib = contrib * w.signal
    plays = true_cause_codes(contrib).astype(np.int8)
    ranked = np.argsort(-contrib.sum(axis=1), kind="stable")[: int(np.ceil(SELECT_SHARE * len(idx)))]
    rng = w.rngs.programme
    treated = rng.random(len(ranked)) >= HOLDOUT_SHARE
    listed = np.zeros(len(idx), np.int8)
    listed[ranked] = 1
    if w.exploration > 0:  # drawn after the risk list's holdouts, so without exploration nothing moves
        others = np.flatnonzero(listed == 0)
        explored = others[rng.random(len(others)) < w.exploration]
        listed[explored] = 2
        ranked = np.concatenate([ranked, explored])
        treated = np.concatenate([treated, rng.random(len(explored)) >= EXPLORE_HOLDOUT_SHARE])
    rows = log.n_potential + np.arange(len(idx), dtype=np.int64)
    _append(
        log.potential,
        cust=idx.astype(np.int32),
        day=np.full(len(idx), t, np.int32),
        play=plays,
        listed=listed,
    )
    log.n_potential += len(idx)
    state.potential_row[:] = -1
    state.potential_row[idx] = rows
    chosen = idx[ranked]
    play = plays[ranked]
    time = t * DAY_S + _business_seconds(rng, len(chosen), 11.0, 1.5)
    rows = log.n_contacts + np.arange(len(chosen), dtype=np.int64)
    _append(
        log.contact,
        cust=chosen.astype(np.int32),
        time=time,
        play=play,
        treated=treated,
        dog=w.sleeping_dog[chosen],
    )
    log.n_contacts += len(chosen)
    state.contact_row[chosen] = rows


def _churn(t: int, idx: np.ndarray, involuntary: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    """End the subscription at the renewal date; billing-driven churn shows as a failed dunning run."""
    state.status[idx] = CHURNED
    state.churn_day[idx] = t
    state.voluntary[idx] = ~involuntary
    _end_subscriptions(log, state, idx, np.full(len(idx), t * DAY_S, np.int64))
    lost = idx[involuntary & (state.plan[idx] > 0)]
    for delay in (0, 3, 7):
        _append(
            log.tx,
            cust=lost.astype(np.int32),
            time=(t + delay) * DAY_S + w.rngs.payments.integers(3600, 6 * 3600, len(lost)),
            amount=state.mrr[lost].copy(),
            failed=np.ones(len(lost), bool),
        )


def _plan_changes(t: int, idx: np.ndarray, recent: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    """Busy customers upgrade, quiet pro teams downgrade: a new subscription row from the renewal date."""
    busy = np.clip(np.log((recent + 2) / (w.coef.typical_events_30d + 2)), -2.0, 2.0)
    plan = state.plan[idx]
    u = w.rngs.churn.random(len(idx))
    up = ((plan == 0) & (u < 0.03 * np.exp(0.7 * busy))) | ((plan == 1) & (u < 0.012 * np.exp(0.7 * busy)))
    down = (plan == 2) & (u < 0.01 * np.exp(-0.7 * busy))
    change = idx[up | down]
    if len(change) == 0:
        return
    _end_subscriptions(log, state, change, np.full(len(change), t * DAY_S, np.int64))
    state.plan[change] = np.where(up[up | down], state.plan[change] + 1, 1).astype(np.int8)
    state.mrr[change] = _fee(state.plan[change], w.cust.seats[change])
    _new_subscriptions(log, state, change, np.full(len(change), t * DAY_S, np.int64))


def _payments(t: int, idx: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    """Charge the fee; expired cards and flaky payers fail, dunning retries after 3 and 7 days recover."""
    rng = w.rngs.payments
    pay = idx[state.plan[idx] > 0]
    expired = t >= state.card_expiry[pay]
    first_fail = rng.random(len(pay)) < np.where(expired, 0.75, w.cust.pfail[pay])
    second_fail = first_fail & (rng.random(len(pay)) < 0.5)
    state.card_expiry[pay[expired]] += 3 * 365  # the customer enters a new card
    amount = state.mrr[pay]
    times = [(t + delay) * DAY_S + rng.integers(3600, 6 * 3600, len(pay)) for delay in (0, 3, 7)]
    attempts = [np.ones(len(pay), bool), first_fail, second_fail]
    outcomes = [first_fail, second_fail, np.zeros(len(pay), bool)]
    for time, made, failed in zip(times, attempts, outcomes, strict=True):
        _append(
            log.tx, cust=pay[made].astype(np.int32), time=time[made], amount=amount[made], failed=failed[made]
        )
    for time, failed in zip(times[:2], outcomes[:2], strict=True):
        _push(state.fail_time, state.fail_n, pay[failed], time[failed] / DAY_S)
    asks = first_fail & (rng.random(len(pay)) < 0.3)
    opened = times[0][asks] + rng.integers(1800, 48 * 3600, int(asks.sum()))
    _open_tickets(pay[asks], opened, np.full(int(asks.sum()), BILLING_CATEGORY, np.int8), w, state, log)


def _reactivations(t: int, w: _World, state: _State, log: _Log) -> None:
    """A few voluntary churners come back 1-12 months later with a new subscription on their old plan."""
    since = t - state.churn_day
    pool = np.flatnonzero(
        (state.status == CHURNED) & state.voluntary & ~state.reactivated & (since >= 30) & (since <= 365)
    )
    back = pool[w.rngs.churn.random(len(pool)) < 0.0006]
    if len(back) == 0:
        return
    state.status[back] = ACTIVE
    state.reactivated[back] = True
    state.billing_day[back] = min(int(w.cal.dom[t]), 28)
    state.cycle_start[back] = t
    state.disengagement[back], state.phase[back], state.drift[back] = 0.0, 0, 0.0
    start = t * DAY_S + _business_seconds(w.rngs.churn, len(back))
    _new_subscriptions(log, state, back, start)
    paid = state.plan[back] > 0
    _append(
        log.tx,
        cust=back[paid].astype(np.int32),
        time=start[paid] + 30,
        amount=state.mrr[back[paid]].copy(),
        failed=np.zeros(int(paid.sum()), bool),
    )


def _behaviour(t: int, w: _World, state: _State) -> None:
    """Latent disengagement: episodes start at a risk-dependent hazard, deepen over weeks, may recover."""
    cust, rng = w.cust, w.rngs.behaviour
    active = np.flatnonzero(state.status == ACTIVE)
    onboarded = cust.onboarded[active] & (cust.onboard_day[active] <= t)
    pain = (state.pain_start[active] <= t) & (t < state.pain_end[active])
    hazard = HAZARD_BASE * np.exp(
        0.6 * (cust.channel[active] == PROMOTION)
        + 0.5 * ~onboarded
        + 1.0 * pain
        + 0.3 * (state.plan[active] == 0)
        + cust.fit[active]
    )
    u = rng.random(len(active))
    phase = state.phase[active]
    phase = np.where((phase == 0) & (u < hazard), 1, np.where((phase == 1) & (u < RECOVERY_RATE), 2, phase))
    level = state.disengagement[active]
    level = np.where(phase == 1, np.minimum(level + state.speed[active], 1.0), level)
    level = np.where(phase == 2, np.maximum(level - 1 / 20, 0.0), level)
    phase = np.where((phase == 2) & (level <= 0.0), 0, phase)
    state.phase[active], state.disengagement[active] = phase.astype(np.int8), level
    if t % 7 == 0:
        state.drift[active] = 0.85 * state.drift[active] + rng.normal(0.0, 0.13, len(active))


def _activity_multiplier(t: int, w: _World, state: _State) -> np.ndarray:
    """Current usage relative to the customer's base rate (drift, disengagement, onboarding boost)."""
    onboarded = w.cust.onboarded & (w.cust.onboard_day <= t)
    return np.exp(state.drift + DISENGAGED_LOG_RATE * state.disengagement) * np.where(onboarded, 1.25, 1.0)


def _events(t: int, multiplier: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    """Poisson activity counts for the day; individual events get their type and time at the end."""
    trickle = (state.status == CHURNED) & (t - state.churn_day < TRICKLE_DAYS)
    rate = w.cust.base_rate * np.select([state.status == ACTIVE, trickle], [multiplier, TRICKLE_FACTOR], 0.0)
    if w.cal.weekday[t] >= 5:
        rate *= WEEKEND_FACTOR
    idx = np.flatnonzero(rate > 0)
    counts = w.rngs.activity.poisson(rate[idx])
    busy = counts > 0
    slot = t % (2 * WINDOW)
    state.daily_counts[:, slot] = 0
    state.daily_counts[idx[busy], slot] = np.minimum(counts[busy], np.iinfo(np.int16).max)
    log.event_cust.append(idx[busy].astype(np.int32))
    log.event_count.append(counts[busy].astype(np.int32))
    log.event_day.append(np.full(int(busy.sum()), t, np.int32))


def _open_tickets(
    idx: np.ndarray, opened_s: np.ndarray, category: np.ndarray, w: _World, state: _State, log: _Log
) -> None:
    """Resolution time depends on priority and the support team's load; slow answers get bad ratings."""
    rng, m = w.rngs.support, len(idx)
    if m == 0:
        return
    priority = rng.choice(len(PRIORITIES), m, p=PRIORITY_P).astype(np.int8)
    hours = np.exp(rng.normal(np.log(MEDIAN_RESOLUTION_H[priority]), 0.9))
    day = opened_s // DAY_S
    hours *= np.where((day >= w.crisis_start) & (day < w.crisis_start + 42), 2.5, 1.0)
    hours *= np.where(rng.random(m) < 0.04, 12.0, 1.0)  # tickets that get stuck
    closed_s = opened_s + (hours * 3600).astype(np.int64)
    score = np.clip(np.round(4.3 - 0.7 * np.log(hours / 24.0) + rng.normal(0.0, 1.0, m)), 1, 5)
    sat = np.where(rng.random(m) < 0.55, score, np.nan)
    _append(
        log.ticket,
        cust=idx.astype(np.int32),
        opened=opened_s,
        closed=closed_s,
        priority=priority,
        category=category,
        sat=sat,
    )
    opened_d, closed_d = opened_s / DAY_S, closed_s / DAY_S
    slot = state.ticket_n[idx] % TICKET_SLOTS
    state.ticket_open[idx, slot], state.ticket_close[idx, slot], state.ticket_sat[idx, slot] = (
        opened_d,
        closed_d,
        sat,
    )
    state.ticket_n[idx] += 1
    bad = (sat <= 2) | (hours > 72)
    state.pain_start[idx[bad]] = opened_d[bad] + np.minimum(hours[bad] / 24.0, 3.0)
    state.pain_end[idx[bad]] = closed_d[bad] + 30.0


def _tickets(t: int, w: _World, state: _State, log: _Log) -> None:
    """Customers with more friction (and those slipping away) contact support more."""
    rng = w.rngs.support
    active = np.flatnonzero(state.status == ACTIVE)
    weekday = 1.2 if w.cal.weekday[t] < 5 else 0.4
    p = 0.008 * weekday * w.cust.friction[active] * np.where(state.phase[active] == 1, 1.4, 1.0)
    idx = active[rng.random(len(active)) < p]
    sec = _business_seconds(rng, len(idx), 12.0, 3.0)
    sec = np.where(w.cust.signup_day[idx] == t, np.maximum(sec, w.cust.signup_sec[idx] + 600), sec)
    category = rng.choice(len(CATEGORIES), len(idx), p=CATEGORY_P).astype(np.int8)
    _open_tickets(idx, t * DAY_S + np.minimum(sec, DAY_S - 1), category, w, state, log)


def _campaign(t: int, multiplier: np.ndarray, w: _World, state: _State, log: _Log) -> None:
    """Send the day's campaign to opted-in customers; disengaged and departed customers open less."""
    kind = int(w.cal.campaign[t])
    if kind < 0:
        return
    since = t - state.churn_day
    active, churned = state.status == ACTIVE, state.status == CHURNED
    audience = {
        "newsletter": active | (churned & (since < 60)),
        "product_update": active | (churned & (since < 60)),
        "upgrade_offer": active & (state.plan < 2),
        "winback": churned & (since >= 30) & (since < 120),
    }[CAMPAIGNS[kind]]
    idx = np.flatnonzero(audience & w.cust.opt_in & (w.cust.signup_day < t))
    rng, m = w.rngs.marketing, len(idx)
    sent = t * DAY_S + int(CAMPAIGN_HOUR[kind]) * 3600 + rng.integers(0, 1800, m)
    engaged = np.where(active[idx], multiplier[idx], 0.15)
    opened = rng.random(m) < sigmoid(w.cust.open_base[idx] + CAMPAIGN_OPEN_OFFSET[kind] + np.log(engaged))
    clicked = opened & (rng.random(m) < 0.2)
    open_s = np.where(opened, sent + 60 + rng.exponential(8 * 3600, m).astype(np.int64), NO_TIME)
    click_s = np.where(clicked, open_s + 5 + rng.exponential(600, m).astype(np.int64), NO_TIME)
    _append(
        log.message,
        cust=idx.astype(np.int32),
        sent=sent,
        opened=open_s,
        clicked=click_s,
        campaign=np.full(m, kind, np.int8),
    )


def _day(t: int, w: _World, state: _State, log: _Log) -> None:
    """One simulated day, every step vectorised over customers."""
    first, last = np.searchsorted(w.cust.signup_day, [t, t + 1])
    _signups(t, np.arange(first, last), w, state, log)
    _renewals(t, w, state, log)
    _reactivations(t, w, state, log)
    if w.cal.dom[t] == 1 and t >= PREHISTORY_DAYS:
        _programme(t, w, state, log)
    _behaviour(t, w, state)
    multiplier = _activity_multiplier(t, w, state)
    _events(t, multiplier, w, state, log)
    _tickets(t, w, state, log)
    _campaign(t, multiplier, w, state, log)


_DayHook = Callable[[int, "_World", _State, "_Log"], None]


def _run(w: _World, before_day: _DayHook | None = None) -> _Log:
    """Step through the days; ``before_day`` sees the state at each midnight (the forecast forks there)."""
    cust = w.cust
    state = _initial_state(cust, w.rngs.behaviour)
    log = _Log()
    _new_subscriptions(
        log, state, np.arange(cust.n), cust.signup_day.astype(np.int64) * DAY_S + cust.signup_sec
    )
    for t in range(w.cal.n_days):
        if before_day is not None:
            before_day(t, w, state, log)
        _day(t, w, state, log)
    return log


# ---------------------------------------------------------------------------------------------------
# Building the contract tables from the run's log.


def _cat(chunks: Sequence[np.ndarray], dtype: type | str) -> np.ndarray:
    return np.concatenate(chunks).astype(dtype, copy=False) if chunks else np.zeros(0, dtype)


def _labels(codes: np.ndarray, labels: Sequence[str] | pa.Array) -> pd.Series:
    """Codes to a ``str`` column via Arrow: fast and memory-light even for tens of millions of rows."""
    array = labels if isinstance(labels, pa.Array) else pa.array(list(labels), pa.string())
    return array.take(pa.array(codes)).to_pandas()


def _times(origin: pd.Timestamp, seconds: np.ndarray) -> np.ndarray:
    """Seconds from the origin to tz-naive datetime64[ns]; NO_TIME becomes NaT."""
    ns = origin.value + seconds.astype(np.int64) * 10**9
    return np.where(seconds == NO_TIME, NAT, ns).view("datetime64[ns]")


def _order(cust: np.ndarray, time: np.ndarray) -> np.ndarray:
    return np.lexsort((time, cust))


def _block_ids(n: int, first: int, size: int) -> pa.Array:
    """Ids of codes ``first .. first + size - 1`` of a business of ``n``: one width for all, so the text
    order is the code order."""
    width = max(6, len(str(n)))
    return pa.array([f"C{i:0{width}d}" for i in range(first + 1, first + size + 1)], pa.string())


def _customers_frame(w: _World, ids: pa.Array) -> pd.DataFrame:
    cust = w.cust
    return pd.DataFrame(
        {
            "customer_id": ids.to_pandas(),
            "signup_at": _times(w.cal.origin, cust.signup_day.astype(np.int64) * DAY_S + cust.signup_sec),
            "plan": _labels(cust.plan, PLANS),
            "mrr": _fee(cust.plan, cust.seats).astype(np.float64),
            "acquisition_channel": _labels(cust.channel, CHANNELS),
            "country": _labels(cust.country, COUNTRIES),
            "company_size": _labels(cust.size, SIZES),
        }
    )


def _events_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """Expand daily counts into events with a type (the customer's mix) and a time of day, then sort."""
    rng, cust = w.rngs.details, w.cust
    counts = _cat(log.event_count, np.int64)
    who = np.repeat(_cat(log.event_cust, np.int32), counts)
    day = np.repeat(_cat(log.event_day, np.int64), counts)
    sec = _business_seconds(rng, len(who), 13.5, 3.5)
    first_day = cust.signup_day[who] == day
    signup_sec = cust.signup_sec[who]
    sec = np.where(first_day, signup_sec + 1 + sec * (DAY_S - 1 - signup_sec) // DAY_S, sec)
    kind = np.zeros(len(who), np.int64)
    u = rng.random(len(who))
    for k in range(len(ACTIVITY_EVENTS) - 1):
        kind += u > cust.event_mix[:, k][who]
    del u, first_day, signup_sec
    onboard = np.flatnonzero(cust.onboarded)
    who = np.concatenate([who, onboard])
    seconds = np.concatenate(
        [day * DAY_S + sec, cust.onboard_day[onboard].astype(np.int64) * DAY_S + cust.onboard_sec[onboard]]
    )
    kind = np.concatenate([kind, len(ACTIVITY_EVENTS) + cust.onboard_type[onboard].astype(np.int64)])
    del day, sec
    span = w.cal.n_days * DAY_S
    key = (who.astype(np.int64) * span + seconds) * len(EVENT_TYPES) + kind
    del who, seconds, kind
    key.sort()
    kind = key % len(EVENT_TYPES)
    key //= len(EVENT_TYPES)
    who, seconds = key // span, key % span
    del key
    value = np.full(len(kind), np.nan)
    core = kind == ACTIVITY_EVENTS.index("core_feature_use")
    value[core] = np.round(rng.lognormal(2.3, 0.8, int(core.sum())), 1)  # minutes in the core feature
    return pd.DataFrame(
        {
            "customer_id": _labels(who, ids),
            "timestamp": _times(w.cal.origin, seconds),
            "event_type": _labels(kind, EVENT_TYPES),
            "value": value,
        }
    )


def _subscriptions_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    who = _cat(log.sub["cust"], np.int32)
    end = np.full(len(who), NO_TIME, np.int64)
    end[_cat(log.sub_end["row"], np.int64)] = _cat(log.sub_end["end"], np.int64)
    start = _cat(log.sub["start"], np.int64)
    order = _order(who, start)
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "start_at": _times(w.cal.origin, start[order]),
            "end_at": _times(w.cal.origin, end[order]),
            "plan": _labels(_cat(log.sub["plan"], np.int8)[order], PLANS),
            "mrr": _cat(log.sub["mrr"], np.float64)[order],
        }
    )


def _transactions_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    who, time = _cat(log.tx["cust"], np.int32), _cat(log.tx["time"], np.int64)
    keep = np.flatnonzero(time <= w.cal.end_s)  # dunning retries after the end have not happened yet
    order = keep[_order(who[keep], time[keep])]
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "timestamp": _times(w.cal.origin, time[order]),
            "amount": _cat(log.tx["amount"], np.float64)[order],
            "status": _labels(_cat(log.tx["failed"], bool)[order].astype(np.int8), ("paid", "failed")),
        }
    )


def _tickets_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """Tickets opened by the end; those closed later are still open (no closing time, no rating)."""
    who, opened = _cat(log.ticket["cust"], np.int32), _cat(log.ticket["opened"], np.int64)
    closed, sat = _cat(log.ticket["closed"], np.int64), _cat(log.ticket["sat"], np.float64)
    keep = np.flatnonzero(opened <= w.cal.end_s)
    order = keep[_order(who[keep], opened[keep])]
    open_at_end = closed[order] > w.cal.end_s
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "opened_at": _times(w.cal.origin, opened[order]),
            "closed_at": _times(w.cal.origin, np.where(open_at_end, NO_TIME, closed[order])),
            "priority": _labels(_cat(log.ticket["priority"], np.int8)[order], PRIORITIES),
            "satisfaction": np.where(open_at_end, np.nan, sat[order]),
            "category": _labels(_cat(log.ticket["category"], np.int8)[order], CATEGORIES),
        }
    )


def _messages_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """Opens and clicks after the end have not happened yet."""
    who, sent = _cat(log.message["cust"], np.int32), _cat(log.message["sent"], np.int64)
    order = _order(who, sent)
    opened = _cat(log.message["opened"], np.int64)[order]
    clicked = _cat(log.message["clicked"], np.int64)[order]
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "sent_at": _times(w.cal.origin, sent[order]),
            "opened_at": _times(w.cal.origin, np.where(opened > w.cal.end_s, NO_TIME, opened)),
            "clicked_at": _times(w.cal.origin, np.where(clicked > w.cal.end_s, NO_TIME, clicked)),
            "campaign": _labels(_cat(log.message["campaign"], np.int8)[order], CAMPAIGNS),
        }
    )


def _truth_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    who, day = _cat(log.truth["cust"], np.int32), _cat(log.truth["day"], np.int64)
    order = _order(who, day)
    contrib = np.concatenate(log.truth["contrib"]) if log.truth["contrib"] else np.zeros((0, len(FACTORS)))
    cause = _cat(log.truth["cause"], np.int8)[order]
    churned = _cat(log.truth["churned"], bool)[order]
    frame = pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "renewal_at": _times(w.cal.origin, day[order] * DAY_S),
            "churn_prob": _cat(log.truth["prob"], np.float64)[order],
            "churned": churned,
            "involuntary": churned & (cause == BILLING),
            "true_cause": _labels(cause, (*FACTORS, "none")),
            "contrib_base": np.full(len(order), w.coef.base),
        }
    )
    for k, name in enumerate(FACTORS):
        frame[f"contrib_{name}"] = contrib[order, k]
    if w.sleeping_dog is not None:  # the log-odds a contact added (0 without one, or for a holdout)
        frame["contrib_contact"] = _cat(log.truth["contact"], np.float64)[order]
    return frame


def _contacts_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """The programme as a retention team records it: who, when, which play, which arm, channel, cost."""
    who, time = _cat(log.contact["cust"], np.int32), _cat(log.contact["time"], np.int64)
    order = _order(who, time)
    play = _cat(log.contact["play"], np.int8)[order]
    treated = _cat(log.contact["treated"], bool)[order]
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "contacted_at": _times(w.cal.origin, time[order]),
            "play": _labels(play, PLAYS),
            "arm": _labels((~treated).astype(np.int8), ("treatment", "holdout")),
            "channel": _labels(play, PLAY_CHANNELS),
            "cost": np.where(treated, np.array(PLAY_COSTS)[play], 0.0),
        }
    )


def _outcomes_by_row(n: int, outcome: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A renewal log's outcomes scattered to the ``n`` rows awaiting them: renewal time (NO_TIME when
    none came before the end), churn probability without and with the contact, and churned (NaN)."""
    row = _cat(outcome["row"], np.int64)
    renewal = np.full(n, NO_TIME, np.int64)
    renewal[row] = _cat(outcome["day"], np.int64) * DAY_S
    without, with_contact, churned = np.full(n, np.nan), np.full(n, np.nan), np.full(n, np.nan)
    without[row] = _cat(outcome["without"], np.float64)
    with_contact[row] = _cat(outcome["with_contact"], np.float64)
    churned[row] = _cat(outcome["churned"], bool)
    return renewal, without, with_contact, churned


def _contact_truth_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """Per programme row: the next renewal's churn probability with and without the contact (both arms).

    Rows whose renewal falls after the end of the data have no outcome (NaN/NaT).
    """
    who, time = _cat(log.contact["cust"], np.int32), _cat(log.contact["time"], np.int64)
    renewal, without, with_contact, churned = _outcomes_by_row(log.n_contacts, log.outcome)
    order = _order(who, time)
    treated = _cat(log.contact["treated"], bool)[order]
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "contacted_at": _times(w.cal.origin, time[order]),
            "play": _labels(_cat(log.contact["play"], np.int8)[order], PLAYS),
            "arm": _labels((~treated).astype(np.int8), ("treatment", "holdout")),
            "sleeping_dog": _cat(log.contact["dog"], bool)[order],
            "renewal_at": _times(w.cal.origin, renewal[order]),
            "churn_prob_without": without[order],
            "churn_prob_with": with_contact[order],
            "effect": without[order] - with_contact[order],
            "churned": churned[order],
        }
    )


LISTED = ("no", "risk", "exploration")  # how the programme picked a customer at a date


def _uplift_truth_frame(log: _Log, w: _World, ids: pa.Array) -> pd.DataFrame:
    """Per programme date and eligible customer, contacted or not: the play the programme would use and
    the next renewal's churn probability without and with it (NaN after the end of the data)."""
    who, day = _cat(log.potential["cust"], np.int32), _cat(log.potential["day"], np.int64)
    renewal, without, with_contact, churned = _outcomes_by_row(log.n_potential, log.potential_outcome)
    order = _order(who, day)
    assert w.sleeping_dog is not None
    return pd.DataFrame(
        {
            "customer_id": _labels(who[order], ids),
            "listed_at": _times(w.cal.origin, day[order] * DAY_S),
            "play": _labels(_cat(log.potential["play"], np.int8)[order], PLAYS),
            "listed": _labels(_cat(log.potential["listed"], np.int8)[order], LISTED),
            "sleeping_dog": w.sleeping_dog[who[order]],
            "renewal_at": _times(w.cal.origin, renewal[order]),
            "churn_prob_without": without[order],
            "churn_prob_with": with_contact[order],
            "effect": without[order] - with_contact[order],
            "churned": churned[order],
        }
    )


# ---------------------------------------------------------------------------------------------------
# Public API.


def _check(n_customers: int, months: int, signal: float, exploration: float, programme: bool) -> None:
    if n_customers <= 0 or months <= 0:
        raise ValueError(f"n_customers and months must be positive, got {n_customers} and {months}")
    if not np.isfinite(signal) or signal < 0:
        raise ValueError(f"signal must be a finite number >= 0, got {signal}")
    if not 0.0 <= exploration <= 1.0 or (exploration and not programme):
        raise ValueError(f"exploration must be in [0, 1] and needs programme=True, got {exploration}")


def _blocks(n_customers: int, block_customers: int) -> list[tuple[int, int]]:
    """(first customer code, size) of each block of ``block_customers``; the last may be smaller."""
    if block_customers <= 0:
        raise ValueError(f"block_customers must be positive, got {block_customers}")
    return [
        (first, min(block_customers, n_customers - first)) for first in range(0, n_customers, block_customers)
    ]


def _block_rngs(seed: int, block: int, programme: bool) -> _Rngs:
    """Block 0: the seed's own children, exactly those of the simulator before blocks (so any business of
    one block is unchanged). Block b >= 1: the children of ``SeedSequence(seed, spawn_key=(BLOCK_KEY, b))``,
    independent of block 0, of each other and of every other seed below 2**128 (entropy ``[seed, b]``
    would not be: it is the entropy of the seed ``seed + b * 2**32``)."""
    key = (BLOCK_KEY, block) if block else ()
    root = np.random.SeedSequence(seed, spawn_key=key)
    # Child k of a seed sequence does not depend on how many are spawned: the ninth (the programme's)
    # leaves the other eight, and so the tables without a programme, as they were.
    return _Rngs(*np.random.default_rng(root).spawn(9 if programme else 8))


def _crisis_day(support: np.random.Generator, cal: _Calendar) -> int:
    return int(support.integers(PREHISTORY_DAYS // 2, max(cal.n_days - 42, PREHISTORY_DAYS // 2 + 1)))


def _world(
    n_customers: int,
    months: int,
    seed: int,
    start: date,
    signal: float,
    programme: bool,
    exploration: float = 0.0,
    block: int = 0,
    block_customers: int = BLOCK_CUSTOMERS,
) -> _World:
    """The fixed part of one block's run: its customers, its generators, and what the whole business
    shares (calendar, coefficients, the support crisis)."""
    _check(n_customers, months, signal, exploration, programme)
    size = _blocks(n_customers, block_customers)[block][1]
    cal = _calendar(start, months)
    rngs = _block_rngs(seed, block, programme)
    cust = _draw_customers(rngs.customers, size, cal.n_days)
    crisis = _crisis_day(rngs.support, cal)  # drawn in every block, so each block's tickets start alike
    if block:  # the support team is shared: one crisis for the business, block 0's
        crisis = _crisis_day(_block_rngs(seed, 0, False).support, cal)
    coef = COEF if signal == 1.0 else replace(COEF, base=centred_base(signal))
    dogs = sleeping_dogs(rngs.programme.random(size), cust) if rngs.programme else None
    return _World(
        cust=cust,
        cal=cal,
        rngs=rngs,
        coef=coef,
        crisis_start=crisis,
        signal=float(signal),
        sleeping_dog=dogs,
        exploration=float(exploration),
    )


def _simulate_block(params: dict, block: int) -> Simulation:
    """One block's tables and truth, with the business's customer ids (block ``b`` holds the ids after
    those of blocks ``0 .. b-1``), so concatenating blocks in order keeps every table sorted."""
    n, block_customers = params["n_customers"], params.get("block_customers", BLOCK_CUSTOMERS)
    programme = params.get("programme", False)
    w = _world(
        n,
        params["months"],
        params["seed"],
        date.fromisoformat(params["start"]),
        params.get("signal", 1.0),
        programme,
        params.get("exploration", 0.0),
        block,
        block_customers,
    )
    log = _run(w)
    first, size = _blocks(n, block_customers)[block]
    ids = _block_ids(n, first, size)
    tables = {
        "customers": _customers_frame(w, ids),
        "events": _events_frame(log, w, ids),
        "subscriptions": _subscriptions_frame(log, w, ids),
        "transactions": _transactions_frame(log, w, ids),
        "tickets": _tickets_frame(log, w, ids),
        "messages": _messages_frame(log, w, ids),
    }
    if programme:
        tables["contacts"] = _contacts_frame(log, w, ids)
    return Simulation(
        tables=tables,
        truth=_truth_frame(log, w, ids),
        end=w.cal.origin + pd.Timedelta(seconds=w.cal.end_s),
        params=params,
        contact_truth=_contact_truth_frame(log, w, ids) if programme else None,
        uplift_truth=_uplift_truth_frame(log, w, ids) if programme else None,
    )


def _concat(sims: list[Simulation]) -> Simulation:
    """Consecutive blocks as one simulation (one block is returned as it is)."""
    if len(sims) == 1:
        return sims[0]

    def stack(frames: list[pd.DataFrame | None]) -> pd.DataFrame | None:
        return None if frames[0] is None else pd.concat(frames, ignore_index=True)

    tables = {name: pd.concat([s.tables[name] for s in sims], ignore_index=True) for name in sims[0].tables}
    truth = pd.concat([s.truth for s in sims], ignore_index=True)
    return replace(
        sims[0],
        tables=tables,
        truth=truth,
        contact_truth=stack([s.contact_truth for s in sims]),
        uplift_truth=stack([s.uplift_truth for s in sims]),
    )


def _params(
    n_customers: int,
    months: int,
    seed: int,
    start: date,
    signal: float,
    programme: bool,
    exploration: float,
    block_customers: int,
) -> dict:
    _check(n_customers, months, signal, exploration, programme)
    _blocks(n_customers, block_customers)
    params: dict[str, Any] = {
        "n_customers": int(n_customers),
        "months": int(months),
        "seed": int(seed),
        "start": start.isoformat(),
        "prehistory_days": PREHISTORY_DAYS,
        "version": VERSION,
    }
    if signal != 1.0:  # recorded only when set, so the default's files stay as they were
        params["signal"] = float(signal)
    if programme:
        params["programme"] = True
    if exploration:
        params["exploration"] = float(exploration)
    if n_customers > block_customers:  # one block is the same business whatever the block size
        params["block_customers"] = int(block_customers)
    return params


def simulate(
    n_customers: int,
    months: int,
    seed: int,
    start: date = date(2025, 1, 1),
    signal: float = 1.0,
    programme: bool = False,
    exploration: float = 0.0,
    block_customers: int = BLOCK_CUSTOMERS,
) -> Simulation:
    """Simulate ``n_customers`` signing up from a year before ``start`` until a month before the end.

    Rows run from ``start - 365 days`` to ``start + months``; the same arguments give identical tables.
    ``signal`` scales how strongly the risk factors move each renewal's log-odds (1 = the documented
    model, 0 = churn at random); the intercept is re-centred so the churn rate stays about the same.
    ``programme`` runs the monthly retention programme from ``start`` on: a ``contacts`` table, and its
    truth (``Simulation.contact_truth``). Without it the tables are exactly those of earlier versions.
    ``exploration`` (with the programme) also contacts a random share of the customers the risk rule
    did not pick, half of them held out, so that who responds can be learned across all customers.
    Customers are simulated in blocks of ``block_customers`` (``BLOCK_CUSTOMERS``; tests override it):
    the tables are those of ``simulate_chunks`` put together, whatever the chunk size.
    """
    params = _params(n_customers, months, seed, start, signal, programme, exploration, block_customers)
    blocks = range(len(_blocks(n_customers, block_customers)))
    return _concat([_simulate_block(params, block) for block in blocks])


def simulate_chunks(
    n_customers: int,
    months: int,
    seed: int,
    start: date = date(2025, 1, 1),
    signal: float = 1.0,
    programme: bool = False,
    exploration: float = 0.0,
    chunk_customers: int = BLOCK_CUSTOMERS,
    block_customers: int = BLOCK_CUSTOMERS,
) -> Iterator[Simulation]:
    """``simulate``'s business in chunks of whole blocks (``chunk_customers`` rounded down to a multiple
    of ``block_customers``, at least one block), made one at a time: memory follows the chunk, not the
    business. The chunks in order, put together, are ``simulate``'s tables byte for byte."""
    params = _params(n_customers, months, seed, start, signal, programme, exploration, block_customers)
    if chunk_customers <= 0:
        raise ValueError(f"chunk_customers must be positive, got {chunk_customers}")
    per_chunk = max(1, chunk_customers // block_customers)
    blocks = len(_blocks(n_customers, block_customers))

    def chunks() -> Iterator[Simulation]:
        for first in range(0, blocks, per_chunk):
            yield _concat([_simulate_block(params, b) for b in range(first, min(first + per_chunk, blocks))])

    return chunks()


_T = TypeVar("_T")


def _repeat(obj: _T, n: int, reps: int) -> _T:
    """A copy of a per-customer dataclass with every customer repeated ``reps`` times in a row."""
    values: dict[str, Any] = {}
    for f in fields(obj):  # type: ignore[arg-type]
        value = getattr(obj, f.name)
        per_customer = isinstance(value, np.ndarray) and value.shape[:1] == (n,)
        values[f.name] = np.repeat(value, reps, axis=0) if per_customer else value
    return replace(obj, **values)  # type: ignore[type-var]


def _fork_outcomes(
    t: int, w: _World, state: _State, log: _Log, horizon_days: int, reps: int, seed: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per customer, over ``reps`` futures from midnight of day ``t``: the mean probability that a
    renewal in the next ``horizon_days`` days goes against them, and how many futures' first renewal in
    that window had each dominant cause (columns ``FACTORS`` then "none").

    Each customer is repeated ``reps`` times, with fresh random generators, and nobody leaves: a renewal
    only records its probability. The chance of churning within the window is then, in each future,
    ``1 - prod(1 - p)`` over its renewals: leaving at one renewal ends the path, and a path that stays is
    exactly the one that goes on (the churn draw is independent of everything else), so no draw of the
    decision itself is needed and its noise is averaged out analytically.
    """
    n = w.cust.n
    rngs = _Rngs(*np.random.default_rng([*seed, t]).spawn(9 if w.rngs.programme is not None else 8))
    dogs = None if w.sleeping_dog is None else np.repeat(w.sleeping_dog, reps)
    fork = replace(w, cust=_repeat(w.cust, n, reps), rngs=rngs, sleeping_dog=dogs, forecast=True)
    fork_state = _repeat(state, n, reps)
    fork_log = _Log(  # the programme's rows that renewals look up; the fork's own rows are dropped
        contact={k: list(v) for k, v in log.contact.items()},
        n_contacts=log.n_contacts,
        potential={k: list(v) for k, v in log.potential.items()},
        n_potential=log.n_potential,
    )
    for day in range(t, min(t + horizon_days, w.cal.n_days)):
        _day(day, fork, fork_state, fork_log)
    who = _cat(fork_log.truth["cust"], np.int64)
    survive = np.zeros(n * reps)
    np.add.at(survive, who, np.log1p(-_cat(fork_log.truth["prob"], np.float64)))
    _, first = np.unique(who, return_index=True)  # rows are appended day by day: the first renewal
    causes = np.zeros((n, len(FACTORS) + 1), np.int64)
    np.add.at(causes, (who[first] // reps, _cat(fork_log.truth["cause"], np.int64)[first]), 1)
    return (1.0 - np.exp(survive)).reshape(n, reps).mean(axis=1), causes


def churn_forecast(
    sim: Simulation,
    cutoffs: Sequence[pd.Timestamp],
    horizon_days: int,
    futures: int = 200,
    seed: int = 0,
    batch: int = 25,
) -> pd.DataFrame:
    """The best possible churn probability at each cutoff: the Bayes oracle for a model scored there.

    For every customer active at midnight of a cutoff, the probability that their subscription ends in
    ``[cutoff, cutoff + horizon_days)`` given *everything* the simulation knows at that moment, hidden
    traits and the latent slide into disengagement included, averaged over ``futures`` simulated futures
    (the simulation is re-run from ``sim.params`` and forked at each cutoff). The truth table's renewal
    probabilities, by contrast, use behaviour up to each renewal, after the cutoff: a hindsight that no
    forecast can have.

    Returns ``customer_id``, ``cutoff``, ``churn_prob`` and the forecast of the cause of the customer's
    next renewal decision in the window: ``cause``, the dominant cause (``true_cause``'s labels) most
    futures give it, and ``cause_share``, the share of futures with a renewal that agree (missing where
    no future renews in the window). The truth table's ``true_cause`` of that decision also rests on
    behaviour after the cutoff; this is the most any risk list scored at the cutoff could name.
    """
    params = sim.params
    n, block_customers = params["n_customers"], params.get("block_customers", BLOCK_CUSTOMERS)
    cal = _calendar(date.fromisoformat(params["start"]), params["months"])
    days = {}
    for cutoff in cutoffs:
        offset = pd.Timestamp(cutoff) - cal.origin
        if offset != pd.Timedelta(days=offset.days) or not 0 <= offset.days < cal.n_days:
            raise ValueError(f"cutoff {cutoff} is not a midnight inside the simulated days")
        if offset.days + horizon_days > cal.n_days:  # a shorter window would forecast less churn
            raise ValueError(f"cutoff {cutoff}: its {horizon_days}-day horizon runs past the simulated days")
        days[offset.days] = pd.Timestamp(cutoff)
    frames: dict[tuple[int, int], pd.DataFrame] = {}  # by (day, block): cutoff, then customer order

    def fork(ids: pa.Array, block: int, t: int, world: _World, state: _State, log: _Log) -> None:
        if t not in days:
            return
        active = np.flatnonzero(state.status == ACTIVE)
        sizes = {done: min(batch, futures - done) for done in range(0, futures, batch)}
        keys = {done: (seed, done, BLOCK_KEY, block) if block else (seed, done) for done in sizes}
        chunks = [
            _fork_outcomes(t, world, state, log, horizon_days, size, keys[done])
            for done, size in sizes.items()
        ]
        probability = np.average(
            np.column_stack([p for p, _ in chunks]), axis=1, weights=list(sizes.values())
        )
        causes = np.sum([c for _, c in chunks], axis=0)[active]
        renewing = causes.sum(axis=1)
        top = causes.argmax(axis=1)
        cause = _labels(top, (*FACTORS, "none")).where(renewing > 0)
        frames[(t, block)] = pd.DataFrame(
            {
                "customer_id": _labels(active, ids),
                "cutoff": days[t],
                "churn_prob": probability[active],
                "cause": cause.array,
                "cause_share": np.where(
                    renewing > 0, causes[np.arange(len(top)), top] / np.maximum(renewing, 1), np.nan
                ),
            }
        )

    for block, (first, size) in enumerate(_blocks(n, block_customers) if days else []):
        w = _world(
            n,
            params["months"],
            params["seed"],
            date.fromisoformat(params["start"]),
            params.get("signal", 1.0),
            params.get("programme", False),
            params.get("exploration", 0.0),
            block,
            block_customers,
        )
        _run(w, before_day=functools.partial(fork, _block_ids(n, first, size), block))
    columns = {"customer_id": pd.Series(dtype="str"), "cutoff": pd.Series(dtype="datetime64[ns]")}
    empty = pd.DataFrame(
        {
            **columns,
            "churn_prob": pd.Series(dtype=np.float64),
            "cause": pd.Series(dtype="str"),
            "cause_share": pd.Series(dtype=np.float64),
        }
    )
    return pd.concat([frames[k] for k in sorted(frames)], ignore_index=True) if frames else empty


PRICE_COLUMNS = frozenset({"amount", "mrr"})  # the columns a pricing change moves


def price_change(dataset: Dataset, at: pd.Timestamp, factor: float) -> Dataset:
    """The same business with prices times ``factor`` from ``at`` on: payments, and the MRR of
    subscriptions and customers that start after it. Behaviour is unchanged, so nothing else moves: a
    known shift for checking drift detection (``benchmarks/bench_drift.py``, the drift tests)."""
    tables = dict(dataset.tables)
    for name, time, column in (
        ("transactions", "timestamp", "amount"),
        ("subscriptions", "start_at", "mrr"),
        ("customers", "signup_at", "mrr"),
    ):
        frame = tables[name]
        tables[name] = frame.assign(**{column: frame[column].where(frame[time] < at, frame[column] * factor)})
    return Dataset(tables=tables, end=dataset.end)


def _frames(sim: Simulation) -> dict[str, pd.DataFrame]:
    """What is written: the contract tables, ``truth_renewals`` and, with the programme, its truths."""
    frames = {name: sim.tables[name] for name in TABLES if name in sim.tables}
    frames["truth_renewals"] = sim.truth
    if sim.contact_truth is not None:
        frames["truth_contacts"] = sim.contact_truth
    if sim.uplift_truth is not None:
        frames["truth_uplift"] = sim.uplift_truth
    return frames


def write_simulation(sim: Simulation, out_dir: Path, fmt: Literal["parquet", "csv"] = "parquet") -> Path:
    """Write each contract table, ``truth_renewals`` and ``simulation.json`` (each file atomically)."""
    if fmt not in ("parquet", "csv"):
        raise ValueError(f"fmt must be 'parquet' or 'csv', got {fmt!r}")
    out_dir = Path(out_dir)
    frames = _frames(sim)
    chunked = [name for name in frames if (out_dir / f"{name}.{fmt}").is_dir()]
    if chunked:  # a file cannot replace a directory; refuse before writing anything
        raise ValueError(
            f"{out_dir} holds a chunked simulation ({chunked[0]}.{fmt}/ is a directory): write to another "
            "directory, or write in chunks again"
        )
    for name, frame in frames.items():
        target = out_dir / f"{name}.{fmt}"
        if fmt == "parquet":
            write_parquet(target, frame, metadata={"simulation": sim.params})
        else:
            write_csv(target, frame, for_people=False)
    rows = {name: len(frame) for name, frame in frames.items()}
    write_json(
        out_dir / "simulation.json",
        {"params": sim.params, "end": sim.end.isoformat(), "rows": rows, "format": fmt},
    )
    return out_dir


def _write_part(directory: Path, part: int, sim: Simulation) -> dict[str, int]:
    """One chunk as ``<table>.parquet/part-<part>.parquet`` for every table; its rows per table."""
    rows = {}
    for name, frame in _frames(sim).items():
        target = directory / f"{name}.parquet" / f"part-{part:05d}.parquet"
        write_parquet(target, frame, metadata={"simulation": sim.params})
        rows[name] = len(frame)
    return rows


def write_simulation_chunks(chunks: Iterable[Simulation], out_dir: Path) -> Path:
    """Write a simulation made in chunks (``simulate_chunks``), one chunk in memory at a time: each table
    as a Parquet dataset ``<table>.parquet/part-00000.parquet, ...`` (one file per chunk, in customer
    order; churnml's loader and ``pd.read_parquet`` read the directory), and ``simulation.json``.

    Why the whole directory is swapped in at the end (``atomic_dir``): a killed run of many chunks must
    leave the previous simulation readable, not some tables new and some old. So a directory holding
    anything but a simulation is refused rather than replaced.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (
        not out_dir.is_dir() or (any(out_dir.iterdir()) and not (out_dir / "simulation.json").is_file())
    ):
        raise ValueError(f"{out_dir} is not empty and holds no simulation.json: write to a new directory")
    rows: dict[str, int] = {}
    params: dict | None = None
    end: pd.Timestamp | None = None
    parts = 0
    with atomic_dir(out_dir) as tmp:
        for sim in chunks:
            for name, count in _write_part(tmp, parts, sim).items():
                rows[name] = rows.get(name, 0) + count
            params, end, parts = sim.params, sim.end, parts + 1
            del sim  # before the next chunk is made: one chunk in memory
        if params is None or end is None:
            raise ValueError("no chunks to write")
        write_json(
            tmp / "simulation.json",
            {"params": params, "end": end.isoformat(), "rows": rows, "format": "parquet", "parts": parts},
        )
    return out_dir
