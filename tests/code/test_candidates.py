"""Cross-validated boosting, the exported logistic regression and the choice among candidates."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb
from sklearn.metrics import log_loss

from churnml.config import ModelConfig, SplitConfig
from churnml.features.catalogue import FeatureSpec
from churnml.risk.explain import contributions
from churnml.training.calibrate import sigmoid
from churnml.training.candidates import (
    Candidate,
    choose,
    paired_standard_errors,
    robust_params,
    weighted_metric,
)
from churnml.training.evaluate import metric_value
from churnml.training.linear import LinearModel, logistic_pipeline
from churnml.training.model import ChurnModel, FeatureColumn
from churnml.training.split import split_by_time
from churnml.training.tune import (
    SEARCH_MIN_ROWS,
    CVData,
    cross_validate,
    pooled_score,
    scaled_rounds,
    search_eval_every,
    search_sample,
    search_space,
)

MONTHLY = [f"2025-{m:02d}-01" for m in range(1, 13)]
LABELS = {"horizon_days": 30, "grace_days": 7}


def frame(customers: int = 300, seed: int = 0) -> pd.DataFrame:
    """Customers at monthly cutoffs with two informative numbers, a missing-prone one and a category."""
    rng = np.random.default_rng(seed)
    rows = len(MONTHLY) * customers
    x1 = rng.exponential(20, rows)
    x2 = rng.normal(size=rows)
    x3 = np.where(rng.random(rows) < 0.3, np.nan, rng.poisson(3, rows).astype(float))
    plan = rng.choice(["basic", "pro", "team", "rare"], rows, p=[0.5, 0.3, 0.198, 0.002])
    logit = -2.5 + 0.05 * x1 - 0.8 * x2 + np.where(plan == "pro", 0.7, 0.0)
    label = (rng.random(rows) < sigmoid(logit)).astype("int64")
    out = pd.DataFrame(
        {
            "customer_id": np.tile([f"c{i:04d}" for i in range(customers)], len(MONTHLY)),
            "cutoff": np.repeat(pd.to_datetime(MONTHLY), customers),
            "label": pd.array(label, dtype="Int8"),
            "x1": x1,
            "x2": x2,
            "x3": x3,
            "plan": pd.Categorical(plan),
        }
    )
    out.loc[out["cutoff"] == MONTHLY[-1], "label"] = pd.NA
    return out


SPECS = [
    FeatureSpec(name, "test", "customers", "current", None, dtype, f"{name}: {{value}}", name)
    for name, dtype in [("x1", "float64"), ("x2", "float64"), ("x3", "float64"), ("plan", "category")]
]
PARAMS = {"objective": "binary:logistic", "eval_metric": "logloss", "max_depth": 2, "eta": 0.3, "seed": 0}


def test_one_fold_cross_validation_is_xgboost_early_stopping() -> None:
    data = frame()
    split = split_by_time(data, LABELS, SplitConfig(folds=1))
    cv = CVData.of(SPECS, split, nthread=1)
    settings = ModelConfig(max_rounds=300, early_stopping_rounds=10, nthread=1)
    result = cross_validate(dict(PARAMS), cv, settings)
    fold = cv.folds[0]
    booster = xgb.train(
        dict(PARAMS),
        fold.train,
        300,
        evals=[(fold.validation, "v")],
        early_stopping_rounds=10,
        verbose_eval=False,
    )
    assert result.best_iteration == booster.best_iteration
    expected = booster.predict(
        fold.validation, output_margin=True, iteration_range=(0, booster.best_iteration + 1)
    )
    np.testing.assert_allclose(result.margin, expected, rtol=1e-6)


def test_pooled_early_stopping_reads_every_fold() -> None:
    split = split_by_time(frame(), LABELS, SplitConfig(folds=3))
    cv = CVData.of(SPECS, split, nthread=1)
    assert cv.train_rows == tuple(len(f.train) for f in split.folds)
    assert np.array_equal(cv.y, split.out_of_fold["label"].to_numpy())
    reports: list[tuple[int, float]] = []
    settings = ModelConfig(max_rounds=200, early_stopping_rounds=10, nthread=1)
    result = cross_validate(dict(PARAMS), cv, settings, lambda r, v: reports.append((r, v)))
    assert len(result.margin) == len(split.out_of_fold)
    # The reported pooled value is the log loss of the pooled predictions, exactly (row-weighted mean).
    assert result.score == pytest.approx(log_loss(cv.y, sigmoid(result.margin)), rel=1e-9)
    assert min(v for _, v in reports) == pytest.approx(result.score, rel=1e-4)
    assert [r for r, _ in reports] == list(range(len(reports)))
    assert result.best_iteration == min(reports, key=lambda rv: rv[1])[0]


def test_search_sample_keeps_every_churner_and_the_weight_of_the_others() -> None:
    rng = np.random.default_rng(3)
    n = 60_000
    rows = pd.DataFrame(
        {
            "customer_id": [f"c{i}" for i in range(n)],
            "cutoff": pd.Timestamp("2025-05-01"),
            "label": (rng.random(n) < 0.05).astype(int),
        }
    )
    weights = search_sample(rows, 2.0, seed=1)
    churner = rows["label"].to_numpy() == 1
    assert (weights[churner] == 1).all()
    kept = weights[~churner] > 0
    floor = SEARCH_MIN_ROWS - churner.sum()  # 2 per churner is ~6,000 stayers: the row floor decides
    assert floor - 400 < kept.sum() < floor + 400
    assert weights[~churner].sum() == pytest.approx((~churner).sum(), rel=0.03)  # stayers keep their weight
    many = search_sample(rows, 8.0, seed=1)  # 8 per churner is above the floor: it decides
    assert 8 * churner.sum() * 0.95 < (many[~churner] > 0).sum() < 8 * churner.sum() * 1.05
    assert np.array_equal(weights, search_sample(rows.sample(frac=1.0, random_state=0).sort_index(), 2.0, 1))
    assert (search_sample(rows.head(SEARCH_MIN_ROWS), 2.0, 1) == 1).all()  # small folds are searched whole
    assert (search_sample(rows, None, 1) == 1).all()


def test_the_search_trains_on_the_sample_and_validates_on_every_row() -> None:
    split = split_by_time(frame(customers=5000), LABELS, SplitConfig(folds=2))
    cv = CVData.of(SPECS, split, nthread=1, search_negatives=2.0, seed=0)
    assert cv.sampled
    for full, searched in zip(cv.folds, cv.search, strict=True):
        assert searched.validation is full.validation
        assert searched.train.num_row() < full.train.num_row()
    settings = ModelConfig(max_rounds=100, early_stopping_rounds=10, nthread=1)
    sampled = cross_validate(dict(PARAMS), cv, settings, search=True)
    every_row = cross_validate(dict(PARAMS), cv, settings)
    assert len(sampled.margin) == len(every_row.margin) == len(split.out_of_fold)
    assert not np.array_equal(sampled.margin, every_row.margin)
    assert abs(sampled.score - every_row.score) < 0.02  # the same problem, seen through fewer stayers
    # The search reads the pooled metric every tenth of the patience; full cross-validation every round.
    every = search_eval_every(settings)
    assert every == 1 and search_eval_every(ModelConfig(early_stopping_rounds=50)) == 5
    coarse = ModelConfig(max_rounds=100, early_stopping_rounds=30, nthread=1)
    read = []
    searched = cross_validate(dict(PARAMS), cv, coarse, report=lambda it, _: read.append(it), search=True)
    assert read and all((it + 1) % 3 == 0 or it == 99 for it in read)
    assert (searched.best_iteration + 1) % 3 == 0 or searched.best_iteration == 99
    whole = CVData.of(SPECS, split, nthread=1, search_negatives=None, seed=0)  # small folds: every round
    read.clear()
    cross_validate(dict(PARAMS), whole, coarse, report=lambda it, _: read.append(it), search=True)
    assert read == list(range(len(read)))


def test_pooled_score_of_each_metric() -> None:
    y = np.array([0, 0, 1, 1, 0, 1])
    margin = np.array([-2.0, -1.0, 0.5, 2.0, 0.7, -0.1])
    assert pooled_score("auc", y, margin) == pytest.approx(7 / 9)
    assert pooled_score("logloss", y, margin) == pytest.approx(log_loss(y, sigmoid(margin)))
    assert 0 < pooled_score("aucpr", y, margin) <= 1


def test_search_space_and_robust_settings_follow_the_churner_count() -> None:
    assert search_space(80)["max_depth"] == (2, 3) and search_space(80)["min_child_weight"][0] >= 5
    assert search_space(1000)["max_depth"][1] == 4
    assert search_space(10_000)["max_depth"] == (2, 6)
    assert search_space(100_000)["max_depth"][1] >= 7
    assert robust_params(80)["max_depth"] == 2 and robust_params(5000)["max_depth"] == 3


def test_refit_rounds_scale_with_the_rows() -> None:
    assert scaled_rounds(99, [1000, 2000, 3000], 4000, 2000) == 200
    assert scaled_rounds(99, [1000], 500, 2000) == 50
    assert scaled_rounds(1999, [100], 1000, 2000) == 2000  # capped by model.max_rounds
    assert scaled_rounds(0, [1000], 10, 2000) == 1


def _prepared() -> tuple[ChurnModel, pd.DataFrame, np.ndarray]:
    data = frame().dropna(subset=["label"]).reset_index(drop=True)
    untrained = ChurnModel.untrained(data, SPECS)
    x, y = untrained.xy(data)
    return untrained, x, y


def test_exported_regression_equals_the_scikit_learn_pipeline() -> None:
    _, x, y = _prepared()
    pipeline = logistic_pipeline(["x1", "x2", "x3"], ["plan"], c=0.1).fit(x, y)
    linear = LinearModel.of_pipeline(pipeline, x)
    assert {c.kind for c in linear.columns} == {"value", "missing", "level", "infrequent"}
    probe = x.copy()
    probe.loc[probe.index[:5], "plan"] = np.nan  # a missing category, never seen in training
    probe.loc[probe.index[5:8], "x1"] = np.nan  # a missing number where training had none
    for rows in (x, probe):
        np.testing.assert_allclose(
            linear.margin(rows), pipeline.decision_function(rows), rtol=1e-10, atol=1e-10
        )
    again = LinearModel.from_dict(linear.to_dict())
    assert again == linear


def test_regression_model_saves_as_json_and_explains_exactly(tmp_path) -> None:
    untrained, x, y = _prepared()
    model = untrained.with_linear(LinearModel.fit(x, y, ["plan"], 1.0))
    directory = model.save(tmp_path / "model")
    assert sorted(p.name for p in directory.iterdir()) == [
        "calibrator.json",
        "feature_spec.json",
        "linear.json",
    ]
    loaded = ChurnModel.load(directory)
    assert loaded.kind == "logreg" and loaded.booster is None
    np.testing.assert_array_equal(loaded.predict_proba(x), model.predict_proba(x))
    shap = contributions(loaded, x)
    np.testing.assert_allclose(shap.sum(axis=1), loaded.margin(x), rtol=1e-5, atol=1e-5)
    # Linear SHAP: a feature's contributions average zero over the training rows.
    np.testing.assert_allclose(shap[:, :-1].mean(axis=0), 0.0, atol=1e-5)
    # x1 raises churn in the data: customers with larger x1 get larger x1 contributions.
    order = np.argsort(x["x1"].to_numpy())
    assert shap[order[-1], 0] > shap[order[0], 0]


def _candidate(name: str, auc: float, log_loss_value: float) -> Candidate:
    return Candidate(name, np.zeros(1), {"roc_auc": auc, "pr_auc": 0.1, "log_loss": log_loss_value}, {})


def test_choose_takes_the_best_pooled_figure_and_the_first_on_ties() -> None:
    a, b, c = _candidate("a", 0.70, 0.30), _candidate("b", 0.72, 0.31), _candidate("c", 0.72, 0.29)
    assert choose([a, b, c], "roc_auc").name == "b"
    assert choose([a, b, c], "log_loss").name == "c"


def _scored(name: str, y: np.ndarray, signal: np.ndarray, noise: float, seed: int) -> Candidate:
    margin = signal + np.random.default_rng(seed).normal(scale=noise, size=len(y))
    return Candidate.of(name, y, margin, {}, None)


def test_one_standard_error_rule_keeps_the_simpler_model_unless_the_lead_is_real() -> None:
    rng = np.random.default_rng(0)
    n = 3000
    customers = pd.Series([f"c{i % 1000}" for i in range(n)])  # three rows per customer, like 3 folds
    signal = rng.normal(size=n)
    y = (rng.random(n) < sigmoid(-2.5 + signal)).astype(int)
    # Nearly the same ranking: the trees lead by a hair (0.0002 AUC, by chance), well inside one
    # standard error of the paired difference (0.0014).
    linear = _scored("logreg", y, signal, 0.30, 1)
    jitter = np.random.default_rng(2).normal(scale=0.1, size=n)
    tied = [linear, Candidate.of("xgboost_tuned", y, linear.margin + jitter, {}, None)]
    assert tied[1].cv["roc_auc"] > tied[0].cv["roc_auc"]
    assert choose(tied, "roc_auc", "best").name == "xgboost_tuned"
    assert choose(tied, "roc_auc", "one_se", y, customers, seed=0).name == "logreg"
    # A clearly better model keeps its lead.
    clear = [_scored("logreg", y, signal, 1.5, 1), _scored("xgboost_tuned", y, signal, 0.1, 2)]
    assert choose(clear, "roc_auc", "one_se", y, customers, seed=0).name == "xgboost_tuned"
    # Log loss: lower is better, the same rule.
    assert choose(tied, "log_loss", "one_se", y, customers, seed=0).name == "logreg"
    errors = paired_standard_errors(tied[1], tied, y, customers, "roc_auc", seed=0)
    assert set(errors) == {"logreg"} and 0 < errors["logreg"] < 0.01


@pytest.mark.parametrize("metric", ["roc_auc", "log_loss"])
def test_bootstrap_metric_equals_the_weighted_metric(metric: str) -> None:
    """The bootstrap's fast ROC-AUC (tie groups sorted once) is scikit-learn's weighted ROC-AUC."""
    rng = np.random.default_rng(5)
    y = (rng.random(4000) < 0.1).astype(int)
    probability = np.round(sigmoid(rng.normal(size=4000) + y), 2)  # many ties
    scorer = weighted_metric(metric, y, probability)
    for weight in (np.ones(4000), rng.integers(0, 3, 4000).astype(np.float64)):
        assert scorer(weight) == pytest.approx(metric_value(metric, y, probability, weight), abs=1e-12)


def test_feature_columns_keep_their_dtypes() -> None:
    untrained, _, _ = _prepared()
    assert untrained.columns[-1] == FeatureColumn("plan", "category", ("basic", "pro", "rare", "team"))
    assert untrained.columns[0] == FeatureColumn("x1", "float64")
