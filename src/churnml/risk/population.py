"""Who is scored: the customers the label builder would label at the as-of date, with their features.

Eligibility follows the *model's* label definition and the features come from the model's own specs,
so scoring cannot drift from training. ``churnml.pipelines.score`` wires these steps; the service and
the benchmarks reuse :func:`active_customer_features`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, FeatureConfig, LabelConfig
from churnml.data.dataset import Dataset
from churnml.engine import Engine, concat_in_order
from churnml.errors import ChurnmlError
from churnml.features import build_features
from churnml.features.labels import make_label_times
from churnml.training.model import ChurnModel

PROBABILITY = "churn_probability"  # the column scored_partition adds; popped before the frame goes on


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
    frame = eligible_features(dataset, model, as_of, label_config(model, config), config.features)
    if frame.empty:
        raise ChurnmlError(f"no active customers at {as_of}: nothing to score")
    return frame


def eligible_features(
    dataset: Dataset, model: ChurnModel, as_of: pd.Timestamp, labels: LabelConfig, features: FeatureConfig
) -> pd.DataFrame:
    """Features (the model's specs) at ``as_of`` of the customers ``labels`` makes eligible there, in
    customer order; empty when none is (a partition may have no active customer)."""
    eligible = make_label_times(dataset, labels, [as_of]).frame
    return build_features(dataset, eligible[["customer_id", "cutoff"]], features, specs=list(model.specs))


def scored_partition(
    dataset: Dataset, model: ChurnModel, as_of: pd.Timestamp, labels: LabelConfig, features: FeatureConfig
) -> pd.DataFrame:
    """:func:`eligible_features` of one partition's customers with their calibrated probability in a
    last column, :data:`PROBABILITY` (row by row, so the same on any partitioning)."""
    frame = eligible_features(dataset, model, as_of, labels, features)
    probability = model.predict_proba(frame) if len(frame) else np.empty(0)
    return frame.assign(**{PROBABILITY: probability})


def score_customers(
    engine: Engine, dataset: Dataset, model: ChurnModel, as_of: pd.Timestamp, config: Config
) -> tuple[pd.DataFrame, np.ndarray]:
    """Features and calibrated probability of every customer active at ``as_of``, in customer order,
    computed by ``engine`` on customer partitions (one for the local engine)."""
    parts = engine.map(
        scored_partition,
        engine.split(dataset),
        model,
        as_of,
        label_config(model, config),
        config.features,
        name="score",
    )
    frame = concat_in_order(parts, ["customer_id"])
    if frame.empty:
        raise ChurnmlError(f"no active customers at {as_of}: nothing to score")
    probability = frame.pop(PROBABILITY).to_numpy(np.float64)
    return frame, probability


def tenure_days(frame: pd.DataFrame, dataset: Dataset, as_of: pd.Timestamp) -> np.ndarray:
    """Days from each scored customer's signup to ``as_of``."""
    signup = frame["customer_id"].map(dataset.customers.set_index("customer_id")["signup_at"])
    return ((as_of - pd.to_datetime(signup)) / pd.Timedelta(days=1)).to_numpy(dtype=float)
