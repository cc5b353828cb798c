"""The data fingerprint's row hashes equal pandas' ``hash_pandas_object(frame, index=False)``, so every
fingerprint recorded before they were computed in place still names the same data."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.data.row_hash import row_hashes


def _every_kind(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "amount": rng.normal(size=rows),
            "count": rng.integers(-5, 5, rows),
            "at": pd.to_datetime(rng.integers(0, 10**18, rows)),
            "text": pd.array(rng.choice(["x", "y", None], rows), dtype="str"),
            "string": pd.array(rng.choice(["x", "y", None], rows), dtype="string"),
            "category": pd.Categorical(rng.choice(["p", "q"], rows)),
            "flag": rng.random(rows) < 0.5,
            "small": rng.integers(0, 9, rows).astype("int32"),
            "byte": rng.integers(0, 9, rows).astype("uint8"),
            "mixed": rng.choice(np.array(["a", 1, None], dtype=object), rows),
            "nullable": pd.array(rng.integers(0, 3, rows), dtype="Int64"),
        }
    )
    frame.loc[::7, "amount"] = np.nan
    frame.loc[::11, "amount"] = -0.0  # one bit pattern for zero, as pandas
    frame.loc[::13, "amount"] = 0.0
    frame.loc[::5, "at"] = pd.NaT
    return frame


@pytest.mark.parametrize("rows", [0, 1, 1000])
def test_row_hashes_equal_pandas(rows):
    frame = _every_kind(rows)
    assert np.array_equal(row_hashes(frame), pd.util.hash_pandas_object(frame, index=False).to_numpy())


def test_no_columns_and_duplicate_names_hash_as_pandas():
    frame = _every_kind(50)
    empty = frame[[]]
    assert np.array_equal(row_hashes(empty), pd.util.hash_pandas_object(empty, index=False).to_numpy())
    twice = pd.concat([frame[["amount"]], frame[["amount", "text"]]], axis=1)
    assert np.array_equal(row_hashes(twice), pd.util.hash_pandas_object(twice, index=False).to_numpy())


def test_inputs_are_not_modified():
    frame = _every_kind(100)
    before = frame.copy()
    row_hashes(frame)
    pd.testing.assert_frame_equal(frame, before)


def test_non_native_byte_order_hashes_as_pandas():
    frame = pd.DataFrame(
        {"amount": np.array([np.nan, -0.0, 1.5], dtype=">f8"), "n": np.array([1, -2, 3], ">i8")}
    )
    assert np.array_equal(row_hashes(frame), pd.util.hash_pandas_object(frame, index=False).to_numpy())
