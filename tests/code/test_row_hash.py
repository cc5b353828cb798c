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


@pytest.mark.parametrize("rows_per_chunk", [1, 7, 1000, 1 << 20])
def test_fingerprint_hashed_in_chunks_is_the_sum_of_every_rows_hash(rows_per_chunk):
    """The fingerprint hashes a table a chunk of rows at a time (bounded memory beside the feature
    build): any chunk size gives the sum of pandas' hash of every row, as recorded fingerprints have."""
    from churnml.data.dataset import Dataset, combine_fingerprints

    frame = _every_kind(1000)
    dataset = Dataset(tables={"events": frame}, end=pd.Timestamp("2026-01-01"))
    columns, rows, total = dataset.fingerprint_parts(rows_per_chunk)["events"]
    expected = pd.util.hash_pandas_object(frame, index=False).to_numpy().sum(dtype=np.uint64)
    assert (columns, rows, total) == (",".join(frame.columns), 1000, int(expected))
    assert (
        combine_fingerprints(dataset.end, [dataset.fingerprint_parts(rows_per_chunk)])
        == dataset.fingerprint()
    )
