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


def _small_business(end: pd.Timestamp | None = None):
    """Six customers; c0 and c2 end their subscription in June, c5 on 07-15; c0..c2 on Billing outreach
    (c2 held out), contacted on 06-01."""
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
    return dataset_from_frames(
        {"customers": customers, "subscriptions": subscriptions, "contacts": contacts, "events": events},
        end=end,
    )


def test_review_of_a_small_business_by_hand() -> None:
    """Six customers; c0 and c2 end their subscription in the horizon, c5 only after it."""
    dataset = _small_business()
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


def test_the_next_lists_contacts_are_not_this_lists_and_a_list_scored_mid_day_keeps_its_days_contacts() -> (
    None
):
    """A list's contact rows run from its day to its horizon or the next list's day, whichever is first:
    with a 30-day horizon, the March list's contacts on 03-01 and 03-02 are not February's."""
    from churnml.risk.review import contact_window

    feb, mar = pd.Timestamp("2025-02-01 14:30"), pd.Timestamp("2025-03-01 09:00")
    start, end = contact_window(feb, feb + pd.Timedelta(days=30), mar)
    assert (start, end) == (pd.Timestamp("2025-02-01"), pd.Timestamp("2025-03-01"))
    assert contact_window(feb, feb + pd.Timedelta(days=30), None)[1] == feb + pd.Timedelta(days=30)
    listed = _list().assign(as_of=feb)
    contacts = pd.DataFrame(
        {
            "customer_id": ["c0", "c2", "c3", "c4"],
            "contacted_at": pd.to_datetime(["2025-02-01", "2025-02-01", "2025-03-01", "2025-03-02"]),
            "play": "Offer",
            "arm": ["treatment", "holdout", "treatment", "holdout"],
        }
    )
    assigned, _ = arms(listed, contacts, start, end, 10.0)
    # c0 and c2 were recorded by date on the (mid-day) list's day; c3 and c4 belong to the March list.
    assert assigned["arm"].tolist() == ["treatment", "none", "holdout", "none", "none", "none"]


def test_a_plays_own_cost_in_the_playbook_comes_before_the_campaign_default() -> None:
    from churnml.risk.risk_list import Playbook, load_playbook

    default = load_playbook(None)
    groups = {
        name: group.model_copy(update={"cost": 40.0}) if group.play == "Billing outreach" else group
        for name, group in default.groups.items()
    }
    playbook = Playbook.model_validate({**default.model_dump(), "groups": groups})
    assigned, _ = arms(_list(), None, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0, playbook=playbook)
    assert assigned["contact_cost"].tolist() == [40.0, 40.0, 0.0, 0.0, 0.0, 0.0]
    contacts = pd.DataFrame(  # a cost recorded on the contact row still comes first
        {
            "customer_id": ["c0"],
            "contacted_at": AS_OF,
            "play": "Billing outreach",
            "arm": "treatment",
            "cost": 3.0,
        }
    )
    assigned, _ = arms(_list(), contacts, AS_OF, AS_OF + pd.Timedelta(days=30), 10.0, "list", playbook)
    assert assigned["contact_cost"].tolist() == [3.0, 40.0, 0.0, 0.0, 0.0, 0.0]


def test_predicted_and_realised_churn_of_a_breakdown_are_of_the_same_customers() -> None:
    from churnml.risk.review import breakdown

    reviewed = pd.DataFrame(
        {
            "risk_band": "high",
            "churn_probability": [0.9, 0.9, 0.1, 0.1],
            "churned": pd.array([pd.NA, pd.NA, 0, 0], dtype="Int8"),  # the first two have no outcome
        }
    )
    row = breakdown(reviewed, "risk_band").iloc[0]
    assert (row["customers"], row["labeled"]) == (4, 2)
    assert row["predicted"] == pytest.approx(0.1) and row["realised"] == 0.0


