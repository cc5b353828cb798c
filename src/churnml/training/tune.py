"""Cross-validated boosting, Optuna tuning of the XGBoost classifier, and the final fit.

Every booster is judged by rolling-origin cross-validation (``cross_validate``): one booster per fold,
grown in lockstep, early-stopped on the *pooled* validation metric of all folds, whose out-of-fold
margins are what tuning, the choice of model and calibration read. One validation cutoff, or half of
one, holds a few dozen churners in a small business, and a search steered by them chases noise.

Seeded TPE over the usual tree parameters, its ranges set by how many churners there are
(``search_space``); each trial reports its pooled metric at equal learning progress to a pruner that
stops hopeless trials (see ``ProgressReporter`` and ``OptimisticPruner`` for why not per round, and
why not the median). The
study lives in a storage (a local SQLite file by default) under a name derived from
everything that defines it, so an interrupted run resumes and a finished one is not repeated: the trial
budget is the study's total. Sequential trials (``n_jobs=1``) with a trial budget are reproducible.
"""

from __future__ import annotations

import ctypes
import hashlib
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import optuna
import pandas as pd
import xgboost as xgb
from sklearn.metrics import average_precision_score, log_loss, roc_auc_score

from churnml import ownership
from churnml.config import Config, ModelConfig, TuneConfig
from churnml.engine import Engine
from churnml.engine.cluster import DaskEngine
from churnml.errors import ChurnmlError
from churnml.training.calibrate import sigmoid
from churnml.training.model import ChurnModel
from churnml.training.split import Fold, Split, customer_fraction

log = logging.getLogger(__name__)

MAXIMIZE = {"auc", "aucpr"}


def search_space(churners: int) -> dict[str, tuple[float, float]]:
    """Parameter ranges for a training set with this many churners (positive rows).

    A few hundred churners support only shallow trees with heavy leaves; a hundred thousand support
    deep ones. Depth and the minimum hessian per leaf follow the count (a leaf of churn rate p holds
    about p per row of hessian), so small data is not searched where it can only overfit.
    """
    if churners < 300:
        depth, leaf = (2, 3), (5.0, 200.0)
    elif churners < 3000:
        depth, leaf = (2, 4), (2.0, 100.0)
    elif churners < 30_000:
        depth, leaf = (2, 6), (1.0, 100.0)
    else:
        depth, leaf = (3, 8), (1.0, 100.0)
    return {
        "learning_rate": (0.02, 0.3),
        "max_depth": depth,
        "min_child_weight": leaf,
        "subsample": (0.5, 1.0),
        "colsample_bytree": (0.3, 1.0),
        "reg_lambda": (1e-3, 100.0),
        "reg_alpha": (1e-3, 10.0),
        "gamma": (1e-3, 5.0),
    }


LOG_SCALE = {"learning_rate", "min_child_weight", "reg_lambda", "reg_alpha", "gamma"}


def suggest_params(trial: optuna.Trial, fixed: dict[str, Any], churners: int) -> dict[str, Any]:
    """One draw from ``search_space(churners)``; parameters fixed in the config are not searched."""
    drawn: dict[str, Any] = {}
    for name, (low, high) in search_space(churners).items():
        if name in fixed:
            continue
        if name == "max_depth":
            drawn[name] = trial.suggest_int(name, int(low), int(high))
        else:
            drawn[name] = trial.suggest_float(name, low, high, log=name in LOG_SCALE)
    return drawn


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


class ProgressReporter:
    """Reports a trial's pooled metric to its pruner at equal *learning progress* (rounds x learning rate).

    At round 40 a trial with learning rate 0.02 is naturally behind one with 0.1; a median pruner
    comparing them at equal rounds stops every slow learner early (it pruned 20 of 30 trials, all the
    low-learning-rate ones, in a benchmark). Reports are also sparse, as each is a storage write.
    """

    def __init__(self, trial: optuna.Trial, learning_rate: float, interval: float) -> None:
        self.trial, self.per_round, self.last_step = trial, learning_rate / interval, 0

    def __call__(self, epoch: int, value: float) -> None:
        step = int((epoch + 1) * self.per_round + 1e-9)
        if step <= self.last_step:
            return
        self.last_step = step
        self.trial.report(value, step)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"trial pruned at learning progress step {step}")


