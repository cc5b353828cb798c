"""Randomised holdouts in the risk list: who is contacted and who is deliberately left alone.

Why: without a group the list recommends but nobody contacts, no one can tell whether acting on the
list saves anyone (a contacted customer who stays might have stayed anyway). Within each risk group a
share of the at-risk customers is held out; comparing their churn with the contacted ones' later gives
each play's effect.

The draw is a hash of (seed, as-of date, customer id): reproducible without stored state, independent
of row order and of who else is scored, and different at every as-of date. A customer held out on the
previous list is contacted this time (unless ``risk.holdout_repeat``), so nobody goes uncontacted twice
in a row.
"""

from __future__ import annotations

import hashlib
import math
from fractions import Fraction

import numpy as np
import pandas as pd

from churnml.data.load import canonical_id

ACTIONS = ("contact", "holdout")


def draw(customer_ids: pd.Series, as_of: pd.Timestamp, seed: int) -> np.ndarray:
    """A uniform number in [0, 1) per customer from SHA-256 of seed, as-of date and id."""
    day = pd.Timestamp(as_of).strftime("%Y-%m-%d")
    out = np.empty(len(customer_ids))
    for position, customer in enumerate(customer_ids.astype(str)):
        digest = hashlib.sha256(f"{seed}|{day}|{customer}".encode()).digest()
        out[position] = int.from_bytes(digest[:8], "big") / 2**64
    return out


def assign_actions(
    listed: pd.DataFrame,
    previous: pd.DataFrame | None,
    fraction: float,
    as_of: pd.Timestamp,
    seed: int,
    repeat: bool = False,
) -> pd.Series:
    """``action`` per row of ``listed``: "contact" or "holdout" for at-risk customers, missing for others.

    In each risk group (customers without one form their own), ``round(fraction x at-risk customers)``
    (rounded half up) are held out: those with the lowest draws among the eligible ones (not held out on
    ``previous``, whose ``action`` column is read when it has one, unless ``repeat``). When too few are
    eligible, fewer are held out.
    """
    action = pd.Series(pd.NA, index=listed.index, dtype="str")
    at_risk = listed["at_risk"].to_numpy(bool)
    action[at_risk] = "contact"
    if fraction <= 0 or not at_risk.any():
        return action
    held_before: set[str] = set()
    if not repeat and previous is not None and "action" in previous.columns:
        held = previous.loc[previous["action"] == "holdout", "customer_id"]
        held_before = {canonical_id(str(customer)) for customer in held}
    candidates = listed.loc[at_risk, ["customer_id", "risk_group"]].copy()
    candidates["draw"] = draw(candidates["customer_id"], as_of, seed)
    candidates["eligible"] = [canonical_id(str(c)) not in held_before for c in candidates["customer_id"]]
    groups = candidates["risk_group"].astype("object").where(candidates["risk_group"].notna(), "\0none")
    for _, members in candidates.groupby(groups, sort=False):
        count = math.floor(
            Fraction(str(fraction)) * len(members) + Fraction(1, 2)
        )  # exact: 0.29 x 50 is 14.5
        chosen = members.loc[members["eligible"]].sort_values(["draw", "customer_id"]).head(count)
        action[chosen.index] = "holdout"
    return action
