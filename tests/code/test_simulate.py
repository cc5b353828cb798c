"""The simulator: deterministic, contract-conformant, and its churn behaves like a real business."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from churnml.contract import ACTIVITY_TABLES, TABLES
from churnml.data.dataset import Dataset
from churnml.data.simulate import (
    COEF,
    EXPLORE_HOLDOUT_SHARE,
    FACTORS,
    HOLDOUT_SHARE,
    PLAYS,
    PROMOTION,
    SLEEPING_DOG_EFFECT,
    Simulation,
    centred_base,
    churn_forecast,
    contact_effect,
    simulate,
    write_simulation,
)


@pytest.fixture(scope="module")
def sim() -> Simulation:
    """Big enough for churn statistics to be stable, small enough to take about a second."""
    return simulate(n_customers=4000, months=12, seed=11)


@pytest.fixture(scope="module")
def small() -> Simulation:
    return simulate(n_customers=300, months=3, seed=5)


def _digests(directory: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


def _renewals_with_signup(sim: Simulation) -> pd.DataFrame:
    customers = sim.tables["customers"].set_index("customer_id")
    return sim.truth.join(customers, on="customer_id")


# --- determinism -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_same_seed_gives_byte_identical_files(tmp_path: Path, fmt: str) -> None:
    first = write_simulation(simulate(200, 3, seed=3), tmp_path / "a", fmt=fmt)
    second = write_simulation(simulate(200, 3, seed=3), tmp_path / "b", fmt=fmt)
    assert _digests(first) == _digests(second)
    assert len(_digests(first)) == len(TABLES) - 1 + 2  # tables but contacts, truth, simulation.json


def test_other_seed_gives_other_data(tmp_path: Path) -> None:
    first = _digests(write_simulation(simulate(200, 3, seed=3), tmp_path / "a"))
    second = _digests(write_simulation(simulate(200, 3, seed=4), tmp_path / "b"))
    assert all(first[name] != second[name] for name in first if name != "simulation.json")


def test_written_files_round_trip(tmp_path: Path, small: Simulation) -> None:
    out = write_simulation(small, tmp_path / "sim")
    for name, frame in small.tables.items():
        pd.testing.assert_frame_equal(pd.read_parquet(out / f"{name}.parquet"), frame)
    meta = json.loads((out / "simulation.json").read_text())
    assert meta["params"] == small.params
    assert meta["rows"] == {
        **{n: len(f) for n, f in small.tables.items()},
        "truth_renewals": len(small.truth),
    }


def test_rejects_empty_simulation() -> None:
    with pytest.raises(ValueError):
        simulate(0, 12, seed=1)


# --- contract --------------------------------------------------------------------------------------


@pytest.mark.parametrize("programme", [False, True])
def test_tables_follow_the_contract(programme: bool) -> None:
    small = simulate(n_customers=300, months=3, seed=5, programme=programme)
    assert set(small.tables) == set(TABLES) - ({"contacts"} if not programme else set())
    for name, frame in small.tables.items():
        spec = TABLES[name]
        assert set(spec.columns) <= set(frame.columns), name
        if not spec.extra_columns_allowed:
            assert list(frame.columns) == [c for c in spec.columns if c in frame.columns], name
        for column in spec.timestamps:
            assert frame[column].dtype == "datetime64[ns]", (name, column)
        for column in spec.numeric:
            assert frame[column].dtype == "float64", (name, column)
        assert isinstance(frame["customer_id"].dtype, pd.StringDtype)
        assert frame["customer_id"].str.fullmatch(r"C\d{6}").all()


def test_to_dataset(small: Simulation) -> None:
    dataset = small.to_dataset()
    assert isinstance(dataset, Dataset)
    assert dataset.end == small.end == pd.Timestamp(date(2025, 1, 1)) + pd.DateOffset(months=3)
    assert dataset.customers["customer_id"].is_unique


def test_no_row_after_end_or_before_signup(sim: Simulation) -> None:
    signup = sim.tables["customers"].set_index("customer_id")["signup_at"]
    for name in ACTIVITY_TABLES:
        frame, spec = sim.tables[name], TABLES[name]
        for column in spec.timestamps:
            assert (frame[column].dropna() <= sim.end).all(), (name, column)
        assert frame["customer_id"].isin(signup.index).all(), name
        assert (frame[spec.time_column] >= frame["customer_id"].map(signup)).all(), name
    messages, tickets = sim.tables["messages"], sim.tables["tickets"]
    assert (messages["opened_at"].dropna() > messages.loc[messages["opened_at"].notna(), "sent_at"]).all()
    assert messages.loc[messages["clicked_at"].notna(), "opened_at"].notna().all()
    assert (tickets["closed_at"].dropna() > tickets.loc[tickets["closed_at"].notna(), "opened_at"]).all()
    assert tickets.loc[tickets["closed_at"].isna(), "satisfaction"].isna().all()
    assert tickets["satisfaction"].dropna().isin([1.0, 2.0, 3.0, 4.0, 5.0]).all()


@pytest.mark.parametrize("fixture", ["sim", "programme"])
def test_tables_sorted_by_customer_and_time(fixture: str, request: pytest.FixtureRequest) -> None:
    sim = request.getfixturevalue(fixture)
    for name, frame in sim.tables.items():
        spec = TABLES[name]
        expected = frame.sort_values(["customer_id", spec.time_column], kind="stable")
        assert frame.index.equals(expected.index), name


def test_subscriptions_do_not_overlap(sim: Simulation) -> None:
    subs = sim.tables["subscriptions"]
    previous_end = subs.groupby("customer_id")["end_at"].shift()
    has_previous = subs["customer_id"].duplicated()
    assert previous_end[has_previous].notna().all(), "only the last subscription may be open"
    assert (subs.loc[has_previous, "start_at"] >= previous_end[has_previous]).all()
    assert ((subs["end_at"] > subs["start_at"]) | subs["end_at"].isna()).all()


def test_payments_only_while_subscribed(sim: Simulation) -> None:
    """Charges go through inside a subscription period; failed dunning retries up to a week after its end."""
    tx = sim.tables["transactions"].reset_index(names="tx")
    pairs = tx.merge(sim.tables["subscriptions"], on="customer_id")
    started = pairs["timestamp"] >= pairs["start_at"]
    inside = started & (pairs["end_at"].isna() | (pairs["timestamp"] <= pairs["end_at"]))
    dunning = started & (pairs["timestamp"] <= pairs["end_at"] + pd.Timedelta(days=8))
    assert set(tx["tx"]) == set(pairs.loc[inside | dunning, "tx"])
    assert set(tx.loc[tx["status"] == "paid", "tx"]) <= set(pairs.loc[inside, "tx"])


# --- business behaviour ----------------------------------------------------------------------------


def test_monthly_churn_rate_is_realistic(sim: Simulation) -> None:
    assert 0.03 <= sim.truth["churned"].mean() <= 0.09


def test_churned_subscriptions_end_at_the_renewal(sim: Simulation) -> None:
    churned = sim.truth.loc[sim.truth["churned"], ["customer_id", "renewal_at"]]
    ends = sim.tables["subscriptions"][["customer_id", "end_at"]]
    matched = churned.merge(ends, left_on=["customer_id", "renewal_at"], right_on=["customer_id", "end_at"])
    assert len(matched) == len(churned)


def test_promotion_customers_churn_more_than_organic(sim: Simulation) -> None:
    rate = _renewals_with_signup(sim).groupby("acquisition_channel")["churned"].mean()
    assert rate["promotion"] > 1.5 * rate["organic"]


def test_onboarded_customers_churn_less(sim: Simulation) -> None:
    events = sim.tables["events"]
    onboarded = events.loc[events["event_type"].str.startswith("onboarding"), "customer_id"].unique()
    is_onboarded = sim.truth["customer_id"].isin(onboarded)
    assert 0.2 < is_onboarded.mean() < 0.8
    assert (
        sim.truth.loc[is_onboarded, "churned"].mean() < 0.7 * sim.truth.loc[~is_onboarded, "churned"].mean()
    )


def test_churn_risk_is_highest_for_new_customers(sim: Simulation) -> None:
    renewals = _renewals_with_signup(sim)
    tenure_days = (renewals["renewal_at"] - renewals["signup_at"]).dt.days
    assert (
        renewals.loc[tenure_days < 100, "churned"].mean() > renewals.loc[tenure_days > 200, "churned"].mean()
    )


def test_churners_slip_away_before_leaving(sim: Simulation) -> None:
    renewals = _renewals_with_signup(sim)
    churners = renewals.loc[
        renewals["churned"] & ((renewals["renewal_at"] - renewals["signup_at"]).dt.days >= 60),
        ["customer_id", "renewal_at"],
    ]
    events = sim.tables["events"][["customer_id", "timestamp"]].merge(churners, on="customer_id")
    before = events["renewal_at"] - events["timestamp"]
    last = ((before > pd.Timedelta(0)) & (before <= pd.Timedelta(days=30))).sum()
    previous = ((before > pd.Timedelta(days=30)) & (before <= pd.Timedelta(days=60))).sum()
    assert last < 0.9 * previous


def test_disengaged_customers_open_fewer_messages(sim: Simulation) -> None:
    """Messages sent in the month before a churn are opened less often than messages overall."""
    churns = sim.truth.loc[sim.truth["churned"], ["customer_id", "renewal_at"]]
    messages = sim.tables["messages"].merge(churns, on="customer_id", how="left")
    before = messages["renewal_at"] - messages["sent_at"]
    slipping = (before > pd.Timedelta(0)) & (before <= pd.Timedelta(days=30))
    overall = sim.tables["messages"]["opened_at"].notna().mean()
    assert messages.loc[slipping, "opened_at"].notna().mean() < overall


# --- ground truth ----------------------------------------------------------------------------------


def test_truth_probability_is_sigmoid_of_contributions(sim: Simulation) -> None:
    truth = sim.truth
    contrib = [f"contrib_{name}" for name in ("base", *FACTORS)]
    assert set(contrib) <= set(truth.columns)
    expected = 1.0 / (1.0 + np.exp(-truth[contrib].sum(axis=1)))
    np.testing.assert_allclose(truth["churn_prob"], expected, rtol=1e-12)


def test_true_cause_is_the_largest_positive_factor(sim: Simulation) -> None:
    truth = sim.truth
    factors = truth[[f"contrib_{name}" for name in FACTORS]]
    largest = factors.idxmax(axis=1).str.removeprefix("contrib_")
    expected = largest.where(factors.max(axis=1) > 0, "none")
    assert (truth["true_cause"] == expected).all()
    assert (truth.loc[truth["involuntary"], "true_cause"] == "billing").all()
    assert truth.loc[truth["involuntary"], "churned"].all()
    assert truth.loc[truth["churned"], "true_cause"].nunique() >= 5


def test_involuntary_churn_shows_failed_payments(sim: Simulation) -> None:
    lost = sim.truth.loc[sim.truth["involuntary"], ["customer_id", "renewal_at"]]
    assert len(lost) > 0
    failed = sim.tables["transactions"].query("status == 'failed'")
    pairs = lost.merge(failed, on="customer_id")
    at_renewal = (pairs["timestamp"] >= pairs["renewal_at"]) & (
        pairs["timestamp"] < pairs["renewal_at"] + pd.Timedelta(days=1)
    )
    assert pairs.loc[at_renewal, ["customer_id", "renewal_at"]].drop_duplicates().shape[0] == len(lost)


def test_oracle_auc_is_high_but_not_trivial(sim: Simulation) -> None:
    auc = roc_auc_score(sim.truth["churned"], sim.truth["churn_prob"])
    assert 0.75 <= auc <= 0.9


def test_enough_events_for_benchmarks(sim: Simulation) -> None:
    subs = sim.tables["subscriptions"]
    active_years = ((subs["end_at"].fillna(sim.end) - subs["start_at"]).dt.days / 365.25).sum()
    assert len(sim.tables["events"]) / active_years >= 150


# --- the forecast oracle (the best possible churn probability at a cutoff) -------------------------------


def _renewals_in(truth: pd.DataFrame, cutoff: pd.Timestamp, days: int) -> pd.DataFrame:
    inside = (truth["renewal_at"] >= cutoff) & (truth["renewal_at"] < cutoff + pd.Timedelta(days=days))
    return truth.loc[inside]


def test_forecast_is_the_truth_when_the_decision_is_already_made(sim: Simulation) -> None:
    """A renewal at the cutoff's midnight depends only on the past, so every future agrees on it exactly;
    a customer with no renewal in the window cannot churn in it."""
    cutoff, days = pd.Timestamp("2025-09-01"), 1
    forecast = churn_forecast(sim, [cutoff], days, futures=3, seed=1).set_index("customer_id")
    renewing = _renewals_in(sim.truth, cutoff, days).set_index("customer_id")
    assert len(renewing) > 50
    np.testing.assert_allclose(forecast.loc[renewing.index, "churn_prob"], renewing["churn_prob"], rtol=1e-12)
    assert (forecast.loc[renewing.index, "cause"] == renewing["true_cause"]).all()
    assert (forecast.loc[renewing.index, "cause_share"] == 1.0).all()
    others = forecast.drop(renewing.index)
    assert len(others) > 1000 and (others["churn_prob"] == 0).all()
    assert others["cause"].isna().all() and others["cause_share"].isna().all()


def test_forecast_is_calibrated_and_below_hindsight(sim: Simulation) -> None:
    """Over a 30-day window the forecast's mean is the renewal-time probabilities' mean (the expected
    churn), and ranking by it is good but worse than by those, which saw behaviour after the cutoff."""
    cutoffs = [pd.Timestamp("2025-08-01"), pd.Timestamp("2025-10-01")]
    forecast = churn_forecast(sim, cutoffs, 30, futures=20, seed=2)
    assert set(forecast["cutoff"]) == set(cutoffs)
    churned, hindsight, predicted = [], [], []
    for cutoff in cutoffs:
        rows = forecast.loc[forecast["cutoff"] == cutoff].set_index("customer_id")
        window = _renewals_in(sim.truth, cutoff, 30)
        churned.append(window.groupby("customer_id")["churned"].any().reindex(rows.index, fill_value=False))
        survive = np.log1p(-window["churn_prob"]).groupby(window["customer_id"]).sum()
        hindsight.append(1 - np.exp(survive.reindex(rows.index, fill_value=0.0)))
        predicted.append(rows["churn_prob"])
    y, late, early = (pd.concat(x).to_numpy() for x in (churned, hindsight, predicted))
    assert abs(early.mean() - late.mean()) < 0.002
    assert 0.7 < roc_auc_score(y, early) < roc_auc_score(y, late)
    # The cause of the next decision is forecast too: mostly, not always, the one it turns out to have.
    rows = forecast.loc[forecast["cutoff"] == cutoffs[0]].set_index("customer_id")
    window = _renewals_in(sim.truth, cutoffs[0], 30).sort_values("renewal_at")
    first = window.drop_duplicates("customer_id").set_index("customer_id")["true_cause"]
    agree = rows.loc[first.index, "cause"] == first
    assert 0.6 < agree.mean() < 1.0 and rows["cause_share"].between(0.0, 1.0).all()


def test_forecast_runs_the_retention_programme_in_its_futures() -> None:
    """Forks carry the programme's pending contacts: a contact made before the cutoff still acts."""
    sim = simulate(400, 4, seed=5, programme=True, exploration=0.2)
    cutoff = pd.Timestamp("2025-03-01")
    forecast = churn_forecast(sim, [cutoff], 30, futures=4, seed=1)
    assert len(forecast) > 100 and forecast["churn_prob"].between(0, 1).all()
    renewing = _renewals_in(sim.truth, cutoff, 1).set_index("customer_id")
    exact = churn_forecast(sim, [cutoff], 1, futures=2).set_index("customer_id").loc[renewing.index]
    np.testing.assert_allclose(exact["churn_prob"], renewing["churn_prob"], rtol=1e-12)


