"""Margins of a few dense rows straight from XGBoost's C API, for the prediction service's hot path.

``Booster.inplace_predict`` spends more time in Python than in C on a handful of rows (building the
array interface and the call's JSON, turning the output into an array: ~350 µs for one row, ~180 µs of
them outside XGBoost). The call's configuration never changes for a served model, so it is encoded once
and only the data pointer per call. This uses XGBoost's private ctypes handles: :meth:`DensePredictor.of`
returns ``None`` when they are missing, and ``churnml.serving.serve.Scorer`` uses the predictor only after it gave
``predict_proba``'s probabilities bit for bit at start-up.
"""

from __future__ import annotations

import ctypes
import json

import numpy as np
import xgboost as xgb


class DensePredictor:
    def __init__(self, booster: xgb.Booster, iteration_range: tuple[int, int], lib, check_call) -> None:
        self.booster, self.lib, self.check_call = booster, lib, check_call
        self.width = booster.num_features()
        self.config = json.dumps(
            {
                "type": 1,  # margin
                "training": False,
                "iteration_begin": int(iteration_range[0]),
                "iteration_end": int(iteration_range[1]),
                "missing": float("nan"),
                "strict_shape": False,
                "cache_id": 0,
            }
        ).encode()

    @classmethod
    def of(cls, booster: xgb.Booster, iteration_range: tuple[int, int]) -> DensePredictor | None:
        try:
            from xgboost.core import _LIB, _check_call
        except ImportError:
            return None
        if not hasattr(_LIB, "XGBoosterPredictFromDense"):
            return None
        return cls(booster, iteration_range, _LIB, _check_call)

    def __call__(self, rows: np.ndarray) -> np.ndarray:
        """Margins of a C-contiguous float32 ``(n, features)`` matrix (NaN = missing)."""
        if rows.dtype != np.float32 or not rows.flags.c_contiguous or rows.ndim != 2:
            rows = np.ascontiguousarray(rows, dtype=np.float32).reshape(-1, self.width)
        interface = (
            b'{"data": [%d, true], "shape": [%d, %d], "strides": null, "typestr": "<f4", "version": 3}'
            % (
                rows.ctypes.data,
                rows.shape[0],
                rows.shape[1],
            )
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
