"""Why a customer is at risk: SHAP contributions from the booster, summed per signal, told in words.

Contributions come from XGBoost's own TreeSHAP (``pred_contribs=True``, what ``shap.TreeExplainer``
calls for XGBoost) with ``iteration_range=model.iteration_range``, so the explanation uses exactly the
trees of the score, and each row's contributions add up to its margin. The features of one behaviour
(the 7/30/90-day windows of login activity...) share a catalogue ``signal``; their contributions are
summed into one driver, so correlated windows do not split one reason into three weak ones.

Each driver is phrased with the catalogue's reason template and the customer's value of the signal's
strongest feature, beside the typical value among retained customers: "No login for 41 days (retained
customers: 3)". Typical values are medians (modes for categories) of customers who stayed: the
training set's label-0 rows when the model carries them in ``model.info["typical_values"]`` (see
:func:`typical_values`), else the scored population's low-risk customers (the scoring pipeline's
fallback, written beside the risk list). :func:`explain_rows` is all a scorer or a service needs.

:func:`explanation` and :func:`signal_explanation` wrap the same values as ``shap.Explanation`` objects
for shap's plots (the risk report's beeswarm and waterfalls) and tooling; shap is imported only there
(it takes seconds to import), so scoring and the service never load it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml import io
from churnml.features.catalogue import FeatureSpec, find_feature, history_days
from churnml.training.model import ChurnModel

if TYPE_CHECKING:
    import shap

NON_ACTIONABLE = "non_actionable"  # keyword of exclude_from_reasons: every non-actionable feature
TYPICAL_KEY = "typical_values"  # where a model's info carries the typical values of retained customers
_FORMAT = re.compile(r"\{value(?::([^}]*))?\}")


@dataclass(frozen=True)
class Driver:
    """One reason pushing a customer's risk up: a signal, its summed contribution and the sentence."""

    signal: str
    family: str
    feature: str  # the signal's feature contributing most for this customer, whose value is shown
    contribution: float  # log-odds, summed over the signal's features (> 0: raises risk)
    value: Any
    typical: Any
    text: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "signal": self.signal,
            "family": self.family,
            "feature": self.feature,
            "contribution": self.contribution,
            "value": io.strict(self.value),
            "typical": io.strict(self.typical),
            "text": self.text,
        }


# ---------------------------------------------------------------------------------------------------
# Contributions.


def contributions(
    model: ChurnModel,
    frame: pd.DataFrame,
    batch_size: int = 20_000,
    device: str = "cpu",
    nthread: int | None = None,
) -> np.ndarray:
    """SHAP values in log-odds, shape (rows, features + 1); the last column is the bias.

    Rows sum to ``model.margin(frame)``. Batches bound memory (rows x features x 4 bytes per call);
    ``device="cuda"`` runs TreeSHAP on a GPU (on a copy of the booster: the model stays on CPU).
    A logistic regression gives its exact linear SHAP values (``LinearModel.contributions``).
    """
    prepared = model.prepare(frame)
    if model.linear is not None:
        return model.linear.contributions(prepared, model.feature_names).astype(np.float32)
    booster = model.trained_booster
    if device != "cpu" or nthread is not None:
        booster = booster.copy()
        booster.set_param({"device": device, **({"nthread": nthread} if nthread else {})})
    width = len(model.columns) + 1
    out = np.empty((len(prepared), width), dtype=np.float32)
    for start in range(0, len(prepared), max(batch_size, 1)):
        part = prepared.iloc[start : start + batch_size]
        matrix = xgb.DMatrix(part, enable_categorical=True, missing=np.nan, nthread=nthread or -1)
        out[start : start + len(part)] = booster.predict(
            matrix, pred_contribs=True, iteration_range=model.iteration_range
        )
    return out


def explanation(
    model: ChurnModel, frame: pd.DataFrame, contribs: np.ndarray | None = None, **options: Any
) -> shap.Explanation:
    """:func:`contributions` as a ``shap.Explanation`` (log-odds): ``values`` per feature, ``base_values``
    the bias, ``data`` the model's inputs as numbers (a category's code, NaN when missing: shap colours
    by them) and ``display_data`` as given. Works for the linear candidate too (its exact linear SHAP).
    ``contribs`` may be passed when already computed; other keyword arguments go to :func:`contributions`."""
    import shap

    prepared = model.prepare(frame)
    if contribs is None:
        contribs = contributions(model, prepared, **options)
    numbers = np.empty((len(prepared), len(model.columns)), dtype=np.float64)
    for k, column in enumerate(model.columns):
        values = prepared[column.name]
        if isinstance(values.dtype, pd.CategoricalDtype):
            codes = values.cat.codes.to_numpy(np.float64)
            numbers[:, k] = np.where(codes < 0, np.nan, codes)
        else:
            numbers[:, k] = pd.to_numeric(values, errors="coerce").to_numpy(np.float64, na_value=np.nan)
    return shap.Explanation(
        values=np.asarray(contribs[:, :-1], dtype=np.float64),
        base_values=np.asarray(contribs[:, -1], dtype=np.float64),
        data=numbers,
        display_data=prepared.to_numpy(dtype=object),
        feature_names=list(model.feature_names),
    )


