"""Uplift: the evaluation's arithmetic on hand-made rankings, learners that recover a known effect on
synthetic data, the fallback to the measured average effect on tiny data, JSON round trips, and the
point-in-time rows built from a contacts table."""

from __future__ import annotations

import dataclasses
import json
import logging

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churnml.config import load_config
from churnml.data.simulate import simulate
from churnml.errors import DataValidationError
from churnml.features import FeatureSpec
from churnml.pipelines.uplift import evaluate_model
from churnml.risk.review import difference_interval
from churnml.uplift.evaluate import (
    auuc,
    compare_policies,
    gain_curve,
    policy_outcome,
    qini_coefficient,
    qini_curve,
    top,
    true_qini,
    uplift_at_budget,
)
from churnml.uplift.learner import (
    AVERAGE,
    MODEL_FILE,
    UpliftModel,
    feature_matrix,
    fit_uplift,
    offset_shift,
)
from churnml.uplift.rows import build_uplift_rows, contact_lists, split_by_list

CONFIG = load_config(None, [])

# --- evaluation -------------------------------------------------------------------------------------


def test_qini_curve_by_hand() -> None:
    """Ranked: held-out churner, held-out stayer, contacted stayer, contacted churner."""
    churned = np.array([0, 1, 1, 0])  # input order; scores put row 2 first, then 3, 0, 1
    treated = np.array([True, True, False, False])
    score = np.array([2.0, 1.0, 4.0, 3.0])
    curve = qini_curve(churned, treated, score)
    # k=1: 1 held out (churned), 0 contacted -> 0; k=2: + held-out stayer: 1 of 2 held out churned,
    # 0 contacted -> 0; k=3: + contacted stayer: 0.5 x 1 - 0 = 0.5; k=4: + contacted churner: 0.5 x 2 - 1 = 0.
    np.testing.assert_allclose(curve["qini"], [0.0, 0.0, 0.5, 0.0])
    np.testing.assert_allclose(curve["uplift"], [0.0, 0.0, 0.5 * 3, (0.5 - 0.5) * 4])
    np.testing.assert_allclose(curve["fraction"], [0.25, 0.5, 0.75, 1.0])
    # Area above the random line (which ends at 0 here): trapezoids 0, 0, 0.0625, 0.0625, per customer.
    assert qini_coefficient(churned, treated, score) == pytest.approx(0.125 / 4)
    # Uplift curve 0, 0, 1.5, 0: trapezoids 0.1875 on each side of the peak.
    assert auuc(churned, treated, score) == pytest.approx(0.375 / 4)


def test_a_ranking_that_knows_the_effect_beats_random_and_reversed() -> None:
    rng = np.random.default_rng(3)
    n = 20_000
    effect = np.where(rng.random(n) < 0.3, 0.25, 0.0)  # 30% respond: churn 0.4 -> 0.15
    treated = rng.random(n) < 0.5
    churned = rng.random(n) < 0.4 - effect * treated
    good = qini_coefficient(churned, treated, effect + rng.normal(0, 0.01, n))
    random = qini_coefficient(churned, treated, rng.random(n))
    worst = qini_coefficient(churned, treated, -effect + rng.normal(0, 0.01, n))
    # Expected: the curve climbs to 0.5 x 0.3 x 0.25 = 0.0375 per customer at 30% and stays; its area above
    # the random line is 0.0375 x (0.15 + 0.7 - 0.5) = 0.0131 (reversed: the negative of it).
    assert good == pytest.approx(0.0131, abs=0.003) and worst == pytest.approx(-0.0131, abs=0.003)
    assert abs(random) < 0.004
    assert uplift_at_budget(churned, treated, effect, 0.3) == pytest.approx(0.25, abs=0.03)
    assert uplift_at_budget(churned, treated, -effect, 0.3) == pytest.approx(0.0, abs=0.03)
    assert np.isnan(uplift_at_budget(churned, np.ones(n, bool), effect, 0.3))


