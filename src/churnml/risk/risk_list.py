"""The ranked risk list: customer value, risk bands, ranking, risk groups with their plays, and trend.

Pure functions over plain frames and arrays; ``churnml.pipelines.score`` only wires them and does the
I/O:

- **scored frame** (:func:`scored_frame`): calibrated probability, customer value
  (``churnml.features.value``: MRR x months, or a constant — the training campaign's value too) and
  revenue at risk, band, at-risk flag, segment and lifecycle stage, ranked;
- **bands** from fixed probability thresholds (never quantiles of the run: "high" means the same every
  month);
- **ranking** by revenue at risk (or probability, or net value where an uplift model gives each
  customer a best play: ``churnml.uplift.targeting``), ties broken by probability then customer id;
- **risk groups**: each at-risk customer joins the playbook group whose signals add the most risk
  (SHAP contributions summed per group, what a short history explains counted as newness, times the
  group's ``weight``), and gets that group's play (``churnml.risk.drivers``);
- **the published list** (:func:`publish`): plays, trend against the previous run's list (probability
  change and a ``newly_at_risk`` flag) and the column order;
- **summary and history**: the run's headline figures and one history line per run.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from churnml.config import Config
from churnml.errors import ConfigError
from churnml.features.catalogue import FeatureSpec, recency_feature
from churnml.features.value import customer_value
from churnml.risk.explain import Driver, Signals
from churnml.risk.holdouts import assign_actions
from churnml.risk.segments import segments_of
from churnml.uplift.targeting import COLUMNS, play_column, targeting
from churnml.uplift.targeting import expected_saves as uplift_saves


class PlayGroup(BaseModel):
    """A risk group: what to do (play), who does it, and which driver signals/families belong to it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    label: str
    play: str
    description: str = ""
    owner: str = ""
    signals: list[str] = Field(default_factory=list, description="Signal names or shell patterns.")
    families: list[str] = Field(default_factory=list, description="Feature families (second pass).")
    causes: list[str] = Field(default_factory=list, description="Simulator factors this group stands for.")
    weight: float = Field(
        1.0,
        gt=0,
        le=1,
        description="Multiplies the group's risk when groups are compared. Below 1 for a group whose "
        "signals also carry the other groups' causes (fading usage: customers who leave for any reason "
        "use the product less first), so that a specific cause adding nearly as much risk is named.",
    )
    cost: float | None = Field(
        None,
        ge=0,
        description="Cost of one contact with this play (net value = uplift x customer value - cost). "
        "None = campaign.cost_per_contact.",
    )


