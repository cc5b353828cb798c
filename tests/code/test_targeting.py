"""Targeting by uplift (churnml.uplift.targeting and the risk list's use of it): best play, net value,
sleeping dogs, expected saves and the profit curve, on numbers worked out by hand."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.config import load_config
from churnml.errors import ConfigError
from churnml.risk.risk_list import applicable, list_columns, load_playbook, rank
from churnml.uplift.targeting import (
    expected_saves,
    net_value_curve,
    play_column,
    targeting,
    uplift_figures,
)

PLAYS = ["Billing outreach", "Loyalty offer"]
COSTS = {"Billing outreach": 5.0, "Loyalty offer": 25.0}


def _effects(rows: list[list[float]]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=PLAYS)


def test_net_value_best_play_and_sleeping_dogs_by_hand() -> None:
    effects = _effects(
        [
            [0.10, 0.20],  # value 1000: 100 - 5 = 95 vs 200 - 25 = 175 -> loyalty offer
            [0.10, 0.11],  # value 1000: 95 vs 85 -> billing (the cheaper play wins on net value)
            [-0.02, -0.05],  # every play hurts by more than 0.01: a sleeping dog; best is -20 - 5 = -25
            [-0.005, np.nan],  # hurts, but within the tolerance; loyalty does not apply
            [np.nan, np.nan],  # no play applies
        ]
    )
    value = np.array([1000.0, 1000.0, 1000.0, 400.0, 300.0])
    out = targeting(effects, value, COSTS, tolerance=0.01)

    assert out["best_play"].tolist() == [
        "Loyalty offer",
        "Billing outreach",
        "Billing outreach",
        "Billing outreach",
        None,
    ]
    np.testing.assert_allclose(out["net_value"].to_numpy()[:4], [175.0, 95.0, -25.0, -7.0])
    np.testing.assert_allclose(out["uplift"].to_numpy()[:4], [0.20, 0.10, -0.02, -0.005])
    assert np.isnan(out["net_value"].iloc[4]) and np.isnan(out["uplift"].iloc[4])
    assert out["sleeping_dog"].tolist() == [False, False, True, False, False]
    # Each play's uplift as its own column, missing where the play does not apply.
    assert play_column("Billing outreach") == "uplift_billing_outreach"
    np.testing.assert_allclose(out["uplift_loyalty_offer"].to_numpy()[:3], [0.20, 0.11, -0.05])
    assert np.isnan(out["uplift_loyalty_offer"].iloc[3])


def test_one_play_that_helps_means_no_sleeping_dog() -> None:
    out = targeting(_effects([[-0.2, 0.02]]), np.array([100.0]), COSTS, tolerance=0.01)
    # The loyalty offer helps (+0.02): net 2 - 25 = -23, billing -20 - 5 = -25 -> loyalty, not a dog.
    assert out["best_play"].iloc[0] == "Loyalty offer" and not out["sleeping_dog"].iloc[0]
    assert out["net_value"].iloc[0] == pytest.approx(-23.0)


def test_expected_saves_count_only_the_contacted() -> None:
    saves = expected_saves(
        np.array([0.2, 0.1, -0.05, np.nan]), np.array(["contact", "holdout", "contact", None], dtype=object)
    )
    np.testing.assert_allclose(saves, [0.2, 0.0, -0.05, 0.0])  # a contacted sleeping dog costs a customer


def test_profit_curve_and_figures_by_hand() -> None:
    curve = net_value_curve(np.array([50.0, 20.0, -10.0, np.nan]))
    assert curve["contacted"].tolist() == [0, 1, 2, 3, 4]
    np.testing.assert_allclose(curve["net_value"], [0.0, 50.0, 70.0, 60.0, 60.0])
    listed = pd.DataFrame(
        {
            "action": ["contact", "holdout", "contact", None],
            "net_value": [50.0, 20.0, -10.0, np.nan],
            "sleeping_dog": [False, False, True, False],
            "expected_saves": [0.1, 0.0, -0.02, 0.0],
        }
    )
    figures = uplift_figures(listed)
    assert figures["expected_saves"] == pytest.approx(0.08)
    assert figures["expected_net_value"] == pytest.approx(40.0)  # 50 - 10: the holdout is not contacted
    assert figures["sleeping_dogs"] == 1 and figures["sleeping_dogs_to_contact"] == 1
    assert figures["best_depth"] == 2 and figures["best_depth_net_value"] == pytest.approx(70.0)
    assert figures["customers_positive_net_value"] == 2


def test_only_the_risk_groups_play_applies_by_default() -> None:
    playbook = load_playbook()
    effects = _effects([[0.1, 0.2], [0.1, 0.2], [0.1, 0.2]])
    groups = pd.Series(["failed_payments", "promotion", None])
    mine = applicable(effects, groups, playbook, "risk_group")
    assert mine.notna().to_numpy().tolist() == [[True, False], [False, True], [False, False]]
    assert applicable(effects, groups, playbook, "all").equals(effects)


def test_play_costs_from_the_playbook_else_the_campaign() -> None:
    raw = load_playbook().model_dump()
    raw["groups"]["failed_payments"]["cost"] = 5.0
    from churnml.risk.risk_list import Playbook

    playbook = Playbook.model_validate(raw)
    # Names compared whatever their case and spacing, as the review compares them.
    assert playbook.play_costs(["billing  OUTREACH", "Loyalty offer"], 20.0) == {
        "billing  OUTREACH": 5.0,
        "Loyalty offer": 20.0,
    }


def test_rank_by_net_value_puts_customers_without_uplift_last() -> None:
    frame = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c", "d"],
            "churn_probability": [0.9, 0.2, 0.5, 0.3],
            "revenue_at_risk": [900.0, 200.0, 50.0, 300.0],
            "net_value": [np.nan, 10.0, 40.0, 10.0],
        }
    )
    ranked = rank(frame, "net_value")
    assert ranked["customer_id"].tolist() == ["c", "d", "b", "a"]  # ties by revenue at risk
    with pytest.raises(ConfigError, match="net_value needs an uplift model"):
        rank(frame.drop(columns="net_value"), "net_value")


def test_uplift_columns_follow_the_action_and_net_value_needs_uplift() -> None:
    columns = list_columns(2, PLAYS)
    start = columns.index("action") + 1
    assert columns[start : start + 7] == [
        "best_play",
        "uplift",
        "expected_saves",
        "net_value",
        "sleeping_dog",
        "uplift_billing_outreach",
        "uplift_loyalty_offer",
    ]
    assert "best_play" not in list_columns(2)  # without uplift, the list of before
    with pytest.raises(ConfigError, match=r"uplift\.use cannot be never"):
        load_config(None, ["risk.rank_by=net_value", "uplift.use=never"])
