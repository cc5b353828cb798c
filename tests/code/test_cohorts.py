"""Churn rate by feature decile: bins, rates and the missing bin, against hand-computed values."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from churnml.errors import DataValidationError
from churnml.training.cohorts import churn_by_decile


def test_rates_per_bin_follow_the_labels() -> None:
    # 20 labeled rows: values 0..19, churners are exactly the 5 lowest values; 2 unlabeled rows ignored.
    frame = pd.DataFrame(
        {
            "days_since_login": [*range(20), 5.0, 6.0],
            "label": [1.0] * 5 + [0.0] * 15 + [np.nan, np.nan],
        }
    )
    table = churn_by_decile(frame, "days_since_login", bins=4)
    assert table["rows"].tolist() == [5, 5, 5, 5]
    assert table["churn_rate"].tolist() == [1.0, 0.0, 0.0, 0.0]
    assert table["low"].tolist() == [0, 5, 10, 15] and table["high"].tolist() == [4, 9, 14, 19]


def test_missing_values_get_their_own_bin_and_ties_merge_bins() -> None:
    frame = pd.DataFrame({"mrr": [10.0] * 8 + [np.nan, np.nan], "label": [0, 1, 0, 0, 0, 0, 0, 1, 1, 1]})
    table = churn_by_decile(frame, "mrr")
    assert table["bin"].tolist() == ["0", "missing"]  # one distinct value: one bin
    assert table.set_index("bin").loc["missing", "churn_rate"] == 1.0
    assert table.set_index("bin").loc["0", "churn_rate"] == pytest.approx(2 / 8)


def test_a_missing_column_names_it() -> None:
    with pytest.raises(DataValidationError, match="tenure_days"):
        churn_by_decile(pd.DataFrame({"label": [0, 1]}), "tenure_days")
