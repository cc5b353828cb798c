"""Whether rows are already in (customer, time) order: the loader and every timeline ask before sorting."""

from __future__ import annotations

import numpy as np

SORT_CHECK_BLOCK = 1 << 20  # rows per block: its temporaries are reused memory, not fresh pages


def is_sorted(codes: np.ndarray, times: np.ndarray) -> bool:
    """Whether rows are in (code, time) order (ties allowed). In blocks, so no temporary is as long
    as the table: on millions of rows the page faults of fresh temporaries cost more than the compares."""
    for lo in range(0, len(codes) - 1, SORT_CHECK_BLOCK):
        hi = min(lo + SORT_CHECK_BLOCK, len(codes) - 1)  # compares rows lo..hi (one row of overlap)
        after, before = codes[lo + 1 : hi + 1], codes[lo:hi]  # compared, not subtracted: unsigned codes too
        if np.any((after < before) | ((after == before) & (times[lo + 1 : hi + 1] < times[lo:hi]))):
            return False
    return True