def test_the_measured_success_rate_counts_only_lists_with_enough_customers_in_both_arms() -> None:
    """review.min_arm applies to each (list, play): two lists with 3 and 8 holdouts do not add up to a
    measured success rate of 11 holdouts."""
    from types import SimpleNamespace

    from churnml.pipelines.review import _measured

    def plays(contacted: int, churned_c: int, held: int, churned_h: int) -> pd.DataFrame:
        reviewed = pd.DataFrame(
            {
                "churned": pd.array(
                    [1] * churned_c
                    + [0] * (contacted - churned_c)
                    + [1] * churned_h
                    + [0] * (held - churned_h),
                    dtype="Int8",
                ),
                "arm": ["treatment"] * contacted + ["holdout"] * held,
                "play_run": "Offer",
                "customer_value": 100.0,
                "contact_cost": [10.0] * contacted + [0.0] * held,
            }
        )
        return play_effects(reviewed, 0.25, min_arm=10)

    few = [
        SimpleNamespace(plays=plays(50, 5, 3, 2), as_of=AS_OF),
        SimpleNamespace(plays=plays(50, 5, 8, 4), as_of=AS_OF),
    ]
    assert _measured(few, CONFIG) is None  # type: ignore[arg-type]
    enough = [*few, SimpleNamespace(plays=plays(50, 5, 20, 8), as_of=AS_OF)]
    measured = _measured(enough, CONFIG)  # type: ignore[arg-type]
    assert measured is not None and (measured["contacted"], measured["held_out"]) == (50, 20)
    assert measured["success_rate"] == pytest.approx((8 / 20 - 5 / 50) / (8 / 20))


def test_contacted_customers_held_out_on_the_list_before_are_left_out_of_the_comparison() -> None:
    """The holdout draw cannot pick last list's holdouts again, so they all land among the contacted:
    compared with the holdout they would bias the effect (here they churn more and the play does nothing)."""
    rng = np.random.default_rng(0)
    n = 4000
    held_before = rng.random(n) < 0.1
    action = np.where(~held_before & (rng.random(n) < 0.2), "holdout", "contact")
    churned = rng.random(n) < np.where(held_before, 0.40, 0.25)
    listed = pd.DataFrame(
        {
            "rank": range(1, n + 1),
            "customer_id": [f"c{i}" for i in range(n)],
            "churn_probability": 0.3,
            "risk_band": "high",
            "risk_group": "failed_payments",
            "segment": "active",
            "action": action,
            "play": "Billing outreach",
            "customer_value": 100.0,
            "as_of": AS_OF,
        }
    )
    ids = listed["customer_id"]
    dataset = dataset_from_frames(
        {
            "customers": pd.DataFrame(
                {"customer_id": ids, "signup_at": pd.Timestamp("2025-01-01"), "mrr": 10.0}
            ),
            "subscriptions": pd.DataFrame(
                {
                    "customer_id": ids,
                    "start_at": pd.Timestamp("2025-01-01"),
                    "end_at": np.where(churned, pd.Timestamp("2025-06-10"), pd.NaT),
                }
            ),
            "events": pd.DataFrame(
                {"customer_id": ["c0"], "timestamp": [pd.Timestamp("2025-05-20")], "event_type": ["login"]}
            ),
        },
        end=pd.Timestamp("2025-08-01"),
    )
    naive = review_list(listed, dataset, CONFIG, AS_OF)
    fair = review_list(listed, dataset, CONFIG, AS_OF, held_before=set(ids[held_before]))
    assert fair.customers["churned"].astype(bool).tolist() == churned.tolist()
    effect = lambda r: r.plays.set_index("play").loc["Billing outreach"]  # noqa: E731
    kept = int((held_before & (action == "contact")).sum())
    assert effect(fair)["contacted"] == effect(naive)["contacted"] - kept
    truth_effect = (
        churned[~held_before & (action == "holdout")].mean()
        - churned[~held_before & (action == "contact")].mean()
    )
    assert effect(fair)["effect"] == pytest.approx(truth_effect)
    assert effect(naive)["effect"] < effect(fair)["effect"] - 0.01  # the bias the rule had put in
    assert any("held out on the list before" in note for note in fair.notes)
    assert not fair.customers.loc[held_before, "randomised"].any()


