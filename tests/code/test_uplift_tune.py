"""Optuna tuning of the uplift boosters: a real (tiny) study per play, judged out of time on the latest
training list, deterministic for a seed, its best settings the ones the fitted boosters use, and plays too
small for a model left untuned (they keep the measured-average fallback)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from test_uplift import _specs, _synthetic

from churnml.config import load_config
from churnml.training.candidates import robust_params
from churnml.uplift.learner import AVERAGE, fit_uplift
from churnml.uplift.tune import tune_uplift

CONFIG = load_config(
    None,
    [
        "uplift.tune.n_trials=4",
        "uplift.tune.startup_trials=2",
        "uplift.max_rounds=80",
        "uplift.min_treated=100",
        "uplift.min_held_out=100",
    ],
)
WINDOW = 30  # days a label needs: lists a month apart, the last one validates


def _lists() -> pd.DataFrame:
    """Four monthly lists of an "Offer" whose effect grows with x1 (something to tune for), and a "Call"
    tried on 20 customers only."""
    frames = []
    for k, month in enumerate(("2025-01-01", "2025-02-01", "2025-03-01", "2025-04-01")):
        offer = _synthetic(1500, 0.06, seed=10 + k)
        offer["customer_id"] = [f"o{k}-{i}" for i in range(len(offer))]
        call = _synthetic(20, 0.0, seed=20 + k, play="Call")
        call["customer_id"] = [f"c{k}-{i}" for i in range(len(call))]
        frames += [offer.assign(cutoff=pd.Timestamp(month)), call.assign(cutoff=pd.Timestamp(month))]
    return pd.concat(frames, ignore_index=True)


def _max_depth(booster: xgb.Booster) -> int:
    config = json.loads(booster.save_config())
    return int(config["learner"]["gradient_booster"]["tree_train_param"]["max_depth"])


@pytest.fixture(scope="module")
def tuned() -> dict:
    return tune_uplift(_lists(), _specs(), {}, CONFIG.uplift, seed=7, window_days=WINDOW, nthread=1)


def test_a_study_per_play_judged_on_the_latest_list(tuned: dict) -> None:
    offer = tuned["Offer"]
    assert offer.study is not None and len(offer.study.trials) == 4
    values = [t.value for t in offer.study.trials]
    assert all(np.isfinite(values)) and offer.best_loss == min(values)
    assert {t.user_attrs["play"] for t in offer.study.trials} == {"Offer"}
    # Searched in the churn model's space (tune.search_space): depth 2-3 for a few hundred churners.
    assert {"learning_rate", "max_depth", "min_child_weight"} <= set(offer.study.best_trial.params)
    # The tuned settings are kept only when they beat the robust ones on the same validation list.
    assert np.isfinite(offer.default_loss)
    if offer.best_loss < offer.default_loss:
        assert offer.params == offer.study.best_trial.params
    else:
        assert offer.params == {} and "robust settings kept" in offer.note


def test_plays_too_small_for_a_model_are_not_tuned(tuned: dict) -> None:
    call = tuned["Call"]
    assert call.study is None and call.params == {} and "not tuned" in call.note
    assert "uplift.min_treated" in call.note


def test_tuning_is_deterministic_for_a_seed(tuned: dict) -> None:
    again = tune_uplift(_lists(), _specs(), {}, CONFIG.uplift, seed=7, window_days=WINDOW, nthread=1)
    assert again["Offer"].params == tuned["Offer"].params
    assert [t.params for t in again["Offer"].study.trials] == [t.params for t in tuned["Offer"].study.trials]
    assert again["Offer"].best_loss == tuned["Offer"].best_loss


def test_the_best_settings_are_the_ones_the_boosters_use(tuned: dict) -> None:
    rows = _lists()
    best = dict(tuned["Offer"].study.best_trial.params)
    model = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1, params={"Offer": best})
    offer = model.plays["Offer"]
    assert _max_depth(offer.boosters["shift"]) == best["max_depth"]
    assert model.info["tuned_params"] == {"Offer": best}
    assert model.plays["Call"].method == AVERAGE  # the fallback is untouched by tuning
    # Without shared controls the play's own no-contact model is tuned too; untuned, the robust settings.
    assert _max_depth(offer.boosters["mu0"]) == best["max_depth"]
    plain = fit_uplift(rows, _specs(), CONFIG.uplift, seed=7, nthread=1)
    churners = int(rows.loc[rows["play"] == "Offer", "label"].sum())
    assert _max_depth(plain.plays["Offer"].boosters["shift"]) == robust_params(churners)["max_depth"]
    assert plain.info["tuned_params"] == {}


def test_no_trials_means_the_robust_settings() -> None:
    config = CONFIG.uplift.model_copy(update={"tune": CONFIG.uplift.tune.model_copy(update={"n_trials": 0})})
    tuned = tune_uplift(_lists(), _specs(), {}, config, seed=7, window_days=WINDOW, nthread=1)
    assert all(t.study is None and t.params == {} for t in tuned.values())


def test_without_shift_trees_and_with_a_shared_no_contact_model_there_is_nothing_to_tune() -> None:
    """The shared no-contact model keeps the robust settings, and a play without shift trees has no
    booster of its own: no study runs, and the note says why."""
    config = CONFIG.uplift.model_copy(update={"shift_trees": False})
    lists = _lists()
    controls = lists.loc[~lists["treated"].to_numpy(bool)].drop(columns=["play", "treated"]).head(50)
    tuned = tune_uplift(lists, _specs(), {}, config, seed=7, window_days=WINDOW, nthread=1, controls=controls)
    assert all(t.study is None and t.params == {} and "shift_trees" in t.note for t in tuned.values())
