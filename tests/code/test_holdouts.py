"""Randomised holdouts in the risk list (``churnml.risk.holdouts``): reproducible, stratified by risk
group, never the same customer twice in a row."""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.risk.holdouts import assign_actions, draw

AS_OF = pd.Timestamp("2025-06-01")


def listed(n: int = 2000, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "customer_id": [f"C{k:05d}" for k in range(n)],
            "at_risk": rng.random(n) < 0.4,
            "risk_group": rng.choice(["payment", "engagement", "support", None], n),
        }
    )


def test_each_risk_group_holds_out_its_share_of_the_at_risk_customers() -> None:
    frame = listed()
    action = assign_actions(frame, None, 0.1, AS_OF, seed=42)
    assert action[~frame["at_risk"]].isna().all()
    assert set(action[frame["at_risk"]]) == {"contact", "holdout"}
    groups = frame["risk_group"].fillna("none")
    for group in groups.unique():
        members = frame["at_risk"] & (groups == group)
        expected = int(np.floor(0.1 * members.sum() + 0.5))
        assert (action[members] == "holdout").sum() == expected, group
    assert (assign_actions(frame, None, 0.0, AS_OF, seed=42)[frame["at_risk"]] == "contact").all()


def test_the_draw_is_reproducible_and_ignores_row_order_and_other_customers() -> None:
    frame = listed()
    action = assign_actions(frame, None, 0.2, AS_OF, seed=42)
    shuffled = frame.sample(frac=1.0, random_state=3)
    again = assign_actions(shuffled, None, 0.2, AS_OF, seed=42)
    pd.testing.assert_series_equal(again.loc[frame.index], action)
    draws = draw(frame["customer_id"], AS_OF, 42)
    np.testing.assert_array_equal(draw(frame["customer_id"].iloc[:10], AS_OF, 42), draws[:10])
    assert 0.47 < draws.mean() < 0.53 and draws.min() >= 0 and draws.max() < 1
    # Another seed or another as-of date draws anew.
    assert not np.array_equal(draw(frame["customer_id"], AS_OF, 43), draws)
    later = assign_actions(frame, None, 0.2, AS_OF + pd.Timedelta(days=30), seed=42)
    assert (later != action).fillna(False).any()


def test_nobody_is_held_out_twice_in_a_row_unless_configured() -> None:
    frame = listed()
    first = assign_actions(frame, None, 0.3, AS_OF, seed=42)
    previous = frame.assign(action=first)
    later = AS_OF + pd.Timedelta(days=30)
    second = assign_actions(frame, previous, 0.3, later, seed=42)
    held_twice = (first == "holdout") & (second == "holdout")
    assert not held_twice.any()
    assert (second[frame["at_risk"]] == "holdout").sum() > 0
    allowed = assign_actions(frame, previous, 0.3, later, seed=42, repeat=True)
    pd.testing.assert_series_equal(allowed, assign_actions(frame, None, 0.3, later, seed=42))
    # A previous list written before holdouts existed (no action column) restricts nobody.
    pd.testing.assert_series_equal(
        assign_actions(frame, frame, 0.3, later, seed=42), assign_actions(frame, None, 0.3, later, seed=42)
    )


def test_shares_are_rounded_half_up_exactly() -> None:
    """0.29 x 50 is 14.5 (in floating point 14.4999...): 15 held out, as documented."""
    frame = pd.DataFrame({"customer_id": [f"C{k}" for k in range(50)], "at_risk": True, "risk_group": "g"})
    assert (assign_actions(frame, None, 0.29, AS_OF, seed=1) == "holdout").sum() == 15
    assert (assign_actions(frame.head(5), None, 0.1, AS_OF, seed=1) == "holdout").sum() == 1  # 0.5 -> 1


def test_previous_holdouts_match_ids_in_the_contracts_form() -> None:
    frame = pd.DataFrame({"customer_id": ["017", "18", "19"], "at_risk": True, "risk_group": "g"})
    previous = pd.DataFrame({"customer_id": ["017", "18.0", "19"], "action": ["holdout"] * 3})
    assert (assign_actions(frame, previous, 0.9, AS_OF, seed=1) == "contact").all()
