"""Transaction-log (BTYD) features, hand-computed: a retail purchase log with customers + transactions only.

Day numbers count from ORIGIN. Customer P buys on days 0, 10 (twice), 30, has a failed payment on day
20 and buys again at the cutoff (day 40, not before it) and later: at the cutoff P has purchase days
0, 10, 30, so frequency 2, gaps 10 and 20 (mean 15, sample std sqrt(50)), span 30, T 40, recency 10 and
an overdue ratio of 10 / 15. S bought once (day 3), N never.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from churnml.config import FeatureConfig, LabelConfig, load_config
from churnml.data.dataset import Dataset
from churnml.data.load import load_dataset
from churnml.features import FAMILIES, build_features, feature_catalogue
from churnml.features.training_set import build_training_set

ORIGIN = pd.Timestamp("2025-01-01")
CONFIG = FeatureConfig()
NAN = float("nan")
BTYD = (
    "transactions_count_total",
    "payments_amount_total",
    "repeat_purchase_days_total",
    "purchase_gap_days_mean",
    "purchase_gap_days_std",
    "purchase_overdue_ratio",
    "purchase_span_days",
    "days_since_first_purchase",
    "repeat_purchase_value_mean",
)


def _days(*days: float) -> pd.Series:
    return pd.Series([ORIGIN + pd.Timedelta(days=d) for d in days]).astype("datetime64[ns]")


def _ids(*ids: str) -> pd.Series:
    return pd.Series(list(ids), dtype="str")


def purchase_log(status: bool = True) -> Dataset:
    transactions = pd.DataFrame(
        {
            "customer_id": _ids(*"PPPPPPPS"),
            "timestamp": _days(0, 10, 10.75, 20, 30, 40, 45, 3.5),
            "amount": [10.0, 20.0, 5.0, 99.0, 30.0, 1000.0, 1000.0, 7.0],
            "status": _ids("paid", "paid", "paid", "declined", "paid", "paid", "paid", "paid"),
        }
    )
    if not status:
        transactions = transactions.drop(columns="status")
    customers = pd.DataFrame({"customer_id": _ids("P", "S", "N"), "signup_at": _days(-5, -5, -5)})
    return Dataset(
        tables={"customers": customers, "transactions": transactions}, end=ORIGIN + 100 * pd.Timedelta(days=1)
    )


def _build(dataset: Dataset, *queries: tuple[str, float]) -> pd.DataFrame:
    cutoffs = pd.DataFrame(
        {"customer_id": _ids(*(q[0] for q in queries)), "cutoff": _days(*(q[1] for q in queries))}
    )
    return build_features(dataset, cutoffs, CONFIG)


def _assert_values(row: pd.Series, expected: dict) -> None:
    wrong = {}
    for name, want in expected.items():
        got = row[name]
        ok = pd.isna(got) if math.isnan(want) else math.isclose(got, want, rel_tol=1e-12, abs_tol=1e-12)
        if not ok:
            wrong[name] = (got, want)
    assert not wrong, f"(got, expected): {wrong}"


EXPECTED = {
    "P": {
        "transactions_count_total": 5,  # payment attempts before the cutoff, the declined one included
        "payments_amount_total": 65.0,  # lifetime spend: successful ones only
        "repeat_purchase_days_total": 2,  # BTYD frequency: days 0, 10, 30 (two purchases on day 10)
        "purchase_gap_days_mean": 15.0,  # gaps 10, 20
        "purchase_gap_days_std": math.sqrt(((10 - 15) ** 2 + (20 - 15) ** 2) / 1),
        "days_since_last_payment": 10.0,
        "purchase_overdue_ratio": 10 / 15,
        "purchase_span_days": 30.0,  # BTYD recency
        "days_since_first_purchase": 40.0,  # BTYD T
        "repeat_purchase_value_mean": (25.0 + 30.0) / 2,  # day 10: 20 + 5; day 30: 30
    },
    "S": {  # one purchase: a span and an age, no gaps
        "transactions_count_total": 1,
        "payments_amount_total": 7.0,
        "repeat_purchase_days_total": 0,
        "purchase_gap_days_mean": NAN,
        "purchase_gap_days_std": NAN,
        "purchase_overdue_ratio": NAN,
        "purchase_span_days": 0.0,
        "days_since_first_purchase": 40.0 - 3.0,  # from the start of day 3
        "repeat_purchase_value_mean": NAN,
    },
    "N": {  # no purchase: counts 0, everything measured from the first purchase missing
        "transactions_count_total": 0,
        "payments_amount_total": 0.0,
        "repeat_purchase_days_total": 0,
        "purchase_gap_days_mean": NAN,
        "purchase_gap_days_std": NAN,
        "purchase_overdue_ratio": NAN,
        "purchase_span_days": NAN,
        "days_since_first_purchase": NAN,
        "repeat_purchase_value_mean": NAN,
    },
}


@pytest.mark.parametrize("customer", ["P", "S", "N"])
def test_hand_computed_purchase_statistics(customer: str) -> None:
    features = _build(purchase_log(), (customer, 40))
    _assert_values(features.iloc[0], EXPECTED[customer])


def test_cutoff_inside_a_day_and_later_cutoffs() -> None:
    features = _build(purchase_log(), ("P", 10.5), ("P", 40.25), ("P", 60))
    at_noon = {  # day 10 00:00 is before the cutoff, 18:00 is not: day 10 is a purchase day already
        "repeat_purchase_days_total": 1,
        "purchase_gap_days_mean": 10.0,
        "purchase_overdue_ratio": 0.5 / 10,
        "purchase_span_days": 10.0,
        "days_since_first_purchase": 10.5,
        "repeat_purchase_value_mean": 20.0,
    }
    _assert_values(features.iloc[0], at_noon)
    # Day 40 00:00 is before a cutoff at 06:00: gaps 10, 20, 10.
    _assert_values(
        features.iloc[1],
        {
            "repeat_purchase_days_total": 3,
            "purchase_gap_days_mean": 40 / 3,
            "purchase_gap_days_std": float(np.std([10, 20, 10], ddof=1)),
            "purchase_overdue_ratio": 0.25 / (40 / 3),
            "days_since_first_purchase": 40.25,
            "repeat_purchase_value_mean": (25.0 + 30.0 + 1000.0) / 3,
        },
    )
    _assert_values(features.iloc[2], {"repeat_purchase_days_total": 4, "purchase_span_days": 45.0})


def test_without_status_every_transaction_is_a_purchase() -> None:
    features = _build(purchase_log(status=False), ("P", 40))
    _assert_values(
        features.iloc[0],
        {
            "repeat_purchase_days_total": 3,  # day 20 counts now
            "purchase_gap_days_mean": 10.0,
            "purchase_gap_days_std": 0.0,  # a perfectly regular buyer
            "purchase_overdue_ratio": 1.0,
            "repeat_purchase_value_mean": (25.0 + 99.0 + 30.0) / 3,
        },
    )


def test_activity_gaps_count_distinct_days_not_events() -> None:
    """50 events on day 0 are one active day: gaps 4 and 6, not 49 zero gaps and then 4 and 6."""
    stamps = [0.1 + i / 100 for i in range(50)] + [4.5, 10.0, 10.625, 25.0]
    events = pd.DataFrame(
        {
            "customer_id": _ids(*["E"] * len(stamps)),
            "timestamp": _days(*stamps),
            "event_type": _ids(*["login"] * len(stamps)),
        }
    )
    customers = pd.DataFrame({"customer_id": _ids("E"), "signup_at": _days(-1)})
    dataset = Dataset(
        tables={"customers": customers, "events": events}, end=ORIGIN + 30 * pd.Timedelta(days=1)
    )
    features = _build(dataset, ("E", 20))
    _assert_values(
        features.iloc[0],
        {
            "events_count_total": 53,
            "active_days_total": 3,
            "activity_gap_days_mean": 5.0,
            "activity_gap_days_std": math.sqrt(2.0),
            "activity_overdue_ratio": (20 - 10.625) / 5,
        },
    )


def test_catalogue_rows_for_the_new_features() -> None:
    specs = {spec.name: spec for spec in feature_catalogue(purchase_log(), CONFIG)}
    assert set(BTYD) <= set(specs)
    for name in BTYD:
        spec = specs[name]
        assert spec.table == "transactions" and spec.window_days is None
        assert spec.family in FAMILIES and spec.reason and spec.signal and spec.description
    # Failed payments are not purchases: every purchase statistic reads successful transactions only.
    assert {specs[n].row_filter for n in BTYD if n != "transactions_count_total"} == {"paid"}
    assert specs["transactions_count_total"].row_filter is None  # attempts, like transactions_count_{w}d
    assert specs["purchase_overdue_ratio"].family == "recency"
    assert specs["days_since_first_purchase"].family == "tenure"
    assert specs["purchase_overdue_ratio"].explain(2.04) == (
        "Last purchase was 2.0 times the usual gap between purchases ago"
    )
    assert specs["purchase_gap_days_mean"].explain(14.6) == "Buys every 15 days on average"
    assert specs["repeat_purchase_days_total"].explain(3) == "3 repeat purchases so far"
    # No events, tickets or messages: none of their features.
    assert not [spec for spec in specs.values() if spec.table in ("events", "tickets", "messages")]


def _transactions_only_business(directory, customers: int = 40, seed: int = 3) -> None:
    """A CDNow-style purchase log on disk: headerless 'cust date quantity dollar_value' plus customers.csv."""
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp("1997-01-01")  # as CDNow: long past (the loader rejects future timestamps)
    lines, signups = [], []
    for c in range(customers):
        first = int(rng.integers(0, 200))
        signups.append((origin + pd.Timedelta(days=first)).strftime("%Y-%m-%d"))
        day, stop = first, int(rng.integers(first + 30, 760))
        while day < stop:
            date = (origin + pd.Timedelta(days=day)).strftime("%Y%m%d")
            lines.append(f"{c:05d} {date} {int(rng.integers(1, 4))} {rng.gamma(2.0, 15.0):.2f}")
            day += int(rng.integers(1, 90))
    (directory / "cdnow.txt").write_text("\n".join(lines) + "\n")
    ids = [f"{c:05d}" for c in range(customers)]
    pd.DataFrame({"customer_id": ids, "signup_at": signups}).to_csv(directory / "customers.csv", index=False)


def test_cdnow_config_gets_the_purchase_features_end_to_end(tmp_path) -> None:
    """configs/cdnow.yaml (customers + transactions only, inactivity labels) trains on these features."""
    _transactions_only_business(tmp_path)
    config = load_config("configs/cdnow.yaml", [f"data.dir={tmp_path}"])
    dataset = load_dataset(config.data)
    assert set(dataset.tables) == {"customers", "transactions"}
    assert config.labels.definition == "inactivity"
    training_set = build_training_set(dataset, config.labels, config.features)
    frame = training_set.frame
    assert set(BTYD) <= set(training_set.feature_names)
    assert frame["label"].notna().sum() > 0 and len(frame["cutoff"].unique()) > 1
    # Every labeled customer was active before the cutoff, so it has a purchase: T is known, T >= span.
    assert frame["days_since_first_purchase"].notna().all()
    assert (frame["days_since_first_purchase"] > frame["purchase_span_days"]).all()
    repeat = frame["repeat_purchase_days_total"] >= 1
    span = frame["purchase_gap_days_mean"] * frame["repeat_purchase_days_total"]
    np.testing.assert_allclose(span[repeat], frame.loc[repeat, "purchase_span_days"])
    assert frame.loc[~repeat, "purchase_overdue_ratio"].isna().all()


def test_build_training_set_with_inactivity_labels_on_a_purchase_log() -> None:
    labels = LabelConfig(
        definition="inactivity", horizon_days=20, active_days=30, cutoffs={"dates": ["2025-02-10"]}
    )
    training_set = build_training_set(purchase_log(), labels, CONFIG)
    frame = training_set.frame.set_index("customer_id")
    assert list(frame.index) == ["P"]  # S's last purchase is older than active_days; N never bought
    _assert_values(frame.loc["P"], EXPECTED["P"])
    assert frame.loc["P", "label"] == 0  # bought again within 20 days
