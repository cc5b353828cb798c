"""The ChurnModel: an XGBoost booster (or a logistic regression), its calibrator and the feature
specification, saved as plain files.

Everything a scorer needs travels together, so serving, batch scoring and explanations cannot disagree
about columns, dtypes, categories or the number of trees:

- ``prepare`` checks the input has every feature and casts it exactly as in training (categoricals with
  the *training* categories, unseen values becoming missing, as XGBoost does not handle them itself);
- ``margin``/``predict_proba`` always pass ``iteration_range`` (plain ``Booster.predict`` would use
  every tree, not the early-stopped number);
- ``save``/``load`` write the booster (or the regression's numbers, ``churnml.training.linear``), the calibrator,
  the spec and the reference profile of the training data (``churnml.risk.drift``) as JSON: nothing is
  pickled. A model saved before the reference existed loads with ``reference=None``.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml import io
from churnml.errors import DataValidationError, ModelLoadError
from churnml.features.catalogue import FeatureSpec
from churnml.training.calibrate import Calibrator
from churnml.training.linear import LinearModel

BOOSTER_FILE = "booster.json"
LINEAR_FILE = "linear.json"
CALIBRATOR_FILE = "calibrator.json"
SPEC_FILE = "feature_spec.json"
REFERENCE_FILE = "reference_profile.json"  # the training distributions drift is measured against
FORMAT_VERSION = 1


@dataclass(frozen=True)
class FeatureColumn:
    """One model input: ``dtype`` float64 or category (with the training categories, in code order)."""

    name: str
    dtype: str
    categories: tuple[Any, ...] | None = None


def feature_columns(frame: pd.DataFrame, specs: Sequence[FeatureSpec]) -> tuple[FeatureColumn, ...]:
    """Model inputs from the feature specs and the training frame."""
    columns = []
    for spec in specs:
        name, dtype = spec.name, spec.dtype
        if dtype == "category":
            values = frame[name]
            if spec.categories is not None:  # declared by the feature catalogue
                categories = list(spec.categories)
            elif isinstance(values.dtype, pd.CategoricalDtype):
                categories = [c for c in values.cat.categories]
            else:
                categories = sorted(values.dropna().astype(str).unique())
            columns.append(FeatureColumn(name, "category", tuple(io.strict(c) for c in categories)))
        elif dtype == "float64":
            columns.append(FeatureColumn(name, "float64"))
        else:
            raise ValueError(f"feature {name!r}: unsupported dtype {dtype!r} (float64 or category)")
    return tuple(columns)


@dataclass(frozen=True)
class ChurnModel:
    """Booster (already cut to its best iteration) or linear model + calibrator + input specification."""

    booster: xgb.Booster | None
    columns: tuple[FeatureColumn, ...]
    calibrator: Calibrator = field(default_factory=Calibrator)
    specs: tuple[FeatureSpec, ...] = ()
    info: dict[str, Any] = field(default_factory=dict)
    linear: LinearModel | None = None
    reference: dict[str, Any] | None = None  # churnml.risk.drift.Reference.to_dict() of the training data

    @classmethod
    def untrained(cls, frame: pd.DataFrame, specs: Sequence[FeatureSpec]) -> ChurnModel:
        """Inputs fixed from the training frame and feature specs; the booster comes from ``with_booster``."""
        return cls(booster=None, columns=feature_columns(frame, specs), specs=tuple(specs))

    def with_booster(self, booster: xgb.Booster, **info: Any) -> ChurnModel:
        return dataclasses.replace(self, booster=booster, linear=None, info={**self.info, **info})

    def with_linear(self, linear: LinearModel, **info: Any) -> ChurnModel:
        return dataclasses.replace(self, booster=None, linear=linear, info={**self.info, **info})

    @property
    def kind(self) -> str:
        """What scores: ``xgboost`` trees or a ``logreg`` (``linear`` holds it, ``booster`` is None)."""
        return "logreg" if self.linear is not None else "xgboost"

    def xy(self, frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
        """Training input (cast exactly as at scoring time) and integer labels of a labeled frame."""
        return self.prepare(frame), frame["label"].to_numpy(dtype=np.int64)

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.columns]

    @property
    def trained_booster(self) -> xgb.Booster:
        if self.booster is None:
            raise ValueError("this ChurnModel has no booster yet (see tune.fit_booster)")
        return self.booster

    @property
    def iteration_range(self) -> tuple[int, int]:
        """Trees to use; pass it to every ``Booster.predict`` (including ``pred_contribs``)."""
        return (0, self.trained_booster.num_boosted_rounds())

    def with_calibrator(self, calibrator: Calibrator) -> ChurnModel:
        return dataclasses.replace(self, calibrator=calibrator)

    def with_info(self, **info: Any) -> ChurnModel:
        return dataclasses.replace(self, info={**self.info, **info})

    def with_reference(self, reference: dict[str, Any]) -> ChurnModel:
        return dataclasses.replace(self, reference=reference)

    def prepare(self, frame: pd.DataFrame) -> pd.DataFrame:
        """The model's input columns, in training order and dtypes; extra columns are ignored.

        Raises DataValidationError naming missing columns or values that are not numbers. A frame this
        returned comes back as it is, so callers can prepare once and pass the result on.
        """
        if self._is_prepared(frame):
            return frame
        missing = [c.name for c in self.columns if c.name not in frame.columns]
        if missing:
            raise DataValidationError("features", ", ".join(missing), "required feature column(s) missing")
        # Numeric columns that already hold numpy numbers are converted in one block (per-column astype
        # costs ~0.3 ms a column, which dominated single-record scoring); the rest one by one, so a bad
        # value is reported with its column.
        numeric = [c.name for c in self.columns if c.dtype != "category"]
        bulk = [n for n in numeric if frame[n].dtype.kind in "biuf"]
        prepared = pd.DataFrame(
            np.asarray(frame[bulk].to_numpy(dtype=np.float64)), index=frame.index, columns=bulk
        )
        converted: dict[str, pd.Series] = {}
        for column in self.columns:
            if column.dtype == "category":
                converted[column.name] = _as_category(frame[column.name], column.categories or ())
            elif column.name not in prepared.columns:
                converted[column.name] = _as_float(frame[column.name], column.name)
        if converted:
            prepared = pd.concat([prepared, pd.DataFrame(converted, index=frame.index)], axis=1)
        return prepared[[c.name for c in self.columns]]

    def _is_prepared(self, frame: pd.DataFrame) -> bool:
        if list(frame.columns) != self.feature_names:
            return False
        for column, dtype in zip(self.columns, frame.dtypes, strict=True):
            if column.dtype == "category":
                if not isinstance(dtype, pd.CategoricalDtype) or list(dtype.categories) != list(
                    column.categories or ()
                ):
                    return False
            elif dtype != np.float64:
                return False
        return True

    def dmatrix(self, frame: pd.DataFrame) -> xgb.DMatrix:
        return xgb.DMatrix(self.prepare(frame), enable_categorical=True, missing=np.nan)

    def margin(self, frame: pd.DataFrame) -> np.ndarray:
        """Raw log-odds of churn, from the best iteration's trees (or the regression)."""
        if self.linear is not None:
            return self.linear.margin(self.prepare(frame))
        return self.trained_booster.predict(
            self.dmatrix(frame), output_margin=True, iteration_range=self.iteration_range
        )

    def predict_proba(self, frame: pd.DataFrame) -> np.ndarray:
        """Calibrated probability of churn within the label horizon, one per row."""
        return self.calibrator(self.margin(frame))

    def spec_document(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "columns": [dataclasses.asdict(c) for c in self.columns],
            "features": [spec.to_dict() for spec in self.specs],
            "info": self.info,
        }

    def save(self, directory: str | Path) -> Path:
        """Write booster, calibrator and spec as JSON files into ``directory`` (each atomically)."""
        directory = Path(directory)
        if self.linear is not None:
            io.write_json(directory / LINEAR_FILE, self.linear.to_dict())
        else:
            raw = bytes(self.trained_booster.save_raw("json"))
            io.write_with(directory / BOOSTER_FILE, lambda tmp: tmp.write_bytes(raw))
        io.write_json(directory / CALIBRATOR_FILE, self.calibrator.to_dict())
        io.write_json(directory / SPEC_FILE, self.spec_document())
        if self.reference is not None:
            io.write_text(directory / REFERENCE_FILE, io.dumps(self.reference))  # features in model order
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> ChurnModel:
        directory = Path(directory)
        booster, linear = None, None
        if (directory / LINEAR_FILE).exists():
            linear = LinearModel.from_dict(json.loads((directory / LINEAR_FILE).read_text()))
        else:
            booster = xgb.Booster()
            booster.load_model(bytearray((directory / BOOSTER_FILE).read_bytes()))
        calibrator = Calibrator.from_dict(json.loads((directory / CALIBRATOR_FILE).read_text()))
        spec = json.loads((directory / SPEC_FILE).read_text())
        if spec.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: unsupported model format {spec.get('format_version')!r}")
        columns = tuple(
            FeatureColumn(c["name"], c["dtype"], None if c["categories"] is None else tuple(c["categories"]))
            for c in spec["columns"]
        )
        return cls(
            booster=booster,
            columns=columns,
            calibrator=calibrator,
            specs=tuple(FeatureSpec.from_dict(s) for s in spec.get("features", ())),
            info=spec.get("info", {}),
            linear=linear,
            reference=_read_reference(directory / REFERENCE_FILE),
        )


