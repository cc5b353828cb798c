"""Who is scored: the customers the label builder would label at the as-of date, with their features.

Eligibility follows the *model's* label definition and the features come from the model's own specs,
so scoring cannot drift from training. ``churnml.pipelines.score`` wires these steps; the service and
the benchmarks reuse :func:`active_customer_features`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, LabelConfig
from churnml.data.dataset import Dataset
from churnml.errors import ChurnmlError
from churnml.features import build_features
from churnml.features.labels import make_label_times
from churnml.training.model import ChurnModel


def resolve_as_of(dataset: Dataset, as_of: Any) -> pd.Timestamp:
    """The as-of moment: the end of the data by default; never after it (nothing is known there)."""
    if as_of is None:
        return pd.Timestamp(dataset.end)
    try:
        moment = pd.Timestamp(as_of)
    except (TypeError, ValueError):
        raise ChurnmlError(f"--as-of: cannot read {as_of!r} as a date (use YYYY-MM-DD)") from None
    if moment.tzinfo is not None:
        moment = moment.tz_convert(None)
    if moment > dataset.end:
        raise ChurnmlError(
            f"as-of date {moment} is after the end of the data ({dataset.end}): nothing is known about "
            "customers then. Use a date up to the end of the data, or leave --as-of out."
        )
    return moment


def label_config(model: ChurnModel, config: Config) -> LabelConfig:
    """Eligibility as the model was trained: its label definition, else the config's."""
    trained = model.info.get("labels") or {}
    settings = config.labels.model_dump()
    for key in ("definition", "horizon_days", "grace_days", "active_days"):
        if trained.get(key) is not None:
            settings[key] = trained[key]
    return LabelConfig.model_validate(settings)


def active_customer_features(
    dataset: Dataset, model: ChurnModel, as_of: pd.Timestamp, config: Config
) -> pd.DataFrame:
    """Features at ``as_of`` of every customer the label builder would label there (same eligibility)."""
    eligible = make_label_times(dataset, label_config(model, config), [as_of]).frame
    if eligible.empty:
        raise ChurnmlError(f"no active customers at {as_of}: nothing to score")
    specs = list(model.specs)
    return build_features(dataset, eligible[["customer_id", "cutoff"]], config.features, specs=specs)


def tenure_days(frame: pd.DataFrame, dataset: Dataset, as_of: pd.Timestamp) -> np.ndarray:
    """Days from each scored customer's signup to ``as_of``."""
    signup = frame["customer_id"].map(dataset.customers.set_index("customer_id")["signup_at"])
    return ((as_of - pd.to_datetime(signup)) / pd.Timedelta(days=1)).to_numpy(dtype=float)