def test_the_review_judges_a_list_by_its_own_label_and_its_draws_own_rule(tmp_path) -> None:
    """The pipeline reads from each archived list's summary the label it was scored with (a model trained
    on 60 days is judged on 60 days, whatever labels.horizon_days says today) and the list it drew its
    holdouts against (whose holdouts it could not hold out again)."""
    from churnml.pipelines import review

    config = _review_config(tmp_path)
    may = AS_OF - pd.DateOffset(months=1)
    before = _list().assign(as_of=may, action=["contact", "holdout", "contact", None, None, None])
    summaries = {
        may: {"as_of": may.isoformat(), "previous_as_of": None},
        AS_OF: {
            "as_of": AS_OF.isoformat(),
            "previous_as_of": may.isoformat(),
            "holdout_repeat": False,
            "labels": {"definition": "subscription", "horizon_days": 60, "grace_days": 7, "active_days": 30},
        },
    }
    for stamp, listed in ((may, before), (AS_OF, _list())):
        _archive(config, stamp, listed, summaries[stamp])
    result = review.run(config, dataset=_small_business(end=pd.Timestamp("2025-09-01")))
    june = next(r for r in result.reviews if r.as_of == AS_OF)
    assert june.horizon_end == AS_OF + pd.Timedelta(days=60)
    assert june.customers["churned"].tolist() == [1, 0, 1, 0, 0, 1]  # c5 left on 07-15, within 60 days
    assert "horizon_days 60 (the config says 30)" in june.notes[0]
    # c1, held out in May, is contacted in June: not part of the comparison (c0 against c2 only).
    assert june.customers["randomised"].tolist() == [True, False, True, True, True, True]
    billing = june.plays.set_index("play").loc["Billing outreach"]
    assert (billing["contacted"], billing["held_out"], billing["effect"]) == (1, 1, 0.0)
    page = next(p for p in result.pages if "2025-06-01" in str(p)).read_text()
    assert "60 days later" in page  # the page says which horizon it judged
    may_review = next(r for r in result.reviews if r.as_of == may)
    assert may_review.horizon_end == may + pd.Timedelta(days=30)  # no label recorded: the config's
    assert not any("label this list was scored with" in note for note in may_review.notes)


def test_in_the_pipeline_a_lists_contacts_end_where_the_next_lists_begin(tmp_path) -> None:
    """May's list, recorded with a 60-day label, has a horizon to 06-30; June's contacts of 06-01 are the
    June list's, not May's. Only the label settings its definition reads are compared in the note."""
    from churnml.pipelines import review

    config = _review_config(tmp_path)
    may = AS_OF - pd.DateOffset(months=1)
    labels = {"definition": "subscription", "horizon_days": 60, "grace_days": 7, "active_days": 45}
    _archive(config, may, _list().assign(as_of=may), {"as_of": may.isoformat(), "labels": labels})
    dataset = _small_business(end=pd.Timestamp("2025-09-01"))
    alone = review.run(config, dataset=dataset)  # no June list yet: the 06-01 contacts fall in May's
    assert (alone.reviews[0].customers["arm"] != "none").sum() == 3
    assert (
        alone.reviews[0].notes[0]
        == "outcomes by the label this list was scored with: horizon_days 60 (the config says 30)"
    )
    _archive(config, AS_OF, _list(), {"as_of": AS_OF.isoformat(), "previous_as_of": may.isoformat()})
    both = review.run(config, dataset=dataset)
    may_review = next(r for r in both.reviews if r.as_of == may)
    assert may_review.horizon_end == may + pd.Timedelta(days=60)
    assert (may_review.customers["arm"] == "none").all()
    june = next(r for r in both.reviews if r.as_of == AS_OF)
    assert (june.customers["arm"] != "none").sum() == 3


def test_last_lists_holdouts_are_left_out_of_either_arm_unless_the_draw_could_repeat_them(tmp_path) -> None:
    """A team's own contact rows may hold a customer out twice in a row: then they leave the holdout arm
    too. With risk.holdout_repeat recorded for the list, nobody is left out."""
    from churnml.pipelines import review

    config = _review_config(tmp_path)
    may = AS_OF - pd.DateOffset(months=1)
    before = _list().assign(as_of=may, action=["contact", "holdout", "holdout", None, None, None])
    _archive(config, may, before, {"as_of": may.isoformat()})
    june = {"as_of": AS_OF.isoformat(), "previous_as_of": may.isoformat(), "holdout_repeat": False}
    _archive(config, AS_OF, _list(), june)
    dataset = _small_business(end=pd.Timestamp("2025-09-01"))
    reviewed = next(r for r in review.run(config, dataset=dataset).reviews if r.as_of == AS_OF)
    # c1 contacted and c2 held out in June were both held out in May.
    assert reviewed.customers["randomised"].tolist() == [True, False, False, True, True, True]
    assert any("2 customers with an arm had been held out" in note for note in reviewed.notes)
    _archive(config, AS_OF, _list(), {**june, "holdout_repeat": True})
    reviewed = next(r for r in review.run(config, dataset=dataset).reviews if r.as_of == AS_OF)
    assert reviewed.customers["randomised"].all()


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"labels": {"horizon_days": -5}}, "its labels are not a label's settings"),
        ({"labels": {"definition": "churny"}}, "its labels are not a label's settings"),
        ({"previous_as_of": "yesterday"}, "previous_as_of 'yesterday' is not a date"),
    ],
)
def test_a_hand_edited_summary_is_a_named_error(tmp_path, summary, message) -> None:
    from churnml.errors import ChurnmlError
    from churnml.pipelines import review

    config = _review_config(tmp_path)
    folder = _archive(config, AS_OF, _list(), {"as_of": AS_OF.isoformat(), **summary})
    with pytest.raises(ChurnmlError) as info:
        review.run(config, dataset=_small_business(end=pd.Timestamp("2025-09-01")))
    assert message in str(info.value) and str(folder) in str(info.value)


