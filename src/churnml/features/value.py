"""Customer value: what a churned customer costs, one rule for the whole package.

Why one home: the training campaign's profit curve ("retain a would-be churner, save their value") and
the risk list's revenue at risk (probability x value) must put the same figure on the same customer, or
the profit-optimal depth of training and the revenue at risk of the list disagree. Both call
:func:`customer_value` with the ``customer_value`` config section.

Value = the monthly-revenue feature (``mrr`` by default) x ``months``, where the data has that feature;
else one constant for everyone (e.g. transactions-only data, or ``customer_value.feature: null``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from churnml.config import CustomerValueConfig


def customer_value(frame: pd.DataFrame, config: CustomerValueConfig) -> tuple[np.ndarray, str]:
    """Value of each row's customer, and how it was computed (for reports: "mrr x 12 months").

    A missing or negative monthly revenue counts as 0 (nothing to lose); a frame without the feature
    falls back to ``config.constant`` for every row.
    """
    if config.feature is not None and config.feature in frame.columns:
        monthly = pd.to_numeric(frame[config.feature], errors="coerce").astype(float)
        value = monthly.fillna(0.0).clip(lower=0.0).to_numpy() * config.months
        return value, f"{config.feature} x {config.months:g} months"
    return np.full(len(frame), config.constant, dtype=float), f"constant {config.constant:g}"