def test_true_qini_is_largest_for_the_oracle() -> None:
    rng = np.random.default_rng(5)
    effect = rng.normal(0.02, 0.05, 5000)
    oracle = true_qini(effect, effect)
    assert (
        oracle > true_qini(effect, effect + rng.normal(0, 0.05, 5000)) > true_qini(effect, rng.random(5000))
    )
    assert true_qini(effect, -effect) < 0
    curve = gain_curve(effect, effect)
    assert curve["saved"].iloc[-1] == pytest.approx(effect.sum())
    assert curve["saved"].max() == pytest.approx(effect[effect > 0].sum())


def test_top_is_stable_and_policies_add_up() -> None:
    assert top(np.array([1.0, 3.0, 3.0, 2.0]), 2).tolist() == [False, True, True, False]
    assert top(np.array([1.0, 1.0, 1.0]), 2).tolist() == [True, True, False]
    chosen = np.array([True, False, True])
    outcome = policy_outcome(
        chosen, np.array([0.1, 0.5, -0.2]), np.array([100.0, 1.0, 50.0]), 5.0, np.array([0, 0, 1])
    )
    assert outcome == pytest.approx(
        {
            "contacted": 2,
            "saved": -0.1,
            "revenue_saved": 0.0,
            "cost": 10.0,
            "profit": -10.0,
            "sleeping_dogs": 1,
        }
    )
    table = compare_policies(
        {"a": np.array([3.0, 2.0, 1.0]), "b": np.array([1.0, 2.0, 3.0])},
        1,
        np.array([0.1, 0.5, -0.2]),
        10.0,
        1.0,
    )
    assert table.set_index("policy")["saved"].to_dict() == pytest.approx({"a": 0.1, "b": -0.2})


# --- learners on synthetic data with a known effect ------------------------------------------------


def _specs() -> tuple[FeatureSpec, ...]:
    common = {"family": "profile", "table": "customers", "aggregate": "static", "window_days": None}
    return (
        FeatureSpec(name="x1", dtype="float64", reason="x1 {value}", signal="x1", **common),
        FeatureSpec(name="x2", dtype="float64", reason="x2 {value}", signal="x2", **common),
        FeatureSpec(
            name="plan",
            dtype="category",
            reason="plan {value}",
            signal="plan",
            categories=("a", "b"),
            **common,
        ),
    )


def _synthetic(
    n: int, effect: float, seed: int, play: str = "Offer", treated_share: float = 0.5
) -> pd.DataFrame:
    """Churn without contact 10-50% by the features; a contact lowers it by ``effect`` for everyone."""
    rng = np.random.default_rng(seed)
    x1, x2 = rng.normal(size=n), rng.normal(size=n)
    plan = np.where(rng.random(n) < 0.5, "a", "b")
    base = 0.1 + 0.4 / (1 + np.exp(-(x1 + 0.5 * (plan == "b"))))
    treated = rng.random(n) < treated_share
    churned = rng.random(n) < base - effect * treated
    return pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "cutoff": pd.Timestamp("2025-01-01"),
            "play": play,
            "treated": treated,
            "label": pd.array(churned.astype(int), dtype="Int8"),
            "x1": x1,
            "x2": x2,
            "plan": pd.Categorical(plan, categories=["a", "b"]),
        }
    )


@pytest.mark.parametrize("learner", ["offset", "x", "t"])
def test_learner_recovers_a_known_constant_effect(learner: str) -> None:
    """8,000 customers, half contacted, churn lowered by 8 points for everyone: the mean predicted
    uplift on fresh customers is within 3 points of it (a few standard errors of a difference of two
    proportions at these rates: about 0.9 points each)."""
    train, fresh = _synthetic(8000, 0.08, seed=1), _synthetic(4000, 0.08, seed=2)
    config = CONFIG.uplift.model_copy(update={"learner": learner})
    model = fit_uplift(train, _specs(), config, seed=7, nthread=1)
    assert model.plays["Offer"].method == learner and not model.notes
    predicted = model.effect(fresh, fresh["play"])
    assert predicted.mean() == pytest.approx(0.08, abs=0.03)
    assert model.plays["Offer"].average_effect == pytest.approx(0.08, abs=0.03)


