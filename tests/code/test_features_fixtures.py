"""Hand-computed features for a tiny dataset: every family, worked out on paper from the rows below.

Customer A is active and has a bit of everything; B has churned (subscriptions ended, a ticket still
open); C signs up after the cutoff. The cutoff is 2025-04-01 00:00; windows 7/30/90 days are
[03-25, 04-01), [03-02, 04-01) and [01-01, 04-01); the trend compares [03-02, 04-01) with [01-31, 03-02).
"""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import FeatureConfig
from churnml.data.dataset import Dataset
from churnml.features import FAMILIES, FeatureSpec, build_features, feature_catalogue

T = pd.Timestamp("2025-04-01")
CONFIG = FeatureConfig()
NAN = float("nan")


def _ts(*values: str | None) -> pd.Series:
    return pd.Series(pd.to_datetime(list(values), format="ISO8601")).astype("datetime64[ns]")


def _table(columns: dict) -> pd.DataFrame:
    frame = pd.DataFrame(columns)
    for name, column in frame.items():
        if column.dtype == object:
            frame[name] = column.astype("str")
    return frame


def make_dataset(**drop_columns: list[str]) -> Dataset:
    tables = {
        "customers": _table(
            {
                "customer_id": ["A", "B", "C"],
                "signup_at": _ts("2025-01-01 09:00", "2024-01-01", "2025-05-01"),
                "plan": ["basic", "free", "pro"],
                "mrr": [29.0, 0.0, 99.0],
                "acquisition_channel": ["promotion", "organic", "partner"],
                "country": ["US", "DE", "FR"],
                "company_size": ["1-10", "11-50", "1-10"],
                "seats": [3, 12, 1],
            }
        ),
        "events": _table(
            {
                "customer_id": ["A"] * 7,
                "timestamp": _ts(
                    "2025-02-20 08:00",
                    "2025-03-10 09:00",
                    "2025-03-28 09:00",
                    "2025-03-31 10:00",
                    "2025-03-31 12:00",
                    "2025-04-01 00:00",  # at the cutoff: not before it
                    "2025-04-05 00:00",
                ),
                "event_type": ["login", "export", "login", "login", "core_feature_use", "login", "login"],
                "value": [NAN, NAN, NAN, NAN, 5.0, NAN, NAN],
            }
        ),
        "subscriptions": _table(
            {
                "customer_id": ["A", "A", "B", "B"],
                "start_at": _ts("2025-01-01 09:00", "2025-03-01", "2024-01-01", "2025-02-15"),
                "end_at": _ts("2025-03-01", None, "2025-02-01", "2025-03-15"),
                "plan": ["basic", "pro", "basic", "basic"],
                "mrr": [29.0, 99.0, 29.0, 9.0],
            }
        ),
        "transactions": _table(
            {
                "customer_id": ["A"] * 4,
                "timestamp": _ts(
                    "2025-03-01 10:00", "2025-03-25 10:00", "2025-03-28 10:00", "2025-04-02 10:00"
                ),
                "amount": [29.0, 29.0, 29.0, 99.0],
                "status": ["paid", "failed", "paid", "failed"],
            }
        ),
        "tickets": _table(
            {
                "customer_id": ["A", "A", "A", "B", "B"],
                "opened_at": _ts(
                    "2025-02-01", "2025-03-20 10:00", "2025-03-30 08:00", "2025-03-01", "2025-03-05"
                ),
                "closed_at": _ts("2025-02-03", "2025-03-21 10:00", "2025-04-03", None, "2025-03-06"),
                "priority": ["low", "high", "low", "normal", "low"],
                "satisfaction": [2.0, 4.0, 1.0, NAN, 5.0],  # A's 1.0 comes with a closing after the cutoff
            }
        ),
        "messages": _table(
            {
                "customer_id": ["A"] * 3,
                "sent_at": _ts("2025-02-15 10:00", "2025-03-15 10:00", "2025-03-25 10:00"),
                "opened_at": _ts(None, "2025-03-16 10:00", "2025-04-02"),
                "clicked_at": _ts(None, "2025-03-16 10:05", None),
                "campaign": ["newsletter", "newsletter", "winback"],
            }
        ),
        "contacts": _table(
            {
                "customer_id": ["A", "A", "A", "B"],
                "contacted_at": _ts(
                    "2025-02-10 09:00", "2025-03-20 09:00", "2025-03-30 15:00", "2025-03-31 09:00"
                ),
                "play": ["offer", "billing_outreach", "success_call", "re_engagement"],
                "arm": ["treatment", "treatment", "holdout", "treatment"],  # a holdout is not a contact
                "cost": [30.0, 5.0, 0.0, 2.0],
            }
        ),
    }
    for table, columns in drop_columns.items():
        tables[table] = tables[table].drop(columns=columns)
    return Dataset(tables=tables, end=pd.Timestamp("2025-04-10"))