class Playbook(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    default_group: str
    groups: dict[str, PlayGroup]

    @model_validator(mode="after")
    def _default_exists(self) -> Playbook:
        if self.default_group not in self.groups:
            raise ValueError(f"default_group {self.default_group!r} is not one of the groups")
        return self

    def group_of(self, signal: str, family: str) -> str:
        """The group of a driver signal: first signal pattern match, else first family match, else default."""
        for name, group in self.groups.items():
            if any(fnmatch.fnmatchcase(signal, pattern) for pattern in group.signals):
                return name
        for name, group in self.groups.items():
            if family in group.families:
                return name
        return self.default_group

    def play_costs(self, plays: Sequence[str], default: float) -> dict[str, float]:
        """Cost of one contact per play: the cost of the group whose play it is (names compared whatever
        their case and spacing, as the review does), else ``default``."""
        costs = {
            " ".join(group.play.split()).casefold(): group.cost
            for group in self.groups.values()
            if group.cost is not None
        }
        found = {play: costs.get(" ".join(str(play).split()).casefold()) for play in plays}
        return {play: default if cost is None else float(cost) for play, cost in found.items()}

    def cause_groups(self) -> dict[str, str]:
        """Simulator factor -> group."""
        return {cause: name for name, group in self.groups.items() for cause in group.causes}


def _group(label, play, description, owner, signals=(), families=(), causes=(), weight=1.0) -> dict[str, Any]:
    return {
        "label": label,
        "play": play,
        "description": description,
        "owner": owner,
        "signals": list(signals),
        "families": list(families),
        "causes": list(causes),
        **({"weight": weight} if weight != 1.0 else {}),
    }


# configs/playbook.yaml is this, written out (a test keeps them equal).
DEFAULT_PLAYBOOK: dict[str, Any] = {
    "default_group": "other",
    "groups": {
        "failed_payments": _group(
            "Failed payments",
            "Billing outreach",
            "Ask the billing contact to update the card before the next retry; offer invoicing.",
            "Billing operations",
            ["failed_payments", "payments"],
            ["billing"],
            ["billing"],
        ),
        "support_trouble": _group(
            "Support trouble",
            "Success-manager call",
            "A senior success manager calls within 48 hours, closes open tickets and follows up.",
            "Customer success",
            ["support_*"],
            ["support"],
            ["support"],
        ),
        "weak_onboarding": _group(
            "Weak onboarding",
            "Webinar invitation",
            "Invite to the next onboarding webinar or book a one-to-one setup consultation.",
            "Onboarding team",
            ["onboarding_*"],
            [],
            ["onboarding"],
        ),
        "new_customer": _group(
            "New customer",
            "First-renewal check-in",
            "Welcome call before the first renewals; confirm the customer reached first value.",
            "Customer success",
            ["tenure", "subscription_age", "subscription_status", "reactivations"],
            ["tenure"],
            ["tenure"],
        ),
        "promotion": _group(
            "Promotion-acquired",
            "Loyalty offer",
            "Offer an annual plan at a loyalty price before the promotional price runs out.",
            "Lifecycle marketing",
            ["acquisition"],
            [],
            ["promotion"],
        ),
        "plan_fit": _group(
            "Plan fit",
            "Plan review",
            "Review the plan against actual use; suggest the plan that fits (up or down).",
            "Account management",
            ["plan", "plan_changes", "mrr"],
            [],
            ["plan"],
        ),
        "fading_usage": _group(
            "Fading usage",
            "Re-engagement campaign",
            "Usage tips and a nudge sequence on the features the customer stopped using.",
            "Lifecycle marketing",
            [
                "activity",
                "*_activity",
                "activity_trend",
                "feature_breadth",
                "usage_value",
                "email_engagement",
            ],
            ["recency", "frequency", "engagement"],
            ["engagement"],
            weight=0.75,
        ),
        "other": _group(
            "Other",
            "Account review",
            "The account owner reviews the drivers and picks a play.",
            "Account management",
        ),
    },
}


def load_playbook(path: str | Path | None = None) -> Playbook:
    """The playbook in ``path`` (YAML), or the built-in one; errors name the file and the key."""
    raw: Any = DEFAULT_PLAYBOOK
    if path is not None:
        try:
            raw = yaml.safe_load(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"risk.playbook: file not found: {path}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"risk.playbook: {path} is not valid YAML: {exc}") from None
    try:
        return Playbook.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(root)'}: {e['msg']}" for e in exc.errors())
        raise ConfigError(f"risk.playbook {path or '(built-in)'}: {problems}") from None


# ---------------------------------------------------------------------------------------------------
# Bands, ranking, the scored frame.


def band_of(probability: np.ndarray, bands: Mapping[str, float]) -> np.ndarray:
    """Band name per probability: the last band whose lower bound is at or below it."""
    names = np.array(list(bands), dtype=object)
    lows = np.array(list(bands.values()), dtype=float)
    index = np.searchsorted(lows, np.asarray(probability, dtype=float), side="right") - 1
    return names[np.clip(index, 0, len(names) - 1)]


RANK_KEYS = {
    "revenue": ["revenue_at_risk", "churn_probability"],
    "probability": ["churn_probability", "revenue_at_risk"],
    "net_value": ["net_value", "revenue_at_risk"],  # customers without an uplift last
}


def rank(frame: pd.DataFrame, by: str) -> pd.DataFrame:
    """Sorted copy with a 1-based ``rank`` column first: revenue at risk (or probability, or net value)
    descending, ties by probability (or revenue), then customer id, so the order is total and
    reproducible."""
    keys = RANK_KEYS[by]
    if "net_value" in keys and "net_value" not in frame.columns:
        raise ConfigError("risk.rank_by=net_value needs an uplift model (docs/uplift.md): none was used")
    ordered = frame.sort_values(
        [*keys, "customer_id"], ascending=[False, False, True], kind="stable", na_position="last"
    ).reset_index(drop=True)
    ordered.insert(0, "rank", np.arange(1, len(ordered) + 1))
    return ordered


def scored_frame(
    frame: pd.DataFrame,
    probability: np.ndarray,
    tenure_days: np.ndarray,
    specs: Sequence[FeatureSpec],
    config: Config,
) -> tuple[pd.DataFrame, str]:
    """Probability, value, revenue at risk, band, segment and lifecycle stage per customer of ``frame``
    (their features), ranked (by revenue until :func:`with_uplift` gives the net value to rank by);
    ``row`` is each customer's position in ``frame``. Also returns how the value was computed ("mrr x 12
    months")."""
    value, basis = customer_value(frame, config.customer_value)
    activity = recency_feature(
        specs, config.risk.segments.activity_feature or config.evaluation.recency_feature
    )
    scored = pd.DataFrame(
        {
            "customer_id": frame["customer_id"].to_numpy(),
            "churn_probability": probability,
            "risk_band": band_of(probability, config.risk.bands),
            "at_risk": probability >= config.risk.at_risk_threshold,
            "revenue_at_risk": probability * value,
            "customer_value": value,
            "tenure_days": tenure_days,
        }
    )
    segments = segments_of(frame, specs, tenure_days, config.risk.segments, activity)
    scored = pd.concat([scored, segments], axis=1)
    scored["row"] = np.arange(len(scored))
    by = config.risk.rank_by
    return rank(scored, "revenue" if by == "net_value" else by), basis


def applicable(effects: pd.DataFrame, groups: pd.Series, playbook: Playbook, which: str) -> pd.DataFrame:
    """``effects`` (one column per play) with the plays that do not apply to a row missing: with
    ``which == "risk_group"`` only the play of the row's risk group applies (none without a group), as
    a play's uplift model learnt from the customers it was tried on; with ``all``, every play."""
    if which == "all":
        return effects
    key = {name: " ".join(group.play.split()).casefold() for name, group in playbook.groups.items()}
    wanted = np.array([key.get(group) for group in groups], dtype=object)  # no group: None, no play
    plays = [" ".join(str(play).split()).casefold() for play in effects.columns]
    keep = wanted[:, None] == np.array(plays, dtype=object)[None, :]
    # numpy, not DataFrame.where: the service calls this per request (2 ms of pandas for one row).
    kept = np.where(keep, effects.to_numpy(dtype=np.float64), np.nan)
    return pd.DataFrame(kept, index=effects.index, columns=effects.columns)


def with_uplift(
    scored: pd.DataFrame,
    effects: pd.DataFrame,
    costs: Mapping[str, float],
    playbook: Playbook,
    config: Config,
) -> pd.DataFrame:
    """The scored list (with risk groups) plus each applicable play's uplift, the best play, its uplift
    and net value and the sleeping-dog flag (``churnml.uplift.targeting``), ranked again by
    ``risk.rank_by``. ``effects``: each play's uplift per row of the scored features (``scored["row"]``)."""
    rows = effects.iloc[scored["row"].to_numpy()].reset_index(drop=True)
    rows = applicable(rows, scored["risk_group"].reset_index(drop=True), playbook, config.uplift.plays)
    value = scored["customer_value"].to_numpy(dtype=np.float64)
    chosen = targeting(rows, value, costs, config.uplift.sleeping_dog_tolerance)
    out = pd.concat([scored.reset_index(drop=True).drop(columns="rank"), chosen], axis=1)
    return rank(out, config.risk.rank_by)


# ---------------------------------------------------------------------------------------------------
# Risk groups.


def group_membership(signals: Signals, playbook: Playbook) -> tuple[list[str], np.ndarray]:
    """Groups (playbook order) and the 0/1 matrix signals x groups."""
    groups = list(playbook.groups)
    membership = np.zeros((len(signals.names), len(groups)), dtype=np.float32)
    for row, (signal, family) in enumerate(zip(signals.names, signals.families, strict=True)):
        membership[row, groups.index(playbook.group_of(signal, family))] = 1.0
    return groups, membership


def assign_groups(signal_contribs: np.ndarray, signals: Signals, playbook: Playbook) -> np.ndarray:
    """Per row: the group whose signals add the most risk (net, times the group's ``weight``), or the
    default group if none adds any.

    ``signal_contribs`` are per-signal contributions (``Explainer.group_signals``: what a short history
    explains already moved to tenure). Each row's group sums are taken on their own (as
    ``Signals.sum``), so a customer's group does not depend on who else is grouped with it.
    """
    groups, membership = group_membership(signals, playbook)
    per_group = Signals(tuple(groups), membership, ("",) * len(groups)).sum(signal_contribs)
    weighted = per_group * np.array([playbook.groups[name].weight for name in groups])
    best = weighted.argmax(axis=1) if len(weighted) else np.zeros(0, dtype=int)
    names = np.array(groups, dtype=object)[best]
    positive = weighted.max(axis=1) > 0 if len(weighted) else np.zeros(0, dtype=bool)
    return np.where(positive, names, playbook.default_group).astype(object)


def driver_columns(drivers: Sequence[Sequence[Driver]], top_k: int) -> dict[str, list[str | None]]:
    """``driver_1`` .. ``driver_k`` sentence columns (None where a customer has fewer drivers)."""
    return {
        f"driver_{k + 1}": [row[k].text if len(row) > k else None for row in drivers] for k in range(top_k)
    }


def with_plays(frame: pd.DataFrame, playbook: Playbook) -> pd.DataFrame:
    """``play`` and ``play_owner`` columns from each row's ``risk_group``."""
    plays = {name: group.play for name, group in playbook.groups.items()}
    owners = {name: group.owner for name, group in playbook.groups.items()}
    return frame.assign(
        play=frame["risk_group"].map(plays).astype(object),
        play_owner=frame["risk_group"].map(owners).astype(object),
    )


def group_summary(risk_list: pd.DataFrame, playbook: Playbook) -> pd.DataFrame:
    """One row per playbook group: at-risk customers (to contact, held out), revenue at risk, expected
    churners, the play."""
    grouped = risk_list.loc[risk_list["risk_group"].notna()].groupby("risk_group", sort=False)
    stats = pd.DataFrame(
        {
            "customers": grouped.size(),
            "to_contact": grouped["action"].agg(lambda a: int((a == "contact").sum())),
            "held_out": grouped["action"].agg(lambda a: int((a == "holdout").sum())),
            "revenue_at_risk": grouped["revenue_at_risk"].sum(),
            "expected_churners": grouped["churn_probability"].sum(),
            "mean_probability": grouped["churn_probability"].mean(),
        }
    )
    rows = []
    for name, group in playbook.groups.items():
        found = stats.loc[name].to_dict() if name in stats.index else None
        rows.append(
            {
                "risk_group": name,
                "label": group.label,
                "customers": int(found["customers"]) if found is not None else 0,
                "to_contact": int(found["to_contact"]) if found is not None else 0,
                "held_out": int(found["held_out"]) if found is not None else 0,
                "revenue_at_risk": float(found["revenue_at_risk"]) if found is not None else 0.0,
                "expected_churners": float(found["expected_churners"]) if found is not None else 0.0,
                "mean_probability": float(found["mean_probability"]) if found is not None else np.nan,
                "play": group.play,
                "owner": group.owner,
                "description": group.description,
            }
        )
    summary = pd.DataFrame(rows)
    return summary.sort_values(["revenue_at_risk", "customers"], ascending=False, kind="stable").reset_index(
        drop=True
    )


# ---------------------------------------------------------------------------------------------------
# Trend.


def add_trend(current: pd.DataFrame, previous: pd.DataFrame | None) -> pd.DataFrame:
    """``previous_probability``, ``probability_change`` and ``newly_at_risk`` against an earlier list.

    Newly at risk: at risk now and not at risk before (customers new to the list count as not at risk
    before). Without a previous list the columns are missing values and no one is newly at risk.
    """
    if previous is None or previous.empty:
        return current.assign(previous_probability=np.nan, probability_change=np.nan, newly_at_risk=False)
    before = previous.set_index("customer_id")
    prev_p = current["customer_id"].map(before["churn_probability"]).astype(float)
    prev_at_risk = current["customer_id"].map(before["at_risk"]).astype("boolean").fillna(False)
    return current.assign(
        previous_probability=prev_p,
        probability_change=current["churn_probability"] - prev_p,
        newly_at_risk=current["at_risk"].to_numpy(bool) & ~prev_at_risk.to_numpy(bool),
    )


# ---------------------------------------------------------------------------------------------------
# The published list.


def list_columns(top_k: int, plays: Sequence[str] = ()) -> list[str]:
    """The risk list's columns, in published order; with uplift, the targeting columns after ``action``
    (``plays``: the uplift model's, each with its uplift column)."""
    uplift = [*COLUMNS, *(play_column(p) for p in plays)] if plays else []
    return [
        "rank",
        "customer_id",
        "churn_probability",
        "risk_band",
        "at_risk",
        "revenue_at_risk",
        "customer_value",
        "segment",
        "lifecycle_stage",
        "tenure_days",
        "risk_group",
        *(f"driver_{k + 1}" for k in range(top_k)),
        "play",
        "play_owner",
        "action",
        *uplift,
        "previous_probability",
        "probability_change",
        "newly_at_risk",
        "as_of",
        "model_version",
    ]


def publish(
    scored: pd.DataFrame,
    previous: pd.DataFrame | None,
    playbook: Playbook,
    config: Config,
    as_of: pd.Timestamp,
    version: str | None,
    plays: Sequence[str] = (),
) -> pd.DataFrame:
    """The list as published: plays, actions (contact or a randomised holdout), trend against
    ``previous``, as-of date, model version, column order; with uplift (``plays``, the uplift model's),
    each contacted customer's expected saves."""
    listed = with_plays(scored, playbook)
    risk = config.risk
    listed["action"] = assign_actions(
        listed, previous, risk.holdout_fraction, as_of, config.seed, risk.holdout_repeat
    )
    if plays:
        listed["expected_saves"] = uplift_saves(listed["uplift"].to_numpy(), listed["action"].to_numpy())
    listed = add_trend(listed, previous)
    listed["as_of"] = as_of
    listed["model_version"] = version
    return listed[list_columns(risk.top_k, plays)]


# ---------------------------------------------------------------------------------------------------
# Headline figures, the run's summary and history, the simulator's ground truth.


def headline(risk_list: pd.DataFrame) -> dict[str, float]:
    """Figures for the top of the report and the MLflow run."""
    at_risk = risk_list["at_risk"].to_numpy(bool)
    change = risk_list["probability_change"]
    return {
        "customers_scored": float(len(risk_list)),
        "customers_at_risk": float(at_risk.sum()),
        "share_at_risk": float(at_risk.mean()) if len(risk_list) else 0.0,
        "revenue_at_risk": float(risk_list["revenue_at_risk"].sum()),
        "revenue_at_risk_at_risk_customers": float(risk_list.loc[at_risk, "revenue_at_risk"].sum()),
        "expected_churners": float(risk_list["churn_probability"].sum()),
        "expected_churn_rate": float(risk_list["churn_probability"].mean()) if len(risk_list) else 0.0,
        "newly_at_risk": float(risk_list["newly_at_risk"].sum()),
        "customers_to_contact": float((risk_list["action"] == "contact").sum()),
        "customers_held_out": float((risk_list["action"] == "holdout").sum()),
        "mean_probability_change": float(change.mean()) if change.notna().any() else float("nan"),
    }


def expected_saves(risk_list: pd.DataFrame, success_rate: float) -> float:
    """Churners the list's contacts are expected to keep: success rate x the contacted customers'
    churn probabilities (the holdout is not contacted, so it saves no one)."""
    contacted = risk_list["action"].to_numpy(object) == "contact"
    return float(success_rate * risk_list.loc[contacted, "churn_probability"].sum())


def run_summary(
    risk_list: pd.DataFrame,
    config: Config,
    provenance: Mapping[str, Any],
    stats: Mapping[str, Any],
) -> dict[str, Any]:
    """summary.json (less the timings): ``provenance`` (as_of, model_uri, model_version, previous_as_of,
    value_basis, typical_values_source), the settings that decide the list, ``stats`` and the headline."""
    return {
        **provenance,
        "bands": dict(config.risk.bands),
        "at_risk_threshold": config.risk.at_risk_threshold,
        "rank_by": config.risk.rank_by,
        **stats,
        **headline(risk_list),
    }


HISTORY_KEYS = ("as_of", "customers_scored", "customers_at_risk", "revenue_at_risk", "expected_churners")


def extend_history(history: pd.DataFrame | None, summary: Mapping[str, Any]) -> pd.DataFrame:
    """The runs' history (one row per run in an output directory) with this run's line appended."""
    line = pd.DataFrame([{key: summary[key] for key in HISTORY_KEYS}])
    return line if history is None else pd.concat([history, line], ignore_index=True)


def true_causes(truth: pd.DataFrame, as_of: pd.Timestamp, horizon_days: int) -> pd.DataFrame:
    """Each customer's true dominant churn cause at ``as_of`` (simulator truth table).

    The cause of the first renewal decision in ``[as_of, as_of + horizon)`` (the decision the score is
    about), else of the latest decision before ``as_of``. ``none`` (no positive factor) is dropped.
    """
    end = as_of + pd.Timedelta(days=horizon_days)
    rows = truth[["customer_id", "renewal_at", "true_cause"]]
    ahead = rows.loc[(rows["renewal_at"] >= as_of) & (rows["renewal_at"] < end)]
    ahead = ahead.sort_values("renewal_at").drop_duplicates("customer_id", keep="first")
    before = rows.loc[rows["renewal_at"] < as_of].sort_values("renewal_at")
    before = before.drop_duplicates("customer_id", keep="last")
    before = before.loc[~before["customer_id"].isin(ahead["customer_id"])]
    causes = pd.concat([ahead, before], ignore_index=True)
    return causes.loc[causes["true_cause"] != "none", ["customer_id", "true_cause"]].reset_index(drop=True)


def cause_confusion(
    risk_list: pd.DataFrame, causes: pd.DataFrame, playbook: Playbook
) -> tuple[pd.DataFrame, float, int]:
    """Confusion table (true cause x assigned group) over at-risk customers with a known cause, the
    share whose group is the cause's group, and how many customers were compared."""
    joined = risk_list.loc[risk_list["risk_group"].notna(), ["customer_id", "risk_group"]].merge(
        causes, on="customer_id", how="inner"
    )
    expected = joined["true_cause"].map(playbook.cause_groups())
    table = pd.crosstab(joined["true_cause"], joined["risk_group"])
    matched = float((expected == joined["risk_group"]).mean()) if len(joined) else float("nan")
    return table, matched, len(joined)