def test_offset_shift_is_the_maximum_likelihood_shift() -> None:
    rng = np.random.default_rng(0)
    offset = rng.normal(-1.0, 1.0, 50_000)
    y = rng.random(50_000) < 1 / (1 + np.exp(-(offset - 0.7)))
    assert offset_shift(offset, y.astype(float)) == pytest.approx(-0.7, abs=0.05)


def test_too_few_customers_fall_back_to_the_measured_average_effect(caplog: pytest.LogCaptureFixture) -> None:
    """A play with 12 contacted and 8 held out gets no model: a warning names the play and its counts,
    and every customer gets holdout churn minus contacted churn, as churnml review measures it."""
    big = _synthetic(3000, 0.08, seed=3, play="Offer")
    tiny = _synthetic(20, 0.0, seed=4, play="Call")
    tiny["treated"] = [True] * 12 + [False] * 8
    tiny["label"] = pd.array(
        [1] + [0] * 11 + [1, 1] + [0] * 6, dtype="Int8"
    )  # 1 of 12 contacted, 2 of 8 held out
    tiny["customer_id"] = [f"t{i}" for i in range(20)]
    rows = pd.concat([big, tiny], ignore_index=True)
    with caplog.at_level(logging.WARNING, logger="churnml.uplift.learner"):
        model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1)
    call = model.plays["Call"]
    assert call.method == AVERAGE and (call.treated, call.held_out) == (12, 8)
    expected = difference_interval(2, 8, 1, 12)
    assert (call.average_effect, call.effect_low, call.effect_high) == pytest.approx(expected)
    assert call.average_effect == pytest.approx(2 / 8 - 1 / 12)
    warned = [r.getMessage() for r in caplog.records if "Call" in r.getMessage()]
    assert len(warned) == 1 and "12 contacted and 8 held-out" in warned[0] and "average effect" in warned[0]
    assert model.notes and "Call" in model.notes[0]
    assert model.plays["Offer"].method == CONFIG.uplift.learner
    predicted = model.effect(tiny, tiny["play"])
    np.testing.assert_allclose(predicted, expected[0])
    # A play the model never saw has no uplift, rather than a made-up one.
    assert np.isnan(model.effect(tiny.head(2), ["Unknown play", "Call"])[0])


def _biased_controls(n: int, seed: int) -> pd.DataFrame:
    """Customers on no list whose churn runs 15 points above a play's customers with the same features:
    a no-contact model fitted mostly on them is off for the play's customers."""
    controls = _synthetic(n, 0.0, seed=seed, play="none", treated_share=0.0)
    rng = np.random.default_rng(seed + 100)
    more = rng.random(n) < 0.15 / 0.7
    controls["label"] = pd.array((controls["label"].astype(int) | more).astype(int), dtype="Int8")
    return controls.drop(columns=["play", "treated"]).assign(customer_id=[f"n{i}" for i in range(n)])


def test_the_shared_no_contact_model_is_levelled_on_each_plays_own_holdouts() -> None:
    """With ``controls: all`` the no-contact model learns mostly from customers on no list. Where they
    churn more than a play's customers who look alike, the play's randomised holdouts set its level
    (``baseline``): a contact that does nothing gets an uplift near 0, not the 13-point gap between the
    populations."""
    rows, fresh = _synthetic(4000, 0.0, seed=11), _synthetic(3000, 0.0, seed=12)
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1, controls=_biased_controls(20000, 13))
    offer = model.plays["Offer"]
    assert offer.method == "offset" and offer.baseline < -0.4
    assert model.effect(fresh, fresh["play"]).mean() == pytest.approx(0.0, abs=0.04)
    # The churn risk without a contact is the play's own level too: its held out churn at 30% here.
    assert model.churn_without(fresh, fresh["play"]).mean() == pytest.approx(0.30, abs=0.03)


