"""Property: randomly corrupted tables give a ChurnmlError (naming what is wrong) or a valid training
set from ``dataset_from_frames`` → ``build_training_set``, never another exception."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from churnml.config import FeatureConfig, LabelConfig
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import simulate
from churnml.errors import ChurnmlError
from churnml.features.training_set import TrainingSet, build_training_set

TABLES = simulate(60, 8, 3).tables
CORRUPTIONS = (
    "drop_column", "rename_column", "bad_date", "huge_number", "negative_number", "non_finite",
    "duplicate_id", "cross_typed_id", "overlapping_subscription", "stray_future_row", "empty_table",
    "far_past_date", "blank_values",
)  # fmt: skip


def _intact(subs: pd.DataFrame | None) -> bool:
    """Subscriptions an add-on row can be made from (not emptied or broken by an earlier corruption)."""
    return (
        subs is not None
        and len(subs) > 0
        and {"start_at", "end_at"} <= set(subs.columns)
        and pd.api.types.is_datetime64_any_dtype(subs["start_at"])
    )


def _corrupt(tables: dict[str, pd.DataFrame], kind: str, data: st.DataObject) -> dict[str, pd.DataFrame]:
    name = data.draw(st.sampled_from(sorted(tables)), label="table")
    frame = tables[name].copy()
    if frame.empty:
        return tables
    row = data.draw(st.integers(0, len(frame) - 1), label="row")
    column = data.draw(st.sampled_from(list(frame.columns)), label="column")
    numbers = [c for c in frame.columns if pd.api.types.is_float_dtype(frame[c])]
    times = [c for c in frame.columns if pd.api.types.is_datetime64_any_dtype(frame[c])]
    if kind == "drop_column":
        frame = frame.drop(columns=column)
    elif kind == "rename_column":
        frame = frame.rename(columns={column: column[::-1]})
    elif kind in ("bad_date", "far_past_date") and times:
        frame[times[0]] = frame[times[0]].astype(object)
        frame.loc[row, times[0]] = "not a date" if kind == "bad_date" else "1200-01-01"
    elif kind in ("huge_number", "negative_number", "non_finite") and numbers:
        value = {"huge_number": 1e308, "negative_number": -5.0, "non_finite": np.inf}[kind]
        frame.loc[row, numbers[0]] = value
    elif kind == "duplicate_id":
        frame = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)
    elif kind == "cross_typed_id" and "customer_id" in frame:
        ids = frame["customer_id"].astype(object)
        ids.iloc[row] = data.draw(st.sampled_from([17, 17.0, "17.0", " 17 ", True]), label="id")
        frame["customer_id"] = ids
    elif kind == "overlapping_subscription" and _intact(tables.get("subscriptions")):
        subs = tables["subscriptions"]
        extra = subs.iloc[[row % len(subs)]].copy()
        extra["start_at"] = extra["start_at"] + pd.Timedelta(days=3)
        extra["end_at"] = pd.NaT if data.draw(st.booleans()) else extra["start_at"] + pd.Timedelta(days=400)
        return {**tables, "subscriptions": pd.concat([subs, extra], ignore_index=True)}
    elif kind == "stray_future_row" and times:
        stray = frame.iloc[[row]].copy()
        stray[times[0]] = frame[times[0]].max() + pd.Timedelta(days=data.draw(st.integers(31, 400)))
        frame = pd.concat([frame, stray], ignore_index=True)
    elif kind == "empty_table":
        frame = frame.iloc[0:0]
    elif kind == "blank_values":
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = None
    return {**tables, name: frame}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_corrupted_tables_give_a_churnml_error_or_a_valid_training_set(data: st.DataObject) -> None:
    tables = {name: frame.copy() for name, frame in TABLES.items()}
    for kind in data.draw(
        st.lists(st.sampled_from(CORRUPTIONS), min_size=1, max_size=3), label="corruptions"
    ):
        tables = _corrupt(tables, kind, data)
    before = {name: frame.copy() for name, frame in tables.items()}
    labels = LabelConfig(definition=data.draw(st.sampled_from(["subscription", "inactivity"])))
    try:
        dataset = dataset_from_frames(tables)
        result = build_training_set(dataset, labels, FeatureConfig())
    except ChurnmlError as exc:
        assert str(exc)  # a message for the user
    else:
        assert isinstance(result, TrainingSet)
        assert set(result.frame["customer_id"]) <= set(dataset.customers["customer_id"])
        assert result.frame["label"].isin([0, 1]).all() or result.frame["label"].isna().any()
    for name, frame in before.items():  # inputs are never modified
        pd.testing.assert_frame_equal(tables[name], frame)


@pytest.mark.parametrize("definition", ["subscription", "inactivity"])
def test_the_uncorrupted_tables_build(definition: str) -> None:
    result = build_training_set(
        dataset_from_frames(TABLES), LabelConfig(definition=definition), FeatureConfig()
    )
    assert len(result.frame) > 0