def test_forecast_is_deterministic_and_refuses_other_moments(small: Simulation) -> None:
    cutoff = pd.Timestamp("2025-02-01")
    first = churn_forecast(small, [cutoff], 30, futures=4, seed=5, batch=3)
    pd.testing.assert_frame_equal(first, churn_forecast(small, [cutoff], 30, futures=4, seed=5, batch=3))
    assert not first["churn_prob"].equals(
        churn_forecast(small, [cutoff], 30, futures=4, seed=6)["churn_prob"]
    )
    for moment in (pd.Timestamp("2025-02-01 12:00"), pd.Timestamp("2030-01-01")):
        with pytest.raises(ValueError, match="not a midnight inside the simulated days"):
            churn_forecast(small, [moment], 30)
    with pytest.raises(ValueError, match="horizon runs past the simulated days"):
        churn_forecast(small, [small.end.normalize() - pd.Timedelta(days=3)], 30)
    assert churn_forecast(small, [], 30).empty


# --- signal strength -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def weak() -> Simulation:
    """The ``sim`` business with a weak churn signal: same seed, same customers."""
    return simulate(n_customers=4000, months=12, seed=11, signal=0.4)


def test_default_signal_is_the_documented_model(tmp_path: Path) -> None:
    """signal=1 is today's simulator: same files, intercept exactly the documented base."""
    assert centred_base(1.0) == COEF.base
    first = write_simulation(simulate(200, 3, seed=3), tmp_path / "a", fmt="csv")
    second = write_simulation(simulate(200, 3, seed=3, signal=1.0), tmp_path / "b", fmt="csv")
    assert _digests(first) == _digests(second)
    assert "signal" not in json.loads((first / "simulation.json").read_text())["params"]


