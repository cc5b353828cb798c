"""Optuna tuning of each play's uplift boosters, out of time, with the churn model's search space.

Each play gets a seeded TPE study over ``churnml.training.tune.search_space`` (the ranges the churn model
searches, set by how many churners there are). A trial fits the play's learner on the lists before the
``uplift.tune.validation_lists`` latest training lists and is judged on those later lists, out of time
as the churn model is, by the learner's **factual log loss** (:func:`learner.factual_log_loss`: how well
it predicts what happened to each customer in the arm they were in).

Why not Qini or AUUC on the validation lists: they are differences between two small randomised arms,
and on about a thousand randomised customers the observed Qini could not tell the uplift ranking from the
risk ranking or the oracle's (docs/uplift.md); a search steered by them would chase noise. The log loss
reads every contacted and held-out row one by one, and for the offset learner (the default) it is the
model's own likelihood, so a lower one is a better fitted shift. The settings are kept only when they
beat the fixed robust settings on the same lists; the out-of-time evaluation on the test lists, which
tuning never sees, says whether it helped. Plays with too few contacted or held-out customers keep the
fallback (their measured average effect) and are not tuned.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
import pandas as pd

from churnml import ownership
from churnml.config import UpliftConfig
from churnml.errors import DataValidationError
from churnml.features import FeatureSpec
from churnml.training.model import ChurnModel
from churnml.training.split import customer_fraction
from churnml.training.tune import suggest_params
from churnml.uplift.learner import (
    PlayModel,
    factual_log_loss,
    fit_learner,
    no_contact_model,
    slug,
)
from churnml.uplift.rows import UpliftRows, split_by_list

log = logging.getLogger(__name__)

METRIC = "factual_logloss"


@dataclass(frozen=True)
class PlayTuning:
    """One play's study: the settings to fit it with (empty: the robust ones) and why."""

    play: str
    params: dict[str, Any]
    default_loss: float = float("nan")  # the robust settings on the validation lists
    best_loss: float = float("nan")
    study: optuna.Study | None = field(default=None, compare=False)
    note: str = ""

    def summary(self) -> dict[str, Any]:
        trials = [] if self.study is None else self.study.trials
        return {
            "params": self.params,
            "default_loss": self.default_loss,
            "best_loss": self.best_loss,
            "trials": len(trials),
            "note": self.note,
        }


def tune_uplift(
    rows: pd.DataFrame,
    specs: Sequence[FeatureSpec],
    label_settings: dict[str, Any],
    config: UpliftConfig,
    seed: int,
    window_days: int,
    nthread: int = 2,
    controls: pd.DataFrame | None = None,
) -> dict[str, PlayTuning]:
    """Per play of labeled training ``rows``: fitted on the earlier lists, judged on the latest
    ``config.tune.validation_lists`` (rows whose label window reaches into them dropped), ``n_trials``
    trials; ``controls`` as in ``fit_uplift`` (only those known before the validation lists are used)."""
    settings = config.tune
    plays = sorted(rows["play"].dropna().astype(str).unique())
    if settings.n_trials == 0:
        return {p: PlayTuning(p, {}, note="uplift.tune.n_trials=0: robust settings") for p in plays}
    if config.learner == "offset" and not config.shift_trees and controls is not None:
        # Nothing of the play's own is a booster: the shared no-contact model keeps the robust settings.
        return {p: PlayTuning(p, {}, note="uplift.shift_trees=false: no trees to tune") for p in plays}
    try:
        fit_rows, valid_rows = split_by_list(
            UpliftRows(rows, tuple(specs), label_settings), settings.validation_lists, window_days
        )
    except DataValidationError as exc:
        note = f"not tuned: {exc.problem}"
        log.warning("uplift tuning: %s", note)
        return {p: PlayTuning(p, {}, note=note) for p in plays}
    first_valid = valid_rows["cutoff"].min()
    inputs = ChurnModel.untrained(rows, specs)
    shared = None
    if controls is not None:
        known = controls["label"].notna() & (
            controls["cutoff"] + pd.Timedelta(days=window_days) <= first_valid
        )
        shared = no_contact_model(fit_rows, controls.loc[known], inputs, config, seed, nthread)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return {
        play: _tune_play(play, fit_rows, valid_rows, inputs, config, seed, nthread, shared) for play in plays
    }


def _tune_play(
    play: str,
    fit_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    inputs: ChurnModel,
    config: UpliftConfig,
    seed: int,
    nthread: int,
    shared: Any,
) -> PlayTuning:
    fit = fit_rows.loc[fit_rows["play"] == play]
    valid = valid_rows.loc[valid_rows["play"] == play]
    treated = fit["treated"].to_numpy(dtype=bool)
    checked = valid["treated"].to_numpy(dtype=bool)
    if treated.sum() < config.min_treated or (~treated).sum() < config.min_held_out:
        return PlayTuning(
            play,
            {},
            note=f"not tuned: {int(treated.sum())} contacted and {int((~treated).sum())} held out before "
            "the validation lists (below uplift.min_treated / min_held_out)",
        )
    if not checked.any() or checked.all():
        return PlayTuning(
            play, {}, note="not tuned: the validation lists lack a contacted or held-out customer"
        )
    x, y = inputs.prepare(fit), fit["label"].to_numpy(dtype=np.float64)
    x_valid, y_valid = inputs.prepare(valid), valid["label"].to_numpy(dtype=np.float64)
    stopping = customer_fraction(fit["customer_id"], seed) < config.validation_share
    churners = int(y.sum())

    def loss(params: dict[str, Any]) -> float:
        boosters, shift, baseline = fit_learner(
            x, y, treated, stopping, config, seed, nthread, shared, params
        )
        # Only what predicting needs: the measured figures play no part in the loss.
        nan = float("nan")
        model = PlayModel(
            play=play,
            method=config.learner,
            treated=int(treated.sum()),
            held_out=int((~treated).sum()),
            churn_treated=nan,
            churn_held_out=nan,
            average_effect=nan,
            effect_low=nan,
            effect_high=nan,
            propensity=float(treated.mean()),
            shift=shift,
            baseline=baseline,
            boosters=boosters,
        )
        return factual_log_loss(model, x_valid, y_valid, checked)

    def objective(trial: optuna.Trial) -> float:
        for key, value in {**ownership.tags(), "play": play}.items():
            trial.set_user_attr(key, value)
        return loss(suggest_params(trial, {}, churners))

    study = optuna.create_study(
        study_name=f"uplift-{slug(play)}",
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=seed, n_startup_trials=config.tune.startup_trials),
    )
    study.optimize(objective, n_trials=config.tune.n_trials, timeout=config.tune.timeout_s)
    default = loss({})
    best = study.best_trial
    assert best.value is not None  # the best trial is a complete one
    if best.value < default:
        return PlayTuning(play, dict(best.params), default, best.value, study, f"tuned (trial {best.number})")
    return PlayTuning(
        play,
        {},
        default,
        best.value,
        study,
        "robust settings kept: no trial beat them on the validation lists",
    )
