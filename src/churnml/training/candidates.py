"""The models cross-validation chooses from, and their fit on any rows.

Which model wins depends on the business: deep tuned trees on a large, rich event log; shallow, heavily
regularised trees on a few thousand customers; a logistic regression on ``arcsinh`` counts where the
signal is weak or nearly additive. A data scientist would try all three and keep the one that holds up
out of time, so churnml does: every candidate is judged by the same rolling-origin folds
(``tune.cross_validate`` for the boosters, the same folds for the regression), on its pooled
out-of-fold margins, and the best by ``model.select_by`` ships.

- ``xgboost_tuned``: the Optuna study's best trial (``tune.tune``).
- ``xgboost_robust``: fixed settings for small data (depth 2-3, heavy leaves, subsampling, a slow
  learning rate), rounds by pooled early stopping: the safe choice when a search is noise.
- ``logreg``: ``churnml.training.linear``'s pipeline, its L2 strength chosen from ``linear.C_GRID`` by the
  pooled ``tune.metric``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config
from churnml.engine import Engine
from churnml.training.calibrate import sigmoid
from churnml.training.evaluate import metric_value
from churnml.training.linear import C_GRID, LinearModel, logistic_pipeline, regression
from churnml.training.model import ChurnModel
from churnml.training.registry import LOWER_IS_BETTER
from churnml.training.split import Split
from churnml.training.tune import (
    MAXIMIZE,
    BoosterRows,
    CVData,
    CVResult,
    booster_params,
    cross_validate,
    fit_booster,
    pooled_score,
    scaled_rounds,
)

CV_METRICS = ("roc_auc", "pr_auc", "log_loss")


@dataclass(frozen=True)
class Candidate:
    """A candidate's settings and its pooled out-of-fold margins (rows of ``Split.out_of_fold``)."""

    name: str
    margin: np.ndarray
    cv: dict[str, float]
    params: dict[str, Any]
    rounds: int | None = None  # boosting rounds at the folds' size (xgboost)

    @classmethod
    def of(
        cls, name: str, y: np.ndarray, margin: np.ndarray, params: dict[str, Any], rounds: int | None
    ) -> Candidate:
        probability = sigmoid(margin)
        cv = {metric: metric_value(metric, y, probability) for metric in CV_METRICS}
        return cls(name, margin, cv, params, rounds)

    def fit(
        self,
        specs: Sequence[Any],
        rows: pd.DataFrame,
        data: CVData,
        config: Config,
        engine: Engine | None = None,
        every: BoosterRows | None = None,
    ) -> ChurnModel:
        """This candidate fitted on ``rows`` (its inputs, categories included, taken from those rows);
        boosting rounds scaled from the folds' size to the rows'; boosters on ``engine``'s workers.

        With ``every`` (cross-validation on a sample, ``split.cv_customers``: ``rows`` are the sample's)
        a booster is fitted on every row instead, with the rounds the sample's rows support: more rows
        under the same trees cannot overfit more. The regression stays on the sample's rows, whose
        thousands of customers settle its coefficients."""
        untrained = ChurnModel.untrained(rows, specs)
        info = {"candidate": self.name, "fit_rows": len(rows)}
        if self.rounds is None:
            x, y = untrained.xy(rows)
            categorical = [c.name for c in untrained.columns if c.dtype == "category"]
            linear = LinearModel.fit(x, y, categorical, float(self.params["C"]))
            return untrained.with_linear(linear, **info)
        rounds = scaled_rounds(self.rounds - 1, data.train_rows, len(rows), config.model.max_rounds)
        nthread = config.model.nthread
        if every is not None:
            return every.fit(untrained, self.params, rounds, nthread).with_info(
                **info | {"fit_rows": every.rows}
            )
        return fit_booster(untrained, self.params, rounds, rows, nthread, engine).with_info(**info)


def robust_params(churners: int) -> dict[str, Any]:
    """Shallow, heavy-leaved, subsampled trees: little to overfit with on a few dozen churners."""
    return {
        "learning_rate": 0.05,
        "max_depth": 2 if churners < 300 else 3,
        "min_child_weight": 10.0,
        "subsample": 0.8,
        "colsample_bytree": 0.6,
        "reg_lambda": 10.0,
        "reg_alpha": 0.0,
        "gamma": 0.0,
    }


def booster_candidate(name: str, params: dict[str, Any], result: CVResult, y: np.ndarray) -> Candidate:
    return Candidate.of(name, y, result.margin, params, result.best_iteration + 1)


def robust_candidate(config: Config, data: CVData) -> Candidate:
    # booster_params lays the config's fixed model.params over these, as over a trial's.
    params = booster_params(config.model, config.tune.metric, config.seed, robust_params(data.churners))
    return booster_candidate("xgboost_robust", params, cross_validate(params, data, config.model), data.y)