EXPECTED_A = {
    # recency: days from the last row strictly before 04-01 00:00
    "days_since_last_event": 0.5,  # 03-31 12:00
    "days_since_last_login": 14 / 24,  # 03-31 10:00 (the 04-01 00:00 login is at the cutoff)
    "days_since_last_payment": 3 + 14 / 24,  # 03-28 10:00 paid
    "days_since_last_failed_payment": 6 + 14 / 24,  # 03-25 10:00
    "days_since_last_ticket": 1 + 16 / 24,  # 03-30 08:00
    "days_since_last_message_open": 15 + 14 / 24,  # 03-16 10:00; the 04-02 open is later
    "activity_overdue_ratio": 0.5 / 13,  # half a day since the last event / 13-day mean gap
    "purchase_overdue_ratio": (3 + 14 / 24) / 27,  # paid on 03-01 and 03-28 (03-25 failed)
    # frequency
    "events_count_7d": 3,
    "events_count_30d": 4,
    "events_count_90d": 5,
    "events_count_total": 5,
    "events_login_count_7d": 2,
    "events_login_count_90d": 3,
    "events_export_count_7d": 0,
    "events_export_count_30d": 1,
    "transactions_count_7d": 2,
    "transactions_count_30d": 2,  # 03-01 10:00 is before 03-02
    "transactions_count_90d": 3,
    "transactions_count_total": 3,  # payment attempts: the failed one counts
    # activity days 02-20, 03-10, 03-28, 03-31 (two events): gaps 18, 18, 3
    "activity_gap_days_mean": 13.0,
    "activity_gap_days_std": math.sqrt((5**2 + 5**2 + 10**2) / 2),
    # purchase days 03-01, 03-28: one gap of 27 days, too few for a spread
    "purchase_gap_days_mean": 27.0,
    "purchase_gap_days_std": NAN,
    "repeat_purchase_days_total": 1,
    "messages_count_total": 3,
    "messages_count_30d": 2,
    "messages_count_90d": 3,
    # monetary
    "payments_amount_7d": 29.0,
    "payments_amount_90d": 58.0,
    "payments_amount_total": 58.0,
    "payment_amount_mean_90d": 29.0,
    "repeat_purchase_value_mean": 29.0,  # the 03-28 payment
    "mrr": 99.0,  # the pro subscription running since 03-01
    # engagement
    "active_days_7d": 2,  # 03-28, 03-31
    "active_days_30d": 3,
    "active_days_90d": 4,
    "active_days_total": 4,
    "distinct_event_types_7d": 2,  # login, core_feature_use
    "distinct_event_types_30d": 3,
    "events_trend_30d": (4 - 1) / (1 + 1),
    "active_days_trend_30d": (3 - 1) / (1 + 1),
    "events_value_sum_30d": 5.0,
    "message_open_rate_30d": 1 / 2,  # the 03-25 message is opened only on 04-02
    "message_open_rate_90d": 1 / 3,
    "message_click_rate_30d": 1 / 2,
    "message_click_rate_90d": 1 / 3,
    # support
    "tickets_count_7d": 1,
    "tickets_count_30d": 2,
    "tickets_count_90d": 3,
    "tickets_count_total": 3,
    "tickets_high_priority_30d": 1,
    "tickets_high_priority_7d": 0,
    "tickets_open": 1,  # opened 03-30, closed only on 04-03
    "oldest_open_ticket_age_days": 1 + 16 / 24,
    "ticket_resolution_hours_mean_30d": 24.0,
    "ticket_resolution_hours_mean_90d": (24.0 + 48.0) / 2,
    "satisfaction_last": 4.0,  # the 1.0 belongs to a ticket closed after the cutoff
    "satisfaction_mean_90d": (4.0 + 2.0) / 2,
    "satisfaction_mean_total": 3.0,
    # billing
    "failed_payments_7d": 1,
    "failed_payments_90d": 1,
    "failed_payment_share_30d": 1 / 2,
    "failed_payment_share_90d": 1 / 3,
    "plan": "pro",
    "plan_changes_30d": 0,  # the change happened on 03-01, before the 30-day window
    "plan_changes_90d": 1,
    "downgrades_total": 0,
    "acquisition_channel": "promotion",
    "promotion": 1.0,
    # tenure
    "tenure_days": 90 - 9 / 24,
    "lifecycle_stage": "early",
    "has_active_subscription": 1.0,
    "subscription_age_days": 31.0,
    "subscriptions_count_total": 2,
    "reactivations_total": 0,  # the pro plan started the moment basic ended
    "purchase_span_days": 27.0,  # BTYD recency
    "days_since_first_purchase": 31.0,  # BTYD T: from 03-01 00:00
    # profile
    "country": "US",
    "company_size": "1-10",
    "customer_seats": 3.0,
    # contacts: treatment on 02-10 and 03-20 09:00; the 03-30 holdout was not contacted
    "days_since_last_contact": 11 + 15 / 24,
    "contacts_count_30d": 1,
    "contacts_count_90d": 2,
    "contacts_count_total": 2,
}

