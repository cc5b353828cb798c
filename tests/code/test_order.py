"""The sortedness check shared by the loader and the timelines."""

from __future__ import annotations

import numpy as np
import pytest

from churnml.data import order


@pytest.mark.parametrize("dtype", [np.int64, np.int32, np.uint32, np.uint64])
def test_a_decreasing_code_is_unsorted_whatever_the_integer_type(dtype):
    assert not order.is_sorted(np.array([1, 0], dtype=dtype), np.array([0, 0]))
    assert order.is_sorted(np.array([0, 1], dtype=dtype), np.array([5, 0]))


def test_blocks_overlap_by_one_row(monkeypatch):
    monkeypatch.setattr(order, "SORT_CHECK_BLOCK", 3)
    codes = np.arange(10)
    assert order.is_sorted(codes, np.zeros(10))
    for i in range(9):  # a descent between any two neighbours, block edges included
        swapped = codes.copy()
        swapped[[i, i + 1]] = swapped[[i + 1, i]]
        assert not order.is_sorted(swapped, np.zeros(10))