@dataclass(frozen=True)
class FoldMatrices:
    train: xgb.DMatrix
    validation: xgb.DMatrix


SEARCH_MIN_ROWS = 10_000  # folds at most this large are searched on every row


def search_sample(frame: pd.DataFrame, negatives_per_churner: float | None, seed: int) -> np.ndarray:
    """Row weights for the search: every churner, a seeded sample of the others weighted up by the inverse
    rate (at least ``negatives_per_churner`` per churner and ``SEARCH_MIN_ROWS`` rows), 0 = left out.

    Boosting cost grows with the rows, and among rare churners most rows are stayers who say the same
    thing: the sum of gradients and hessians is kept in expectation, so the search sees the same problem
    for a fraction of the cost (negative downsampling, as in click prediction). Validation rows are never
    sampled, and the best trial is cross-validated again on every row.
    """
    label = frame["label"].to_numpy(dtype=np.int64)
    weights = np.ones(len(frame))
    positives, negatives = int(label.sum()), int((label == 0).sum())
    if negatives_per_churner is None or len(frame) <= SEARCH_MIN_ROWS or negatives == 0:
        return weights
    rate = max(negatives_per_churner * positives, SEARCH_MIN_ROWS - positives) / negatives
    if rate >= 1:
        return weights
    key = frame["customer_id"].astype(str) + "|" + frame["cutoff"].astype(str)
    kept = customer_fraction(key, seed) < rate
    weights[label == 0] = np.where(kept[label == 0], 1.0 / rate, 0.0)
    return weights


@dataclass(frozen=True)
class CVData:
    """Every fold's training and validation DMatrix, built once: every trial reuses their binned data.

    ``folds`` hold every row; ``search`` the folds as the Optuna search trains on them (see
    ``search_sample``; the same matrices when nothing is sampled). ``y`` holds the pooled out-of-fold
    labels (the folds' validation rows in fold order, as ``Split.out_of_fold``), ``train_rows`` each
    fold's number of training rows. ``specs`` and ``source`` are what it was built from, so that another
    process (a cluster worker searching, ``churnml.engine.tuning``) builds the same matrices.
    """

    folds: tuple[FoldMatrices, ...]
    search: tuple[FoldMatrices, ...]
    y: np.ndarray
    train_rows: tuple[int, ...]
    validation_rows: tuple[int, ...]
    specs: tuple[Any, ...] = ()
    source: tuple[Fold, ...] = ()

    @classmethod
    def of(
        cls,
        specs: Sequence[Any],
        split: Split,
        nthread: int,
        search_negatives: float | None = None,
        seed: int = 0,
    ) -> CVData:
        """The split's folds as matrices (:meth:`of_folds`)."""
        return cls.of_folds(specs, split.folds, nthread, search_negatives, seed)

    @classmethod
    def of_folds(
        cls,
        specs: Sequence[Any],
        source: Sequence[Fold],
        nthread: int,
        search_negatives: float | None = None,
        seed: int = 0,
    ) -> CVData:
        """Each fold's inputs cast as a model fitted on its training rows would cast them: categories
        the catalogue does not declare come from those rows alone, never from later cutoffs."""
        folds, search = [], []
        for fold in source:
            model = ChurnModel.untrained(fold.train, specs)

            def build(frame: pd.DataFrame, weight: np.ndarray | None = None) -> xgb.DMatrix:
                x, y = model.xy(frame)  # noqa: B023 - used at once, inside this iteration
                return xgb.DMatrix(
                    x, label=y, weight=weight, enable_categorical=True, missing=np.nan, nthread=nthread
                )

            full = FoldMatrices(build(fold.train), build(fold.validation))
            folds.append(full)
            weight = search_sample(fold.train, search_negatives, seed)
            if (weight == 1).all():
                search.append(full)
                continue
            kept = weight > 0
            sampled = fold.train.loc[kept].reset_index(drop=True)
            search.append(FoldMatrices(build(sampled, weight[kept]), full.validation))
        return cls(
            folds=tuple(folds),
            search=tuple(search),
            y=np.concatenate([f.validation["label"].to_numpy(dtype=np.int64) for f in source]),
            train_rows=tuple(len(f.train) for f in source),
            validation_rows=tuple(len(f.validation) for f in source),
            specs=tuple(specs),
            source=tuple(source),
        )

    @property
    def sampled(self) -> bool:
        return any(s is not f for s, f in zip(self.search, self.folds, strict=True))

    @property
    def churners(self) -> int:
        """Positive rows of the smallest training fold: what the search space must suit."""
        return int(min(f.train.get_label().sum() for f in self.folds))


