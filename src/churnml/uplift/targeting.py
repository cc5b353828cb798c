"""Targeting by uplift: each customer's best play, net value and sleeping-dog flag, the list's expected
saves, and the profit curve of a ranking.

Why net value and not uplift alone: ranked by saves, a budget goes to cheap, low-value customers
(benchmarks/bench_uplift.py: uplift made less profit than risk x value). A contact is worth the churn
it prevents times what the customer is worth, less what it costs (Devriendt & Verbeke's view for
uplift; Verbraken et al.'s for churn models): ``net value = uplift x customer value - contact cost``.
The customer's value is the same for every play, so the best play is the one whose saves are worth the
most after its own cost. Pure functions over arrays and frames; ``churnml.pipelines.score`` wires them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from churnml.uplift.learner import slug

PLAY_PREFIX = "uplift_"
COLUMNS = ("best_play", "uplift", "expected_saves", "net_value", "sleeping_dog")


def play_column(play: str) -> str:
    """The risk list's column of one play's uplift: ``uplift_billing_outreach``."""
    return PLAY_PREFIX + slug(play).replace("-", "_")


def targeting(
    effects: pd.DataFrame, value: np.ndarray, costs: Mapping[str, float], tolerance: float
) -> pd.DataFrame:
    """Per row of ``effects`` (one column per play: the reduction in churn probability a contact with
    it brings): each play's uplift (:func:`play_column`), the ``best_play`` (the highest net value; ties
    go to the first play), its ``uplift`` and ``net_value`` (uplift x ``value`` - the play's cost), and
    ``sleeping_dog``: every play's uplift is below ``-tolerance``, so any contact is expected to push
    the customer out. A play's missing uplift counts as no play."""
    plays = [str(p) for p in effects.columns]
    if not plays:
        raise ValueError("targeting needs at least one play's uplift")
    lift = effects.to_numpy(dtype=np.float64)
    worth = np.asarray(value, dtype=np.float64)[:, None]
    net = lift * worth - np.array([costs[p] for p in plays], dtype=np.float64)[None, :]
    known = ~np.isnan(net)
    best = np.argmax(np.where(known, net, -np.inf), axis=1)
    rows = np.arange(len(effects))
    any_play = known.any(axis=1)
    best_lift = np.where(any_play, lift[rows, best], np.nan)
    with np.errstate(invalid="ignore"):
        dog = any_play & (np.nanmax(np.where(known, lift, -np.inf), axis=1) < -tolerance)
    out = pd.DataFrame(
        {
            "best_play": pd.Series(
                np.where(any_play, np.array(plays, dtype=object)[best], None),
                index=effects.index,
                dtype=object,
            ),
            "uplift": best_lift,
            "net_value": np.where(any_play, net[rows, best], np.nan),
            "sleeping_dog": dog,
        },
        index=effects.index,
    )
    per_play = pd.DataFrame({play_column(p): lift[:, k] for k, p in enumerate(plays)}, index=effects.index)
    return pd.concat([out, per_play], axis=1)


def expected_saves(uplift: np.ndarray, action: np.ndarray) -> np.ndarray:
    """Churners a customer's planned contact is expected to keep: the best play's uplift where the list
    contacts them (negative for a contacted sleeping dog), 0 for the held out and the others."""
    contacted = np.asarray(action, dtype=object) == "contact"
    return np.where(contacted, np.nan_to_num(np.asarray(uplift, dtype=np.float64)), 0.0)


def net_value_curve(net_value: np.ndarray) -> pd.DataFrame:
    """Profit curve of a ranking: customers contacted in the given order (0..n) and the cumulative
    expected net value (measured uplift x value - cost; customers without uplift add nothing)."""
    gained = np.concatenate([[0.0], np.cumsum(np.nan_to_num(np.asarray(net_value, dtype=np.float64)))])
    return pd.DataFrame({"contacted": np.arange(len(gained)), "net_value": gained})


def uplift_figures(risk_list: pd.DataFrame) -> dict[str, Any]:
    """The list's uplift totals (for summary.json, the report and MLflow): expected saves and net value
    of the planned contacts, sleeping dogs (all, and among the planned contacts), and the most
    profitable depth of the list's own ranking."""
    contacted = risk_list["action"].to_numpy(dtype=object) == "contact"
    dogs = risk_list["sleeping_dog"].to_numpy(dtype=bool)
    net = risk_list["net_value"].to_numpy(dtype=np.float64)
    curve = net_value_curve(net)
    best = int(np.argmax(curve["net_value"].to_numpy()))
    return {
        "expected_saves": float(risk_list["expected_saves"].sum()),
        "expected_net_value": float(np.nansum(net[contacted])),
        "customers_positive_net_value": int(np.sum(net > 0)),
        "sleeping_dogs": int(dogs.sum()),
        "sleeping_dogs_to_contact": int((dogs & contacted).sum()),
        "best_depth": best,
        "best_depth_net_value": float(curve["net_value"].iloc[best]),
    }