def test_weak_signal_lowers_the_oracle_auc(sim: Simulation, weak: Simulation) -> None:
    strong_auc = roc_auc_score(sim.truth["churned"], sim.truth["churn_prob"])
    weak_auc = roc_auc_score(weak.truth["churned"], weak.truth["churn_prob"])
    assert 0.55 <= weak_auc <= strong_auc - 0.1
    assert weak.params["signal"] == 0.4


def test_weak_signal_keeps_the_churn_rate(sim: Simulation, weak: Simulation) -> None:
    assert 0.03 <= weak.truth["churned"].mean() <= 0.09
    assert abs(weak.truth["churned"].mean() - sim.truth["churned"].mean()) <= 0.01
    assert abs(weak.truth["churn_prob"].mean() - sim.truth["churn_prob"].mean()) <= 0.01


def test_weak_signal_scales_the_contributions(weak: Simulation) -> None:
    """The truth stays exact: churn_prob = sigmoid(re-centred base + the scaled contributions)."""
    truth = weak.truth
    assert (truth["contrib_base"] == centred_base(0.4)).all()
    contrib = [f"contrib_{name}" for name in ("base", *FACTORS)]
    expected = 1.0 / (1.0 + np.exp(-truth[contrib].sum(axis=1)))
    np.testing.assert_allclose(truth["churn_prob"], expected, rtol=1e-12)
    promotion = truth["contrib_promotion"]
    assert set(np.round(promotion.unique(), 12)) == {0.0, round(0.4 * COEF.promotion, 12)}