def test_with_a_shared_no_contact_model_the_fallback_is_an_odds_ratio_on_each_customers_risk(
    tmp_path,
) -> None:
    """A play too small for a model keeps its measured average effect, as the odds ratio it implies on
    each customer's own risk: the larger the risk, the larger the uplift, and never more than the
    customer's churn probability (the same number of points for everyone would be, for low-risk ones)."""
    big = _synthetic(3000, 0.08, seed=3, play="Offer")
    tiny = _synthetic(60, 0.0, seed=4, play="Call")
    tiny["treated"] = [True] * 40 + [False] * 20
    tiny["label"] = pd.array([1] * 4 + [0] * 36 + [1] * 6 + [0] * 14, dtype="Int8")  # 10% vs 30%
    tiny["customer_id"] = [f"t{i}" for i in range(60)]
    controls = _synthetic(6000, 0.0, seed=5, play="none", treated_share=0.0).drop(columns=["play", "treated"])
    controls["customer_id"] = [f"n{i}" for i in range(6000)]
    rows = pd.concat([big, tiny], ignore_index=True)
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1, controls=controls)
    call = model.plays["Call"]
    assert call.method == AVERAGE and call.scale == "log-odds"
    assert call.average_effect == pytest.approx(0.20)
    assert call.shift < 0  # the contacted churned less: a positive uplift
    fresh = _synthetic(2000, 0.0, seed=6, play="Call")
    uplift, risk = model.effect(fresh, fresh["play"]), model.churn_without(fresh, fresh["play"])
    assert (uplift > 0).all() and (uplift < risk).all()
    assert np.corrcoef(uplift, risk)[0, 1] > 0.99  # one odds ratio: the uplift follows the risk
    # The normal prior keeps a few customers' odds ratio modest: the average uplift is positive but
    # below the raw 20 points measured on 60 customers.
    assert 0.02 < uplift.mean() < 0.20
    model.save(tmp_path / "uplift")
    # The shared no-contact model is written once and loaded once, for both plays.
    assert sorted(
        p.relative_to(tmp_path / "uplift").as_posix() for p in (tmp_path / "uplift").rglob("*.json")
    ) == [
        "_shared/mu0.json",
        "offer/shift.json",
        "uplift_model.json",
    ]
    loaded = UpliftModel.load(tmp_path / "uplift")
    assert loaded.plays["Call"].boosters["mu0"] is loaded.plays["Offer"].boosters["mu0"]
    np.testing.assert_allclose(loaded.effect(fresh, fresh["play"]), uplift)
    both = loaded.effects(fresh)  # the shared margins computed once for every play
    np.testing.assert_allclose(both["Call"], uplift)
    np.testing.assert_allclose(both["Offer"], model.effect(fresh, ["Offer"] * len(fresh)))
    # A model saved before the odds-ratio fallback (no ``scale``) keeps the constant effect it had.
    document = json.loads((tmp_path / "uplift" / MODEL_FILE).read_text())
    document["format_version"] = 1
    for entry in document["plays"]:
        entry.pop("scale"), entry.pop("baseline")
    (tmp_path / "uplift" / MODEL_FILE).write_text(json.dumps(document))
    old = UpliftModel.load(tmp_path / "uplift")
    np.testing.assert_allclose(old.effect(fresh, fresh["play"]), call.average_effect)


def test_a_held_out_arm_without_a_churner_sets_a_finite_level() -> None:
    """A low-churn play can clear ``min_held_out`` with no churner among its holdouts: maximum likelihood
    would put its level at minus infinity (every customer a sleeping dog); the prior keeps it finite."""
    rows = _synthetic(600, 0.0, seed=21)
    rows["treated"] = np.arange(600) >= 110
    rows["label"] = pd.array(
        np.where(rows["treated"], (np.arange(600) % 25 == 0), 0).astype(int), dtype="Int8"
    )
    controls = _synthetic(6000, 0.0, seed=22, play="none", treated_share=0.0).drop(
        columns=["play", "treated"]
    )
    controls["customer_id"] = [f"n{i}" for i in range(6000)]
    config = CONFIG.uplift.model_copy(update={"min_held_out": 100})
    model = fit_uplift(rows, _specs(), config, seed=7, nthread=1, controls=controls)
    offer = model.plays["Offer"]
    assert offer.method == "offset" and -3.0 < offer.baseline < 0 and abs(offer.shift) < 3.0
    assert model.churn_without(rows, rows["play"]).mean() > 0.01