def pooled_score(metric: str, y: np.ndarray, margin: np.ndarray) -> float:
    """An XGBoost metric (logloss, auc, aucpr) of pooled out-of-fold margins."""
    if metric == "logloss":
        return float(log_loss(y, np.clip(sigmoid(margin), 1e-15, 1 - 1e-15), labels=[0, 1]))
    if metric == "auc":
        return float(roc_auc_score(y, margin))
    return float(average_precision_score(y, margin))


@dataclass(frozen=True)
class CVResult:
    """Pooled out-of-fold margins at the best number of rounds, and the pooled metric there."""

    margin: np.ndarray
    best_iteration: int
    score: float


class FoldBooster:
    """One fold's booster, grown a round at a time and evaluated on the rounds the caller reads.

    ``Booster.update`` and ``Booster.eval_set`` read the matrix's feature names back from C and compare
    them with the booster's on every call. A fold's matrices never change between rounds, so the wrapper
    checks each on its first use and later rounds call XGBoost's C functions directly (private handles:
    without them every round goes through the wrapper; the numbers are the same either way). On the
    20k benchmark, run back to back: 127 s this way, 133 s through the wrapper.
    """

    def __init__(self, params: dict[str, Any], fold: FoldMatrices) -> None:
        self.fold, self.evaluated = fold, False
        self.booster = xgb.Booster(params, [fold.train, fold.validation])
        try:
            from xgboost.core import _LIB, _check_call, c_array, c_bst_ulong
        except ImportError:  # pragma: no cover - a future XGBoost without these private names
            self.lib = None
        else:
            self.lib, self.check = _LIB, _check_call
            self.matrices = c_array(ctypes.c_void_p, [fold.validation.handle])
            self.names = c_array(ctypes.c_char_p, [b"v"])
            self.count = c_bst_ulong(1)

    def grow(self, iteration: int) -> None:
        """Grow round ``iteration``."""
        if self.lib is None or iteration == 0:
            self.booster.update(self.fold.train, iteration)
        else:
            handle, train = self.booster.handle, self.fold.train.handle
            self.check(self.lib.XGBoosterUpdateOneIter(handle, ctypes.c_int(iteration), train))

    def evaluate(self, iteration: int) -> float:
        """The validation metric after round ``iteration``."""
        if self.lib is None or not self.evaluated:
            self.evaluated = True
            text = self.booster.eval_set([(self.fold.validation, "v")], iteration)
        else:
            message = ctypes.c_char_p()
            self.check(
                self.lib.XGBoosterEvalOneIter(
                    self.booster.handle,
                    ctypes.c_int(iteration),
                    self.matrices,
                    self.names,
                    self.count,
                    ctypes.byref(message),
                )
            )
            text = (message.value or b"").decode()
        # "[12]\tv-logloss:0.1234": the last field's number.
        return float(text.rsplit(":", 1)[1])


