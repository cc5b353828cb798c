"""Out-of-time split: train on earlier cutoffs, validate on a later one, test on the latest labeled one.

A label at cutoff ``c`` looks at ``[c, c + horizon + grace)``. A row whose label window reaches past the
start of a later segment has seen that segment's future, so it is purged: training rows must have their
label fully observed before the first validation cutoff, and training and validation rows before the
test cutoff. The same customer may appear in several segments (at different cutoffs): that is how the
model is used, scoring existing customers with what is known about them at the cutoff.

Validation customers are then divided by a hash of ``customer_id`` into a tuning slice (early stopping,
Optuna) and a calibration slice (fitting and choosing the calibrator), so that the calibrator is fitted
on rows that picked neither the trees nor the hyperparameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import SplitConfig
from churnml.errors import ChurnmlError


@dataclass(frozen=True)
class Split:
    """Row subsets of a training frame (same columns), plus the boundaries that made them."""

    train: pd.DataFrame
    validation: pd.DataFrame
    calibration: pd.DataFrame
    test: pd.DataFrame
    boundaries: dict[str, Any]

    def fit_rows(self, refit_on: str) -> pd.DataFrame:
        """Rows the final model (and the baselines) are fitted on: train, or train + the tuning slice."""
        if refit_on == "train":
            return self.train
        return pd.concat([self.train, self.validation], ignore_index=True)

    def params(self) -> dict[str, str]:
        """Boundaries flattened for logging as MLflow params."""
        return {
            f"split.{k}": ",".join(map(str, v)) if isinstance(v, list) else str(v)
            for k, v in self.boundaries.items()
        }


def label_window_days(label_settings: dict[str, Any]) -> int:
    """How many days after a cutoff its label looks at (horizon plus the renewal grace period)."""
    return int(label_settings["horizon_days"]) + int(label_settings.get("grace_days") or 0)


def customer_fraction(customer_ids: pd.Series, seed: int) -> np.ndarray:
    """A stable pseudo-random number in [0, 1) per customer: same id and seed, same number, any row order."""
    key = f"churnml{seed:09d}"[-16:].rjust(16, "0")
    hashed = pd.util.hash_array(customer_ids.astype(str).to_numpy(dtype=object), hash_key=key)
    return (hashed >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def fully_labeled_cutoffs(frame: pd.DataFrame) -> list[pd.Timestamp]:
    """Cutoffs with at least one row whose every row has an observed label."""
    per_cutoff = frame.groupby("cutoff", sort=True)["label"].agg(["size", "count"])
    return [
        pd.Timestamp(c)
        for c in per_cutoff.index[(per_cutoff["count"] == per_cutoff["size"]) & (per_cutoff["size"] > 0)]
    ]


def _dates(cutoffs) -> list[str]:
    return [pd.Timestamp(c).date().isoformat() for c in cutoffs]


def split_by_time(
    frame: pd.DataFrame, label_settings: dict[str, Any], config: SplitConfig, seed: int
) -> Split:
    """Split a training frame (customer_id, cutoff, label, features...) out of time; see the module doc."""
    labeled_cutoffs = fully_labeled_cutoffs(frame)
    if not labeled_cutoffs:
        raise ChurnmlError("the training set has no fully labeled cutoff: nothing to test on")
    if config.test_cutoff is None:
        test_cutoff = labeled_cutoffs[-1]
    else:
        test_cutoff = pd.Timestamp(config.test_cutoff)
        if test_cutoff not in labeled_cutoffs:
            raise ChurnmlError(
                f"split.test_cutoff={config.test_cutoff} is not a fully labeled cutoff of the training set; "
                f"labeled cutoffs: {', '.join(_dates(labeled_cutoffs))}"
            )
    window = pd.Timedelta(days=label_window_days(label_settings))
    # Labels of earlier cutoffs must be complete before the test cutoff: its future stays unseen.
    before_test = [c for c in labeled_cutoffs if c < test_cutoff and c + window <= test_cutoff]
    if len(before_test) < config.validation_cutoffs + 1:
        raise ChurnmlError(
            f"need {config.validation_cutoffs + 1} labeled cutoffs whose label window "
            f"({window.days} days) ends by the test cutoff {test_cutoff.date()}, found {len(before_test)}: "
            "simulate/collect more months, add cutoffs or lower split.validation_cutoffs"
        )
    validation_cutoffs = before_test[-config.validation_cutoffs :]
    first_validation = validation_cutoffs[0]
    train_cutoffs = [c for c in before_test if c < first_validation and c + window <= first_validation]
    if config.train_cutoffs is not None:
        train_cutoffs = train_cutoffs[-config.train_cutoffs :]
    if not train_cutoffs:
        raise ChurnmlError(
            f"no training cutoff has its label window ({window.days} days) complete before the first "
            f"validation cutoff {first_validation.date()}: add earlier cutoffs or lower split.validation_cutoffs"
        )
    used = set(train_cutoffs) | set(validation_cutoffs) | {test_cutoff}
    gap = [c for c in labeled_cutoffs if c < test_cutoff and c >= train_cutoffs[0] and c not in used]

    cutoff = frame["cutoff"]
    train = frame.loc[cutoff.isin(train_cutoffs)].reset_index(drop=True)
    validation_all = frame.loc[cutoff.isin(validation_cutoffs)].reset_index(drop=True)
    test = frame.loc[cutoff == test_cutoff].reset_index(drop=True)
    held_out = customer_fraction(validation_all["customer_id"], seed) < config.calibration_fraction
    validation = validation_all.loc[~held_out].reset_index(drop=True)
    calibration = validation_all.loc[held_out].reset_index(drop=True)
    for name, part in (("tuning", validation), ("calibration", calibration)):
        if part["label"].nunique() < 2:
            raise ChurnmlError(
                f"the validation cutoffs' {name} slice has {len(part)} rows and not both labels: "
                "more customers or validation cutoffs are needed"
            )
    boundaries = {
        "label_window_days": window.days,
        "train_cutoffs": _dates(train_cutoffs),
        "validation_cutoffs": _dates(validation_cutoffs),
        "test_cutoff": test_cutoff.date().isoformat(),
        "purged_cutoffs": _dates(gap),
        "calibration_fraction": config.calibration_fraction,
        "train_rows": len(train),
        "validation_rows": len(validation),
        "calibration_rows": len(calibration),
        "test_rows": len(test),
        "train_churn_rate": round(float(train["label"].mean()), 5),
        "test_churn_rate": round(float(test["label"].mean()), 5),
    }
    return Split(
        train=train, validation=validation, calibration=calibration, test=test, boundaries=boundaries
    )
