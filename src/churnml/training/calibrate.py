"""Probability calibration on a held-out slice, so that a 30% risk means 30% of such customers churn.

Calibrators map the booster's raw margin (log-odds) to a probability and are stored as a handful of JSON
numbers (isotonic thresholds, or sigmoid a/b), never pickles: any service can load and audit them.
The method is chosen by cross-validated log loss on the calibration slice (folds by customer), because
choosing on the rows a calibrator was fitted to would always favour the more flexible isotonic fit.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss

from churnml.training.split import customer_fraction

# Isotonic steps reach 0 or 1 where a bin had no churner (or no stayer); no customer is that certain.
PROBABILITY_FLOOR = 1e-4
# Isotonic steps are flat: every customer on a step would tie, and the ranking the model made (the risk
# list's order, its ROC-AUC) would be lost to the calibration. A slope this small breaks the ties in the
# margin's order and moves no probability by more than half of it.
TIE_BREAK = 1e-6

Method = Literal["none", "isotonic", "sigmoid"]


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@dataclass(frozen=True)
class Calibrator:
    """``method`` none: sigmoid(margin); sigmoid: sigmoid(a * margin + b); isotonic: interpolate x -> y
    (strictly increasing: ties broken in the margin's order, see ``TIE_BREAK``)."""

    method: Method = "none"
    a: float = 1.0
    b: float = 0.0
    x: tuple[float, ...] = field(default=())
    y: tuple[float, ...] = field(default=())

    def __call__(self, margin: np.ndarray) -> np.ndarray:
        margin = np.asarray(margin, dtype=np.float64)
        if self.method == "isotonic":
            return np.interp(margin, self.x, self.y) + TIE_BREAK * (sigmoid(margin) - 0.5)
        return sigmoid(self.a * margin + self.b)

    def to_dict(self) -> dict[str, Any]:
        if self.method == "isotonic":
            return {"method": "isotonic", "x": list(self.x), "y": list(self.y)}
        return {"method": self.method, "a": self.a, "b": self.b}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Calibrator:
        method = data["method"]
        if method == "isotonic":
            x, y = tuple(map(float, data["x"])), tuple(map(float, data["y"]))
            if len(x) != len(y) or not x or any(b < a for a, b in itertools.pairwise(x)):
                raise ValueError("isotonic calibrator needs equal-length, non-empty, sorted x and y")
            return cls(method="isotonic", x=x, y=y)
        if method not in ("none", "sigmoid"):
            raise ValueError(f"unknown calibration method {method!r}")
        return cls(method=method, a=float(data.get("a", 1.0)), b=float(data.get("b", 0.0)))


def fit_sigmoid(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """Platt scaling on the margin: a two-parameter logistic regression, unpenalised."""
    model = LogisticRegression(C=np.inf, max_iter=1000).fit(np.asarray(margin, np.float64).reshape(-1, 1), y)
    return Calibrator(method="sigmoid", a=float(model.coef_[0, 0]), b=float(model.intercept_[0]))


def fit_isotonic(margin: np.ndarray, y: np.ndarray) -> Calibrator:
    """Monotone step fit of churn rate on the margin; flat beyond the fitted range."""
    iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
        np.asarray(margin, np.float64), y
    )
    values = np.clip(iso.y_thresholds_, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return Calibrator(method="isotonic", x=tuple(map(float, iso.X_thresholds_)), y=tuple(map(float, values)))


FITTERS = {"isotonic": fit_isotonic, "sigmoid": fit_sigmoid}


def cross_validated_log_loss(
    margin: np.ndarray, y: np.ndarray, folds: np.ndarray, method: Literal["isotonic", "sigmoid"]
) -> float:
    """Log loss of out-of-fold calibrated probabilities (each fold calibrated by the others)."""
    predicted = np.empty(len(y), dtype=np.float64)
    for fold in np.unique(folds):
        held = folds == fold
        predicted[held] = FITTERS[method](margin[~held], y[~held])(margin[held])
    return float(log_loss(y, np.clip(predicted, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR), labels=[0, 1]))


def choose_calibrator(
    margin: np.ndarray,
    y: np.ndarray,
    folds: np.ndarray,
    method: Literal["auto", "isotonic", "sigmoid", "none"] = "auto",
) -> tuple[Calibrator, dict[str, float]]:
    """Fit the configured (or cross-validation-chosen) calibrator on all rows; return it with CV scores.

    ``folds`` assigns each row to a fold (by customer, so one customer's rows never sit on both sides).
    """
    margin, y = np.asarray(margin, np.float64), np.asarray(y, np.int64)
    if method == "none":
        return Calibrator(), {}
    scores: dict[str, float] = {}
    if method == "auto":
        scores = {m: cross_validated_log_loss(margin, y, folds, m) for m in ("isotonic", "sigmoid")}
        # Ties go to sigmoid: two parameters generalise more safely than a step function.
        method = "isotonic" if scores["isotonic"] < scores["sigmoid"] else "sigmoid"
    return FITTERS[method](margin, y), scores


def fit_calibrator(
    margin: np.ndarray,
    y: np.ndarray,
    customer_ids: pd.Series,
    method: Literal["auto", "isotonic", "sigmoid", "none"],
    folds: int,
    seed: int,
) -> tuple[Calibrator, dict[str, float]]:
    """``choose_calibrator`` with folds drawn by a hash of the customer id (stable, seeded)."""
    fold = np.minimum((customer_fraction(customer_ids, seed + 1) * folds).astype(np.int64), folds - 1)
    return choose_calibrator(margin, y, fold, method)