def test_zero_signal_is_churn_at_random() -> None:
    truth = simulate(300, 3, seed=5, signal=0.0).truth
    assert truth["churn_prob"].nunique() == 1
    assert 0.04 <= truth["churn_prob"].iloc[0] <= 0.08


@pytest.mark.parametrize("signal", [-0.1, float("nan"), float("inf")])
def test_rejects_bad_signal(signal: float) -> None:
    with pytest.raises(ValueError, match="signal"):
        simulate(100, 2, seed=1, signal=signal)


# --- the retention programme -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def programme() -> Simulation:
    return simulate(n_customers=5000, months=12, seed=11, programme=True)


def test_without_the_programme_nothing_changes(sim: Simulation, programme: Simulation) -> None:
    """Same seed: the history before the programme starts is identical, and without it nothing says
    a programme exists (earlier files stay byte-identical: test_default_signal_is_the_documented_model)."""
    assert "contacts" not in sim.tables and sim.contact_truth is None and "contrib_contact" not in sim.truth
    start = pd.Timestamp(date(2025, 1, 1))
    with_programme = simulate(n_customers=4000, months=12, seed=11, programme=True)
    for name, spec in TABLES.items():
        if name in sim.tables:
            frames = [
                frame.loc[frame[spec.time_column] < start].reset_index(drop=True)
                for frame in (sim.tables[name], with_programme.tables[name])
            ]
            if name == "events":  # each event's type and time of day are drawn after the run, for all
                frames = [f.groupby(["customer_id", f["timestamp"].dt.date]).size() for f in frames]
                pd.testing.assert_series_equal(*frames)
            else:  # (a subscription that started before may end differently later)
                pd.testing.assert_frame_equal(*[f.drop(columns=["end_at"], errors="ignore") for f in frames])
    renewals = [
        t.loc[t["renewal_at"] < start].reset_index(drop=True) for t in (sim.truth, with_programme.truth)
    ]
    pd.testing.assert_frame_equal(renewals[0], renewals[1].drop(columns="contrib_contact"))
    assert with_programme.params["programme"] is True