def test_a_fallback_play_without_holdouts_gets_no_effect() -> None:
    """With no held-out customer there is no measured effect to turn into an odds ratio: the play's
    uplift is 0 (as before), not the contacted arm's distance from the shared model."""
    big = _synthetic(3000, 0.08, seed=3, play="Offer")
    tiny = _synthetic(80, 0.0, seed=4, play="Call", treated_share=1.0)
    tiny["label"] = pd.array([1] * 30 + [0] * 50, dtype="Int8")  # far above the shared model's risk
    tiny["customer_id"] = [f"t{i}" for i in range(80)]
    controls = _synthetic(6000, 0.0, seed=5, play="none", treated_share=0.0).drop(columns=["play", "treated"])
    controls["customer_id"] = [f"n{i}" for i in range(6000)]
    model = fit_uplift(
        pd.concat([big, tiny], ignore_index=True),
        _specs(),
        CONFIG.uplift,
        seed=7,
        nthread=1,
        controls=controls,
    )
    call = model.plays["Call"]
    assert call.method == AVERAGE and call.held_out == 0 and call.scale == "probability"
    np.testing.assert_array_equal(model.effect(tiny, tiny["play"]), 0.0)
    assert "odds ratio" not in model.notes[0]


def test_without_shift_trees_a_play_is_one_odds_ratio_on_each_customers_risk(tmp_path) -> None:
    """``uplift.shift_trees: false``: the offset learner keeps its average shift and no trees, so every
    customer of the play gets the same odds ratio on their own no-contact risk; it saves and loads so."""
    rows, fresh = _synthetic(6000, 0.08, seed=1), _synthetic(2000, 0.08, seed=2)
    controls = _synthetic(6000, 0.0, seed=5, play="none", treated_share=0.0).drop(columns=["play", "treated"])
    controls["customer_id"] = [f"n{i}" for i in range(6000)]
    config = CONFIG.uplift.model_copy(update={"shift_trees": False})
    model = fit_uplift(rows, _specs(), config, seed=7, nthread=1, controls=controls)
    offer = model.plays["Offer"]
    assert offer.method == "offset" and set(offer.boosters) == {"mu0"} and offer.shift < 0
    risk, uplift = model.churn_without(fresh, fresh["play"]), model.effect(fresh, fresh["play"])
    odds = lambda p: np.log(p / (1 - p))  # noqa: E731
    np.testing.assert_allclose(odds(risk - uplift) - odds(risk), offer.shift, atol=1e-5)
    assert uplift.mean() == pytest.approx(0.08, abs=0.03)
    with_trees = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1, controls=controls)
    assert "shift" in with_trees.plays["Offer"].boosters
    model.save(tmp_path / "uplift")
    np.testing.assert_allclose(UpliftModel.load(tmp_path / "uplift").effect(fresh, fresh["play"]), uplift)