EXPECTED_B = {
    "days_since_last_event": NAN,
    "events_count_90d": 0,
    "active_days_30d": 0,
    "events_trend_30d": 0.0,
    "message_open_rate_30d": NAN,
    "failed_payment_share_30d": NAN,
    "payment_amount_mean_90d": NAN,
    "mrr": 0.0,  # every subscription has ended
    "plan": "basic",  # the latest subscription's plan
    "has_active_subscription": 0.0,
    "subscription_age_days": NAN,
    "subscriptions_count_total": 2,
    "reactivations_total": 1,  # back on 02-15 after ending on 02-01
    "downgrades_total": 1,  # 29 -> 9
    "downgrades_90d": 1,
    "downgrades_30d": 0,
    "plan_changes_total": 0,
    "tickets_open": 1,
    "tickets_count_total": 2,
    "transactions_count_total": 0,
    "repeat_purchase_days_total": 0,  # no purchase: no repeat purchase either
    "purchase_gap_days_mean": NAN,
    "purchase_overdue_ratio": NAN,
    "purchase_span_days": NAN,
    "days_since_first_purchase": NAN,
    "repeat_purchase_value_mean": NAN,
    "activity_gap_days_mean": NAN,
    "activity_overdue_ratio": NAN,
    "active_days_total": 0,
    "oldest_open_ticket_age_days": 31.0,
    "satisfaction_last": 5.0,
    "ticket_resolution_hours_mean_30d": 24.0,
    "tenure_days": 456.0,
    "lifecycle_stage": "mature",
    "promotion": 0.0,
    "country": "DE",
    "days_since_last_contact": 15 / 24,  # 03-31 09:00
    "contacts_count_30d": 1,
}