def test_programme_contacts_hold_out_a_random_share_with_the_playbook_plays(programme: Simulation) -> None:
    from churnml.risk.risk_list import load_playbook

    contacts = programme.tables["contacts"]
    assert contacts["contacted_at"].dt.day.eq(1).all() and contacts["contacted_at"].min() >= pd.Timestamp(
        "2025-01-01"
    )
    share = (contacts["arm"] == "holdout").mean()
    assert abs(share - HOLDOUT_SHARE) < 3 * np.sqrt(HOLDOUT_SHARE * (1 - HOLDOUT_SHARE) / len(contacts))
    assert (contacts.loc[contacts["arm"] == "holdout", "cost"] == 0).all()
    assert (contacts.loc[contacts["arm"] == "treatment", "cost"] > 0).all()
    playbook = load_playbook()
    for factor, group in playbook.cause_groups().items():
        assert PLAYS[FACTORS.index(factor)] == playbook.groups[group].play, factor
    month = contacts["contacted_at"].dt.to_period("M")
    assert not contacts.assign(month=month).duplicated(["customer_id", "month"]).any()


def test_contact_effects_are_heterogeneous_as_documented() -> None:
    contrib = np.zeros((8, len(FACTORS)))
    contrib[:, FACTORS.index("billing")] = [2.5, 0.0, 0, 0, 0, 0, 0, 0]
    contrib[:, FACTORS.index("engagement")] = [0, 0, 2.0, 2.0, 0, 0, 0, 0]
    contrib[:, FACTORS.index("support")] = [0, 0, 0, 0, 0, 0, 1.5, 0]
    play = np.array(
        [
            PLAYS.index(p)
            for p in (
                "Billing outreach",
                "Billing outreach",
                "Re-engagement campaign",
                "Re-engagement campaign",
                "Loyalty offer",
                "Loyalty offer",
                "Success-manager call",
                "Success-manager call",
            )
        ]
    )
    disengagement = np.array([0, 0, 0.3, 0.9, 0, 0, 0, 0])
    channel = np.array([0, 0, 0, 0, PROMOTION, 0, 0, 0])
    dog = np.array([False] * 7 + [True])
    effect = contact_effect(play, contrib, disengagement, channel, dog)
    np.testing.assert_allclose(
        effect, [-0.8 * 2.5, 0.0, -0.6 * 2.0, 0.0, -0.9, -0.15, -0.6 * 1.5, SLEEPING_DOG_EFFECT]
    )