def test_two_lists_on_one_day_split_its_contacts_at_the_second_ones_moment() -> None:
    from churnml.risk.review import contact_window

    morning, afternoon = pd.Timestamp("2025-06-01 09:00"), pd.Timestamp("2025-06-01 14:30")
    assert contact_window(morning, morning + pd.Timedelta(days=30), afternoon) == (
        pd.Timestamp("2025-06-01"),
        afternoon,
    )


def _review_config(tmp_path):
    return load_config(
        None, [f"output.dir={tmp_path}", "scoring.log_to_mlflow=false", "campaign.cost_per_contact=10"]
    )


def _archive(config, stamp: pd.Timestamp, listed: pd.DataFrame, summary: dict | None = None):
    """An archived list as `churnml score` leaves it (history/<date>/ with its summary.json)."""
    from churnml import io
    from churnml.pipelines.archive import ARCHIVE_DIR, RISK_LIST, SUMMARY_FILE, score_dir

    folder = score_dir(config) / ARCHIVE_DIR / stamp.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    io.write_parquet(folder / f"{RISK_LIST}.parquet", listed)
    io.write_json(folder / SUMMARY_FILE, summary or {"as_of": stamp.isoformat()})
    return folder


@pytest.mark.parametrize(
    ("damage", "column", "shown"),
    [
        (lambda d: d.drop(columns="action"), "action", "missing column"),
        (lambda d: d.drop(columns="customer_id"), "customer_id", "missing column"),
        (
            lambda d: d.assign(churn_probability=d["churn_probability"].astype(str)),
            "churn_probability",
            "0.6",
        ),
        (lambda d: d.assign(churn_probability=d["churn_probability"] * 10), "churn_probability", "6.0"),
        (lambda d: pd.concat([d, d.head(2)]), "customer_id", "c1"),
        (lambda d: d.assign(as_of=pd.Timestamp("2025-06-15")), "as_of", "2025-06-15"),
        (lambda d: d.assign(customer_value="lots"), "customer_value", "lots"),
    ],
)
def test_a_hand_edited_archived_list_is_a_named_error_not_a_traceback(
    tmp_path, damage, column, shown
) -> None:
    from churnml.errors import DataValidationError
    from churnml.pipelines import review

    config = _review_config(tmp_path)
    folder = _archive(config, AS_OF, damage(_list()))
    with pytest.raises(DataValidationError) as info:
        review.run(config, dataset=_small_business())
    assert info.value.column == column and str(folder) in info.value.table
    assert shown in str(info.value)


