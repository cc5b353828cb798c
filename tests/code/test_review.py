"""The review's arithmetic on hand-made lists: intervals against published values, arms from a contacts
table or the list's plan, outcomes from the label, and each play's figures worked out on paper."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import load_config
from churnml.data.load import dataset_from_frames
from churnml.risk.review import (
    arms,
    difference_interval,
    measured_success_rate,
    observed_by,
    play_effects,
    pooled_effects,
    review_list,
    wilson,
)

AS_OF = pd.Timestamp("2025-06-01")
CONFIG = load_config(None, ["campaign.cost_per_contact=10", "campaign.success_rate=0.25"])


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:873-890, table II, method 10.
        ((56, 70, 48, 80), (0.0524, 0.3339)),
        ((9, 10, 3, 10), (0.1705, 0.8090)),
        ((6, 7, 2, 7), (0.0582, 0.8062)),
        ((5, 56, 0, 29), (-0.0381, 0.1926)),
    ],
)
def test_difference_interval_matches_newcombe(counts, expected) -> None:
    k1, n1, k2, n2 = counts
    d, low, high = difference_interval(k1, n1, k2, n2)
    assert d == pytest.approx(k1 / n1 - k2 / n2)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_and_empty_arms() -> None:
    assert tuple(round(v, 4) for v in wilson(81, 263)) == (0.2553, 0.3662)  # Newcombe (1998b), ex. (a)
    assert all(math.isnan(v) for v in wilson(0, 0))
    assert all(math.isnan(v) for v in difference_interval(1, 0, 1, 5))


def _list(n: int = 6) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "rank": range(1, n + 1),
            "customer_id": [f"c{i}" for i in range(n)],
            "churn_probability": np.linspace(0.6, 0.1, n),
            "risk_band": ["high"] * 3 + ["low"] * (n - 3),
            "risk_group": ["failed_payments"] * 3 + [None] * (n - 3),
            "segment": "active",
            "action": ["contact", "contact", "holdout"] + [None] * (n - 3),
            "play": ["Billing outreach"] * 3 + [None] * (n - 3),
            "customer_value": 100.0,
            "as_of": AS_OF,
        }
    )


def test_arms_from_the_list_when_there_is_no_contacts_table() -> None:
    assigned, source = arms(_list(), None, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0)
    assert source == "list"
    assert assigned["arm"].tolist() == ["treatment", "treatment", "holdout", "none", "none", "none"]
    assert assigned["contact_cost"].tolist() == [10.0, 10.0, 0, 0, 0, 0]
    assert assigned["play_run"].iloc[:3].tolist() == ["Billing outreach"] * 3
    assert assigned["play_run"].iloc[3:].isna().all()


def test_arms_from_contacts_first_row_in_the_window_and_cost_fallback() -> None:
    contacts = pd.DataFrame(
        {
            "customer_id": ["c0", "c0", "c1", "c2", "c3", "c4"],
            "contacted_at": pd.to_datetime(
                ["2025-06-02", "2025-06-20", "2025-05-31", "2025-06-03", "2025-07-01", "2025-06-05"]
            ),
            "play": ["Offer", "Call", "Offer", "Offer", "Offer", "Call"],
            "arm": ["treatment", "holdout", "treatment", "holdout", "treatment", "treatment"],
            "cost": [3.0, 0.0, 3.0, 0.0, 3.0, np.nan],
        }
    )
    assigned, source = arms(_list(), contacts, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0)
    assert source == "contacts"
    # c0: its first contact in the window; c1: before the list; c3: after the horizon; c4: no cost given.
    assert assigned["arm"].tolist() == ["treatment", "none", "holdout", "none", "treatment", "none"]
    assert assigned["play_run"].fillna("-").tolist()[:5] == ["Offer", "-", "Offer", "-", "Call"]
    assert assigned["contact_cost"].tolist() == [3.0, 0.0, 0.0, 0.0, 10.0, 0.0]


def test_play_effects_worked_out_on_paper() -> None:
    # Offer: 8 contacted (1 churns), 4 held out (2 churn); Call: 3 contacted (0), 2 held out (1).
    reviewed = pd.DataFrame(
        {
            "play_run": ["Offer"] * 12 + ["Call"] * 5,
            "arm": ["treatment"] * 8 + ["holdout"] * 4 + ["treatment"] * 3 + ["holdout"] * 2,
            "churned": pd.array([1] + [0] * 7 + [1, 1, 0, 0] + [0, 0, 0] + [1, 0], dtype="Int8"),
            "customer_value": [50.0] * 12 + [200.0] * 5,
            "contact_cost": [5.0] * 8 + [0.0] * 4 + [20.0] * 3 + [0.0] * 2,
        }
    )
    plays = play_effects(reviewed, 0.25, min_arm=3).set_index("play")
    offer = plays.loc["Offer"]
    assert offer["effect"] == pytest.approx(2 / 4 - 1 / 8)
    assert offer["saved"] == pytest.approx(0.375 * 8)
    assert offer["revenue_saved"] == pytest.approx(0.375 * 8 * 50)
    assert offer["cost"] == 40.0
    assert offer["roi"] == pytest.approx(0.375 * 400 / 40)
    assert offer["success_rate"] == pytest.approx(0.375 / 0.5)
    assert (offer["effect_low"], offer["effect_high"]) == pytest.approx(difference_interval(2, 4, 1, 8)[1:])
    call = plays.loc["Call"]
    assert call["effect"] == pytest.approx(0.5) and call["saved"] == pytest.approx(1.5)
    assert not call["enough_data"]
    total = plays.loc["all plays"]
    assert total["contacted"] == 11 and total["held_out"] == 6
    assert total["saved"] == pytest.approx(3.0 + 1.5)
    assert total["effect"] == pytest.approx(4.5 / 11)
    assert total["saved_low"] < total["saved"] < total["saved_high"]
    # MOVER (Zou & Donner): each play's Newcombe distances, weighted by its contacted share, in quadrature.
    (_, l1, u1), (_, l2, u2) = difference_interval(2, 4, 1, 8), difference_interval(1, 2, 0, 3)
    w1, w2 = 8 / 11, 3 / 11
    assert total["effect_low"] == pytest.approx(4.5 / 11 - math.hypot(w1 * (0.375 - l1), w2 * (0.5 - l2)))
    assert total["effect_high"] == pytest.approx(4.5 / 11 + math.hypot(w1 * (u1 - 0.375), w2 * (u2 - 0.5)))
    assert total["roi"] == pytest.approx((150 + 300) / (40 + 60))
    measured = measured_success_rate(plays.reset_index())  # Call has too few customers to count
    assert measured is not None and measured["plays_judged"] == ["Offer"]
    assert measured["success_rate"] == pytest.approx(0.375 / 0.5)


def _reviewed(play: str, arms: list[str], churned: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "play_run": play,
            "arm": arms,
            "churned": pd.array(churned, dtype="Int8"),
            "customer_value": 100.0,
            "contact_cost": [5.0 if a == "treatment" else 0.0 for a in arms],
        }
    )


def test_lists_are_strata_when_pooled_so_no_simpson() -> None:
    """Two lists where the play does nothing: list A holds out half its customers and 40% of everyone
    churns; list B holds out a tenth and 10% churn. Pooling the customers would show an effect."""
    a = _reviewed("Offer", ["treatment"] * 50 + ["holdout"] * 50, [1] * 20 + [0] * 30 + [1] * 20 + [0] * 30)
    b = _reviewed("Offer", ["treatment"] * 90 + ["holdout"] * 10, [1] * 9 + [0] * 81 + [1] + [0] * 9)
    lists = [play_effects(a, 0.25), play_effects(b, 0.25)]
    naive = play_effects(pd.concat([a, b]), 0.25).set_index("play").loc["Offer", "effect"]
    assert naive == pytest.approx(21 / 60 - 29 / 140)  # +0.14: an effect that is not there
    pooled = pooled_effects(lists, 0.25).set_index("play")
    assert pooled.loc["Offer", "effect"] == pytest.approx(0.0)
    assert pooled.loc["all plays", "saved"] == pytest.approx(0.0)
    assert pooled.loc["Offer", "effect_low"] < 0 < pooled.loc["Offer", "effect_high"]


def test_plays_without_holdouts_have_no_effect_and_do_not_count() -> None:
    both = _reviewed("Offer", ["treatment"] * 20 + ["holdout"] * 20, [1] * 2 + [0] * 18 + [1] * 6 + [0] * 14)
    only = _reviewed("Call", ["treatment"] * 30, [0] * 30)
    plays = play_effects(pd.concat([both, only]), 0.25).set_index("play")
    assert math.isnan(plays.loc["Call", "effect"]) and math.isnan(plays.loc["Call", "roi"])
    total = plays.loc["all plays"]
    assert (total["contacted"], total["held_out"], total["cost"]) == (20, 20, 100.0)  # Offer's alone
    assert total["effect"] == pytest.approx(0.2)
    none = play_effects(only, 0.25).set_index("play").loc["all plays"]
    assert all(math.isnan(none[k]) for k in ("effect", "saved", "saved_low", "roi", "revenue_saved"))


def test_play_names_are_one_play_whatever_the_case_and_spacing() -> None:
    contacts = pd.DataFrame(
        {
            "customer_id": ["c0", "c1", "c2"],
            "contacted_at": pd.Timestamp("2025-06-02"),
            "play": ["Loyalty offer", "loyalty  OFFER ", "Loyalty offer"],
            "arm": ["treatment", "holdout", "treatment"],
        }
    )
    assigned, _ = arms(_list(), contacts, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0)
    assert assigned["play_run"].iloc[:3].tolist() == ["Loyalty offer"] * 3


def test_arms_by_the_plan_with_a_contacts_table_is_intention_to_treat() -> None:
    """review.arms: list counts a planned contact as contacted even without a contact row, and takes the
    play and cost from a row where there is one."""
    contacts = pd.DataFrame(
        {
            "customer_id": ["c1", "c4"],
            "contacted_at": pd.Timestamp("2025-06-10"),
            "play": ["Success-manager call", "Loyalty offer"],
            "arm": ["treatment", "treatment"],
            "cost": [40.0, 25.0],
        }
    )
    assigned, source = arms(_list(), contacts, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0, "list")
    assert source == "list"
    assert assigned["arm"].tolist() == ["treatment", "treatment", "holdout", "none", "none", "none"]
    assert assigned["play_run"].iloc[:3].tolist() == [
        "Billing outreach",
        "Success-manager call",
        "Billing outreach",
    ]
    assert assigned["contact_cost"].tolist() == [10.0, 40.0, 0.0, 0.0, 0.0, 0.0]


def test_review_of_a_small_business_by_hand() -> None:
    """Six customers; c0 and c2 end their subscription in the horizon, c5 only after it."""
    customers = pd.DataFrame(
        {"customer_id": [f"c{i}" for i in range(6)], "signup_at": pd.Timestamp("2025-01-01"), "mrr": 10.0}
    )
    ends = [
        pd.Timestamp("2025-06-10"),
        pd.NaT,
        pd.Timestamp("2025-06-25"),
        pd.NaT,
        pd.NaT,
        pd.Timestamp("2025-07-15"),
    ]
    subscriptions = pd.DataFrame(
        {"customer_id": customers["customer_id"], "start_at": pd.Timestamp("2025-01-01"), "end_at": ends}
    )
    contacts = pd.DataFrame(
        {
            "customer_id": ["c0", "c1", "c2"],
            "contacted_at": pd.Timestamp("2025-06-01 10:00"),
            "play": "Billing outreach",
            "arm": ["treatment", "treatment", "holdout"],
            "cost": [5.0, 5.0, 0.0],
        }
    )
    events = pd.DataFrame(
        {"customer_id": ["c3"], "timestamp": [pd.Timestamp("2025-08-01")], "event_type": ["login"]}
    )
    dataset = dataset_from_frames(
        {"customers": customers, "subscriptions": subscriptions, "contacts": contacts, "events": events}
    )
    assert observed_by(AS_OF, CONFIG) <= dataset.end
    result = review_list(_list(), dataset, CONFIG, AS_OF)
    assert result.source == "contacts"
    assert result.customers["churned"].tolist() == [1, 0, 1, 0, 0, 0]
    billing = result.plays.set_index("play").loc["Billing outreach"]
    assert (billing["contacted"], billing["held_out"]) == (2, 1)
    assert billing["churn_contacted"] == 0.5 and billing["churn_held_out"] == 1.0
    assert billing["effect"] == pytest.approx(0.5)
    assert billing["cost"] == 10.0 and billing["roi"] == pytest.approx(0.5 * 200 / 10)
    m = result.model
    assert (m["labeled"], m["churners"], m["contacted_depth"]) == (6, 2, 3)
    assert m["roc_auc"] == pytest.approx(7 / 8)  # churners at ranks 1 and 3 of 6
    # Not contacted: c2..c5, c2 churned; the list put 3 of 6 on a play, so the top half of them (c2, c3).
    # Not contacted: c2..c5, c2 churned; the list put 3 of 6 on a play, so the top half of them: c2, c3.
    # (By the list's rank over everyone it would be (2/3) / (2/6), the same 2.0: capture tells them apart.)
    assert m["lift_at_depth"] == pytest.approx((1 / 2) / (1 / 4)) and m["capture_at_depth"] == 1.0
    table = result.breakdowns["risk_band"].set_index("value")
    assert table.loc["high", "churners"] == 2 and table.loc["low", "realised"] == 0.0
    assert any("too few to judge" in note for note in result.notes)


def test_measured_success_rate_is_used_only_when_there_is_a_usable_one(tmp_path) -> None:
    from churnml import io
    from churnml.pipelines.archive import review_dir
    from churnml.pipelines.review import MEASURED_FILE, campaign_in_use

    config = load_config(
        None, [f"output.dir={tmp_path}", "campaign.effect=measured", "campaign.success_rate=0.25"]
    )
    campaign, source = campaign_in_use(config)
    assert campaign.success_rate == 0.25 and "no review yet" in source
    io.write_json(review_dir(config) / MEASURED_FILE, {"success_rate": 0.4, "lists": ["2025-06-01T00:00:00"]})
    campaign, source = campaign_in_use(config)
    assert campaign.success_rate == 0.4 and source == "measured on the lists of 2025-06-01"
    io.write_json(review_dir(config) / MEASURED_FILE, {"success_rate": -0.3, "lists": []})
    campaign, source = campaign_in_use(config)
    assert campaign.success_rate == 0.25 and "not a share" in source
    assumed = load_config(None, [f"output.dir={tmp_path}"])
    assert campaign_in_use(assumed)[0].success_rate == 0.25  # campaign.effect: assumed ignores the file


def test_lift_at_the_contacted_depth_is_by_probability_among_those_not_contacted() -> None:
    """The list's rank follows revenue here (the opposite of probability): the lift judges the model."""
    from churnml.risk.review import model_holdup

    reviewed = pd.DataFrame(
        {
            "rank": [1, 2, 3, 4, 5],
            "churn_probability": [0.1, 0.2, 0.3, 0.4, 0.9],
            "churned": pd.array([0, 0, 0, 1, 0], dtype="Int8"),
            "action": ["contact", "contact", None, None, None],
            "arm": ["none", "none", "none", "none", "treatment"],  # the last one's outcome was changed
            "risk_band": "low",
        }
    )
    figures, _ = model_holdup(reviewed, ["low"], 2)
    # 2 of 5 put on a play; among the 4 not contacted that is 2, the two most probable: one churner.
    assert figures["lift_at_depth"] == pytest.approx((1 / 2) / (1 / 4)) and figures["capture_at_depth"] == 1.0
    assert figures["roc_auc_not_contacted"] == 1.0


def test_the_service_takes_contacts_only_for_a_model_that_reads_them() -> None:
    from types import SimpleNamespace

    from churnml.contract import ACTIVITY_TABLES
    from churnml.serving.schemas import history_table_names

    plain = SimpleNamespace(specs=[SimpleNamespace(table="events")])
    reads = SimpleNamespace(specs=[SimpleNamespace(table="events"), SimpleNamespace(table="contacts")])
    assert history_table_names(plain) == ACTIVITY_TABLES  # type: ignore[arg-type]
    assert history_table_names(reads) == (*ACTIVITY_TABLES, "contacts")  # type: ignore[arg-type]