def search_eval_every(model: ModelConfig) -> int:
    """Rounds between two reads of the pooled metric while searching on sampled folds: a tenth of the
    patience."""
    return max(1, model.early_stopping_rounds // 10)


def cross_validate(
    params: dict[str, Any],
    data: CVData,
    model: ModelConfig,
    report: Callable[[int, float], None] | None = None,
    search: bool = False,
) -> CVResult:
    """Grow one booster per fold in lockstep, early-stopped on the pooled validation metric.

    Each round's pooled value is the row-weighted mean of the folds' values, which for log loss is the
    log loss of the pooled predictions exactly. ``report(round, value)`` may raise to stop (pruning).
    ``search=True`` trains on the search sample of each fold (``CVData.search``) and, when the folds
    are sampled, reads the metric every ``search_eval_every(model)`` rounds only.

    Reading the metric costs as much as a third of a round on a search sample: XGBoost's CPU predictor
    fills every validation row's feature vector again for each new tree. A search compares trials by
    their best pooled value, which a tenth of the patience in resolution does not change in substance on
    large folds. Small folds (searched whole) are cheap to read and stop within a few dozen rounds, where
    that resolution is coarse, so they read every round, as does every full cross-validation
    (re-validating the best trial, the robust candidate).
    """
    folds = data.search if search else data.folds
    metric = str(params["eval_metric"])
    sign = -1.0 if metric in MAXIMIZE else 1.0
    weights = np.asarray(data.validation_rows, dtype=np.float64) / sum(data.validation_rows)
    every = search_eval_every(model) if search and data.sampled else 1
    growing = [FoldBooster(params, f) for f in folds]
    best, best_iteration = np.inf, 0
    for iteration in range(model.max_rounds):
        for fold in growing:
            fold.grow(iteration)
        if (iteration + 1) % every and iteration + 1 < model.max_rounds:
            continue
        pooled = float(np.dot(weights, [fold.evaluate(iteration) for fold in growing]))
        if sign * pooled < best:
            best, best_iteration = sign * pooled, iteration
        elif iteration - best_iteration >= model.early_stopping_rounds:
            break
        if report is not None:
            report(iteration, pooled)
    margin = np.concatenate(
        [
            fold.booster.predict(
                fold.fold.validation, output_margin=True, iteration_range=(0, best_iteration + 1)
            )
            for fold in growing
        ]
    )
    return CVResult(margin, best_iteration, pooled_score(metric, data.y, margin))


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
        # Tuning is the same whatever is refitted or which candidates compete with it.
        "model": config.model.model_dump(
            mode="json", exclude={"refit_on", "candidates", "select_by", "select_rule"}
        ),
        "seed": config.seed,
    }
    digest = hashlib.sha256(json.dumps(defining, sort_keys=True, default=str).encode()).hexdigest()[:10]
    return f"{config.name}-{digest}"


def default_storage(config: Config) -> str:
    path = (Path(config.output.dir) / config.name / "optuna.db").resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_url(config: Config) -> str:
    return config.tune.storage or default_storage(config)


SQLITE_BUSY_TIMEOUT_S = 120.0


def open_storage(url: str) -> optuna.storages.BaseStorage | str:
    """The study's storage. A SQLite file written by several processes (the workers of a LocalCluster)
    answers "database is locked" to a writer that finds another's transaction open; with a busy timeout
    the writer waits for it instead. Optuna's writes are short (a trial's start, reports, its end), so
    a few workers queue for milliseconds; a server database (``tune.storage``) needs nothing."""
    if not url.startswith("sqlite"):
        return url
    return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}})


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
        values = [(t, float(t.value)) for t in finished if t.value is not None]  # complete: always set
        gains = [sign * (t.intermediate_values[step] - v) for t, v in values if step in t.intermediate_values]
        if not gains:
            return False  # no finished trial got this far: nothing to compare with
        best_so_far = min(sign * v for s, v in trial.intermediate_values.items() if s <= step)
        return best_so_far - max(gains) > min(sign * v for _, v in values)


def make_pruner(tune: TuneConfig) -> optuna.pruners.BasePruner:
    warmup = int(tune.pruner_warmup / tune.prune_interval)
    if tune.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=warmup)
    if tune.pruner == "optimistic":
        return OptimisticPruner(n_startup_trials=tune.startup_trials, n_warmup_steps=warmup)
    return optuna.pruners.NopPruner()


