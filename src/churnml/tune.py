"""Optuna tuning of the XGBoost classifier, and the final fit with the chosen parameters.

Seeded TPE over the usual tree parameters; every trial fits with early stopping on the validation slice
and reports its progress through XGBoost's pruning callback to a pruner that stops hopeless trials
(see ``PruningCallback`` and ``OptimisticPruner`` for why not per round, and why not the median). The
study lives in a storage (a local SQLite file by default) under a name derived from
everything that defines it, so an interrupted run resumes and a finished one is not repeated: the trial
budget is the study's total. Sequential trials (``n_jobs=1``) with a trial budget are reproducible.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from optuna_integration import XGBoostPruningCallback

from churnml.config import Config, ModelConfig, TuneConfig
from churnml.errors import ChurnmlError
from churnml.model import ChurnModel

log = logging.getLogger(__name__)

MAXIMIZE = {"auc", "aucpr"}


def suggest_params(trial: optuna.Trial, fixed: dict[str, Any]) -> dict[str, Any]:
    """The search space; parameters fixed in the config are not searched."""
    space: dict[str, Callable[[], Any]] = {
        "learning_rate": lambda: trial.suggest_float("learning_rate", 0.02, 0.3, log=True),
        "max_depth": lambda: trial.suggest_int("max_depth", 2, 7),
        "min_child_weight": lambda: trial.suggest_float("min_child_weight", 1.0, 100.0, log=True),
        "subsample": lambda: trial.suggest_float("subsample", 0.5, 1.0),
        "colsample_bytree": lambda: trial.suggest_float("colsample_bytree", 0.3, 1.0),
        "reg_lambda": lambda: trial.suggest_float("reg_lambda", 1e-3, 100.0, log=True),
        "reg_alpha": lambda: trial.suggest_float("reg_alpha", 1e-3, 10.0, log=True),
        "gamma": lambda: trial.suggest_float("gamma", 1e-3, 5.0, log=True),
    }
    return {name: draw() for name, draw in space.items() if name not in fixed}


def booster_params(model: ModelConfig, metric: str, seed: int, tuned: dict[str, Any]) -> dict[str, Any]:
    """XGBoost parameters: fixed settings, then tuned values, then the config's overrides."""
    return {
        "objective": "binary:logistic",
        "eval_metric": metric,
        "tree_method": "hist",
        "device": model.device,
        "nthread": model.nthread,
        "seed": seed,
        **tuned,
        **model.params,
    }


class PruningCallback(XGBoostPruningCallback):
    """XGBoost's pruning callback, reporting at equal *learning progress* (rounds x learning rate).

    At round 40 a trial with learning rate 0.02 is naturally behind one with 0.1; a median pruner
    comparing them at equal rounds stops every slow learner early (it pruned 20 of 30 trials, all the
    low-learning-rate ones, in a benchmark). Reports are also sparse, as each is a storage write.
    """

    def __init__(
        self, trial: optuna.Trial, observation_key: str, learning_rate: float, interval: float
    ) -> None:
        super().__init__(trial, observation_key)
        self.per_round = learning_rate / interval
        self.last_step = 0

    def after_iteration(self, model: Any, epoch: int, evals_log: dict) -> bool:
        step = int((epoch + 1) * self.per_round + 1e-9)
        if step <= self.last_step:
            return False
        self.last_step = step
        return super().after_iteration(model, step, evals_log)


@dataclass(frozen=True)
class Matrices:
    """Training and validation DMatrix, built once: every trial and the refit reuse their binned data."""

    train: xgb.DMatrix
    validation: xgb.DMatrix

    @classmethod
    def of(
        cls, train: tuple[pd.DataFrame, np.ndarray], validation: tuple[pd.DataFrame, np.ndarray], nthread: int
    ):
        def build(x: pd.DataFrame, y: np.ndarray) -> xgb.DMatrix:
            return xgb.DMatrix(x, label=y, enable_categorical=True, missing=np.nan, nthread=nthread)

        return cls(build(*train), build(*validation))


def train_booster(
    params: dict[str, Any],
    data: Matrices,
    model: ModelConfig,
    callbacks: Sequence[xgb.callback.TrainingCallback] = (),
) -> xgb.Booster:
    """Boost with early stopping on the validation matrix (``best_iteration``/``best_score`` set)."""
    return xgb.train(
        params,
        data.train,
        num_boost_round=model.max_rounds,
        evals=[(data.validation, "validation")],
        early_stopping_rounds=model.early_stopping_rounds,
        callbacks=list(callbacks),
        verbose_eval=False,
    )


def study_name(config: Config, fingerprint: str, boundaries: dict[str, Any]) -> str:
    """Name that changes whenever the data, split, search or model settings change (resume otherwise)."""
    if config.tune.study_name:
        return config.tune.study_name
    defining = {
        "fingerprint": fingerprint,
        "split": boundaries,
        "tune": config.tune.model_dump(
            mode="json", exclude={"n_trials", "timeout_s", "progress_bar", "n_jobs"}
        ),
        "model": config.model.model_dump(mode="json", exclude={"refit_on"}),  # tuning is the same
        "seed": config.seed,
    }
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{config.name}-{digest}"