def signal_explanation(
    signals: Signals, contribs: np.ndarray, names: Sequence[str] | None = None
) -> shap.Explanation:
    """Contributions summed per signal (the windows of one behaviour are one reason) as a
    ``shap.Explanation`` without data (a signal has no one value); ``names`` label the signals (default:
    their names). One customer's contributions (1-D) give a 1-D explanation, for a waterfall."""
    import shap

    rows = np.atleast_2d(contribs)
    out = shap.Explanation(
        values=signals.sum(rows).astype(np.float64),
        base_values=rows[:, -1].astype(np.float64),
        feature_names=list(names if names is not None else signals.names),
    )
    return out[0] if np.ndim(contribs) == 1 else out


# ---------------------------------------------------------------------------------------------------
# Signals: which features add up to one driver.


def feature_specs(model: ChurnModel) -> list[FeatureSpec]:
    """A catalogue spec per model column (a plain one for columns the model has no spec for)."""
    known = {spec.name: spec for spec in model.specs}
    specs = []
    for column in model.columns:
        spec = known.get(column.name)
        if spec is not None:
            specs.append(spec)
            continue
        specs.append(
            FeatureSpec(
                name=column.name,
                family="other",
                table="",
                aggregate="",
                window_days=None,
                dtype=column.dtype,
                reason=f"{column.name.replace('_', ' ').capitalize()}: {{value}}",
                signal=column.name,
            )
        )
    return specs


def excluded_features(specs: Sequence[FeatureSpec], exclude: Sequence[str]) -> np.ndarray:
    """Mask of features never given as reasons: named, of a named signal or family, or non-actionable."""
    names = set(exclude)
    drop_non_actionable = NON_ACTIONABLE in names
    return np.array(
        [
            bool({s.name, s.signal, s.family} & names) or (drop_non_actionable and not s.actionable)
            for s in specs
        ],
        dtype=bool,
    )


@dataclass(frozen=True)
class Signals:
    """Signals in first-appearance order and the 0/1 membership matrix (features x signals)."""

    names: tuple[str, ...]
    membership: np.ndarray
    families: tuple[str, ...]  # family of each signal (its first feature's)

    @classmethod
    def of(cls, specs: Sequence[FeatureSpec]) -> Signals:
        names = list(dict.fromkeys(s.signal for s in specs))
        index = {name: k for k, name in enumerate(names)}
        membership = np.zeros((len(specs), len(names)), dtype=np.float32)
        for row, spec in enumerate(specs):
            membership[row, index[spec.signal]] = 1.0
        families = tuple(next(s.family for s in specs if s.signal == name) for name in names)
        return cls(tuple(names), membership, families)

    @cached_property
    def _layout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Features grouped by signal (each in at most one), where each signal's group starts, and which
        signals have any member."""
        members = [np.flatnonzero(self.membership[:, s]) for s in range(self.membership.shape[1])]
        sizes = np.array([len(m) for m in members], dtype=np.int64)
        order = np.concatenate(members) if members else np.zeros(0, np.int64)
        starts = (np.cumsum(sizes) - sizes)[sizes > 0]
        return order, starts, sizes > 0

    def sum(self, contribs: np.ndarray) -> np.ndarray:
        """Per-signal contributions (rows x signals); ``contribs`` may include the bias column.

        Each row is summed on its own, in feature order: a matrix product's rounding depends on how many
        rows it multiplies, and a customer's reasons must not depend on who else is explained with it.
        """
        order, starts, present = self._layout
        out = np.zeros((len(contribs), len(present)), dtype=np.result_type(contribs.dtype, np.float32))
        if len(order) and len(contribs):
            out[:, present] = np.add.reduceat(contribs[:, order], starts, axis=1)
        return out


# ---------------------------------------------------------------------------------------------------
# Typical values and sentences.


def typical_values(frame: pd.DataFrame, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Median of each numeric column and most frequent level of each categorical one (JSON-able).

    Pass the retained customers: ``typical_values(train.loc[train.label == 0], model.feature_names)``
    at fit time (stored as ``model.info["typical_values"]``), or the scored low-risk customers.
    """
    out: dict[str, Any] = {}
    for name in columns if columns is not None else frame.columns:
        if name not in frame.columns:
            continue
        values = frame[name]
        if isinstance(values.dtype, pd.CategoricalDtype) or not pd.api.types.is_numeric_dtype(values):
            counts = values.dropna().astype(str).value_counts()
            out[name] = str(counts.index[0]) if len(counts) else None
        else:
            median = pd.to_numeric(values, errors="coerce").median()
            out[name] = None if pd.isna(median) else float(median)
    return out


