"""Row hashes equal to ``pandas.util.hash_pandas_object(frame, index=False)``, computed in place.

pandas makes several full-size temporaries per numeric column (a copy, three shifts, the combination);
on a machine where touching fresh memory costs more than the arithmetic, that was most of the data
fingerprint's 0.7 s for 7 M events. Here numbers, times and booleans are mixed in two reused buffers,
with pandas' constants, so the values (and every fingerprint already recorded) stay the same; text and
other types go through pandas' own ``hash_array`` (Arrow's dictionary encoding, already fast).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

MIX = (np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB))  # pandas' _hash_ndarray
SEED, MULTIPLIER, FINAL = np.uint64(0x345678), np.uint64(1000003), np.uint64(97531)  # its tuple combine
NAN_BITS = np.array(np.nan).view("u8")
# pandas canonicalises NaN and -0.0 before mixing only since GH#28363 (not in the 2.x that pyproject
# allows): follow whichever pandas is installed, so the hashes stay equal to its hash_pandas_object.
CANONICAL_FLOATS = bool(pd.util.hash_array(np.array([0.0]))[0] == pd.util.hash_array(np.array([-0.0]))[0])


def _mixed(values: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """pandas' bit mixer (splitmix64's finaliser), in place on ``values``."""
    for shift, factor in ((30, MIX[0]), (27, MIX[1])):
        np.right_shift(values, np.uint64(shift), out=scratch)
        values ^= scratch
        values *= factor
    np.right_shift(values, np.uint64(31), out=scratch)
    values ^= scratch
    return values


def column_hashes(values: pd.Series, work: np.ndarray, scratch: np.ndarray) -> np.ndarray:
    """One column's hashes: in ``work`` for 64-bit numbers, times and booleans, else a new array."""
    dtype = values.dtype
    if (
        not isinstance(dtype, np.dtype)
        or dtype.kind not in "fiuMmb"
        or dtype.itemsize != (1 if dtype.kind == "b" else 8)
        or not dtype.isnative  # pandas' NaN pattern is in the column's byte order
    ):
        # text, categories, small integers (pandas widens their bits differently): pandas itself
        return pd.util.hash_pandas_object(values, index=False).to_numpy()
    raw = values.to_numpy()
    if dtype.kind == "b":
        np.copyto(work, raw, casting="unsafe")
    else:
        np.copyto(work, raw.view("u8"))
        if dtype.kind == "f" and CANONICAL_FLOATS:  # one bit pattern for NaN and for zero, as pandas
            work[np.isnan(raw)] = NAN_BITS
            work[raw == 0] = 0
    return _mixed(work, scratch)


def row_hashes(frame: pd.DataFrame) -> np.ndarray:
    """uint64 per row, the same as ``pd.util.hash_pandas_object(frame, index=False).to_numpy()``."""
    rows, columns = len(frame), frame.shape[1]
    out = np.full(rows, SEED, dtype=np.uint64)
    work, scratch = np.empty(rows, dtype=np.uint64), np.empty(rows, dtype=np.uint64)
    multiplier = MULTIPLIER
    for i, name in enumerate(frame.columns):
        out ^= column_hashes(frame.iloc[:, i] if frame.columns.has_duplicates else frame[name], work, scratch)
        out *= multiplier
        multiplier += np.uint64(82520 + 2 * (columns - i))
    out += FINAL
    return out