def test_contact_truth_matches_what_happened(programme: Simulation) -> None:
    """Each arm churns at the rate its recorded probability says: holdouts at the probability without
    the contact, contacted customers at the one with it; the renewal log agrees for contacted customers."""
    truth = programme.contact_truth.dropna(subset=["churned"])
    assert len(truth) >= 0.99 * len(programme.contact_truth)
    assert (truth["renewal_at"] > truth["contacted_at"]).all()
    assert (truth["renewal_at"] - truth["contacted_at"] < pd.Timedelta(days=32)).all()
    for arm, column in (("holdout", "churn_prob_without"), ("treatment", "churn_prob_with")):
        rows = truth.loc[truth["arm"] == arm]
        p = rows[column]
        se = np.sqrt((p * (1 - p)).sum()) / len(rows)
        assert abs(rows["churned"].mean() - p.mean()) < 4 * se, arm
    renewals = programme.truth.set_index(["customer_id", "renewal_at"])
    treated = truth.loc[truth["arm"] == "treatment"].set_index(["customer_id", "renewal_at"])
    np.testing.assert_allclose(
        renewals.loc[treated.index, "churn_prob"], treated["churn_prob_with"], rtol=1e-12
    )
    held = truth.loc[truth["arm"] == "holdout"].set_index(["customer_id", "renewal_at"])
    assert (renewals.loc[held.index, "contrib_contact"] == 0).all()
    # Contacts help on average and hurt the sleeping dogs.
    assert truth.loc[~truth["sleeping_dog"], "effect"].mean() > 0.02
    assert (truth.loc[truth["sleeping_dog"], "effect"] < 0).all()