def test_plays_with_their_own_no_contact_models_keep_them_in_every_path(tmp_path) -> None:
    """``controls: holdouts``: each play's no-contact model is its own. ``effects`` (one matrix for every
    play, margins computed once per booster) equals each play's own effect; the files are per play; and
    two shared boosters of one name, as a model merged from two fits would have, get two files."""
    rows = pd.concat(
        [_synthetic(3000, 0.08, seed=31, play="Offer"), _synthetic(3000, 0.02, seed=32, play="Call")],
        ignore_index=True,
    )
    rows["customer_id"] = [f"c{i}" for i in range(len(rows))]
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1)
    fresh = _synthetic(1000, 0.0, seed=33)
    both = model.effects(fresh)
    for play in ("Offer", "Call"):
        np.testing.assert_allclose(both[play], model.effect(fresh, [play] * len(fresh)))
    assert not np.allclose(both["Offer"], both["Call"])
    model.save(tmp_path / "own")
    names = sorted(p.relative_to(tmp_path / "own").as_posix() for p in (tmp_path / "own").rglob("*.json"))
    assert names == [
        "call/mu0.json",
        "call/shift.json",
        "offer/mu0.json",
        "offer/shift.json",
        "uplift_model.json",
    ]
    # Two models' plays in one: each pair shares its own mu0, both would be "_shared/mu0.json".
    a, b = (m.plays for m in (model, fit_uplift(rows, _specs(), CONFIG.uplift, seed=8, nthread=1)))
    merged = UpliftModel(
        model.inputs,
        {
            "A": dataclasses.replace(a["Offer"], play="A"),
            "B": dataclasses.replace(
                a["Call"], play="B", boosters={**a["Call"].boosters, "mu0": a["Offer"].boosters["mu0"]}
            ),
            "C": dataclasses.replace(b["Offer"], play="C"),
            "D": dataclasses.replace(
                b["Call"], play="D", boosters={**b["Call"].boosters, "mu0": b["Offer"].boosters["mu0"]}
            ),
        },
    )
    merged.save(tmp_path / "merged")
    assert sorted(p.name for p in (tmp_path / "merged" / "_shared").iterdir()) == ["mu0-2.json", "mu0.json"]
    loaded = UpliftModel.load(tmp_path / "merged")
    np.testing.assert_allclose(loaded.effects(fresh).to_numpy(), merged.effects(fresh).to_numpy())


def test_the_map_shift_stays_finite_when_an_arm_has_no_churner() -> None:
    offset = np.full(10, -1.0)
    assert offset_shift(offset, np.zeros(10)) < -10  # maximum likelihood runs away
    assert -2.0 < offset_shift(offset, np.zeros(10), prior_sd=1.0) < 0


def test_model_round_trips_through_json(tmp_path) -> None:
    rows = pd.concat(
        [_synthetic(3000, 0.08, seed=5, play="Offer"), _synthetic(30, 0.0, seed=6, play="Call")],
        ignore_index=True,
    )
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1)
    model.save(tmp_path / "uplift")
    assert not list(tmp_path.rglob("*.pkl")) and (tmp_path / "uplift" / "offer" / "shift.json").exists()
    loaded = UpliftModel.load(tmp_path / "uplift")
    fresh = _synthetic(500, 0.08, seed=8, play="Offer")
    np.testing.assert_allclose(loaded.effect(fresh, fresh["play"]), model.effect(fresh, fresh["play"]))
    assert loaded.notes == model.notes and loaded.plays["Call"].method == AVERAGE


def test_plays_that_would_share_a_folder_are_refused_not_overwritten(tmp_path) -> None:
    """ "Re-engagement call" and "re engagement-call" would both save under re-engagement-call/: the
    loaded model would score one play with the other's trees."""
    rows = pd.concat(
        [
            _synthetic(30, 0.0, seed=5, play="Re-engagement call"),
            _synthetic(30, 0.0, seed=6, play="re engagement-call"),
        ],
        ignore_index=True,
    )
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1)
    with pytest.raises(DataValidationError, match="differ only in case or punctuation"):
        model.save(tmp_path / "uplift")
    assert not (tmp_path / "uplift").exists()


def test_evaluation_leaves_out_plays_the_model_never_saw(caplog: pytest.LogCaptureFixture) -> None:
    """A play first used in the test lists has no uplift: named in a warning, not ranked last silently."""
    model = fit_uplift(_synthetic(3000, 0.08, seed=5), _specs(), CONFIG.uplift, seed=7, nthread=1)
    test = pd.concat(
        [_synthetic(600, 0.08, seed=8), _synthetic(90, 0.0, seed=9, play="Brand new play")], ignore_index=True
    )
    with caplog.at_level(logging.WARNING, logger="churnml.pipelines.uplift"):
        table, _ = evaluate_model(model, test, 0.1)
    assert "Brand new play" in caplog.text and "90" in caplog.text
    assert set(table["play"]) == {"all plays", "Offer"}
    assert set(table.loc[table["play"] == "all plays", "ranking"]) >= {"uplift", "risk", "random"}


