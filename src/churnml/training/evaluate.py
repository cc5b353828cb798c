"""Evaluation on the out-of-time test cutoff: metrics, campaign economics, baselines and plots.

Every scorer (the calibrated model, the uncalibrated booster, logistic regression and a recency rule) is
judged on the same rows by the same functions, so the comparison is like for like. Ranking metrics use
the scorer's ranking score; probability metrics (log loss, Brier, ECE) use its probability.

ECE uses equal-frequency bins by default: with a churn rate of a few percent, equal-width bins put almost
every customer in the first bin and hide miscalibration where the risky customers are.

The campaign: contact the ``k`` riskiest customers; each contact costs ``cost_per_contact`` and retains a
would-be churner with probability ``success_rate``, saving that customer's value. Its expected profit on
the test rows is ``success_rate * sum(value of churners among the k) - cost * k``, for every ``k``. The
value is ``churnml.features.value.customer_value``, the risk list's: the profit-optimal depth and the
revenue at risk put the same figure on a customer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
    roc_curve,
)
from sklearn.pipeline import Pipeline

from churnml import io
from churnml.config import CampaignConfig, CustomerValueConfig, EvaluationConfig
from churnml.features.catalogue import recency_feature
from churnml.features.value import customer_value
from churnml.training.linear import logistic_pipeline
from churnml.training.model import ChurnModel, FeatureColumn

EPS = 1e-6
MODEL, UNCALIBRATED, LOGREG, RECENCY = "model", "uncalibrated", "logreg", "recency"
LABELS = {
    MODEL: "XGBoost (calibrated)",
    UNCALIBRATED: "XGBoost (uncalibrated)",
    LOGREG: "logistic regression",
    RECENCY: "recency rule",
}


# --- metrics -----------------------------------------------------------------------------------------


def _bins(p: np.ndarray, bins: int, strategy: str) -> np.ndarray:
    """Bin index per row: equal-width on [0, 1], or equal-frequency by rank (ties kept together)."""
    if strategy == "uniform":
        return np.minimum((p * bins).astype(np.int64), bins - 1)
    ranks = pd.Series(p).rank(method="min").to_numpy() - 1
    return np.minimum((ranks * bins / len(p)).astype(np.int64), bins - 1)


def calibration_table(
    y: np.ndarray, p: np.ndarray, bins: int = 10, strategy: str = "quantile"
) -> pd.DataFrame:
    """Per bin: rows, mean predicted probability, observed churn rate."""
    frame = pd.DataFrame({"bin": _bins(np.asarray(p, float), bins, strategy), "p": p, "y": y})
    table = frame.groupby("bin", sort=True).agg(
        count=("y", "size"), predicted=("p", "mean"), observed=("y", "mean")
    )
    return table.reset_index()


def expected_calibration_error(
    y: np.ndarray, p: np.ndarray, bins: int = 10, strategy: str = "quantile"
) -> float:
    """Row-weighted mean |observed rate - mean prediction| over bins."""
    table = calibration_table(y, p, bins, strategy)
    return float(
        (table["count"] * (table["observed"] - table["predicted"]).abs()).sum() / table["count"].sum()
    )


def ranking(score: np.ndarray) -> np.ndarray:
    """Row order from highest to lowest score; ties keep row order (deterministic)."""
    return np.argsort(-np.asarray(score, dtype=np.float64), kind="stable")


def _key(fraction: float) -> str:
    return f"top{fraction * 100:g}"


def top_fraction_metrics(y: np.ndarray, score: np.ndarray, fractions: Sequence[float]) -> dict[str, float]:
    """Lift (churn rate among the top share / overall rate) and capture (share of all churners caught)."""
    y_sorted = np.asarray(y, float)[ranking(score)]
    total, base = y_sorted.sum(), y_sorted.mean()
    result = {}
    for fraction in fractions:
        k = max(1, round(fraction * len(y_sorted)))
        caught = y_sorted[:k].sum()
        result[f"lift_{_key(fraction)}"] = float(caught / k / base) if base > 0 else float("nan")
        result[f"capture_{_key(fraction)}"] = float(caught / total) if total > 0 else float("nan")
    return result


def profit_curve(
    y: np.ndarray, score: np.ndarray, value: np.ndarray, campaign: CampaignConfig
) -> pd.DataFrame:
    """Expected campaign profit for contacting the top ``k`` customers, for k = 0..n."""
    order = ranking(score)
    saved = np.concatenate([[0.0], np.cumsum(campaign.success_rate * (np.asarray(value, float) * y)[order])])
    contacted = np.arange(len(saved))
    cost = campaign.cost_per_contact * contacted
    profit = saved - cost
    with np.errstate(divide="ignore", invalid="ignore"):
        roi = np.where(cost > 0, profit / np.where(cost > 0, cost, 1.0), np.nan)
    return pd.DataFrame(
        {
            "contacted": contacted,
            "fraction": contacted / max(len(order), 1),
            "retained_value": saved,
            "cost": cost,
            "profit": profit,
            "roi": roi,
        }
    )


def best_targeting(curve: pd.DataFrame) -> dict[str, float]:
    """The most profitable depth (the smallest, on ties) and what contacting everyone would give."""
    best = curve.iloc[int(np.argmax(curve["profit"].to_numpy()))]
    return {
        "best_profit": float(best["profit"]),
        "best_contacted": float(best["contacted"]),
        "best_fraction": float(best["fraction"]),
        "best_roi": float(best["roi"]) if best["contacted"] > 0 else 0.0,
        "profit_contact_all": float(curve["profit"].iloc[-1]),
    }


def operating_point(
    y: np.ndarray, score: np.ndarray, probability: np.ndarray, threshold: float | None, contacted: int
) -> dict[str, float]:
    """Precision/recall when flagging p >= threshold, or (threshold None) the ``contacted`` riskiest."""
    y = np.asarray(y, int)
    flagged = np.zeros(len(y), bool)
    if threshold is None:
        flagged[ranking(score)[:contacted]] = True
        cut = float(np.min(probability[flagged])) if flagged.any() else 1.0
    else:
        flagged = np.asarray(probability) >= threshold
        cut = threshold
    hits = int((flagged & (y == 1)).sum())
    return {
        "op_threshold": cut,
        "op_flagged_fraction": float(flagged.mean()),
        "op_precision": hits / int(flagged.sum()) if flagged.any() else 0.0,
        "op_recall": hits / max(int(y.sum()), 1),
    }


def metric_value(
    metric: str, y: np.ndarray, probability: np.ndarray, weight: np.ndarray | None = None
) -> float:
    """One headline metric by name (the champion/challenger comparison uses it on both models)."""
    y, probability = np.asarray(y, dtype=np.int64), np.asarray(probability, dtype=np.float64)
    functions = {
        "roc_auc": lambda: roc_auc_score(y, probability, sample_weight=weight),
        "pr_auc": lambda: average_precision_score(y, probability, sample_weight=weight),
        "log_loss": lambda: log_loss(
            y, np.clip(probability, EPS, 1 - EPS), labels=[0, 1], sample_weight=weight
        ),
        "brier": lambda: brier_score_loss(y, probability, sample_weight=weight),
    }
    return float(functions[metric]())


def holdout_figures(y: np.ndarray, probability: np.ndarray, evaluation: EvaluationConfig) -> dict[str, float]:
    """ROC-AUC, PR-AUC, log loss, Brier and ECE of one model's test probabilities (every candidate's)."""
    figures = {m: metric_value(m, y, probability) for m in ("roc_auc", "pr_auc", "log_loss", "brier")}
    figures["ece"] = expected_calibration_error(y, probability, evaluation.ece_bins, evaluation.ece_strategy)
    return figures


@dataclass(frozen=True)
class ScoreReport:
    """One scorer on the test rows: its metrics, profit curve and calibration table."""

    name: str
    metrics: dict[str, float]
    profit: pd.DataFrame
    calibration: pd.DataFrame
    score: np.ndarray
    probability: np.ndarray


def score_report(
    name: str,
    y: np.ndarray,
    probability: np.ndarray,
    value: np.ndarray,
    evaluation: EvaluationConfig,
    campaign: CampaignConfig,
    score: np.ndarray | None = None,
) -> ScoreReport:
    """All metrics of one scorer; ``score`` (default: the probability) orders customers for ranking metrics."""
    y = np.asarray(y, dtype=np.int64)
    probability = np.asarray(probability, dtype=np.float64)
    score = probability if score is None else np.asarray(score, dtype=np.float64)
    clipped = np.clip(probability, EPS, 1 - EPS)
    curve = profit_curve(y, score, value, campaign)
    best = best_targeting(curve)
    metrics = {
        "roc_auc": float(roc_auc_score(y, score)),
        "pr_auc": float(average_precision_score(y, score)),
        "log_loss": float(log_loss(y, clipped, labels=[0, 1])),
        "brier": float(brier_score_loss(y, probability)),
        "ece": expected_calibration_error(y, probability, evaluation.ece_bins, evaluation.ece_strategy),
        "mean_predicted": float(probability.mean()),
        "churn_rate": float(y.mean()),
        **top_fraction_metrics(y, score, evaluation.top_fractions),
        **best,
        **operating_point(y, score, probability, evaluation.threshold, int(best["best_contacted"])),
    }
    table = calibration_table(y, probability, evaluation.ece_bins, evaluation.ece_strategy)
    return ScoreReport(name, metrics, curve, table, score, probability)


# --- baselines ---------------------------------------------------------------------------------------


NEVER_ACTIVE_DAYS = 1e6  # a customer with no activity at all ranks as the most inactive


def _recency_score(frame: pd.DataFrame, feature: str) -> np.ndarray:
    """Days since last activity (higher = riskier)."""
    days = pd.to_numeric(frame[feature], errors="coerce").astype(float).to_numpy()
    return np.where(np.isnan(days), NEVER_ACTIVE_DAYS, days)


def fit_recency_rule(train: pd.DataFrame, feature: str) -> IsotonicRegression:
    """The rule ranks by recency; an isotonic map fitted on the training rows gives it probabilities."""
    score = _recency_score(train, feature)
    return IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(score, train["label"].to_numpy(int))


def recency_scores(
    rule: IsotonicRegression, frame: pd.DataFrame, feature: str
) -> tuple[np.ndarray, np.ndarray]:
    score = _recency_score(frame, feature)
    return score, rule.predict(score)


def logistic_regression(columns: Sequence[FeatureColumn]) -> Pipeline:
    """The baseline: ``churnml.training.linear``'s pipeline (the logreg candidate's) at its default strength."""
    numeric = [c.name for c in columns if c.dtype != "category"]
    categorical = [c.name for c in columns if c.dtype == "category"]
    return logistic_pipeline(numeric, categorical)


# --- the whole evaluation ----------------------------------------------------------------------------


def feature_importance(model: ChurnModel) -> pd.DataFrame:
    """Total gain and split count per feature (features never used get zero); for a logistic regression
    the |coefficients| of the feature's standardised design columns, and no splits."""
    if model.linear is not None:
        gain: dict[str, Any] = model.linear.importance(model.feature_names)
        weight: dict[str, Any] = {}
    else:
        gain = model.trained_booster.get_score(importance_type="total_gain")
        weight = model.trained_booster.get_score(importance_type="weight")
    frame = pd.DataFrame(
        {
            "feature": model.feature_names,
            "total_gain": [float(gain.get(n, 0.0)) for n in model.feature_names],
            "splits": [int(weight.get(n, 0)) for n in model.feature_names],
        }
    )
    frame["share"] = frame["total_gain"] / max(frame["total_gain"].sum(), EPS)
    return frame.sort_values(["total_gain", "feature"], ascending=[False, True], kind="stable").reset_index(
        drop=True
    )