EXPECTED_C = {  # signs up after the cutoff: no static facts yet, no activity
    "tenure_days": NAN,
    "lifecycle_stage": NAN,
    "country": NAN,
    "customer_seats": NAN,
    "promotion": NAN,
    "mrr": NAN,
    "plan": NAN,
    "has_active_subscription": 0.0,
    "events_count_total": 0,
    "tickets_open": 0,
    "days_since_last_contact": NAN,
    "contacts_count_total": 0,
}

# The same customer A two and a half days later: facts from 04-01..04-03 have become known.
EXPECTED_A_LATER = {
    "days_since_last_event": 2.5,  # the 04-01 00:00 login
    "tickets_open": 0,  # closed 04-03 00:00
    "oldest_open_ticket_age_days": NAN,
    "satisfaction_last": 1.0,
    "message_open_rate_30d": 1.0,  # both messages since 03-04 12:00 are opened by now
    "failed_payments_7d": 1,  # 04-02 10:00; 03-25 has left the window
    # the 04-01 00:00 login adds an active day: gaps 18, 18, 3, 1
    "active_days_total": 5,
    "activity_gap_days_mean": 10.0,
    "activity_gap_days_std": math.sqrt((8**2 + 8**2 + 7**2 + 9**2) / 3),
    "activity_overdue_ratio": 2.5 / 10,
    # the 04-02 transaction failed: still two purchase days
    "transactions_count_total": 4,
    "repeat_purchase_days_total": 1,
    "purchase_overdue_ratio": (6 + 2 / 24) / 27,
    "days_since_first_purchase": 33.5,
    "days_since_last_contact": 14 + 3 / 24,
}


def _equal(got, want) -> bool:
    if isinstance(want, float) and math.isnan(want):
        return pd.isna(got)
    if isinstance(want, str):
        return got == want
    return not pd.isna(got) and math.isclose(float(got), float(want), rel_tol=1e-12, abs_tol=1e-9)


@pytest.fixture(scope="module")
def features() -> pd.DataFrame:
    cutoffs = pd.DataFrame(
        {
            "customer_id": pd.Series(["A", "B", "C", "A"], dtype="str"),
            "cutoff": _ts(str(T), str(T), str(T), "2025-04-03 12:00"),
        }
    )
    return build_features(make_dataset(), cutoffs, CONFIG)


@pytest.mark.parametrize(
    ("row", "expected"), [(0, EXPECTED_A), (1, EXPECTED_B), (2, EXPECTED_C), (3, EXPECTED_A_LATER)]
)
def test_hand_computed_values(features: pd.DataFrame, row: int, expected: dict) -> None:
    wrong = {
        name: (features.at[row, name], want)
        for name, want in expected.items()
        if not _equal(features.at[row, name], want)
    }
    assert not wrong, f"(got, expected): {wrong}"


def test_every_family_is_covered_by_the_fixtures(features: pd.DataFrame) -> None:
    specs = {spec.name: spec for spec in feature_catalogue(make_dataset(), CONFIG)}
    checked = {specs[name].family for name in EXPECTED_A}
    assert checked == set(FAMILIES)


def test_output_frame_shape_and_dtypes(features: pd.DataFrame) -> None:
    specs = feature_catalogue(make_dataset(), CONFIG)
    assert list(features.columns) == ["customer_id", "cutoff", *[spec.name for spec in specs]]
    assert features["cutoff"].dtype == "datetime64[ns]"
    assert features.index.equals(pd.RangeIndex(4))
    for spec in specs:
        column = features[spec.name]
        if spec.dtype == "category":
            assert isinstance(column.dtype, pd.CategoricalDtype)
            assert list(column.cat.categories) == list(spec.categories)
        else:
            assert column.dtype == np.float64, spec.name
    assert list(features["lifecycle_stage"].cat.categories) == [
        "onboarding",
        "early",
        "established",
        "mature",
    ]
    assert list(features["plan"].cat.categories) == ["basic", "free", "pro"]


