"""Behavioural tests on a trained churn model, after Made With ML's tests/model/test_behavioral.py.

- **Invariance**: changing a customer's `country`, which the simulator draws independently of everything
  (docs/simulator.md: "no effect on anything"), barely moves the score.
- **Direction**: all else equal, a failed payment or a month of silence raises the score.
- **Minimum functionality**: hand-made customers that anyone would rank (an obviously healthy one, an
  obviously slipping one) get the obvious order.

One model is trained per module on the shared simulated training set (tests/model/conftest.py). Every
check goes through ``ChurnModel.predict_proba`` only, so it holds for whichever candidate training picks
(boosted trees or a linear model). A tree ensemble is not monotone row by row, so directional tests
assert on aggregates over real rows, plus a bound on how far any single row may move the wrong way.
Changes are made as consistent counterfactuals (every feature an added failed payment or a silent month
would change, changes), so the model is asked about customers that could exist.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from churnml.config import Config
from churnml.features.training_set import TrainingSet
from churnml.pipelines import train
from churnml.pipelines.train import TrainResult
from churnml.training.model import ChurnModel

# One group: the trained model is a module fixture, built once on whichever worker runs the group.
pytestmark = pytest.mark.xdist_group("behavioral")

SILENT_DAYS = 30  # the silence counterfactual removes exactly the last 30-day window's events
_WINDOW = re.compile(r"_(\d+d|total)$")


@pytest.fixture(scope="module")
def trained(
    tmp_path_factory: pytest.TempPathFactory, make_config: Callable[..., Config], training_set: TrainingSet
) -> TrainResult:
    return train.run(make_config(tmp_path_factory.mktemp("behavioral")), training_set=training_set)


@pytest.fixture(scope="module")
def model(trained: TrainResult) -> ChurnModel:
    return trained.model


@pytest.fixture(scope="module")
def rows(trained: TrainResult) -> pd.DataFrame:
    """Real customers: the test cutoff's rows (behaviour, not accuracy, is tested, so it does not matter
    that the shipped model is refitted on them too)."""
    return trained.split.test.reset_index(drop=True)


# --- counterfactuals ---------------------------------------------------------------------------------


def _window(name: str) -> int | None:
    """The lookback window of a feature from its suffix (``_30d`` -> 30, ``_total`` -> None)."""
    suffix = _WINDOW.search(name)
    assert suffix, f"{name}: no window suffix"
    return None if suffix.group(1) == "total" else int(suffix.group(1)[:-1])


def _sibling(name: str, window: int) -> str:
    return _WINDOW.sub(f"_{window}d", name)


def _columns(model: ChurnModel, pattern: str) -> list[str]:
    found = [n for n in model.feature_names if re.fullmatch(pattern, n)]
    assert found, f"the model has no feature matching {pattern!r} (renamed in the catalogue?)"
    return found


def with_failed_payments(frame: pd.DataFrame, model: ChurnModel, n: int = 1) -> pd.DataFrame:
    """The same customers with ``n`` more failed payment attempts the day before the cutoff."""
    out = frame.copy()
    # Every window contains yesterday. A failed attempt is no purchase: the paid-only features stay.
    for counted in _columns(model, r"(failed_payments|transactions_count)_(\d+d|total)"):
        out[counted] = frame[counted] + n
    for share in _columns(model, r"failed_payment_share_\d+d"):
        w = _window(share)
        out[share] = out[f"failed_payments_{w}d"] / out[f"transactions_count_{w}d"]
    last = frame["days_since_last_failed_payment"]
    out["days_since_last_failed_payment"] = last.clip(upper=1.0).fillna(1.0)
    return out


def silent(frame: pd.DataFrame, model: ChurnModel) -> pd.DataFrame:
    """The same customers with no product event at all in the last 30 days (their older history kept).

    Driven by the feature specs, so every event feature follows: windows of 30 days or less become 0,
    longer windows and lifetime totals lose the last 30 days, days since the last event of each type are
    at least 30 (and the overdue ratio follows), and the trends compare an empty month with the
    (recovered) month before it. The usual gap between active days is kept: it describes the history.
    """
    out = frame.copy()
    for spec in model.specs:
        name, aggregate, window = spec.name, spec.aggregate, spec.window_days
        if spec.table != "events":
            continue
        if aggregate == "days_since_last":
            out[name] = frame[name].clip(lower=SILENT_DAYS)  # NaN (never) stays NaN
        elif aggregate in {"count", "active_days", "sum", "distinct"}:
            if window is not None and window <= SILENT_DAYS:
                out[name] = 0.0
            elif aggregate != "distinct":  # types used 30-90 days ago are unknown: keep the upper bound
                out[name] = frame[name] - frame[_sibling(name, SILENT_DAYS)]
        elif aggregate in {"trend", "active_days_trend"}:
            assert window == SILENT_DAYS, f"{name}: trend window {window} != {SILENT_DAYS}"
            last = frame["events_count_30d" if aggregate == "trend" else "active_days_30d"]
            # trend = (last - previous) / (previous + 1), so previous = (last - trend) / (trend + 1).
            previous = (last - frame[name]) / (frame[name] + 1.0)
            out[name] = -previous / (previous + 1.0)
    return _overdue(out, model)


def _overdue(frame: pd.DataFrame, model: ChurnModel) -> pd.DataFrame:
    """Recompute the activity overdue ratio: days since the last event / the usual gap between active days."""
    for spec in model.specs:
        if spec.table == "events" and spec.aggregate == "overdue_ratio":
            frame[spec.name] = frame["days_since_last_event"] / frame["activity_gap_days_mean"]
    return frame


def with_country(frame: pd.DataFrame, country: str) -> pd.DataFrame:
    """The same customers, all in ``country`` (as text: the model casts it to its own categories)."""
    return frame.assign(country=country)


# --- invariance --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_country_does_not_move_the_score(model: ChurnModel, rows: pd.DataFrame) -> None:
    """INVariance: `country` is a distractor with no true effect (simulate.py draws it and only writes it).

    A flexible model still fits some noise on a 10-level category (about 150 customers each here), so the
    bound is not zero. What matters on the risk list: on average the country moves a score by under a
    point (a sixth of the base rate), 99% of moves stay under 3 points, and no customer moves by 10 points,
    the at-risk threshold (risk.at_risk_threshold): the country alone never makes a customer "at risk".
    Observed: mean 0.0006, p99 0.015, max 0.044 (this seed-7 data, XGBoost chosen); 0.003, 0.024, 0.052
    on seed 11 (the logistic regression chosen).
    """
    countries = next(c for c in model.columns if c.name == "country").categories or ()
    assert len(countries) == 10
    before = model.predict_proba(rows)
    change = np.stack([np.abs(model.predict_proba(with_country(rows, c)) - before) for c in countries])
    mean, p99, worst = change.mean(), np.quantile(change, 0.99), change.max()
    print(f"country swap ({model.kind}): mean |change| {mean:.4f}, p99 {p99:.4f}, max {worst:.4f}")
    assert mean < 0.01
    assert p99 < 0.03
    assert worst < 0.1


# --- direction ---------------------------------------------------------------------------------------


def _moves(before: np.ndarray, after: np.ndarray) -> dict[str, float]:
    delta = after - before
    return {
        "mean_before": float(before.mean()),
        "mean_after": float(after.mean()),
        "share_up": float((delta > 0).mean()),
        "share_not_down": float((delta >= 0).mean()),
        "p1_change": float(np.quantile(delta, 0.01)),
        "worst_drop": float(max(-delta.min(), 0.0)),
    }


def _show(what: str, model: ChurnModel, moves: dict[str, float]) -> None:
    print(f"{what} ({model.kind}): " + ", ".join(f"{k} {v:.4f}" for k, v in moves.items()))


@pytest.mark.slow
def test_a_failed_payment_raises_the_score(model: ChurnModel, rows: pd.DataFrame) -> None:
    """DIRectional: failed payments are the simulator's strongest single driver (+1.25 log-odds each).

    On customers without a failed payment in the last 30 days, one failed attempt yesterday: at least
    95% of scores do not fall, the mean rises by at least half, no score falls by more than 2 points (a
    tree's split may wiggle), and a second failed attempt does not lower the mean.
    Observed: >99.7% rise, mean 0.039 -> 0.109 (0.189 with two), worst drop 0.002 (seed 7, XGBoost);
    all rise, 0.057 -> 0.188 (seed 11, logistic regression).
    """
    clean = rows[rows["failed_payments_30d"] == 0]
    assert len(clean) > 500
    before = model.predict_proba(clean)
    once = model.predict_proba(with_failed_payments(clean, model, 1))
    twice = model.predict_proba(with_failed_payments(clean, model, 2))
    moves = _moves(before, once)
    _show("one failed payment", model, moves)
    print(f"two failed payments: mean_after {twice.mean():.4f}")
    assert moves["share_not_down"] >= 0.95
    assert moves["mean_after"] >= 1.5 * moves["mean_before"]
    assert moves["worst_drop"] <= 0.02
    assert twice.mean() >= once.mean() - 0.005


@pytest.mark.slow
def test_a_silent_month_raises_the_score(model: ChurnModel, rows: pd.DataFrame) -> None:
    """DIRectional: fading usage is the simulator's most common churn cause.

    Customers active in the last 30 days, made silent for those 30 days (nothing else changed): at least
    90% of scores do not fall and the mean rises by at least half. Trees are not monotone, and for
    customers already fading (steep negative trend, high score) an empty month can land in a leaf with a
    slightly lower score: 99% of changes stay above -2 points and none falls by 10 (the at-risk threshold).
    Observed: 98.9% do not fall, mean 0.047 -> 0.175, p1 -0.003, worst drop 0.070 (seed 7, XGBoost);
    all rise, 0.062 -> 0.261 (seed 11, logistic regression).
    """
    active = rows[rows["events_count_30d"] > 0]
    assert len(active) > 500
    before = model.predict_proba(active)
    moves = _moves(before, model.predict_proba(silent(active, model)))
    _show("silent month", model, moves)
    assert moves["share_not_down"] >= 0.9
    assert moves["mean_after"] >= 1.5 * moves["mean_before"]
    assert moves["p1_change"] >= -0.02
    assert moves["worst_drop"] < 0.1


# --- minimum functionality ---------------------------------------------------------------------------


def _set(row: pd.DataFrame, model: ChurnModel, pattern: str, value: float) -> None:
    for name in _columns(model, pattern):
        row[name] = value


def _retained(trained: TrainResult) -> pd.DataFrame:
    """The shipped model's training rows of customers who stayed."""
    return trained.split.labeled.query("label == 0")


def typical(trained: TrainResult) -> pd.DataFrame:
    """One row: the median numeric features and most common categories of the retained training rows
    (missing where most are missing: "days since the last failed payment" of a customer who never had one)."""
    retained = _retained(trained)
    row = {}
    for column in trained.model.columns:
        values = retained[column.name]
        if column.dtype == "category":
            row[column.name] = values.mode().iloc[0]
        else:
            row[column.name] = np.nan if values.isna().mean() > 0.5 else values.median()
    return trained.model.prepare(pd.DataFrame([row]))


def loyal(row: pd.DataFrame, trained: TrainResult) -> pd.DataFrame:
    """Daily use at the retained customers' 90th percentile, no failed payment or ticket, 18 months in,
    acquired organically."""
    model, retained = trained.model, _retained(trained)
    row = row.copy()
    for spec in model.specs:
        name, aggregate = spec.name, spec.aggregate
        if spec.table != "events" or "onboarding" in name:
            continue
        if aggregate in {"count", "active_days", "sum", "distinct"}:
            row[name] = retained[name].quantile(0.9)
        elif aggregate in {"days_since_last", "overdue_ratio", "gap_mean", "gap_std"}:
            row[name] = retained[name].quantile(0.1)
    _set(row, model, r"events_trend_30d|active_days_trend_30d", 0.0)
    _set(row, model, r"failed_payments_\d+d|failed_payment_share_\d+d", 0.0)
    _set(row, model, r"days_since_last_failed_payment", np.nan)
    _set(row, model, r"tickets_(count|high_priority)_\d+d|tickets_open|oldest_open_ticket_age_days", 0.0)
    row["tenure_days"], row["lifecycle_stage"] = 540.0, "mature"
    row["acquisition_channel"], row["promotion"] = "organic", 0.0
    return model.prepare(row)


def gone_quiet(row: pd.DataFrame, trained: TrainResult, days: float = 65.0) -> pd.DataFrame:
    """No product event for ``days`` (> 60): windows up to 60 days are empty, the 90-day window keeps only
    its oldest days' share, both trend months are empty (so no change), onboarding never happened."""
    row = row.copy()
    for spec in trained.model.specs:
        name, window = spec.name, spec.window_days
        if spec.table != "events":
            continue
        if spec.aggregate == "days_since_last":
            row[name] = np.nan if "onboarding" in name else row[name].clip(lower=days)
        elif spec.aggregate in {"count", "active_days", "sum", "distinct"}:
            if "onboarding" in name or (window is not None and window <= days):
                row[name] = 0.0
            elif window is not None:
                row[name] = row[name] * (window - days) / window
        elif spec.aggregate in {"trend", "active_days_trend"}:
            row[name] = 0.0
    return trained.model.prepare(_overdue(row, trained.model))


def failing_payments(row: pd.DataFrame, trained: TrainResult) -> pd.DataFrame:
    """Two failed payment attempts this week, from a customer acquired through a promotion."""
    row = with_failed_payments(row, trained.model, 2)
    row["acquisition_channel"], row["promotion"] = "promotion", 1.0
    return trained.model.prepare(row)


@pytest.mark.slow
def test_obvious_customers_get_obvious_scores(trained: TrainResult) -> None:
    """MFT: loyal < typical retained customer < quiet or failing < both, the last clearly at risk.

    "Clearly": at least three times the training base rate (about 6.5%) and 0.1 above the loyal customer.
    """
    model = trained.model
    base_rate = trained.split.labeled["label"].mean()
    median = typical(trained)
    customers = {
        "loyal": loyal(median, trained),
        "typical": median,
        "gone quiet": gone_quiet(median, trained),
        "failing payments": failing_payments(median, trained),
        "quiet and failing": failing_payments(gone_quiet(median, trained), trained),
    }
    score = {name: float(model.predict_proba(row)[0]) for name, row in customers.items()}
    print(f"base rate {base_rate:.4f}; " + ", ".join(f"{k} {v:.4f}" for k, v in score.items()))
    assert score["loyal"] < base_rate
    assert score["loyal"] <= score["typical"]
    assert score["gone quiet"] > score["typical"]
    assert score["failing payments"] > score["typical"]
    assert score["quiet and failing"] >= max(score["gone quiet"], score["failing payments"])
    assert score["quiet and failing"] > 3 * base_rate
    assert score["quiet and failing"] > score["loyal"] + 0.1
