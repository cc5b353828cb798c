"""Who is scored: the customers the label builder would label at the as-of date, with their features.

Eligibility follows the *model's* label definition and the features come from the model's own specs,
so scoring cannot drift from training. ``churnml.pipelines.score`` wires these steps; the service and
the benchmarks reuse :func:`active_customer_features`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from churnml.config import Config, FeatureConfig, LabelConfig
from churnml.data.dataset import Dataset
from churnml.engine import Engine, concat_in_order
from churnml.engine.sources import Partitions
from churnml.errors import ChurnmlError
from churnml.features import FeatureSpec, build_features
from churnml.features.labels import make_label_times
from churnml.risk import drift
from churnml.training.model import ChurnModel

PROBABILITY = "churn_probability"  # the column scored_partition adds; popped before the frame goes on


def resolve_as_of(dataset: Dataset | Partitions, as_of: Any) -> pd.Timestamp:
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


LIST_LABEL_KEYS = ("definition", "horizon_days", "grace_days", "active_days")  # what a list's label is


def label_config(model: ChurnModel, config: Config) -> LabelConfig:
    """Eligibility as the model was trained: its label definition, else the config's."""
    return with_list_labels(config.labels, model.info.get("labels") or {})


def with_list_labels(labels: LabelConfig, given: Mapping[str, Any]) -> LabelConfig:
    """``labels`` with the ``LIST_LABEL_KEYS`` that ``given`` (a model's, or a scored list's) sets."""
    settings = labels.model_dump()
    for key in LIST_LABEL_KEYS:
        if given.get(key) is not None:
            settings[key] = given[key]
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
    shared = (model, as_of, label_config(model, config), config.features)
    parts = engine.map(scored_partition, engine.split(dataset), *shared, name="score")
    return _with_probability(concat_in_order(parts, ["customer_id"]), as_of)


def _with_probability(frame: pd.DataFrame, as_of: pd.Timestamp) -> tuple[pd.DataFrame, np.ndarray]:
    if frame.empty:
        raise ChurnmlError(f"no active customers at {as_of}: nothing to score")
    probability = frame.pop(PROBABILITY).to_numpy(np.float64)
    return frame, probability


def tenure_days(frame: pd.DataFrame, dataset: Dataset, as_of: pd.Timestamp) -> np.ndarray:
    """Days from each scored customer's signup to ``as_of``."""
    signup = frame["customer_id"].map(dataset.customers.set_index("customer_id")["signup_at"])
    return ((as_of - pd.to_datetime(signup)) / pd.Timedelta(days=1)).to_numpy(dtype=float)


@dataclass(frozen=True)
class Context:
    """What scoring reads from the data beside the model's features, per scored customer (in the scored
    frame's order): tenure, whether each categorical feature's raw values hold one training never saw
    (drift), and ``extra`` features (an uplift model's own, built as of the same date)."""

    tenure_days: np.ndarray
    unseen: dict[str, np.ndarray]
    extra: pd.DataFrame

    def unseen_shares(self) -> dict[str, float]:
        return drift.flagged_shares(self.unseen)


UNSEEN = "unseen:"  # prefix of the unseen flags' columns in a context frame
TENURE = "context:tenure_days"  # not a feature's name: an uplift model may use the tenure_days feature


def context_frame(
    dataset: Dataset,
    customers: np.ndarray,
    as_of: pd.Timestamp,
    specs: Sequence[FeatureSpec],
    extra: Sequence[FeatureSpec],
    features: FeatureConfig,
) -> pd.DataFrame:
    """customer_id, :data:`TENURE`, an ``unseen:<feature>`` flag per categorical spec of ``specs`` and the
    ``extra`` specs' features as of ``as_of``, of ``customers`` (distinct ids of ``dataset``)."""
    frame = pd.DataFrame({"customer_id": np.asarray(customers, dtype=object)})
    columns: dict[str, Any] = {TENURE: tenure_days(frame, dataset, as_of)}
    flags = drift.unseen_flags(dataset, frame["customer_id"].to_numpy(), as_of, specs)
    columns |= {UNSEEN + name: values for name, values in flags.items()}
    frame = frame.assign(**columns)
    if not extra:
        return frame
    built = build_features(dataset, frame[["customer_id"]].assign(cutoff=as_of), features, specs=list(extra))
    return pd.concat([frame, built[[spec.name for spec in extra]].reset_index(drop=True)], axis=1)


def _context(whole: pd.DataFrame, extra: Sequence[FeatureSpec]) -> Context:
    unseen = {c[len(UNSEEN) :]: whole[c].to_numpy(dtype=bool) for c in whole.columns if c.startswith(UNSEEN)}
    names = [spec.name for spec in extra]
    return Context(whole[TENURE].to_numpy(dtype=float), unseen, whole[names].reset_index(drop=True))


def scored_held_partition(
    k: int,
    held: Partitions,
    model: ChurnModel,
    as_of: pd.Timestamp,
    labels: LabelConfig,
    features: FeatureConfig,
    extra: Sequence[FeatureSpec],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`scored_partition` and the scored customers' :func:`context_frame` of partition ``k``, read
    once by the worker that runs it."""
    dataset = held.load(k)
    scored = scored_partition(dataset, model, as_of, labels, features)
    customers = scored["customer_id"].to_numpy()
    return scored, context_frame(dataset, customers, as_of, model.specs, extra, features)


def score_with_context(
    engine: Engine,
    data: Dataset | Partitions,
    model: ChurnModel,
    as_of: pd.Timestamp,
    config: Config,
    extra: Sequence[FeatureSpec] = (),
) -> tuple[pd.DataFrame, np.ndarray, Context]:
    """:func:`score_customers` and the scored customers' :class:`Context` (``extra``: an uplift model's
    own features). Of :class:`~churnml.engine.sources.Partitions` (out of core), each worker reads its
    partition once for both, and only the scored customers' rows come back."""
    if not isinstance(data, Partitions):
        frame, probability = score_customers(engine, data, model, as_of, config)
        customers = frame["customer_id"].to_numpy()
        whole = context_frame(data, customers, as_of, model.specs, extra, config.features)
        return frame, probability, _context(whole, extra)
    shared = (model, as_of, label_config(model, config), config.features, list(extra))
    pieces = engine.map(scored_held_partition, data.parts, data, *shared, name="score")
    frame, probability = _with_probability(concat_in_order([p[0] for p in pieces], ["customer_id"]), as_of)
    contexts = pd.concat([p[1] for p in pieces], ignore_index=True).set_index("customer_id")
    whole = contexts.reindex(pd.Index(frame["customer_id"].to_numpy(), name="customer_id")).reset_index()
    return frame, probability, _context(whole, extra)