@dataclass(frozen=True)
class Evaluation:
    """Reports per scorer on the test rows, plus the model's feature importance."""

    reports: dict[str, ScoreReport]
    importance: pd.DataFrame
    y: np.ndarray
    notes: tuple[str, ...] = ()

    @property
    def model(self) -> ScoreReport:
        return self.reports[MODEL]

    def metrics(self) -> dict[str, float]:
        """Flat metrics for tracking: test_<metric> for the model, test_<scorer>_<metric> for others."""
        flat = {}
        for name, report in self.reports.items():
            prefix = "test_" if name == MODEL else f"test_{name}_"
            flat.update({f"{prefix}{k}": v for k, v in report.metrics.items() if np.isfinite(v)})
        return flat

    def write(self, directory: Path) -> list[Path]:
        """metrics.json, per-scorer profit and calibration tables, importance, and the plots."""
        directory.mkdir(parents=True, exist_ok=True)
        paths = [
            io.write_json(
                directory / "metrics.json",
                {"metrics": {n: r.metrics for n, r in self.reports.items()}, "notes": list(self.notes)},
            ),
            io.write_csv(directory / "feature_importance.csv", self.importance),
        ]
        profit = pd.concat([r.profit.assign(scorer=n) for n, r in self.reports.items()], ignore_index=True)
        calibration = pd.concat(
            [r.calibration.assign(scorer=n) for n, r in self.reports.items()], ignore_index=True
        )
        paths.append(io.write_csv(directory / "profit_curve.csv", profit))
        paths.append(io.write_csv(directory / "calibration.csv", calibration))
        return paths + save_plots(self, directory)


