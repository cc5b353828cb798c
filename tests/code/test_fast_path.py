"""The service's fast path: its direct XGBoost call gives ``inplace_predict``'s margins bit for bit, and
:meth:`FastPath.checked` accepts a booster model (and only a booster model)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xgboost as xgb

from churnml.serving.fast_path import FastPath
from churnml.serving.schemas import feature_record_model
from churnml.training.model import ChurnModel, FeatureColumn

COLUMNS = (
    FeatureColumn("a", "float64"),
    FeatureColumn("b", "float64"),
    FeatureColumn("plan", "category", ("basic", "free", "pro", "team")),
    FeatureColumn("d", "float64"),
    FeatureColumn("e", "float64"),
)


@pytest.fixture(scope="module")
def booster() -> xgb.Booster:
    rng = np.random.default_rng(3)
    x = rng.normal(size=(2000, 5)).astype(np.float32)
    x[:, 2] = rng.integers(0, 4, size=2000)  # a categorical feature, as codes
    x[rng.random(x.shape) < 0.1] = np.nan
    y = ((np.nan_to_num(x[:, 0]) + (x[:, 2] == 1)) > 0.5).astype(int)
    data = xgb.DMatrix(
        x,
        y,
        feature_names=[c.name for c in COLUMNS],
        feature_types=["q", "q", "c", "q", "q"],
        enable_categorical=True,
        nthread=1,
    )
    return xgb.train({"max_depth": 4, "nthread": 1, "objective": "binary:logistic"}, data, 40)


def fast_path(booster: xgb.Booster) -> FastPath:
    path = FastPath.of(ChurnModel(booster, COLUMNS))
    assert path is not None
    return path


@pytest.mark.parametrize("trees", [40, 25])
@pytest.mark.parametrize("rows", [1, 7, 300])
def test_margins_equal_inplace_predict(booster: xgb.Booster, trees: int, rows: int) -> None:
    rng = np.random.default_rng(rows)
    x = rng.normal(size=(rows, 5)).astype(np.float32)
    x[:, 2] = rng.integers(0, 4, size=rows)
    x[rng.random(x.shape) < 0.2] = np.nan
    cut = booster[:trees]
    expected = cut.inplace_predict(x, iteration_range=(0, trees), predict_type="margin", missing=np.nan)
    margins = fast_path(cut).margins(x)
    np.testing.assert_array_equal(margins, expected)
    assert margins.dtype == np.float32 and margins.shape == (rows,)


def test_each_call_owns_its_output(booster: xgb.Booster) -> None:
    """XGBoost reuses its output buffer: a later call must not change an earlier result."""
    path = fast_path(booster)
    first = path.margins(np.zeros((3, 5), np.float32))
    kept = first.copy()
    path.margins(np.ones((3, 5), np.float32))
    np.testing.assert_array_equal(first, kept)


def test_non_contiguous_or_float64_input_is_converted(booster: xgb.Booster) -> None:
    x = np.random.default_rng(0).normal(size=(10, 10))[:, ::2]  # float64, strided
    expected = booster.inplace_predict(x.astype(np.float32), predict_type="margin", missing=np.nan)
    np.testing.assert_array_equal(fast_path(booster).margins(x), expected)


def test_records_and_frames_encode_to_predict_probas_rows(booster: xgb.Booster) -> None:
    """Records and a feature frame give the same matrix, and its probabilities are ``predict_proba``'s."""
    model = ChurnModel(booster, COLUMNS)
    path = FastPath.checked(model)
    assert path is not None
    frame = pd.DataFrame(
        {
            "customer_id": ["x", "y", "z"],
            "a": [0.5, None, -3.0],
            "b": [1e6, 2.0, None],
            "plan": ["pro", None, "basic"],
            "d": [None, None, 0.0],
            "e": [1.0, 2.0, 3.0],
        }
    )
    Record = feature_record_model(model)
    records = [
        Record.model_validate(row)
        for row in frame.astype(object).where(frame.notna(), None).to_dict("records")
    ]
    encoded = path.records(records)
    np.testing.assert_array_equal(encoded.matrix, path.frame(frame).matrix)
    np.testing.assert_array_equal(encoded.matrix, path.frame(model.prepare(frame)).matrix)  # as built
    np.testing.assert_array_equal(path.proba(encoded), model.predict_proba(frame))
    for values in (path.feature_values(encoded), path.feature_values(path.frame(frame))):
        plan, first = list(values[2]), list(values[0])
        assert plan[0] == "pro" and plan[2] == "basic" and pd.isna(plan[1])
        assert first[0] == 0.5 and pd.isna(first[1]) and first[2] == -3.0


def test_a_regression_has_no_fast_path(booster: xgb.Booster) -> None:
    from churnml.training.linear import LinearModel

    x = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0], "b": [1.0, 0.0, 1.0, 0.0], "plan": ["pro"] * 4})
    linear = LinearModel.fit(
        ChurnModel(booster, COLUMNS[:3]).prepare(x), np.array([0, 1, 0, 1]), ["plan"], 0.1
    )
    assert FastPath.of(ChurnModel(booster, COLUMNS[:3]).with_linear(linear)) is None