# --- data to learn uplift from ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def explored() -> Simulation:
    return simulate(n_customers=5000, months=12, seed=11, programme=True, exploration=0.05)


def test_exploration_adds_random_contacts_and_leaves_the_risk_list_alone(
    programme: Simulation, explored: Simulation
) -> None:
    """The first month's risk list is the same with exploration (later ones differ: explored customers
    churn differently); the explored customers are a random share of the others, half held out."""
    truth = explored.uplift_truth
    first = truth["listed_at"].min()
    lists = [
        t.loc[(t["listed"] == "risk") & (t["listed_at"] == first), ["customer_id"]].reset_index(drop=True)
        for t in (truth, programme.uplift_truth)
    ]
    pd.testing.assert_frame_equal(*lists)
    others = truth.loc[truth["listed"] != "risk"]
    share = (others["listed"] == "exploration").mean()
    assert abs(share - 0.05) < 4 * np.sqrt(0.05 * 0.95 / len(others))
    contacts = explored.tables["contacts"].assign(listed_at=lambda f: f["contacted_at"].dt.floor("D"))
    arms = contacts.merge(truth, on=["customer_id", "listed_at"], how="left", suffixes=("", "_truth"))
    assert arms["listed"].isin(["risk", "exploration"]).all() and (arms["play"] == arms["play_truth"]).all()
    held = arms.loc[arms["listed"] == "exploration", "arm"].eq("holdout").mean()
    n = int((arms["listed"] == "exploration").sum())
    assert abs(held - EXPLORE_HOLDOUT_SHARE) < 4 * np.sqrt(0.25 / n)
    assert explored.params["exploration"] == 0.05 and "exploration" not in programme.params
    with pytest.raises(ValueError, match="exploration"):
        simulate(n_customers=50, months=2, seed=1, exploration=0.1)


def test_uplift_truth_covers_every_eligible_customer_and_agrees_with_the_contacts(
    explored: Simulation,
) -> None:
    """Potential outcomes for everyone at every programme date; for the contacted and held out they are
    exactly the contact truth's."""
    truth = explored.uplift_truth
    assert truth["listed_at"].dt.day.eq(1).all() and not truth.duplicated(["customer_id", "listed_at"]).any()
    assert truth["effect"].notna().mean() > 0.98
    np.testing.assert_allclose(truth["effect"], truth["churn_prob_without"] - truth["churn_prob_with"])
    contacts = explored.contact_truth.assign(listed_at=lambda f: f["contacted_at"].dt.floor("D"))
    both = contacts.merge(truth, on=["customer_id", "listed_at"], suffixes=("", "_all"))
    assert len(both) == len(contacts)
    np.testing.assert_allclose(both["churn_prob_with"], both["churn_prob_with_all"], rtol=1e-12)
    np.testing.assert_allclose(both["churn_prob_without"], both["churn_prob_without_all"], rtol=1e-12)
    assert (both["sleeping_dog"] == both["sleeping_dog_all"]).all()
    # The programme's list catches the larger effects: risk and effect go together, but not one for one.
    by = truth.groupby("listed")["effect"].mean()
    assert by["risk"] > 3 * by["no"]


def test_sleeping_dogs_are_mostly_dormant_payers(explored: Simulation) -> None:
    """A paying customer who barely uses the product is a sleeping dog far more often than the others
    (observable, so uplift can be learned); about 6% of customers in all."""
    from churnml.data.simulate import DOG_P_DORMANT, DOG_P_OTHER

    truth = explored.uplift_truth.drop_duplicates("customer_id")
    events = explored.tables["events"]
    per_customer = events.groupby("customer_id").size()
    customers = explored.tables["customers"].set_index("customer_id")
    tenure_days = (explored.end - customers["signup_at"]).dt.days.clip(lower=30)
    rate = (per_customer.reindex(customers.index).fillna(0) / tenure_days).reindex(truth["customer_id"])
    paid = customers["plan"].reindex(truth["customer_id"]).ne("free").to_numpy()
    quiet = (rate < rate.quantile(0.1)).to_numpy()
    dog = truth["sleeping_dog"].to_numpy()
    assert 0.04 < dog.mean() < 0.08
    assert dog[paid & quiet].mean() > 4 * dog[~quiet].mean()
    assert DOG_P_OTHER < 0.05 < DOG_P_DORMANT
