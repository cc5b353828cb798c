"""Cohort analysis: churn rate by feature decile, the first plot to read when exploring a metric.

As in *Fighting Churn with Data*: if churn rate does not change across a feature's deciles, the feature
carries little signal on its own; a monotone slope shows which direction is risky.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from churnml.errors import DataValidationError


def churn_by_decile(frame: pd.DataFrame, feature: str, bins: int = 10) -> pd.DataFrame:
    """Churn rate per quantile bin of ``feature`` over labeled rows.

    Returns one row per bin (``bin``, ``low``, ``high``, ``mean_value``, ``rows``, ``churn_rate``), plus a
    ``missing`` bin when the feature has missing values. Ties can merge bins, so there may be fewer.
    """
    for column in (feature, "label"):
        if column not in frame.columns:
            raise DataValidationError("training set", column, "no such column for the cohort table")
    labeled = frame.loc[frame["label"].notna(), [feature, "label"]]
    values = pd.to_numeric(labeled[feature], errors="coerce").astype(float)
    label = labeled["label"].astype(float)
    present = values.notna()
    if values[present].nunique() > 1:
        codes = pd.qcut(values[present], q=bins, labels=False, duplicates="drop")
    else:  # qcut finds no edges in a constant: one bin
        codes = pd.Series(0, index=values.index[present])
    grouped = pd.DataFrame({"bin": codes, "value": values[present], "label": label[present]}).groupby("bin")
    table = grouped.agg(
        low=("value", "min"),
        high=("value", "max"),
        mean_value=("value", "mean"),
        rows=("label", "size"),
        churn_rate=("label", "mean"),
    ).reset_index()
    table["bin"] = table["bin"].astype(int).astype(str)
    if (~present).any():
        missing = label[~present]
        row: list[Any] = ["missing", np.nan, np.nan, np.nan, len(missing), missing.mean()]
        table.loc[len(table)] = row
    return table