def model_typical_values(model: ChurnModel) -> dict[str, Any]:
    """Typical values stored with the model at fit time ({} when the model has none)."""
    return dict(model.info.get(TYPICAL_KEY) or {})


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NA


def format_value(spec: FeatureSpec, value: Any) -> str:
    """A value as the spec's reason template writes it (``{value:.0f}`` -> "41")."""
    match = _FORMAT.search(spec.reason)
    fmt = (match.group(1) or "") if match else ""
    try:
        return format(value, fmt)
    except (TypeError, ValueError):
        return str(value)


def render(spec: FeatureSpec, value: Any, typical: Any = None) -> str:
    """The reason sentence: the template filled with the customer's value, the typical one beside it.

    A missing value (no such event yet) reads "No login yet" for "No login for ... days" templates,
    else "<description>: none yet".
    """
    if _missing(value):
        head = spec.reason.split(" for {value", 1)[0]
        if spec.reason.startswith("No ") and head != spec.reason:
            text = f"{head} yet"
        else:
            text = f"{(spec.description or spec.name).rstrip('.')}: none yet"
    else:
        text = spec.explain(value)  # as it is: an infinite ratio reads "inf", not "None"
    if _missing(typical):
        return text
    shown = format_value(spec, typical)
    if _FORMAT.search(spec.reason) is None:  # a flag-like template: say the typical value plainly
        shown = str(io.strict(typical))
    return f"{text} (retained customers: {shown})"


# ---------------------------------------------------------------------------------------------------
# Drivers per row.