def test_a_damaged_archive_stops_the_review_before_it_touches_the_earlier_reviews(tmp_path) -> None:
    """A list file cut short is a named error; a summary.json that cannot be read falls back on the
    list's own as_of (with a warning) instead of dropping the list and its earlier review in silence."""
    from churnml.errors import ChurnmlError
    from churnml.pipelines import review
    from churnml.pipelines.archive import RISK_LIST, SUMMARY_FILE

    config = _review_config(tmp_path)
    folder = _archive(config, AS_OF, _list())
    dataset = _small_business()
    first = review.run(config, dataset=dataset)
    page = first.pages[0]
    assert page.exists()
    with pytest.raises(ChurnmlError, match="not a date"):
        review.run(config, as_of="", dataset=dataset)
    summary = (folder / SUMMARY_FILE).read_text()
    (folder / SUMMARY_FILE).write_text("{not json")
    again = review.run(config, dataset=dataset)
    assert [r.as_of for r in again.reviews] == [AS_OF] and page.exists()
    (folder / SUMMARY_FILE).write_text(summary)
    data = (folder / f"{RISK_LIST}.parquet").read_bytes()
    (folder / f"{RISK_LIST}.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(ChurnmlError, match="cannot be read"):
        review.run(config, dataset=dataset)
    (folder / SUMMARY_FILE).write_text("{not json")
    with pytest.raises(ChurnmlError, match="neither a readable summary"):
        review.run(config, dataset=dataset)
    assert page.exists()  # the earlier review is still there


def test_scoring_skips_a_damaged_previous_list_with_a_warning(tmp_path, caplog) -> None:
    from churnml.pipelines.archive import read_previous, score_dir

    config = _review_config(tmp_path)
    listed = _list().assign(at_risk=[True] * 3 + [False] * 3, as_of=AS_OF)
    _archive(config, AS_OF, pd.concat([listed, listed.head(1)]))
    later = AS_OF + pd.DateOffset(months=1)
    assert read_previous(score_dir(config), later) is None
    assert "a customer listed twice" in caplog.text
    _archive(config, AS_OF, listed.assign(at_risk=np.where(listed["at_risk"], "yes", "no")))
    assert read_previous(score_dir(config), later) is None
    assert "not true/false" in caplog.text
    _archive(config, AS_OF, listed.drop(columns="as_of"))
    assert read_previous(score_dir(config), later) is None
    assert "missing column(s) as_of" in caplog.text
    _archive(config, AS_OF, listed.drop(columns="action"))
    previous = read_previous(score_dir(config), later)
    assert previous is not None and "no action column" in caplog.text


def test_the_measured_success_rate_interval_is_katzs_for_one_large_play() -> None:
    """1 - RR with RR = 0.1 / 0.3: Katz's log interval is exp(log RR +- 1.96 x sqrt(1/200 - 1/2000 +
    1/600 - 1/2000)), 0.6137 to 0.7125. Dividing the effect's interval by the held-out churn gave 0.586
    to 0.746 (too wide: 99.6-100% coverage in a review's simulation)."""
    reviewed = _reviewed(
        "Offer", ["treatment"] * 2000 + ["holdout"] * 2000, [1] * 200 + [0] * 1800 + [1] * 600 + [0] * 1400
    )
    measured = measured_success_rate(play_effects(reviewed, 0.25))
    assert measured is not None and measured["success_rate"] == pytest.approx(2 / 3)
    se = math.sqrt(1 / 200 - 1 / 2000 + 1 / 600 - 1 / 2000)
    katz = (1 - math.exp(math.log(1 / 3) + 1.96 * se), 1 - math.exp(math.log(1 / 3) - 1.96 * se))
    assert (measured["success_rate_low"], measured["success_rate_high"]) == pytest.approx(katz, abs=0.002)
    # No churner among the contacted: a rate of 100%, an interval up to 1 and not beyond.
    none_left = _reviewed("Offer", ["treatment"] * 40 + ["holdout"] * 20, [0] * 40 + [1] * 6 + [0] * 14)
    measured = measured_success_rate(play_effects(none_left, 0.25))
    assert measured is not None and measured["success_rate"] == 1.0 and measured["success_rate_high"] == 1.0
    assert 0 < measured["success_rate_low"] < 1


@pytest.mark.parametrize(("contacted", "held", "held_churners"), [(40, 20, 6), (10, 10, 1), (200, 30, 6)])
def test_fewer_contacted_churners_never_lower_the_success_rates_bounds(
    contacted, held, held_churners
) -> None:
    def bounds(churners: int) -> tuple[float, float]:
        arms = ["treatment"] * contacted + ["holdout"] * held
        churned = (
            [1] * churners + [0] * (contacted - churners) + [1] * held_churners + [0] * (held - held_churners)
        )
        measured = measured_success_rate(play_effects(_reviewed("Offer", arms, churned), 0.25, min_arm=1))
        assert measured is not None
        return measured["success_rate_low"], measured["success_rate_high"]

    (low0, high0), (low1, high1), (low2, high2) = bounds(0), bounds(1), bounds(2)
    assert low0 >= low1 >= low2 and high0 >= high1 >= high2