def evaluate(
    model: ChurnModel,
    train: pd.DataFrame,
    test: pd.DataFrame,
    evaluation: EvaluationConfig,
    campaign: CampaignConfig,
    value_config: CustomerValueConfig,
) -> Evaluation:
    """Score the test rows with the model and the baselines (fitted on ``train``) and report them all;
    the campaign values each test customer as the risk list would (``value_config``)."""
    y = test["label"].to_numpy(dtype=np.int64)
    value, basis = customer_value(test, value_config)
    margin = model.margin(test)

    def report(name: str, probability: np.ndarray, score: np.ndarray | None = None) -> ScoreReport:
        return score_report(name, y, probability, value, evaluation, campaign, score)

    reports = {
        MODEL: report(MODEL, model.calibrator(margin)),
        UNCALIBRATED: report(UNCALIBRATED, 1 / (1 + np.exp(-margin))),
    }
    logreg = logistic_regression(model.columns).fit(model.prepare(train), train["label"].to_numpy(int))
    reports[LOGREG] = report(LOGREG, logreg.predict_proba(model.prepare(test))[:, 1])
    notes = [f"customer value: {basis}"]
    feature = recency_feature(model.specs, evaluation.recency_feature)
    if feature is None or feature not in test.columns:
        notes.append(
            f"recency baseline skipped: no recency feature found (configured: {evaluation.recency_feature})"
        )
    else:
        rule = fit_recency_rule(train, feature)
        score, probability = recency_scores(rule, test, feature)
        reports[RECENCY] = report(RECENCY, probability, score)
        notes.append(f"recency rule ranks by {feature}")
    return Evaluation(reports=reports, importance=feature_importance(model), y=y, notes=tuple(notes))


