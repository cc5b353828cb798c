"""The service's fast path: feature rows -> one float32 matrix -> XGBoost's C API -> calibration, no pandas.

``ChurnModel.predict_proba`` and ``explain.contributions`` spend more time in pandas and Python than in
the trees on a handful of rows (``Booster.inplace_predict`` alone: ~350 µs for one row, ~180 µs of them
outside XGBoost). :class:`FastPath` encodes rows as the matrix XGBoost reads (categories as their codes
in the training categories, exactly the codes ``ChurnModel.prepare`` gives; missing as NaN), predicts
margins through one C call whose configuration is encoded once, and computes TreeSHAP contributions from
the same matrix. It uses XGBoost's private ctypes handles, so :meth:`FastPath.checked` builds it only
when they exist and it gave ``predict_proba``'s probabilities and ``contributions``' values bit for bit
on a sample; otherwise the service scores through ``ChurnModel`` (``churnml.serving.scorer``).
"""

from __future__ import annotations

import ctypes
import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import numpy as np
import pandas as pd
import xgboost as xgb
from pydantic import BaseModel

from churnml.risk.explain import contributions
from churnml.serving.schemas import example_record, feature_record_model, field_key, records_frame
from churnml.training.model import ChurnModel

log = logging.getLogger(__name__)
CHECK_ROWS = 64  # random records of the start-up check, besides a typical and an all-missing one


@dataclass(frozen=True)
class Encoded:
    """Rows as the fast path scores them: the float32 matrix, and (on demand) each feature's values as
    drivers show them (a category's value, a number, NaN when missing)."""

    matrix: np.ndarray
    values: Callable[[], Sequence[Sequence[Any]]]


