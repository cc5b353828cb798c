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
from churnml.errors import ConfigError

DEFAULT_FEATURE = CustomerValueConfig.model_fields["feature"].default


def _numeric_columns(frame: pd.DataFrame) -> list[str]:
    return [str(c) for c in frame.columns if pd.api.types.is_numeric_dtype(frame[c].dtype)]


def customer_value(frame: pd.DataFrame, config: CustomerValueConfig) -> tuple[np.ndarray, str]:
    """Value of each row's customer, and how it was computed (for reports: "mrr x 12 months").

    A missing or negative monthly revenue counts as 0 (nothing to lose). A frame without the default
    feature (``mrr``: data without subscriptions or a customers.mrr column) falls back to
    ``config.constant`` for every row; any other feature that is not there is a misspelt name, a
    ConfigError rather than every customer silently worth the constant.
    """
    if config.feature is not None and config.feature not in frame.columns:
        if config.feature != DEFAULT_FEATURE:
            raise ConfigError(
                f"customer_value.feature: no feature named {config.feature!r} "
                f"(value features here: {', '.join(_numeric_columns(frame)[:12]) or 'none'}); "
                "set customer_value.feature: null to value every customer at customer_value.constant"
            )
    elif config.feature is not None:
        monthly = pd.to_numeric(frame[config.feature], errors="coerce").astype(float)
        value = monthly.fillna(0.0).clip(lower=0.0).to_numpy() * config.months
        return value, f"{config.feature} x {config.months:g} months"
    return np.full(len(frame), config.constant, dtype=float), f"constant {config.constant:g}"