def make_sampler(config: Config, worker: int = 0) -> optuna.samplers.BaseSampler:
    """Seeded TPE; worker ``k`` of a parallel search seeds with ``seed + k`` (worker 0, or a local run,
    with ``seed``): the same seed in every worker would draw the same random start-up trials."""
    return optuna.samplers.TPESampler(seed=config.seed + worker, n_startup_trials=config.tune.startup_trials)


def create_study(config: Config, name: str, worker: int = 0) -> optuna.Study:
    """The study, created in its storage or loaded from it (a resumed run, a cluster worker)."""
    tune = config.tune
    return optuna.create_study(
        storage=open_storage(storage_url(config)),
        study_name=name,
        direction="maximize" if tune.metric in MAXIMIZE else "minimize",
        sampler=make_sampler(config, worker),
        pruner=make_pruner(tune),
        load_if_exists=True,
    )


def fail_orphaned_trials(study: optuna.Study) -> list[int]:
    """Mark FAIL the trials left RUNNING by a killed run of this host (their process is gone): they would
    count as running for ever, and a resumed study would never finish them. Returns their numbers."""
    running = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
    orphans = [t for t in running if ownership.orphaned(t.user_attrs)]
    for trial in orphans:
        study.tell(trial.number, state=optuna.trial.TrialState.FAIL)
    return [t.number for t in orphans]


def _finished(study: optuna.Study) -> int:
    states = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
    return len(study.get_trials(deepcopy=False, states=states))


WORKER_ATTR = "churnml.worker"  # a trial's user attribute: which cluster worker ran it (0, 1, ...)


def make_objective(
    config: Config,
    data: CVData,
    results: dict[int, CVResult] | None = None,
    worker: int | None = None,
    nthread: int | None = None,
) -> Callable[[optuna.Trial], float]:
    """The search's objective: a trial's pooled ``tune.metric`` of cross-validation on ``data``'s search
    folds. ``results`` collects each trial's result when the folds are not sampled (the best trial then
    needs no second cross-validation); ``worker`` (a cluster worker's number) is recorded on the trial;
    ``nthread`` replaces ``model.nthread`` (a worker's own threads)."""
    fixed = dict(config.model.params)
    churners = data.churners

    def objective(trial: optuna.Trial) -> float:
        for key, value in ownership.tags().items():
            trial.set_user_attr(key, value)
        if worker is not None:
            trial.set_user_attr(WORKER_ATTR, worker)
        drawn = suggest_params(trial, fixed, churners)
        params = booster_params(config.model, config.tune.metric, config.seed, drawn)
        if nthread is not None:
            params["nthread"] = nthread
        learning_rate = float(params.get("learning_rate", params.get("eta", 0.3)))
        reporter = ProgressReporter(trial, learning_rate, config.tune.prune_interval)
        result = cross_validate(params, data, config.model, reporter, search=True)
        trial.set_user_attr("best_iteration", result.best_iteration)
        if results is not None and not data.sampled:
            results[trial.number] = result
        return result.score

    return objective