# --- rows from a contacts table ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def programme_rows():
    sim = simulate(n_customers=1500, months=8, seed=4, programme=True, exploration=0.1)
    dataset = sim.to_dataset()
    return sim, dataset, build_uplift_rows(dataset, CONFIG.labels, CONFIG.features)


def test_contacts_without_a_play_that_has_both_arms_are_refused(programme_rows) -> None:
    """Every contact held out (or every one contacted) measures nothing: a named error, not an all-zero
    model registered as the champion."""
    from churnml.data.load import dataset_from_frames

    sim, dataset, _ = programme_rows
    for arm in ("holdout", "treatment"):
        tables = {**sim.tables, "contacts": sim.tables["contacts"].assign(arm=arm)}
        one_arm = dataset_from_frames(tables, end=dataset.end)
        with pytest.raises(DataValidationError) as info:
            build_uplift_rows(one_arm, CONFIG.labels, CONFIG.features)
        assert info.value.table == "contacts" and info.value.column == "arm"
        assert "no play has both" in str(info.value)


def test_a_list_worked_through_over_a_week_is_one_list_with_list_days(programme_rows, caplog) -> None:
    """Contacts spread over the days after each list date (a team working through its list) make, with
    uplift.list_days 7, the same lists and rows as contacts all sent that day, with the same arms and
    plays. With the default (1), each day is a list of its own, and the run says so (the red-team run had
    evaluated 32 customers instead of 263 without a word)."""
    from churnml.data.load import dataset_from_frames

    sim, dataset, rows = programme_rows
    contacts = sim.tables["contacts"]
    delay = pd.to_timedelta(np.random.default_rng(0).integers(0, 6, len(contacts)), unit="D")
    moved = contacts.assign(contacted_at=contacts["contacted_at"] + delay)
    spread = dataset_from_frames({**sim.tables, "contacts": moved}, end=dataset.end)
    weekly = build_uplift_rows(spread, CONFIG.labels, CONFIG.features, rows.specs, list_days=7)
    keys = ["customer_id", "cutoff", "play", "treated", "label"]
    same = rows.frame[keys].sort_values(keys[:2]).reset_index(drop=True)
    inside = same["customer_id"].isin(spread.tables["contacts"]["customer_id"])  # not moved past the end
    got = weekly.frame[keys].sort_values(keys[:2]).reset_index(drop=True)
    pd.testing.assert_frame_equal(got, same.loc[inside].reset_index(drop=True), check_dtype=False)
    assert CONFIG.uplift.list_days == 1
    with caplog.at_level(logging.WARNING, logger="churnml.uplift.rows"):
        daily = contact_lists(spread.tables["contacts"])
        build_uplift_rows(spread, CONFIG.labels, CONFIG.features, rows.specs)
    assert daily["cutoff"].nunique() > 3 * rows.frame["cutoff"].nunique()
    assert "set uplift.list_days" in caplog.text


def test_list_dates_start_a_new_list_once_list_days_have_passed() -> None:
    from churnml.uplift.rows import list_dates

    days = pd.Series(pd.to_datetime(["2025-03-01", "2025-03-06", "2025-03-08", "2025-03-11", "2025-03-12"]))
    dates = list_dates(days, 7)
    assert [str(dates[d].date()) for d in days] == [
        "2025-03-01",
        "2025-03-01",
        "2025-03-08",
        "2025-03-08",
        "2025-03-08",
    ]
    assert {str(k.date()): str(v.date()) for k, v in list_dates(days, 1).items()} == {
        str(d.date()): str(d.date()) for d in days
    }