class FastPath:
    """Encoding, margins, probabilities and contributions of one booster model, without pandas."""

    def __init__(self, model: ChurnModel, nthread: int, lib: Any, check_call: Callable) -> None:
        self.model, self.nthread, self.lib, self.check_call = model, nthread, lib, check_call
        self.booster = model.trained_booster
        self.width = len(model.columns)
        self.record_values = attrgetter(*(field_key(p) for p in range(self.width)))
        self.codes = [
            (position, {category: code for code, category in enumerate(column.categories or ())})
            for position, column in enumerate(model.columns)
            if column.dtype == "category"
        ]
        self.names = model.feature_names
        self.numeric = [p for p, c in enumerate(model.columns) if c.dtype != "category"]
        self.numeric_names = [self.names[p] for p in self.numeric]
        self.feature_types = ["c" if c.dtype == "category" else "q" for c in model.columns]
        begin, end = model.iteration_range
        self.config = json.dumps(
            {
                "type": 1,  # margin
                "training": False,
                "iteration_begin": int(begin),
                "iteration_end": int(end),
                "missing": float("nan"),
                "strict_shape": False,
                "cache_id": 0,
            }
        ).encode()

    @classmethod
    def of(cls, model: ChurnModel, nthread: int = 1) -> FastPath | None:
        """The fast path of a booster model; None for a regression or without XGBoost's C handles."""
        if model.linear is not None:
            return None
        try:
            from xgboost.core import _LIB, _check_call
        except ImportError:
            return None
        if not hasattr(_LIB, "XGBoosterPredictFromDense"):
            return None
        return cls(model, nthread, _LIB, _check_call)

    @classmethod
    def checked(cls, model: ChurnModel, nthread: int = 1) -> FastPath | None:
        """:meth:`of`, kept only if it gives ``ChurnModel``'s probabilities and contributions exactly on
        records with every category, missing values and a spread of numbers (from records and from a
        prepared frame alike); a disagreement is logged and answered with None. All or nothing, on
        purpose: one path serves probabilities and explanations, so they can never come from two codes."""
        path = cls.of(model, nthread)
        if path is None:
            return None
        records = check_records(model)
        frame = model.prepare(records_frame(model, records))
        try:
            whole, one, prepared = path.records(records), path.records(records[:1]), path.frame(frame)
            agrees = (
                np.array_equal(path.proba(whole), model.predict_proba(frame))
                and np.array_equal(path.proba(one), model.predict_proba(frame.iloc[:1]))
                and np.array_equal(prepared.matrix, whole.matrix, equal_nan=True)
                and np.array_equal(path.contributions(whole), contributions(model, frame))
            )
        except Exception as exc:  # the direct C call is XGBoost-version dependent: fall back, loudly
            log.warning("fast path failed (%s): scoring through ChurnModel", exc)
            return None
        if not agrees:
            log.warning("fast path disagrees with ChurnModel.predict_proba/contributions: using the latter")
            return None
        return path

    # -- encoding ----------------------------------------------------------------------------------

    def records(self, records: Sequence[BaseModel]) -> Encoded:
        """Validated feature records (``schemas.feature_record_model``) as the matrix."""
        rows = self._raw(records)
        for values in rows:
            for position, codes in self.codes:
                value = values[position]
                if value is not None:
                    values[position] = codes.get(value)  # validated: always a training category
        matrix = np.array(rows, dtype=np.float32).reshape(len(rows), self.width)

        def feature_values() -> list[Sequence[Any]]:
            columns = zip(*self._raw(records), strict=True)
            return [[np.nan if v is None else v for v in column] for column in columns]

        return Encoded(matrix, feature_values)

    def _raw(self, records: Sequence[BaseModel]) -> list[list[Any]]:
        """The records' feature values in the model's order, as validated (categories as values)."""
        if self.width == 1:
            return [[self.record_values(record)] for record in records]
        return [list(self.record_values(record)) for record in records]

    def frame(self, frame: pd.DataFrame) -> Encoded:
        """A feature frame (any with the model's columns) as the matrix.

        The feature builders' frames already hold the training dtypes, which ``ChurnModel.prepare``
        hands back as they are; any other frame is prepared first (5 ms for one row of 126 features).
        """
        if not self._in_training_dtypes(frame):
            frame = self.model.prepare(frame)
        matrix = np.empty((len(frame), self.width), dtype=np.float32)
        matrix[:, self.numeric] = frame[self.numeric_names].to_numpy(dtype=np.float64)  # one block
        for position, _ in self.codes:
            codes = frame[self.names[position]].cat.codes.to_numpy().astype(np.float32)
            codes[codes < 0] = np.nan
            matrix[:, position] = codes
        return Encoded(matrix, lambda: FrameColumns(frame, self.names))

    def _in_training_dtypes(self, frame: pd.DataFrame) -> bool:
        """Whether every model column is there as float64, or as the training categories (unordered)."""
        if frame.columns.has_duplicates:
            return False
        # A plain dict: indexing pandas' dtypes Series by 126 names cost more than the whole check.
        dtypes = dict(zip(frame.columns, frame.dtypes, strict=True))
        if not all(dtypes.get(name) == np.float64 for name in self.numeric_names):
            return False
        return all(
            isinstance(dtype := dtypes.get(self.names[position]), pd.CategoricalDtype)
            and not dtype.ordered
            and list(dtype.categories) == list(self.model.columns[position].categories or ())
            for position, _ in self.codes
        )

    # -- scoring -----------------------------------------------------------------------------------

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """Margins of a ``(n, features)`` matrix (NaN = missing) from one ``XGBoosterPredictFromDense``."""
        if rows.dtype != np.float32 or not rows.flags.c_contiguous or rows.ndim != 2:
            rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.width)
        interface = (
            b'{"data": [%d, true], "shape": [%d, %d], "strides": null, "typestr": "<f4", "version": 3}'
            % (rows.ctypes.data, rows.shape[0], rows.shape[1])
        )
        shape = ctypes.POINTER(ctypes.c_uint64)()
        dims = ctypes.c_uint64()
        out = ctypes.POINTER(ctypes.c_float)()
        self.check_call(
            self.lib.XGBoosterPredictFromDense(
                self.booster.handle,
                interface,
                self.config,
                ctypes.c_void_p(),  # no proxy DMatrix: no base margin
                ctypes.byref(shape),
                ctypes.byref(dims),
                ctypes.byref(out),
            )
        )
        size = 1
        for axis in range(dims.value):
            size *= shape[axis]
        if size != rows.shape[0]:  # one margin per row; anything else is not a binary model's output
            raise ValueError(f"XGBoost returned {size} margins for {rows.shape[0]} rows")
        # XGBoost owns the buffer (reused by the next call on this booster): copy it out.
        return np.ctypeslib.as_array(out, shape=(size,)).copy() if size else np.empty(0, np.float32)

    def proba(self, rows: Encoded) -> np.ndarray:
        """``ChurnModel.predict_proba`` of the rows."""
        return self.model.calibrator(self.margins(rows.matrix))

    def feature_values(self, rows: Encoded) -> Sequence[Sequence[Any]]:
        """Each feature's values of the rows, as drivers show them."""
        return rows.values()

    def contributions(self, rows: Encoded) -> np.ndarray:
        """``explain.contributions`` of the rows (the DMatrix built from the matrix, not from a frame)."""
        matrix = xgb.DMatrix(
            rows.matrix,
            missing=np.nan,
            feature_names=self.model.feature_names,
            feature_types=self.feature_types,
            enable_categorical=True,
            nthread=self.nthread,
        )
        return self.booster.predict(matrix, pred_contribs=True, iteration_range=self.model.iteration_range)


class FrameColumns(Sequence[Sequence[Any]]):
    """A feature frame's model columns as object arrays, each made when first read: drivers read only
    the few features that lead a signal."""

    def __init__(self, frame: pd.DataFrame, names: Sequence[str]) -> None:
        self.frame, self.names = frame, names
        self.made: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, position: int) -> np.ndarray:  # type: ignore[override]
        if position not in self.made:
            self.made[position] = self.frame[self.names[position]].to_numpy(dtype=object)
        return self.made[position]


def check_records(model: ChurnModel, rows: int = CHECK_ROWS) -> list[BaseModel]:
    """Validated records of the start-up check: a typical one, an all-missing one, then ``rows`` cycling
    through each feature's categories (and missing) with numbers of both signs over orders of magnitude."""
    rng = np.random.default_rng(0)
    base = example_record(model)
    raw = [base, {k: None for k in base}]
    for k in range(rows):
        row: dict[str, Any] = {}
        for column in model.columns:
            if column.dtype == "category":
                choices = [None, *(column.categories or ())]
                row[column.name] = choices[k % len(choices)]
            else:
                row[column.name] = None if k % 7 == 0 else float(rng.choice([-1, 1]) * rng.exponential(50))
        raw.append(row)
    record_model = feature_record_model(model)
    return [record_model.model_validate(row) for row in raw]
