"""Evaluation and calibration, checked against hand-computed numbers and scikit-learn."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import log_loss, roc_auc_score

from churnml.config import CampaignConfig, EvaluationConfig
from churnml.features.catalogue import FeatureSpec, recency_feature
from churnml.training.calibrate import Calibrator, choose_calibrator, fit_isotonic, fit_sigmoid, sigmoid
from churnml.training.evaluate import (
    best_targeting,
    calibration_table,
    expected_calibration_error,
    fit_recency_rule,
    logistic_regression,
    metric_value,
    operating_point,
    profit_curve,
    recency_scores,
    score_report,
    top_fraction_metrics,
)
from churnml.training.model import FeatureColumn
from churnml.training.registry import decide

# Ten customers, highest score first; churners at ranks 1, 2, 4 and 8.
Y = np.array([1, 1, 0, 1, 0, 0, 0, 1, 0, 0])
SCORE = np.linspace(0.9, 0.0, 10)


def test_ece_by_hand() -> None:
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.1, 0.1, 0.7, 0.7, 0.7])
    # Uniform bins: |0 - 0.1| for three rows, |1 - 0.7| for three rows -> (0.3 + 0.9) / 6.
    assert expected_calibration_error(y, p, bins=10, strategy="uniform") == pytest.approx(0.2)
    # Two equal-size bins give the same two groups here.
    assert expected_calibration_error(y, p, bins=2, strategy="quantile") == pytest.approx(0.2)
    assert expected_calibration_error(y, np.array([0, 0, 0, 1, 1, 1.0]), bins=2) == pytest.approx(0.0)


def test_quantile_bins_are_equal_size_and_keep_ties_together() -> None:
    rng = np.random.default_rng(0)
    p = rng.random(1000)
    table = calibration_table((rng.random(1000) < p).astype(int), p, bins=10)
    assert table["count"].tolist() == [100] * 10
    tied = calibration_table(np.zeros(6, int), np.array([0.1, 0.1, 0.1, 0.1, 0.5, 0.6]), bins=3)
    assert tied["count"].tolist()[0] == 4


def test_calibrated_scores_have_small_ece() -> None:
    rng = np.random.default_rng(1)
    p = rng.beta(1, 12, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert expected_calibration_error(y, p) < 0.005
    assert expected_calibration_error(y, np.clip(p * 1.5, 0, 1)) > 0.02


def test_lift_and_capture_by_hand() -> None:
    got = top_fraction_metrics(Y, SCORE, [0.1, 0.2, 0.5])
    # base rate 0.4; top 1 = 1 churner (lift 2.5); top 2 = 2 (2.5); top 5 = 3 churners (lift 1.5).
    assert got["lift_top10"] == pytest.approx(2.5) and got["capture_top10"] == pytest.approx(0.25)
    assert got["lift_top20"] == pytest.approx(2.5) and got["capture_top20"] == pytest.approx(0.5)
    assert got["lift_top50"] == pytest.approx(1.5) and got["capture_top50"] == pytest.approx(0.75)


def test_profit_curve_by_hand() -> None:
    campaign = CampaignConfig(cost_per_contact=10, success_rate=0.5)
    curve = profit_curve(Y, SCORE, np.full(10, 100.0), campaign)
    # Each churner contacted saves 0.5 * 100 = 50; each contact costs 10.
    expected = [0, 40, 80, 70, 110, 100, 90, 80, 120, 110, 100]
    assert curve["profit"].tolist() == pytest.approx(expected)
    best = best_targeting(curve)
    assert best["best_contacted"] == 8 and best["best_profit"] == pytest.approx(120)
    assert best["best_roi"] == pytest.approx(120 / 80) and best["profit_contact_all"] == pytest.approx(100)


def test_profit_uses_each_customers_value() -> None:
    campaign = CampaignConfig(cost_per_contact=1, success_rate=1.0)
    value = np.array([0, 0, 0, 0, 0, 0, 0, 1000, 0, 0], float)
    curve = profit_curve(Y, SCORE, value, campaign)
    assert best_targeting(curve)["best_contacted"] == 8 and curve["profit"].iloc[8] == pytest.approx(992)


def test_operating_point() -> None:
    by_depth = operating_point(Y, SCORE, SCORE, threshold=None, contacted=4)
    assert by_depth["op_precision"] == pytest.approx(0.75) and by_depth["op_recall"] == pytest.approx(0.75)
    assert by_depth["op_threshold"] == pytest.approx(SCORE[3])
    by_threshold = operating_point(Y, SCORE, SCORE, threshold=0.75, contacted=0)
    assert by_threshold["op_flagged_fraction"] == pytest.approx(0.2) and by_threshold["op_precision"] == 1.0


def test_score_report_matches_sklearn() -> None:
    rng = np.random.default_rng(2)
    p = rng.random(500)
    y = (rng.random(500) < p).astype(int)
    report = score_report("m", y, p, np.full(500, 500.0), EvaluationConfig(), CampaignConfig())
    assert report.metrics["roc_auc"] == pytest.approx(roc_auc_score(y, p))
    assert report.metrics["log_loss"] == pytest.approx(log_loss(y, p))
    assert metric_value("roc_auc", y, p) == pytest.approx(report.metrics["roc_auc"])
    assert metric_value("brier", y, p) == pytest.approx(report.metrics["brier"])
    assert {"lift_top5", "capture_top20", "best_roi", "op_precision", "ece"} <= set(report.metrics)


def test_isotonic_calibrator_is_sklearns_and_round_trips_as_json() -> None:
    rng = np.random.default_rng(3)
    margin = rng.normal(size=3000)
    y = (rng.random(3000) < sigmoid(2 * margin - 1)).astype(int)
    calibrator = fit_isotonic(margin, y)
    reference = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(margin, y)
    grid = np.linspace(-4, 4, 101)
    assert np.allclose(calibrator(grid), np.clip(reference.predict(grid), 1e-4, 1 - 1e-4), atol=1e-6)
    again = Calibrator.from_dict(json.loads(json.dumps(calibrator.to_dict())))
    assert np.array_equal(again(grid), calibrator(grid))


def test_isotonic_calibration_keeps_the_models_ranking() -> None:
    """Flat isotonic steps must not tie customers the model ranked: ROC-AUC and order survive."""
    rng = np.random.default_rng(5)
    margin = rng.normal(size=400)  # a small business: few churners, few wide steps
    y = (rng.random(400) < sigmoid(margin - 2)).astype(int)
    calibrator = fit_isotonic(margin, y)
    assert len(set(calibrator.y)) < 20  # the fitted steps are few and flat...
    probability = calibrator(margin)
    assert (np.diff(probability[np.argsort(margin)]) > 0).all()  # ...and yet no two customers tie
    assert roc_auc_score(y, probability) == pytest.approx(roc_auc_score(y, margin))
    assert np.all((probability > 0) & (probability < 1))


def test_sigmoid_calibration_recovers_platt_parameters() -> None:
    rng = np.random.default_rng(4)
    margin = rng.normal(size=50_000)
    y = (rng.random(len(margin)) < sigmoid(0.5 * margin - 2)).astype(int)
    calibrator = fit_sigmoid(margin, y)
    assert calibrator.a == pytest.approx(0.5, abs=0.05) and calibrator.b == pytest.approx(-2, abs=0.05)
    assert Calibrator.from_dict(calibrator.to_dict()) == calibrator


def test_choose_calibrator_prefers_sigmoid_when_the_truth_is_logistic() -> None:
    rng = np.random.default_rng(5)
    margin = rng.normal(size=4000)
    y = (rng.random(len(margin)) < sigmoid(0.7 * margin - 1.5)).astype(int)
    folds = np.arange(len(y)) % 5
    calibrator, scores = choose_calibrator(margin, y, folds, "auto")
    assert calibrator.method == "sigmoid" and scores["sigmoid"] < scores["isotonic"]
    assert choose_calibrator(margin, y, folds, "none")[0] == Calibrator()
    assert choose_calibrator(margin, y, folds, "isotonic")[0].method == "isotonic"


def test_calibrator_rejects_bad_json() -> None:
    with pytest.raises(ValueError):
        Calibrator.from_dict({"method": "isotonic", "x": [1, 0], "y": [0.1, 0.2]})
    with pytest.raises(ValueError):
        Calibrator.from_dict({"method": "platt"})


def test_recency_baseline_ranks_by_days_and_never_active_is_riskiest() -> None:
    spec = FeatureSpec("plan", "billing", "customers", "current", None, "category", "Plan: {value}", "plan")
    specs = [spec, dataclasses.replace(spec, name="days_since_last_login", family="recency", dtype="float64")]
    assert recency_feature(specs, None) == "days_since_last_login"
    assert recency_feature(specs, "other") == "other"
    assert recency_feature(specs[:1], None) is None
    train = pd.DataFrame({"days": [1, 2, 30, 40, np.nan, 3], "label": [0, 0, 1, 1, 1, 0]})
    rule = fit_recency_rule(train, "days")
    score, probability = recency_scores(rule, pd.DataFrame({"days": [np.nan, 50, 1]}), "days")
    assert score[0] > score[1] > score[2]
    assert probability[0] >= probability[1] >= probability[2]


def test_logistic_regression_baseline_handles_categories_and_missing_values() -> None:
    rng = np.random.default_rng(6)
    n = 400
    frame = pd.DataFrame(
        {
            "x": np.where(rng.random(n) < 0.1, np.nan, rng.exponential(5, n)),
            "plan": pd.Categorical(rng.choice(["a", "b", None], n), categories=["a", "b"]),
        }
    )
    y = (rng.random(n) < np.where(frame["plan"] == "a", 0.6, 0.1)).astype(int)
    columns = (FeatureColumn("x", "float64"), FeatureColumn("plan", "category", ("a", "b")))
    model = logistic_regression(columns).fit(frame, y)
    unseen = frame.assign(plan=pd.Categorical(["c"] * n))
    assert roc_auc_score(y, model.predict_proba(frame)[:, 1]) > 0.7
    assert np.isfinite(model.predict_proba(unseen)).all()


@pytest.mark.parametrize(
    ("metric", "challenger", "champion", "version", "margin", "promoted"),
    [
        ("roc_auc", 0.80, None, None, 0.0, True),
        ("roc_auc", 0.81, 0.80, "1", 0.0, True),
        ("roc_auc", 0.80, 0.80, "1", 0.0, False),
        ("roc_auc", 0.805, 0.80, "1", 0.01, False),
        ("log_loss", 0.20, 0.25, "1", 0.0, True),
        ("log_loss", 0.30, 0.25, "1", 0.0, False),
    ],
)
def test_promotion_rule(
    metric: str, challenger: float, champion: float | None, version: str | None, margin: float, promoted: bool
) -> None:
    decision = decide(metric, challenger, champion, version, margin)
    assert decision.promoted is promoted
    assert decision.as_tags()["promotion.promoted"] == str(promoted).lower()


def test_incomparable_champion_is_kept() -> None:
    decision = decide("roc_auc", 0.9, None, "3", comparable=False)
    assert not decision.promoted and "promote by hand" in decision.reason