def test_contact_lists_take_the_first_row_of_a_day() -> None:
    contacts = pd.DataFrame(
        {
            "customer_id": ["a", "a", "b"],
            "contacted_at": pd.to_datetime(["2025-03-01 15:00", "2025-03-01 09:00", "2025-03-02 10:00"]),
            "play": ["Call", "offer", "Offer"],
            "arm": ["holdout", "treatment", "holdout"],
        }
    )
    lists = contact_lists(contacts)
    assert lists["cutoff"].tolist() == [pd.Timestamp("2025-03-01"), pd.Timestamp("2025-03-02")]
    assert lists["treated"].tolist() == [True, False]
    assert lists["play"].tolist() == ["Offer", "Offer"]  # one spelling per play, as the review reads them


def test_a_list_does_not_see_its_own_contacts(programme_rows) -> None:
    """The cutoff is the contact's day at midnight: the contact being studied, and everything after,
    is not in the features (the contacts features count only earlier treatment rows)."""
    sim, _, rows = programme_rows
    frame = rows.frame
    contacts = sim.tables["contacts"]
    treated = contacts.loc[contacts["arm"] == "treatment"]
    earlier = frame.apply(
        lambda r: int(
            ((treated["customer_id"] == r["customer_id"]) & (treated["contacted_at"] < r["cutoff"])).sum()
        ),
        axis=1,
    )
    np.testing.assert_array_equal(frame["contacts_count_total"].to_numpy(), earlier.to_numpy())
    first = frame.loc[earlier.to_numpy() == 0]
    assert first["days_since_last_contact"].isna().all() and len(first) > 100
    assert (frame["cutoff"] == frame["cutoff"].dt.normalize()).all()
    # Each row's arm and play are its contact row's (the simulator's first day of the month).
    merged = frame.merge(
        contacts.assign(cutoff=contacts["contacted_at"].dt.floor("D")), on=["customer_id", "cutoff"]
    )
    assert len(merged) == len(frame)
    assert (merged["treated"] == merged["arm"].eq("treatment")).all() and (
        merged["play_x"] == merged["play_y"]
    ).all()


def test_out_of_time_split_keeps_the_test_lists_unseen(programme_rows) -> None:
    _, _, rows = programme_rows
    train, test = split_by_list(rows, test_lists=2, label_window_days=37)
    assert test["cutoff"].nunique() == 2 and test["label"].notna().all()
    assert (train["cutoff"] + pd.Timedelta(days=37) <= test["cutoff"].min()).all()
    with pytest.raises(DataValidationError, match="fully labeled list dates"):
        split_by_list(rows, test_lists=50, label_window_days=37)


def test_the_shared_feature_matrix_predicts_as_the_pandas_frame_does() -> None:
    """``feature_matrix`` (one float32 array, categories as training codes, for every play) gives the
    boosters' predictions on the prepared pandas frame they were trained on, to the bit; missing and
    unseen categories included."""
    rows = _synthetic(3000, 0.08, seed=11)
    model = fit_uplift(rows, _specs(), CONFIG.uplift.model_copy(update={"learner": "t"}), seed=7, nthread=1)
    fresh = _synthetic(500, 0.08, seed=12)
    fresh["plan"] = fresh["plan"].astype(object)
    fresh.loc[:9, "plan"] = None
    fresh.loc[10:19, "plan"] = "never seen"
    fresh.loc[20:29, "x1"] = np.nan
    prepared = model.inputs.prepare(fresh)
    by_pandas = xgb.DMatrix(prepared, enable_categorical=True, missing=np.nan)
    play = model.plays["Offer"]
    for name, booster in play.boosters.items():
        rounds = (0, booster.num_boosted_rounds())
        np.testing.assert_array_equal(
            booster.predict(feature_matrix(prepared), iteration_range=rounds),
            booster.predict(by_pandas, iteration_range=rounds),
            err_msg=name,
        )
    # The service's entry point: rows its fast path encoded (float32, category codes, NaN missing).
    codes = prepared["plan"].cat.codes.to_numpy().astype(np.float32)
    encoded = np.column_stack([prepared["x1"], prepared["x2"], np.where(codes < 0, np.nan, codes)]).astype(
        np.float32
    )
    np.testing.assert_array_equal(
        model.effects_of_encoded(encoded)["Offer"], model.effects(fresh)["Offer"].to_numpy()
    )