@dataclass(frozen=True)
class Explainer:
    """Everything needed to turn contributions into drivers for one model (built once, reused)."""

    model: ChurnModel
    specs: tuple[FeatureSpec, ...]
    signals: Signals  # every signal (risk groups use them all)
    reason_signals: Signals  # signals that may be given as reasons (exclusions applied)
    typical: Mapping[str, Any]

    @classmethod
    def of(
        cls, model: ChurnModel, typical: Mapping[str, Any] | None = None, exclude: Sequence[str] = ()
    ) -> Explainer:
        specs = feature_specs(model)
        dropped = excluded_features(specs, exclude)
        reason_signals = Signals.of(specs)
        membership = reason_signals.membership * (~dropped)[:, None]
        keep = membership.sum(axis=0) > 0
        reason_signals = Signals(
            tuple(n for n, k in zip(reason_signals.names, keep, strict=True) if k),
            membership[:, keep],
            tuple(f for f, k in zip(reason_signals.families, keep, strict=True) if k),
        )
        typical = model_typical_values(model) if typical is None else dict(typical)
        return cls(model, tuple(specs), Signals.of(specs), reason_signals, typical)

    def values(self, frame: pd.DataFrame) -> list[np.ndarray]:
        """The model's input values of ``frame``, one array per feature in the model's order (the form
        :meth:`drivers_of_values` and :meth:`group_signals` read)."""
        prepared = self.model.prepare(frame)
        return [prepared[spec.name].to_numpy(dtype=object) for spec in self.specs]

    def drivers(self, frame: pd.DataFrame, contribs: np.ndarray, top_k: int = 3) -> list[list[Driver]]:
        """Up to ``top_k`` drivers per row with a positive summed contribution, strongest first."""
        return self.drivers_of_values(self.values(frame), contribs, top_k)

    def group_signals(
        self, columns: Sequence[Sequence[Any] | np.ndarray], contribs: np.ndarray, lifetime_days: int
    ) -> np.ndarray:
        """Per-signal contributions for choosing a risk group: :meth:`Signals.sum`, except that the risk a
        short history explains is credited to the tenure signal (the new-customer group's).

        A customer younger than a feature's history (its window, both windows of a trend, or
        ``lifetime_days`` for a lifetime aggregate: ``catalogue.history_days``) has had no time to build
        it up. When such a feature raises risk with a value at or below the typical one, or missing
        ("no onboarding yet"), the risk is that the customer is new, not that usage fades or onboarding
        failed: a 20-day-old customer's 90-day login count is at most 20 days' worth. Higher values (a
        failed payment, a ticket) are behaviour whatever the tenure and keep their own signal. Without a
        typical value only a missing value counts. ``columns`` are :meth:`values`; each row is computed
        on its own, so a customer's group does not depend on who else is explained with it.
        """
        name = find_feature(self.specs, aggregate="tenure")
        if name is None:  # no tenure, no telling newness from behaviour
            return self.signals.sum(contribs)
        tenure = [s.name for s in self.specs].index(name)
        features = contribs[:, : len(self.specs)]
        moved = self._short_history(columns, _numbers(columns[tenure]), features, lifetime_days)
        per_signal = self.signals.sum(np.where(moved, 0.0, features).astype(features.dtype))
        tenure_signal = self.signals.names.index(self.specs[tenure].signal)
        per_signal[:, tenure_signal] += np.add.reduce(np.where(moved, features, 0.0), axis=1)
        return per_signal

    def _short_history(
        self,
        columns: Sequence[Sequence[Any] | np.ndarray],
        tenure: np.ndarray,
        features: np.ndarray,
        lifetime_days: int,
    ) -> np.ndarray:
        """Rows x features: the contributions a short history explains (see :meth:`group_signals`)."""
        moved = np.zeros(features.shape, dtype=bool)
        for k, spec in enumerate(self.specs):
            days = history_days(spec, lifetime_days)
            if days == 0 or spec.dtype == "category":
                continue
            value = _numbers(columns[k])
            typical = self.typical.get(spec.name)
            low = np.isnan(value)
            if isinstance(typical, (int, float)) and not math.isnan(typical):
                low |= value <= typical
            moved[:, k] = (tenure < days) & low & (features[:, k] > 0)
        return moved

    def drivers_of_values(
        self, columns: Sequence[Sequence[Any] | np.ndarray], contribs: np.ndarray, top_k: int = 3
    ) -> list[list[Driver]]:
        """:meth:`drivers` from the feature values themselves, one sequence per feature in the model's
        order (a category's value, a number, NaN when missing): the service's path, without pandas."""
        n_rows = len(contribs)
        features = contribs[:, : len(self.specs)]
        # Excluded features are zeroed, so neither their signal sums nor their values are used.
        features = features * (self.reason_signals.membership.sum(axis=1) > 0)
        per_signal = self.reason_signals.sum(features)
        k = min(top_k, per_signal.shape[1])
        if k == 0:
            return [[] for _ in range(n_rows)]
        top = np.argsort(-per_signal, axis=1, kind="stable")[:, :k]
        lead = self._lead_features(features)
        out: list[list[Driver]] = []
        for row in range(n_rows):
            drivers = []
            for signal in top[row]:
                contribution = float(per_signal[row, signal])
                if contribution <= 0:
                    break
                feature = int(lead[row, signal])
                spec = self.specs[feature]
                value = columns[feature][row]
                typical = self.typical.get(spec.name)
                drivers.append(
                    Driver(
                        signal=self.reason_signals.names[signal],
                        family=spec.family,
                        feature=spec.name,
                        contribution=contribution,
                        value=io.strict(value),
                        typical=typical,
                        text=render(spec, value, typical),
                    )
                )
            out.append(drivers)
        return out

    def _lead_features(self, features: np.ndarray) -> np.ndarray:
        """Per row and reason signal: index of the signal's feature with the largest contribution."""
        membership = self.reason_signals.membership
        lead = np.zeros((len(features), membership.shape[1]), dtype=np.int64)
        for signal in range(membership.shape[1]):
            members = np.flatnonzero(membership[:, signal])
            lead[:, signal] = members[np.argmax(features[:, members], axis=1)]
        return lead


def _numbers(values: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Values as floats (missing -> NaN). Numbers and None go straight through numpy (a pandas Series
    per feature cost the service's risk groups 5 ms a request); anything else through pandas."""
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError):
        return pd.to_numeric(pd.Series(values, dtype=object), errors="coerce").to_numpy(
            dtype=float, na_value=np.nan
        )


def explain_rows(
    model: ChurnModel,
    frame: pd.DataFrame,
    top_k: int = 3,
    typical: Mapping[str, Any] | None = None,
    exclude: Sequence[str] = (),
    contribs: np.ndarray | None = None,
    **contribution_options: Any,
) -> list[list[Driver]]:
    """Drivers of each row of ``frame`` (feature columns, extra columns ignored): the serving entry point.

    ``typical`` defaults to the model's stored typical values; ``contribs`` may be passed when already
    computed (e.g. in batches); other keyword arguments go to :func:`contributions`.
    """
    if contribs is None:
        contribs = contributions(model, frame, **contribution_options)
    return Explainer.of(model, typical, exclude).drivers(frame, contribs, top_k)