def _read_reference(path: Path) -> dict[str, Any] | None:
    """The reference profile, if the model has one (models saved before it existed do not)."""
    return json.loads(path.read_text()) if path.exists() else None


def _as_float(values: pd.Series, name: str) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype(object)
    try:
        return values.astype("float64")
    except (TypeError, ValueError):
        numbers = pd.to_numeric(values, errors="coerce")
        bad = values.notna() & numbers.isna()
        raise DataValidationError(
            "features",
            name,
            "values are not numbers",
            examples=values.loc[bad].head(3).to_string(),
            count=int(bad.sum()),
        ) from None


def _as_category(values: pd.Series, categories: Sequence[Any]) -> pd.Series:
    """Cast to the training categories (in their order, so codes match); unseen values become missing."""
    if isinstance(values.dtype, pd.CategoricalDtype):
        if not values.dtype.ordered and list(values.dtype.categories) == list(categories):
            return values  # already the training categories (the feature builders' output): same codes
        values = values.astype(object)
    if all(isinstance(c, str) for c in categories):
        # JSON, CSV and pandas 3 may hand over str, object or numbers: compare as text.
        values = values.astype(object).where(values.isna(), values.astype(str))
    values = values.where(values.isin(list(categories)))
    return pd.Series(
        pd.Categorical(values, categories=list(categories)), index=values.index, name=values.name
    )