def default_storage(config: Config) -> str:
    path = (Path(config.output.dir) / config.name / "optuna.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


class OptimisticPruner(optuna.pruners.BasePruner):
    """Prune a trial only when it cannot catch up: even if it improved from here as much as the
    most-improving finished trial did from the same step, it would not beat the best finished trial.

    Why not the median rule: boosting curves cross. Shallow, well-regularised trees learn slowly and
    finish best; deep ones lead early and overfit. In a benchmark the two best trials were the *worst*
    at 25% of their run, and a median pruner stopped every later trial like them. This rule still stops
    trials that are hopeless (learning stalled, far behind) after the warm-up.
    """

    def __init__(self, n_startup_trials: int, n_warmup_steps: int) -> None:
        self.n_startup_trials, self.n_warmup_steps = n_startup_trials, n_warmup_steps

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.n_warmup_steps:
            return False
        finished = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        if len(finished) < self.n_startup_trials:
            return False
        sign = 1.0 if study.direction == optuna.study.StudyDirection.MINIMIZE else -1.0
        gains = [
            sign * (t.intermediate_values[step] - t.value) for t in finished if step in t.intermediate_values
        ]
        if not gains:
            return False  # no finished trial got this far: nothing to compare with
        best_so_far = min(sign * v for s, v in trial.intermediate_values.items() if s <= step)
        return best_so_far - max(gains) > min(sign * t.value for t in finished)


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    warmup = int(tune.pruner_warmup / tune.prune_interval)
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=warmup)
    if tune.pruner == "optimistic":
        return OptimisticPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=warmup)
    return optuna.pruners.NopPruner()


def create_study(config: Config, name: str) -> optuna.Study:
    tune = config.tune
    return optuna.create_study(
        storage=tune.storage or default_storage(config),
        study_name=name,
        direction="maximize" if tune.metric in MAXIMIZE else "minimize",
        sampler=optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=tune.startup_trials),
        pruner=make_pruner(tune),
        load_if_exists=True,
    )


def _finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


def tune(
    config: Config,
    data: Matrices,
    name: str,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
) -> optuna.Study:
    """Run the study up to its budget (trials in total, and/or seconds in this run) and return it."""
    tune_config: TuneConfig = config.tune
    if tune_config.n_trials is None and tune_config.timeout_s is None:
        raise ChurnmlError("tune: set tune.n_trials and/or tune.timeout_s, or tuning never ends")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(config, name)
    done = _finished(study)
    remaining = None if tune_config.n_trials is None else max(tune_config.n_trials - done, 0)
    if done:
        log.info("study %s resumed with %d finished trials, %s to go", name, done, remaining)
    fixed = dict(config.model.params)
    observation = f"validation-{tune_config.metric}"

    def objective(trial: optuna.Trial) -> float:
        params = booster_params(config.model, tune_config.metric, config.seed, suggest_params(trial, fixed))
        learning_rate = float(params.get("learning_rate", params.get("eta", 0.3)))
        pruning = PruningCallback(trial, observation, learning_rate, tune_config.prune_interval)
        booster = train_booster(params, data, config.model, [pruning])
        trial.set_user_attr("best_iteration", int(booster.best_iteration))
        return float(booster.best_score)

    if remaining != 0:
        study.optimize(
            objective,
            n_trials=remaining,
            timeout=tune_config.timeout_s,
            n_jobs=tune_config.n_jobs,
            callbacks=list(callbacks),
            show_progress_bar=tune_config.progress_bar,
            gc_after_trial=False,
        )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise ChurnmlError(f"study {name}: no trial completed (all pruned or failed); raise the budget")
    return study


def fit_model(
    config: Config,
    best: optuna.trial.FrozenTrial,
    untrained: ChurnModel,
    rows: tuple[pd.DataFrame, np.ndarray],
) -> ChurnModel:
    """Refit the best trial's parameters on ``rows`` for the number of rounds early stopping chose.

    No early stopping here: the booster has exactly the chosen trees, so no consumer can use extra ones
    by mistake. Refitting on the training rows alone reproduces the best trial's trees exactly.
    """
    params = booster_params(config.model, config.tune.metric, config.seed, best.params)
    rounds = int(best.user_attrs["best_iteration"]) + 1
    matrix = xgb.DMatrix(
        rows[0], label=rows[1], enable_categorical=True, missing=np.nan, nthread=config.model.nthread
    )
    booster = xgb.train(params, matrix, num_boost_round=rounds)
    # Predict on CPU unless told otherwise: the same trees give the same numbers on either device.
    booster.set_param({"nthread": config.model.nthread, "device": "cpu"})
    return untrained.with_booster(booster, best_iteration=rounds - 1, params=params)