def tune(
    config: Config,
    data: CVData,
    name: str,
    callbacks: Sequence[Callable[[optuna.Study, optuna.trial.FrozenTrial], None]] = (),
    engine: Engine | None = None,
) -> tuple[optuna.Study, CVResult]:
    """Run the study up to its budget (trials in total, and/or seconds in this run); return it with the
    best trial's cross-validation result on every row (recomputed when the search trained on a sample
    of the rows, when the best trial is from an earlier run, or when a cluster ran it).

    On a Dask ``engine`` the trials run on the workers, each a ``study.optimize`` of its share of the
    budget on the shared storage (``churnml.engine.tuning``); ``callbacks`` then see the new trials
    here, in trial order, once the workers are done."""
    tune_config: TuneConfig = config.tune
    if tune_config.n_trials is None and tune_config.timeout_s is None:
        raise ChurnmlError("tune: set tune.n_trials and/or tune.timeout_s, or tuning never ends")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = create_study(config, name)
    failed = fail_orphaned_trials(study)
    if failed:
        log.warning("study %s: trials %s of a killed run marked failed", name, failed)
    done = _finished(study)
    remaining = None if tune_config.n_trials is None else max(tune_config.n_trials - done, 0)
    if done:
        log.info("study %s resumed with %d finished trials, %s to go", name, done, remaining)
    results: dict[int, CVResult] = {}

    if remaining != 0 and isinstance(engine, DaskEngine):
        from churnml.engine.tuning import search_on_cluster

        numbers = search_on_cluster(engine, config, data, study, remaining)
        trials = {t.number: t for t in study.get_trials(deepcopy=False)}
        for number in sorted(numbers):
            for callback in callbacks:
                callback(study, trials[number])
    elif remaining != 0:
        study.optimize(
            make_objective(config, data, results),
            n_trials=remaining,
            timeout=tune_config.timeout_s,
            n_jobs=tune_config.n_jobs,
            callbacks=list(callbacks),
            show_progress_bar=tune_config.progress_bar,
            gc_after_trial=False,
        )
    if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
        raise ChurnmlError(f"study {name}: no trial completed (all pruned or failed); raise the budget")
    best = study.best_trial
    if best.number not in results:
        params = booster_params(config.model, tune_config.metric, config.seed, best.params)
        results[best.number] = cross_validate(params, data, config.model)
    return study, results[best.number]


def scaled_rounds(best_iteration: int, fold_rows: Sequence[int], rows: int, max_rounds: int) -> int:
    """Rounds for a refit on ``rows``: the cross-validated number, scaled by rows over the folds' mean
    training rows (more data supports proportionally more trees at the same learning rate)."""
    scale = rows / max(float(np.mean(fold_rows)), 1.0)
    return int(min(max(round((best_iteration + 1) * scale), 1), max_rounds))


def fit_booster(
    untrained: ChurnModel,
    params: dict[str, Any],
    rounds: int,
    rows: pd.DataFrame,
    nthread: int,
    engine: Engine | None = None,
) -> ChurnModel:
    """Fit ``rounds`` trees with ``params`` on ``rows``: no early stopping, so the booster has exactly
    the chosen trees and no consumer can use extra ones by mistake. On a Dask ``engine`` the workers
    train it with ``xgboost.dask`` on the rows' customer partitions (``churnml.engine.boosting``)."""
    if isinstance(engine, DaskEngine):
        from churnml.engine.boosting import train_on_cluster

        booster = train_on_cluster(engine, untrained, params, rounds, rows)
    else:
        x, y = untrained.xy(rows)
        matrix = xgb.DMatrix(x, label=y, enable_categorical=True, missing=np.nan, nthread=nthread)
        booster = xgb.train(params, matrix, num_boost_round=rounds)
    return fitted(untrained, booster, rounds, params, nthread)


def fitted(
    untrained: ChurnModel, booster: xgb.Booster, rounds: int, params: dict[str, Any], nthread: int
) -> ChurnModel:
    """The model of a booster just trained with ``rounds`` trees of ``params``."""
    # Predict on CPU unless told otherwise: the same trees give the same numbers on either device.
    booster.set_param({"nthread": nthread, "device": "cpu"})
    return untrained.with_booster(booster, best_iteration=rounds - 1, params=params)


class BoosterRows(Protocol):
    """Every row a booster is fitted on, wherever they are held, when cross-validation saw a sample of
    the customers (``split.cv_customers``): the client's frame (:class:`FrameRows`) or a training set
    written by the workers (``churnml.engine.boosting.PartFiles``)."""

    @property
    def rows(self) -> int: ...

    def fit(self, untrained: ChurnModel, params: dict[str, Any], rounds: int, nthread: int) -> ChurnModel: ...


@dataclass(frozen=True)
class FrameRows:
    """:class:`BoosterRows` of a frame this process holds (trained on a Dask ``engine`` if given)."""

    frame: pd.DataFrame
    engine: Engine | None = None

    @property
    def rows(self) -> int:
        return len(self.frame)

    def fit(self, untrained: ChurnModel, params: dict[str, Any], rounds: int, nthread: int) -> ChurnModel:
        return fit_booster(untrained, params, rounds, self.frame, nthread, self.engine)