def load_model(uri: str | Path, evaluated: bool = False) -> ChurnModel:
    """A ChurnModel from a directory written by ``save`` or from any MLflow model URI.

    ``models:/churn-model@champion``, ``runs:/<id>/model``, ``models:/<model_id>`` all work. Only the
    model's JSON files are read: no code from the model directory runs, nothing is unpickled.
    ``evaluated=True`` gives the model before its refit on every label (the one its test figures
    describe), where the model carries one; otherwise the model itself.
    """
    from churnml.training.mlflow_model import ARTIFACT, EVALUATED_ARTIFACT

    path = Path(str(uri))
    if path.is_dir() and (path / SPEC_FILE).exists():
        # churnml train writes train/model and train/evaluated_model side by side.
        sibling = path.parent / EVALUATED_ARTIFACT
        tested = evaluated and path.name == "model" and (sibling / SPEC_FILE).exists()
        return _load_files(sibling if tested else path, uri)
    if path.is_dir():
        raise ModelLoadError(
            f"{uri}: not a churnml model directory (no {SPEC_FILE}). churnml loads only its own "
            f"data files ({SPEC_FILE}, {CALIBRATOR_FILE}, {BOOSTER_FILE} or {LINEAR_FILE}); it never runs "
            "code from a model or unpickles one. Pass the model/ directory `churnml train` wrote, or an "
            "MLflow model URI."
        )
    import mlflow.artifacts
    from mlflow.exceptions import MlflowException

    try:
        local = Path(mlflow.artifacts.download_artifacts(artifact_uri=str(uri)))
    except (MlflowException, OSError) as exc:
        raise ModelLoadError(
            f"{uri}: cannot fetch the model: {str(exc).splitlines()[0][:300]}\nTrain and register one "
            "first (`churnml train -c <config>`), or pass a model URI (models:/<name>@<alias>, "
            "models:/<name>/<version>, runs:/<run_id>/model) or the model/ directory `churnml train` wrote."
        ) from None
    part = local / "artifacts" / EVALUATED_ARTIFACT
    chosen = part if evaluated and (part / SPEC_FILE).exists() else local / "artifacts" / ARTIFACT
    if not (chosen / SPEC_FILE).exists():
        raise ModelLoadError(
            f"{uri}: not a churnml model (no artifacts/{ARTIFACT}/{SPEC_FILE}); churnml never runs a "
            "model's code or unpickles it, so only models logged by `churnml train` can be loaded"
        )
    return _load_files(chosen, uri)


def _load_files(directory: Path, uri: str | Path) -> ChurnModel:
    """``ChurnModel.load`` with every way a file can be missing or corrupt as one clear error."""
    try:
        return ChurnModel.load(directory)
    except (OSError, ValueError, KeyError, TypeError, AttributeError, xgb.core.XGBoostError) as exc:
        # json.JSONDecodeError is a ValueError; a tampered booster is an XGBoostError.
        raise ModelLoadError(
            f"{uri}: the model's files are missing or corrupt ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:300] if str(exc) else ''})"
        ) from None
