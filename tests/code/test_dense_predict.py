"""The service's direct XGBoost call gives ``inplace_predict``'s margins bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import xgboost as xgb

from churnml.serving.fast_path import DensePredictor


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    x[:, 2] = rng.integers(0, 4, size=2000)  # a categorical feature, as codes
    x[rng.random(x.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + (x[:, 2] == 1)) > 0.5).astype(int)
    data = xgb.DMatrix(x, y, feature_types=["q", "q", "c", "q", "q"], enable_categorical=True, nthread=1)
    return xgb.train({"max_depth": 4, "nthread": 1, "objective": "binary:logistic"}, data, 40)


@pytest.mark.parametrize("iterations", [(0, 40), (0, 25)])
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_margins_equal_inplace_predict(booster: xgb.Booster, iterations: tuple[int, int], rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    x[:, 2] = rng.integers(0, 4, size=rows)
    x[rng.random(x.shape) < 0.2] = np.nan
    predictor = DensePredictor.of(booster, iterations)
    assert predictor is not None
    expected = booster.inplace_predict(x, iteration_range=iterations, predict_type="margin", missing=np.nan)
    margins = predictor(x)
    np.testing.assert_array_equal(margins, expected)
    assert margins.dtype == np.float32 and margins.shape == (rows,)


def test_each_call_owns_its_output(booster: xgb.Booster) -> None:
    """XGBoost reuses its output buffer: a later call must not change an earlier result."""
    predictor = DensePredictor.of(booster, (0, 40))
    assert predictor is not None
    first = predictor(np.zeros((3, 5), np.float32))
    kept = first.copy()
    predictor(np.ones((3, 5), np.float32))
    np.testing.assert_array_equal(first, kept)


def test_non_contiguous_or_float64_input_is_converted(booster: xgb.Booster) -> None:
    predictor = DensePredictor.of(booster, (0, 40))
    assert predictor is not None
    x = np.random.default_rng(0).normal(size=(10, 10))[:, ::2]  # float64, strided
    expected = booster.inplace_predict(x.astype(np.float32), predict_type="margin", missing=np.nan)
    np.testing.assert_array_equal(predictor(x), expected)
