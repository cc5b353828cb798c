"""The shipped model's refit, and when a model's training labels end.

The test figures, and the champion/challenger decision, are those of the *development* model (fitted
before the test cutoff); the shipped model is then refitted on every labeled cutoff and calibrated on
every out-of-time prediction there is. A model therefore records when its latest training label was
complete (``labels_end``), and a champion is compared on a test cutoff only through a model of its own
that had not seen that cutoff's labels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from churnml.errors import DataValidationError, ModelLoadError
from churnml.training.model import ChurnModel, load_model
from churnml.training.split import Split


def labels_end(rows: pd.DataFrame, split: Split) -> str:
    """When the latest label a model was fitted on (``rows``) was complete: its last cutoff + the label
    window, as an ISO timestamp."""
    window = pd.Timedelta(days=split.boundaries["label_window_days"])
    return (rows["cutoff"].max() + window).isoformat()


def labels_end_of(model: ChurnModel) -> pd.Timestamp:
    """When a model's training labels were complete. Models from before the refit on every label carry
    no ``labels_end``; they were fitted only on labels complete by their own test cutoff."""
    end = model.info.get("labels_end") or (model.info.get("split") or {}).get("test_cutoff")
    if end is None:
        raise DataValidationError(
            "model", "labels_end", "the model does not say when its training labels end"
        )
    return pd.Timestamp(end)


def refit_calibration_set(
    chosen_margin: np.ndarray, evaluated: ChurnModel, split: Split
) -> tuple[np.ndarray, pd.DataFrame]:
    """Out-of-time margins and their rows for the refitted model's calibrator: the folds' (the chosen
    candidate's pooled out-of-fold margins) and the development model's on the test cutoff."""
    rows = pd.concat([split.out_of_fold, split.test], ignore_index=True)
    return np.concatenate([chosen_margin, evaluated.margin(split.test)]), rows


def comparable_model(uri: str, test_cutoff: pd.Timestamp) -> ChurnModel:
    """The registered model at ``uri`` as it was before seeing ``test_cutoff``'s labels: its shipped model,
    else (when the shipped one was refitted on that very cutoff) the model its test figures describe."""
    for evaluated in (False, True):
        try:
            model = load_model(uri, evaluated=evaluated)
        except (OSError, ValueError, KeyError, MlflowException, ModelLoadError) as exc:
            raise DataValidationError("model", uri, f"the champion cannot be loaded: {exc}") from None
        if labels_end_of(model) <= test_cutoff:
            return model
    raise DataValidationError(
        "model",
        "labels_end",
        f"the champion was fitted on labels past the test cutoff {test_cutoff.date()}",
    )