def test_specs_round_trip_json_and_explain_themselves() -> None:
    specs = feature_catalogue(make_dataset(), CONFIG)
    restored = [FeatureSpec(**json.loads(json.dumps(dataclasses.asdict(spec)))) for spec in specs]
    assert restored == specs
    assert len({hash(spec) for spec in restored}) == len(specs)
    by_name = {spec.name: spec for spec in specs}
    assert by_name["days_since_last_login"].explain(21.4) == "No login for 21 days"
    assert by_name["failed_payments_30d"].explain(2) == "2 failed payments in the last 30 days"
    assert by_name["plan"].explain("pro") == "On the pro plan"
    assert by_name["events_trend_30d"].explain(-0.5) == (
        "Activity changed by -50% in the last 30 days vs the 30 days before"
    )
    assert by_name["country"].explain(float("nan")) == "Country: nan"
    assert all(spec.reason and spec.signal and spec.family in FAMILIES for spec in specs)


def test_catalogue_follows_optional_columns_and_config() -> None:
    names = {s.name for s in feature_catalogue(make_dataset(), CONFIG)}
    reduced = make_dataset(
        tickets=["closed_at", "satisfaction", "priority"],
        messages=["opened_at", "clicked_at"],
        transactions=["status"],
        events=["value"],
        customers=["acquisition_channel"],
    )
    fewer = {s.name for s in feature_catalogue(reduced, CONFIG)}
    gone = names - fewer
    for name in (
        "tickets_open",
        "satisfaction_last",
        "tickets_high_priority_7d",
        "message_open_rate_30d",
        "days_since_last_message_open",
        "failed_payments_7d",
        "days_since_last_failed_payment",
        "events_value_sum_7d",
        "promotion",
    ):
        assert name in gone
    assert "payments_amount_30d" in fewer  # without status every transaction counts as paid
    assert {"purchase_gap_days_mean", "repeat_purchase_days_total", "days_since_first_purchase"} <= fewer
    # The full catalogue's specs still build on the reduced data: what cannot be computed is missing.
    full = feature_catalogue(make_dataset(), CONFIG)
    cutoffs = pd.DataFrame({"customer_id": ["A"], "cutoff": _ts(str(T))})
    built = build_features(reduced, cutoffs, CONFIG, full)
    assert built[sorted(gone)].isna().all().all()
    assert built.at[0, "events_count_7d"] == 3
    only = feature_catalogue(make_dataset(), FeatureConfig(include_families=["support", "tenure"]))
    assert {s.family for s in only} == {"support", "tenure"}
    excluded = feature_catalogue(make_dataset(), FeatureConfig(exclude=["mrr", "plan"]))
    assert not {"mrr", "plan"} & {s.name for s in excluded}
    windows = {s.name for s in feature_catalogue(make_dataset(), FeatureConfig(windows=[14], trend_window=7))}
    assert {"events_count_14d", "events_trend_7d", "message_open_rate_14d"} <= windows
    with pytest.raises(ValueError, match="unknown feature families"):
        feature_catalogue(make_dataset(), FeatureConfig(include_families=["vibes"]))


def test_cutoffs_must_be_valid() -> None:
    dataset = make_dataset()
    with pytest.raises(ValueError, match="customer_id and cutoff"):
        build_features(dataset, pd.DataFrame({"customer_id": ["A"]}), CONFIG)
    with pytest.raises(ValueError, match="NaT"):
        build_features(dataset, pd.DataFrame({"customer_id": ["A"], "cutoff": _ts(None)}), CONFIG)
    empty = build_features(
        dataset, pd.DataFrame({"customer_id": pd.Series([], dtype="str"), "cutoff": _ts()}), CONFIG
    )
    assert len(empty) == 0 and len(empty.columns) == 2 + len(feature_catalogue(dataset, CONFIG))
