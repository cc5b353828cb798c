"""Drift against the training reference (``churnml.risk.drift``): PSI and KS against hand computations
and scipy, a shifted feature flagged and the others not, missing values, unseen categories, the stored
profile's round trip and the service's rolling window."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from churnml import io
from churnml.config import DriftConfig
from churnml.data.dataset import Dataset
from churnml.features.catalogue import FeatureSpec
from churnml.risk import drift
from churnml.training.model import FeatureColumn

SETTINGS = DriftConfig()
COLUMNS = (
    FeatureColumn("spend_90d", "float64"),
    FeatureColumn("logins_30d", "float64"),
    FeatureColumn("tickets_90d", "float64"),
    FeatureColumn("plan", "category", ("basic", "pro", "team")),
)


def population(n: int, seed: int, price: float = 1.0) -> pd.DataFrame:
    """Customers of one business; ``price`` scales what they pay (a pricing change), nothing else."""
    rng = np.random.default_rng(seed)
    logins = rng.poisson(8, n).astype(float)
    logins[rng.random(n) < 0.05] = np.nan
    return pd.DataFrame(
        {
            "spend_90d": rng.lognormal(4, 0.5, n) * price,
            "logins_30d": logins,
            "tickets_90d": rng.poisson(0.4, n).astype(float),  # mostly 0: tied deciles
            "plan": pd.Categorical(rng.choice(["basic", "pro", "team"], n, p=[0.6, 0.3, 0.1])),
        }
    )


def test_psi_is_the_hand_computed_sum_and_counts_empty_bins_as_epsilon() -> None:
    expected = (0.25 - 0.5) * math.log(0.25 / 0.5) + (0.75 - 0.5) * math.log(0.75 / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.25, 0.75])) == pytest.approx(expected)
    assert drift.psi(np.array([0.3, 0.7]), np.array([0.3, 0.7])) == 0.0
    empty = (drift.EPSILON - 0.5) * math.log(drift.EPSILON / 0.5) + 0.5 * math.log(1 / 0.5)
    assert drift.psi(np.array([0.5, 0.5]), np.array([0.0, 1.0])) == pytest.approx(empty)


def test_numeric_bins_are_the_reference_deciles_with_ties_merged_and_missing_apart() -> None:
    values = np.array([0, 0, 0, 0, 0, 0, 1, 2, 3, 4, np.nan, np.nan])
    profile = drift.numeric_profile(values)
    # np.quantile of the 10 present values at 0.1 .. 0.9: six deciles are 0, then 0.4, 1.3, 2.2, 3.1.
    assert profile.edges == pytest.approx((0.0, 0.4, 1.3, 2.2, 3.1))
    assert profile.shares == pytest.approx(np.array([6, 0, 1, 1, 1, 1]) / 12, abs=1e-6)
    assert profile.missing == pytest.approx(2 / 12, abs=1e-6)
    assert profile.expected().sum() == pytest.approx(1.0, abs=1e-5)
    # Right-closed bins: 0 is in the first, 0.4 in the second, 5 in the last value bin, NaN and inf missing.
    assert profile.bin_index([0.0, 0.4, 0.5, 5.0, np.nan, np.inf]).tolist() == [0, 1, 2, 5, 6, 6]
    # A run with twice as many missing values: the missing bin alone moves.
    run = np.array([0, 0, 0, 1, 2, 3, np.nan, np.nan, np.nan, np.nan, 0, 4])
    actual = profile.actual(run)
    assert actual[-1] == pytest.approx(4 / 12)
    assert drift.psi(profile.expected(), actual) > 0


@pytest.mark.parametrize(
    ("reference", "run"),
    [
        (np.random.default_rng(1).normal(size=5000), np.random.default_rng(2).normal(0.3, 1, 3000)),
        (np.random.default_rng(3).normal(size=4000), np.random.default_rng(4).normal(size=700)),
        (
            np.random.default_rng(5).poisson(0.7, 3000) * 1.0,
            np.random.default_rng(6).poisson(1.0, 2000) * 1.0,
        ),
        (
            np.random.default_rng(7).exponential(size=3000),
            np.random.default_rng(8).exponential(size=60) - 0.5,
        ),
    ],
)
def test_ks_from_the_stored_percentiles_is_within_a_hundredth_of_scipy(
    reference: np.ndarray, run: np.ndarray
) -> None:
    exact = stats.ks_2samp(reference, run).statistic
    ours = drift.ks_statistic(drift.numeric_profile(reference), run)
    assert exact - 0.011 <= ours <= exact + 1e-9


def test_identical_distributions_give_no_drift() -> None:
    frame = population(3000, seed=1)
    reference = drift.reference_profile(frame, COLUMNS, None, "same rows")
    table = drift.compare(reference, frame, None, SETTINGS)
    assert np.allclose(table["psi"], 0, atol=1e-6) and np.allclose(table["ks"].dropna(), 0, atol=1e-6)
    assert not table["flagged"].any()


def test_a_pricing_change_flags_the_money_feature_and_not_the_others() -> None:
    reference = drift.reference_profile(population(3000, seed=1), COLUMNS, None, "before")
    for price, moved in ((1.0, set()), (1.4, {"spend_90d"})):  # a fresh sample: the control, then the change
        table = drift.compare(reference, population(2500, seed=2, price=price), None, SETTINGS)
        by = table.set_index("feature")
        assert set(by.index[by["flagged"]]) == moved, by
        assert by.drop(index="spend_90d")["psi"].max() < 0.05
    # log(1.4) is 0.67 standard deviations of log spend: PSI ~0.45, KS ~2 Phi(0.34) - 1 = 0.26.
    assert by.loc["spend_90d", "psi"] > 0.4 and by.loc["spend_90d", "ks"] > 0.2
    assert math.isnan(by.loc["plan", "ks"])  # KS is for ordered values only


def test_categories_unseen_and_missing_have_their_own_bins() -> None:
    profile = drift.categorical_profile(pd.Series(["basic"] * 6 + ["pro"] * 3 + [None]), ["basic", "pro"])
    assert profile.shares == (0.6, 0.3) and profile.missing == 0.1
    run = pd.Series(["basic"] * 5 + ["enterprise"] * 3 + [None] * 2)
    assert profile.actual(run).tolist() == pytest.approx([0.5, 0.0, 0.3, 0.2])
    expected = [0.6, 0.3, 0.0, 0.1]
    assert drift.psi(profile.expected(), profile.actual(run)) == pytest.approx(
        drift.psi(np.array(expected), np.array([0.5, 0.0, 0.3, 0.2]))
    )


def test_unseen_share_counts_customers_with_an_unknown_value_in_the_raw_tables() -> None:
    as_of = pd.Timestamp("2025-06-01")
    customers = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "signup_at": pd.to_datetime(["2025-01-01"] * 4),
            "plan": ["basic", "basic", "enterprise", "pro"],
        }
    )
    subscriptions = pd.DataFrame(
        {
            "customer_id": ["a", "b", "d"],
            "start_at": pd.to_datetime(["2025-03-01", "2025-07-01", "2025-02-01"]),  # b's is after as_of
            "end_at": pd.to_datetime([None, None, None]),
            "plan": ["platinum", "platinum", "pro"],
        }
    )
    dataset = Dataset(tables={"customers": customers, "subscriptions": subscriptions}, end=as_of)
    plan = FeatureSpec(
        "plan", "profile", "subscriptions", "current", None, "category", "On the {value} plan", "plan",
        column="plan", categories=("basic", "pro"),
    )  # fmt: skip
    logins = FeatureSpec("logins_30d", "frequency", "events", "count", 30, "float64", "{value} logins", "x")
    shares = drift.unseen_shares(dataset, np.array(["a", "b", "c", "d"]), as_of, [plan, logins])
    assert shares == {"plan": 0.5}  # a (a subscription before as_of) and c (the customer record)


def test_flags_summary_and_metrics_of_a_run() -> None:
    reference = drift.reference_profile(
        population(3000, seed=1), COLUMNS, np.random.default_rng(0).beta(1, 9, 3000), "test cutoff 2025-05-01"
    )
    run = population(2000, seed=2, price=1.5)
    probability = np.random.default_rng(1).beta(1.5, 9, 2000)
    table = drift.compare(reference, run, probability, SETTINGS, {"plan": 0.02})
    assert table["feature"].iloc[0] == drift.SCORE and list(table.columns) == drift.TABLE_COLUMNS
    by = table.set_index("feature")
    assert by.loc["plan", "flagged"]  # 2% unseen >= unseen_warn 1%
    summary = drift.summary(table, reference, SETTINGS.model_copy(update={"top": 2}))
    assert summary["warning"] and summary["reference"] == "test cutoff 2025-05-01"
    assert set(summary["flagged"]) == {"spend_90d", "plan"}
    assert [row["feature"] for row in summary["top"]] == ["spend_90d", "plan"]
    json.loads(io.dumps(summary))  # strict JSON: the categorical's KS is null, not NaN
    assert "spend_90d" in (drift.warning_text(summary) or "")
    figures = drift.metrics(table)
    assert figures["drift.psi.spend_90d"] == by.loc["spend_90d", "psi"]
    assert "drift.ks.plan" not in figures and figures["drift.unseen.plan"] == 0.02
    assert figures["drift.flagged"] == 2 and figures["drift.warning"] == 1
    assert "drift.psi.churn_probability" in figures


def test_without_a_reference_the_summary_says_so() -> None:
    summary = drift.summary(None, None, SETTINGS)
    assert summary["reference"] is None and not summary["warning"] and "no reference" in summary["note"]
    assert drift.Reference.from_dict(None) is None
    assert drift.Reference.from_dict({"format_version": 99, "features": {}}) is None


def test_the_reference_round_trips_through_json() -> None:
    frame = population(500, seed=3)
    reference = drift.reference_profile(frame, COLUMNS, np.linspace(0, 1, 500), "x")
    again = drift.Reference.from_dict(json.loads(io.dumps(reference.to_dict())))
    assert again == reference
    table = drift.compare(reference, frame, np.linspace(0, 1, 500), SETTINGS)
    assert drift.compare(again, frame, np.linspace(0, 1, 500), SETTINGS).equals(table)


def test_a_category_never_seen_in_training_round_trips() -> None:
    """A categorical input all missing in training has no categories and no value shares; its profile
    must still load (``to_dict`` leaves empty fields out), or scoring and serving fail on the reference."""
    profile = drift.categorical_profile(pd.Series([None] * 20, dtype=object), [])
    assert profile.shares == () and profile.missing == 1.0
    again = drift.Profile.from_dict(json.loads(io.dumps(profile.to_dict())))
    assert again == profile
    assert again.actual(["gold", None]).tolist() == [0.5, 0.5]  # unseen, missing


def test_the_score_window_keeps_the_last_scores_and_their_psi() -> None:
    profile = drift.numeric_profile(np.random.default_rng(0).beta(1, 9, 5000))
    window = drift.ScoreWindow(profile, size=1000)
    assert math.isnan(window.psi())
    scores = np.random.default_rng(1).beta(2, 5, 2500)  # higher scores than the reference
    for start in range(0, 2500, 300):
        window.add(scores[start : start + 300])
    last = scores[-1000:]
    assert window.filled == 1000
    assert window.counts.tolist() == np.bincount(profile.bin_index(last), minlength=profile.bins).tolist()
    assert window.psi() == pytest.approx(drift.psi(profile.expected(), profile.actual(last)))
    window.add(np.random.default_rng(2).beta(1, 9, 5000))  # a batch larger than the window
    assert window.filled == 1000 and window.psi() < 0.1
    assert len(window.bin_labels()) == profile.bins and window.bin_labels()[-1] == "missing"


def test_ks_counts_only_above_what_chance_gives_for_the_values_present() -> None:
    """A feature most customers lack (the age of an open ticket) has a few dozen values a side: their KS
    differ by chance by more than ks_warn: KS does not flag them."""
    assert drift.ks_noise(100, 100) == pytest.approx(1.628 * math.sqrt(0.02))
    rng = np.random.default_rng(19)
    sparse = np.full(3000, np.nan)
    sparse[:40] = rng.exponential(size=40)
    run = np.full(2000, np.nan)
    run[:30] = rng.exponential(size=30)
    reference = drift.reference_profile(
        pd.DataFrame({"x": sparse}), [FeatureColumn("x", "float64")], None, ""
    )
    row = drift.compare(reference, pd.DataFrame({"x": run}), None, SETTINGS).iloc[0]
    assert row["ks_noise"] == pytest.approx(drift.ks_noise(40, 30)) and row["ks_noise"] > SETTINGS.ks_warn
    assert row["ks"] > SETTINGS.ks_warn and row["ks"] < row["ks_noise"]  # by chance: same distribution
    assert not row["flagged"]
