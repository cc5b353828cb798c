"""The risk list's pure steps: value, bands, ranking, playbook groups, trend, segments, ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from churnml.config import CustomerValueConfig, SegmentConfig, load_config
from churnml.data.simulate import FACTORS
from churnml.errors import ConfigError
from churnml.features.catalogue import FeatureSpec, lifecycle_stage
from churnml.features.value import customer_value
from churnml.risk.explain import Signals
from churnml.risk.risk_list import (
    DEFAULT_PLAYBOOK,
    add_trend,
    assign_groups,
    band_of,
    cause_confusion,
    group_summary,
    load_playbook,
    rank,
    true_causes,
    with_plays,
)
from churnml.risk.segments import past_due, segment, segments_of

ROOT = Path(__file__).resolve().parents[2]
BANDS = {"low": 0.0, "medium": 0.1, "high": 0.3}


def test_bands_follow_the_thresholds() -> None:
    p = np.array([0.0, 0.05, 0.0999, 0.1, 0.2, 0.2999, 0.3, 0.99, 1.0])
    assert band_of(p, BANDS).tolist() == ["low"] * 3 + ["medium"] * 3 + ["high"] * 3


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1), min_size=1, max_size=50))
def test_band_lower_bound_is_at_or_below_the_probability(probabilities: list[float]) -> None:
    bands = band_of(np.array(probabilities), BANDS)
    lows = np.array([BANDS[b] for b in bands])
    uppers = np.array([dict(zip(BANDS, [0.1, 0.3, np.inf], strict=True))[b] for b in bands])
    assert (lows <= probabilities).all() and (np.array(probabilities) < uppers).all()


def test_bands_are_validated() -> None:
    bands = load_config(None, ["risk.bands={high: 0.5, low: 0, watch: 0.05}"]).risk.bands
    assert list(bands) == ["low", "watch", "high"]  # ordered by threshold, whatever the mapping's order
    for bad in ("{low: 0.1, high: 0.3}", "{low: 0, high: 0.3, mid: 0.3}", "{low: 0, high: 1.0}"):
        with pytest.raises(ConfigError, match=r"risk\.bands"):
            load_config(None, [f"risk.bands={bad}"])


def _list() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c", "a", "b", "d", "e"],
            "churn_probability": [0.5, 0.2, 0.2, 0.05, 0.5],
            "revenue_at_risk": [100.0, 300.0, 300.0, 300.0, 0.0],
        }
    )


def test_ranked_by_revenue_then_probability_then_id() -> None:
    ranked = rank(_list(), "revenue")
    assert ranked["rank"].tolist() == [1, 2, 3, 4, 5]
    assert ranked["customer_id"].tolist() == ["a", "b", "d", "c", "e"]
    assert ranked["revenue_at_risk"].is_monotonic_decreasing


def test_ranked_by_probability_switch() -> None:
    ranked = rank(_list(), "probability")
    assert ranked["customer_id"].tolist() == ["c", "e", "a", "b", "d"]
    assert ranked["churn_probability"].is_monotonic_decreasing


def test_customer_value_is_mrr_times_months_or_a_constant() -> None:
    frame = pd.DataFrame({"mrr": [10.0, np.nan, -5.0, 99.0]})
    value, basis = customer_value(frame, CustomerValueConfig())
    assert value.tolist() == [120.0, 0.0, 0.0, 1188.0] and basis == "mrr x 12 months"
    value, basis = customer_value(frame, CustomerValueConfig(feature=None, constant=7))
    assert value.tolist() == [7.0] * 4 and basis == "constant 7"
    value, basis = customer_value(frame.rename(columns={"mrr": "x"}), CustomerValueConfig())
    assert value.tolist() == [500.0] * 4 and basis == "constant 500"  # no mrr (transactions-only data)
    with pytest.raises(ConfigError, match=r"customer_value.feature: no feature named 'mrrr'"):
        customer_value(frame, CustomerValueConfig(feature="mrrr"))  # a typo is not the constant


def test_playbook_file_is_the_built_in_one() -> None:
    written = yaml.safe_load((ROOT / "configs" / "playbook.yaml").read_text())
    assert list(written["groups"]) == list(DEFAULT_PLAYBOOK["groups"])  # order decides pattern matches
    assert load_playbook(ROOT / "configs" / "playbook.yaml") == load_playbook()


def test_signals_map_to_groups() -> None:
    playbook = load_playbook()
    cases = {
        ("onboarding_webinar_activity", "frequency"): "weak_onboarding",
        ("login_activity", "recency"): "fading_usage",
        ("activity_trend", "engagement"): "fading_usage",
        ("support_backlog", "support"): "support_trouble",
        ("failed_payments", "billing"): "failed_payments",
        ("acquisition", "billing"): "promotion",
        ("plan", "billing"): "plan_fit",
        ("tenure", "tenure"): "new_customer",
        ("brand_new_signal", "support"): "support_trouble",  # by family
        ("country", "profile"): "other",
    }
    for (signal, family), group in cases.items():
        assert playbook.group_of(signal, family) == group, signal
    # Every simulator factor has a group, and the four plays of the issue are there.
    assert set(playbook.cause_groups()) == set(FACTORS)
    plays = {name: g.play for name, g in playbook.groups.items()}
    assert plays["support_trouble"] == "Success-manager call"
    assert plays["fading_usage"] == "Re-engagement campaign"
    assert plays["weak_onboarding"] == "Webinar invitation"
    assert plays["failed_payments"] == "Billing outreach"


def test_bad_playbook_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "playbook.yaml"
    path.write_text("default_group: nowhere\ngroups:\n  a: {label: A, play: call}\n")
    with pytest.raises(ConfigError, match="default_group"):
        load_playbook(path)
    with pytest.raises(ConfigError, match="not found"):
        load_playbook(tmp_path / "missing.yaml")


def test_group_is_the_one_adding_most_risk() -> None:
    playbook = load_playbook()
    signals = Signals(
        ("login_activity", "activity", "failed_payments", "tenure"),
        np.eye(4, dtype=np.float32),
        ("recency", "frequency", "billing", "tenure"),
    )
    per_signal = np.array(
        [
            [0.5, 0.4, 0.6, 0.0],  # usage 0.9 beats payments 0.6: the signals of a group add up
            [0.4, 0.3, 0.6, 0.0],  # usage 0.7 x weight 0.75 < 0.6: a specific cause before the symptom
            [0.4, -0.5, 0.6, 0.1],  # usage nets -0.1
            [-0.1, -0.1, -0.2, -0.3],  # nothing adds risk
        ]
    )
    assert playbook.groups["fading_usage"].weight == 0.75
    groups = assign_groups(per_signal, signals, playbook).tolist()
    assert groups == ["fading_usage", "failed_payments", "failed_payments", "other"]
    # A customer's group does not depend on the rows grouped with it.
    many = np.random.default_rng(4).normal(size=(3000, 4)).astype(np.float32)
    together = assign_groups(many, signals, playbook)
    for start, count in [(0, 1), (5, 2), (64, 64), (1000, 999)]:
        rows = slice(start, start + count)
        assert assign_groups(many[rows], signals, playbook).tolist() == together[rows].tolist()


def test_plays_and_group_summary() -> None:
    playbook = load_playbook()
    risk_list = pd.DataFrame(
        {
            "risk_group": ["fading_usage", "fading_usage", "failed_payments", None],
            "revenue_at_risk": [10.0, 5.0, 40.0, 1.0],
            "churn_probability": [0.2, 0.4, 0.5, 0.01],
            "action": ["contact", "holdout", "contact", None],
        }
    )
    listed = with_plays(risk_list, playbook)
    assert listed["play"].tolist()[:3] == ["Re-engagement campaign"] * 2 + ["Billing outreach"]
    assert pd.isna(listed["play"].iloc[3])
    summary = group_summary(risk_list, playbook).set_index("risk_group")
    assert summary.loc["fading_usage", "customers"] == 2
    assert summary.loc["fading_usage", "revenue_at_risk"] == 15.0
    assert summary.loc["failed_payments", "expected_churners"] == 0.5
    assert summary.index[0] == "failed_payments"  # most revenue at risk first
    assert summary["customers"].sum() == 3 and set(summary.index) == set(playbook.groups)
    assert summary.loc["fading_usage", ["to_contact", "held_out"]].tolist() == [1, 1]
    assert summary.loc["failed_payments", ["to_contact", "held_out"]].tolist() == [1, 0]


def test_trend_against_the_previous_list() -> None:
    current = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "d"], "churn_probability": [0.5, 0.05, 0.3, 0.2]}
    ).assign(at_risk=lambda f: f["churn_probability"] >= 0.1)
    previous = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "x"],
            "churn_probability": [0.4, 0.2, 0.05, 0.9],
            "at_risk": [True, True, False, True],
        }
    )
    trended = add_trend(current, previous)
    assert trended["probability_change"].round(6).tolist()[:3] == [0.1, -0.15, 0.25]
    assert np.isnan(trended["previous_probability"].iloc[3])
    # c crossed the threshold; d is new to the list and at risk; a stayed at risk; b recovered.
    assert trended["newly_at_risk"].tolist() == [False, False, True, True]
    first = add_trend(current, None)
    assert first["probability_change"].isna().all() and not first["newly_at_risk"].any()


def test_segments_follow_the_rules_in_order() -> None:
    config = SegmentConfig()
    tenure = np.array([10, 400, 400, 400, 400, 400, 10])
    quiet = np.array([50, 2, 35, 120, np.nan, 5, 2])
    due = np.array([False, False, False, False, False, True, False])
    gone = np.array([False] * 6 + [True])
    assert segment(tenure, quiet, due, gone, config).tolist() == [
        "new",
        "active",
        "slipping_away",
        "inactive",
        "inactive",
        "cancelled_past_due",
        "cancelled_past_due",
    ]
    assert segment(tenure, quiet, due, gone, SegmentConfig(slipping_days=60))[2] == "active"


def _spec(name: str, aggregate: str, table: str, row_filter: str | None = None) -> FeatureSpec:
    return FeatureSpec(name, "x", table, aggregate, None, "float64", "{value}", name, row_filter=row_filter)


# The catalogue's rows the segments read, under names the catalogue does not use: found by what they are.
SEGMENT_SPECS = (
    _spec("failed_recency", "days_since_last", "transactions", "failed"),
    _spec("paid_recency", "days_since_last", "transactions", "paid"),
    _spec("days_since_last_event", "days_since_last", "events"),
    _spec("subscribed", "active", "subscriptions"),
)


def test_past_due_and_segments_from_features() -> None:
    frame = pd.DataFrame(
        {
            "failed_recency": [3.0, 3.0, 50.0, np.nan, 3.0],
            "paid_recency": [10.0, 1.0, 60.0, 5.0, 10.0],
            "days_since_last_event": [1.0, 1.0, 1.0, 40.0, 1.0],
            "subscribed": [1.0, 1.0, 1.0, 1.0, 0.0],
        }
    )
    assert past_due(frame, SEGMENT_SPECS, 35).tolist() == [True, False, False, False, True]
    tenure = np.array([60.0, 60, 60, 800, 60])
    found = segments_of(frame, SEGMENT_SPECS, tenure, SegmentConfig(), "days_since_last_event")
    expected = ["cancelled_past_due", "active", "active", "slipping_away", "cancelled_past_due"]
    assert found["segment"].tolist() == expected
    assert found["lifecycle_stage"].tolist() == ["early", "early", "early", "mature", "early"]
    # Without billing or subscription features (e.g. events-only data) no one is past due or cancelled.
    bare = segments_of(frame, SEGMENT_SPECS[2:3], tenure, SegmentConfig(), "days_since_last_event")
    assert bare["segment"].tolist() == ["active", "active", "active", "slipping_away", "active"]


def test_lifecycle_stage_from_tenure() -> None:
    stages = lifecycle_stage(np.array([0, 29.9, 30, 89, 90, 364, 365, 2000, np.nan]))
    assert stages.tolist() == ["onboarding"] * 2 + ["early"] * 2 + ["established"] * 2 + ["mature"] * 2 + [
        None
    ]


def test_true_cause_is_the_next_renewal_else_the_last() -> None:
    truth = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "b", "c", "d"],
            "renewal_at": pd.to_datetime(
                ["2025-05-10", "2025-06-10", "2025-07-10", "2025-05-20", "2025-06-05", "2025-06-20"]
            ),
            "true_cause": ["tenure", "billing", "support", "engagement", "none", "plan"],
        }
    )
    causes = true_causes(truth, pd.Timestamp("2025-06-01"), 30).set_index("customer_id")["true_cause"]
    assert causes.to_dict() == {"a": "billing", "d": "plan", "b": "engagement"}


def test_confusion_compares_groups_with_causes() -> None:
    risk_list = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "risk_group": ["failed_payments", "fading_usage", "fading_usage", None],
        }
    )
    causes = pd.DataFrame(
        {"customer_id": ["a", "b", "c", "d"], "true_cause": ["billing", "engagement", "tenure", "support"]}
    )
    table, matched, n = cause_confusion(risk_list, causes, load_playbook())
    assert n == 3 and matched == pytest.approx(2 / 3)
    assert table.loc["tenure", "fading_usage"] == 1