def logreg_candidate(config: Config, specs: Sequence[Any], split: Split, y: np.ndarray) -> Candidate:
    """The regression at each strength of ``C_GRID`` on every fold; the best pooled ``tune.metric``.

    Each fold's preprocessing (medians, scales, levels) does not depend on ``C``: it is fitted once and
    each strength refits only the regression on its design matrix.
    """
    designs = []
    for fold in split.folds:
        untrained = ChurnModel.untrained(fold.train, specs)
        (x, fold_y), validation = untrained.xy(fold.train), untrained.prepare(fold.validation)
        categorical = [c.name for c in untrained.columns if c.dtype == "category"]
        numeric = [c.name for c in untrained.columns if c.dtype != "category"]
        prepare = logistic_pipeline(numeric, categorical)[:-1]
        designs.append((prepare.fit_transform(x), fold_y, prepare.transform(validation)))
    best: tuple[float, float, np.ndarray] | None = None
    for c in C_GRID:
        margin = np.concatenate(
            [
                regression(c).fit(z, fold_y).decision_function(z_validation)
                for z, fold_y, z_validation in designs
            ]
        )
        score = pooled_score(config.tune.metric, y, margin)
        signed = -score if config.tune.metric in MAXIMIZE else score
        if best is None or signed < best[0]:
            best = (signed, c, margin)
    assert best is not None
    return Candidate.of("logreg", y, best[2], {"C": best[1]}, None)


SIMPLICITY = ("logreg", "xgboost_robust", "xgboost_tuned")  # simplest first
BOOTSTRAPS = 200


def weighted_metric(metric: str, y: np.ndarray, probability: np.ndarray) -> Callable[[np.ndarray], float]:
    """``metric_value(metric, y, probability, weight)`` as a function of the row weights.

    ROC-AUC is computed from the scores' tie groups, sorted once: the weighted Mann-Whitney statistic
    (ties count half), which is the area under scikit-learn's weighted ROC curve. A bootstrap of 200
    replicates then costs a few bincounts each instead of a sort and a curve.
    """
    if metric != "roc_auc":
        return lambda weight: metric_value(metric, y, probability, weight)
    groups = np.unique(probability, return_inverse=True)[1]
    positive = np.asarray(y, dtype=np.float64)

    def auc(weight: np.ndarray) -> float:
        pos = np.bincount(groups, weights=weight * positive)
        neg = np.bincount(groups, weights=weight * (1.0 - positive))
        below = np.cumsum(neg) - neg
        return float(pos @ (below + 0.5 * neg) / (pos.sum() * neg.sum()))

    return auc


def paired_standard_errors(
    best: Candidate,
    candidates: Sequence[Candidate],
    y: np.ndarray,
    customers: pd.Series,
    metric: str,
    seed: int,
) -> dict[str, float]:
    """Standard error of ``metric(best) - metric(candidate)`` on the pooled out-of-fold rows, by a
    bootstrap over customers (a customer's rows at several validation cutoffs are drawn together)."""
    codes, _ = pd.factorize(customers)
    rng = np.random.default_rng(seed)
    differences: dict[str, list[float]] = {c.name: [] for c in candidates if c.name != best.name}
    scorers = {c.name: weighted_metric(metric, y, sigmoid(c.margin)) for c in candidates}
    for _ in range(BOOTSTRAPS):
        weight = np.bincount(rng.integers(0, codes.max() + 1, codes.max() + 1), minlength=codes.max() + 1)
        rows = weight[codes].astype(np.float64)
        if len(np.unique(y[rows > 0])) < 2:
            continue
        top = scorers[best.name](rows)
        for name in differences:
            differences[name].append(top - scorers[name](rows))
    return {
        name: float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
        for name, values in differences.items()
    }


def choose(
    candidates: Sequence[Candidate],
    metric: str,
    rule: str = "best",
    y: np.ndarray | None = None,
    customers: pd.Series | None = None,
    seed: int = 0,
) -> Candidate:
    """The best pooled out-of-fold ``metric`` (ties to the earlier candidate), or with ``rule="one_se"``
    the simplest candidate within one standard error of it (Breiman's one-standard-error rule).

    With a few dozen churners per cutoff, the leader by a hair is often the model that fitted the
    folds' noise best: a simpler model that is statistically as good generalises more safely.
    """
    sign = 1.0 if metric in LOWER_IS_BETTER else -1.0
    best = min(candidates, key=lambda c: sign * c.cv[metric])
    if rule == "best" or len(candidates) == 1:
        return best
    assert y is not None and customers is not None
    errors = paired_standard_errors(best, candidates, y, customers, metric, seed)
    rank = {name: k for k, name in enumerate(SIMPLICITY)}
    for candidate in sorted(candidates, key=lambda c: rank.get(c.name, len(rank))):
        if candidate is best or sign * (candidate.cv[metric] - best.cv[metric]) <= errors[candidate.name]:
            return candidate
    return best