# --- plots (matplotlib's object API: no pyplot global state, no display needed) ---------------------

RANKED = (MODEL, LOGREG, RECENCY)


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def save_plots(evaluation: Evaluation, directory: Path) -> list[Path]:
    """ROC, PR, calibration, gains/lift, profit and feature importance as PNG files."""
    reports = evaluation.reports
    ranked = [reports[n] for n in RANKED if n in reports]
    y = evaluation.y
    figures = {}

    fig, ax = _figure()
    for r in ranked:
        fpr, tpr, _ = roc_curve(y, r.score)
        ax.plot(fpr, tpr, label=f"{LABELS[r.name]} (AUC {r.metrics['roc_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="ROC, test cutoff")
    ax.legend(loc="lower right")
    figures["roc.png"] = fig

    fig, ax = _figure()
    for r in ranked:
        precision, recall, _ = precision_recall_curve(y, r.score)
        ax.plot(recall, precision, label=f"{LABELS[r.name]} (AP {r.metrics['pr_auc']:.3f})")
    ax.axhline(y.mean(), ls=":", c="grey", label=f"churn rate {y.mean():.1%}")
    ax.set(xlabel="recall", ylabel="precision", title="Precision-recall, test cutoff")
    ax.legend(loc="upper right")
    figures["pr.png"] = fig

    fig, ax = _figure()
    calibrated = [n for n in (MODEL, UNCALIBRATED, LOGREG) if n in reports]
    top = max(
        [0.05] + [float(reports[n].calibration[["predicted", "observed"]].max().max()) for n in calibrated]
    )
    for name in calibrated:
        t = reports[name].calibration
        ax.plot(
            t["predicted"],
            t["observed"],
            marker="o",
            label=f"{LABELS[name]} (ECE {reports[name].metrics['ece']:.3f})",
        )
    ax.plot([0, top], [0, top], ls=":", c="grey", label="perfect")
    ax.set(
        xlabel="mean predicted probability",
        ylabel="observed churn rate",
        title="Calibration (equal-size bins)",
    )
    ax.legend(loc="upper left")
    figures["calibration.png"] = fig

    fig = _figure(10, 4.5)[0]
    fig.clear()
    gain_ax, lift_ax = fig.subplots(1, 2)
    for r in ranked:
        y_sorted = y[ranking(r.score)]
        share = np.arange(1, len(y) + 1) / len(y)
        captured = np.cumsum(y_sorted) / max(y.sum(), 1)
        gain_ax.plot(share, captured, label=LABELS[r.name])
        shown = share >= 0.01  # the first handful of customers make a noisy, uninformative spike
        lift_ax.plot(share[shown], (captured / share)[shown], label=LABELS[r.name])
    gain_ax.plot([0, 1], [0, 1], ls=":", c="grey", label="random")
    gain_ax.set(
        xlabel="share of customers contacted", ylabel="share of churners captured", title="Cumulative gain"
    )
    lift_ax.axhline(1, ls=":", c="grey")
    lift_ax.set(xlabel="share of customers contacted", ylabel="lift", title="Lift")
    gain_ax.legend(loc="lower right")
    figures["lift_gain.png"] = fig

    fig, ax = _figure()
    for r in ranked:
        ax.plot(r.profit["fraction"], r.profit["profit"], label=LABELS[r.name])
    best = reports[MODEL].metrics
    ax.axvline(best["best_fraction"], ls="--", c="grey")
    ax.annotate(
        f"best: {best['best_fraction']:.0%} contacted\nprofit {best['best_profit']:,.0f}, ROI {best['best_roi']:.0%}",
        (best["best_fraction"], best["best_profit"]),
        xytext=(10, -30),
        textcoords="offset points",
    )
    ax.axhline(0, c="black", lw=0.5)
    ax.set(
        xlabel="share of customers contacted (highest risk first)",
        ylabel="expected profit",
        title="Retention campaign",
    )
    ax.legend(loc="lower left")
    figures["profit.png"] = fig

    imp = evaluation.importance.head(20).iloc[::-1]
    fig, ax = _figure(7, max(3.0, 0.3 * len(imp) + 1))
    ax.barh(imp["feature"], imp["share"])
    ax.set(xlabel="share of total gain", title="Feature importance (XGBoost gain)")
    figures["feature_importance.png"] = fig

    paths = []
    for name, figure in figures.items():
        paths.append(io.write_with(directory / name, partial(figure.savefig, format="png", dpi=110)))
    return paths


def summary_rows(evaluation: Evaluation) -> list[dict[str, Any]]:
    """Headline figures per scorer, for the CLI's table."""
    keep = (
        "roc_auc",
        "pr_auc",
        "log_loss",
        "brier",
        "ece",
        "lift_top10",
        "capture_top10",
        "best_profit",
        "best_fraction",
    )
    return [
        {"scorer": LABELS[n], **{k: r.metrics.get(k) for k in keep}} for n, r in evaluation.reports.items()
    ]
