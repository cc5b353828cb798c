"""What happened to a past risk list: realised churn, whether the model held up, what each play saved.

Why randomised holdouts: customers are contacted because they are at risk, so "contacted customers
churned less than the rest" proves nothing. Within a play, the holdout was drawn at random from the
same customers as the contacted ones; the difference of their churn rates over the list's horizon is
the play's effect, without a model and with an honest confidence interval.

Pure functions of the archived list, the data and the settings (``churnml.pipelines.review`` does the
I/O). Who was contacted, with which play and at what cost comes from the ``contacts`` table where the
data has one (what was done), else from the list's ``action`` and ``play`` columns (what was planned).
Outcomes use the training label (``churnml.features.labels``): churn in ``[as_of, as_of + horizon)``.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

from churnml.config import Config
from churnml.data.dataset import Dataset
from churnml.data.load import canonical_id
from churnml.features.labels import cutoff_dates, make_label_times
from churnml.training.evaluate import expected_calibration_error

if TYPE_CHECKING:  # risk_list imports the uplift learner, which imports this module's intervals
    from churnml.risk.risk_list import Playbook

Z95 = 1.959963984540054  # two-sided 95% normal quantile
TREATMENT, HOLDOUT, NOT_CONTACTED = "treatment", "holdout", "none"
BREAKDOWNS = ("risk_band", "risk_group", "segment", "action", "arm")
MIN_ARM = 10  # default review.min_arm: fewer customers in an arm and a play's effect is not judged


@dataclass(frozen=True)
class Review:
    """One reviewed list: per customer, the model's hold-up, breakdowns and the plays' measured effects."""

    as_of: pd.Timestamp
    horizon_end: pd.Timestamp
    source: str  # where the arms come from: "contacts" (what was done) or "list" (what was planned)
    customers: pd.DataFrame  # the list's customers with arm, play_run, contact_cost, churned
    model: dict[str, Any]
    calibration: pd.DataFrame  # per band: customers, predicted, realised
    breakdowns: dict[str, pd.DataFrame]
    plays: pd.DataFrame  # one row per play, then "all plays"
    notes: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        """The figures of ``summary.json`` and the MLflow run."""
        overall = self.plays.iloc[-1].to_dict() if len(self.plays) else {}
        return {
            "as_of": self.as_of.isoformat(),
            "horizon_end": self.horizon_end.isoformat(),
            "arms_from": self.source,
            **{f"model_{k}": v for k, v in self.model.items()},
            **{f"all_plays_{k}": overall.get(k) for k in PLAY_FIGURES if k in overall},
            "notes": list(self.notes),
        }


PLAY_FIGURES = (
    "contacted",
    "held_out",
    "churn_contacted",
    "churn_held_out",
    "effect",
    "effect_low",
    "effect_high",
    "saved",
    "saved_low",
    "saved_high",
    "revenue_saved",
    "cost",
    "roi",
    "success_rate",
)


# ---------------------------------------------------------------------------------------------------
# Intervals.


def wilson(k: float, n: float, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval of a proportion k/n (NaNs when n = 0)."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return centre - half, centre + half


def difference_interval(
    k1: float, n1: float, k2: float, n2: float, z: float = Z95
) -> tuple[float, float, float]:
    """p1 - p2 with Newcombe's hybrid score interval (his method 10): unlike the Wald interval it keeps
    its coverage with few churners and rates near 0, which is what a play's holdout usually has."""
    if n1 <= 0 or n2 <= 0:
        return math.nan, math.nan, math.nan
    p1, p2 = k1 / n1, k2 / n2
    l1, u1 = wilson(k1, n1, z)
    l2, u2 = wilson(k2, n2, z)
    d = p1 - p2
    low = d - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = d + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return d, low, high


# ---------------------------------------------------------------------------------------------------
# Who got what, and who churned.


def horizon_end(as_of: pd.Timestamp, config: Config) -> pd.Timestamp:
    return pd.Timestamp(as_of) + pd.Timedelta(days=config.labels.horizon_days)


def observed_by(as_of: pd.Timestamp, config: Config) -> pd.Timestamp:
    """When the list's outcomes are all in the data: the horizon plus the label's grace period."""
    grace = config.labels.grace_days if config.labels.definition == "subscription" else 0
    return horizon_end(as_of, config) + pd.Timedelta(days=grace)


def last_reviewable(dataset: Dataset, config: Config) -> pd.Timestamp | None:
    """The latest cutoff of the schedule whose list could be reviewed on this data (None if none)."""
    due = [c for c in cutoff_dates(dataset, config.labels.cutoffs) if observed_by(c, config) <= dataset.end]
    return due[-1] if due else None


def outcomes(risk_list: pd.DataFrame, dataset: Dataset, config: Config, as_of: pd.Timestamp) -> pd.Series:
    """Churned (1/0) per listed customer over the horizon, by the training label's definition; missing
    where the data cannot tell (not yet observed, or no longer a customer by the label's rules)."""
    labels = make_label_times(dataset, config.labels, [pd.Timestamp(as_of)]).frame
    known = labels.set_index(labels["customer_id"].map(canonical_id))["label"]
    return pd.Series(
        risk_list["customer_id"].astype(str).map(canonical_id).map(known).to_numpy(),
        index=risk_list.index,
        dtype="Int8",
    )


def contact_window(
    as_of: pd.Timestamp, horizon: pd.Timestamp, next_list: pd.Timestamp | None
) -> tuple[pd.Timestamp, pd.Timestamp]:
    """The contact rows that belong to a list: from its day (a list scored at 14:30 and its contacts
    recorded by date are the same day's) to the end of its horizon or the next list's day, whichever
    comes first, so that the next list's contacts never count as this one's arms."""
    start = pd.Timestamp(as_of).normalize()
    if next_list is None:
        return start, horizon
    following = pd.Timestamp(next_list)
    # A second list the same day: this one's contacts end when it was scored, not before they began.
    boundary = following if following.normalize() == start else following.normalize()
    return start, min(horizon, boundary)


def arms(
    risk_list: pd.DataFrame,
    contacts: pd.DataFrame | None,
    as_of: pd.Timestamp,
    until: pd.Timestamp,
    cost_per_contact: float,
    mode: Literal["auto", "contacts", "list"] = "auto",
    playbook: Playbook | None = None,
) -> tuple[pd.DataFrame, str]:
    """Per listed customer: ``arm`` (treatment, holdout or none), ``play_run`` and ``contact_cost``.

    ``contacts`` (``auto`` with a contacts table): the arm of the customer's first contact row in
    ``[as_of, until)`` (``contact_window``), as recorded when the customer was assigned; a planned
    contact without a row is ``none``. ``list`` (``auto`` without one): the list's own ``action``
    (intention to treat: a planned contact counts as contacted whether or not it happened), with the play
    and cost of a contact row where there is one. Cost: the row's, else the play's cost in ``playbook``,
    else ``cost_per_contact``, for a contacted customer.
    """
    source = mode if mode != "auto" else ("contacts" if contacts is not None else "list")
    ids = risk_list["customer_id"].astype(str).map(canonical_id)
    first = pd.DataFrame(columns=["arm", "play", "cost"])
    if contacts is not None:
        window = contacts.loc[(contacts["contacted_at"] >= as_of) & (contacts["contacted_at"] < until)]
        first = window.sort_values("contacted_at", kind="stable").drop_duplicates("customer_id")
        first = first.set_index(first["customer_id"].map(canonical_id))
    if source == "contacts":
        arm = ids.map(first["arm"]).astype(object).fillna(NOT_CONTACTED).astype(str).to_numpy()
        play = ids.map(first["play"])
    else:
        action = risk_list["action"].astype(str)
        arm = np.select([action == "contact", action == "holdout"], [TREATMENT, HOLDOUT], NOT_CONTACTED)
        play = ids.map(first["play"]).astype(object).fillna(risk_list["play"]).where(arm != NOT_CONTACTED)
    recorded = ids.map(first["cost"]) if "cost" in first else pd.Series(np.nan, index=risk_list.index)
    names = play_names(play)
    if playbook is not None:
        played = sorted({str(p) for p in names.dropna()})
        recorded = recorded.fillna(names.map(playbook.play_costs(played, cost_per_contact)))
    cost = np.where(arm == TREATMENT, recorded.fillna(cost_per_contact).to_numpy(float), 0.0)
    frame = pd.DataFrame(
        {"arm": arm, "play_run": names.to_numpy(), "contact_cost": cost}, index=risk_list.index
    )
    return frame, source


def play_names(plays: pd.Series) -> pd.Series:
    """Plays as one name each, whatever the case and spacing ("billing  Outreach" is Billing outreach):
    the most frequent spelling of each, ties by name."""
    text = plays.astype("string").str.strip().str.replace(r"\s+", " ", regex=True)
    key = text.str.casefold()
    counts = pd.DataFrame({"key": key, "text": text}).dropna().value_counts().reset_index()
    counts = counts.sort_values(["key", "count", "text"], ascending=[True, False, True], kind="stable")
    spelling = counts.drop_duplicates("key").set_index("key")["text"]
    return key.map(spelling).astype(object).where(key.notna(), None)


# ---------------------------------------------------------------------------------------------------
# Did the model hold up?


def model_holdup(reviewed: pd.DataFrame, bands: Sequence[str], ece_bins: int) -> tuple[dict, pd.DataFrame]:
    """Realised ROC-AUC (all labeled customers, and those not contacted: a contact changes the outcome it
    predicts); lift and capture at the contacted depth, calibration per band and ECE (not contacted)."""
    labeled = reviewed.loc[reviewed["churned"].notna()]
    untreated = labeled.loc[labeled["arm"] != TREATMENT]
    y_all = labeled["churned"].to_numpy(float)
    y_un = untreated["churned"].to_numpy(float)
    depth = int(reviewed["action"].isin(["contact", "holdout"]).sum())
    # Lift at the list's depth (the share it put on a play), judged where no contact changed the outcome:
    # the same share of the customers not contacted, by probability (the list's rank may follow revenue).
    k = round(depth / len(reviewed) * len(untreated)) if len(reviewed) else 0
    top = untreated.sort_values("churn_probability", ascending=False, kind="stable").head(k)
    base = y_all.mean() if len(y_all) else math.nan
    base_un = y_un.mean() if len(y_un) else math.nan
    figures = {
        "customers": len(reviewed),
        "labeled": len(labeled),
        "churners": int(y_all.sum()),
        "churn_rate": float(base),
        "predicted_churn_rate": float(labeled["churn_probability"].mean()) if len(labeled) else math.nan,
        "roc_auc": _auc(y_all, labeled["churn_probability"].to_numpy(float)),
        "roc_auc_not_contacted": _auc(y_un, untreated["churn_probability"].to_numpy(float)),
        "contacted_depth": depth,
        "lift_at_depth": float(top["churned"].astype(float).mean() / base_un)
        if k and base_un > 0
        else math.nan,
        "capture_at_depth": float(top["churned"].astype(float).sum() / y_un.sum())
        if k and y_un.sum() > 0
        else math.nan,
        "ece_not_contacted": expected_calibration_error(
            y_un, untreated["churn_probability"].to_numpy(float), ece_bins
        )
        if len(y_un) >= ece_bins
        else math.nan,
    }
    calibration = (
        untreated.groupby("risk_band", observed=True, sort=False)
        .agg(
            customers=("churned", "size"),
            predicted=("churn_probability", "mean"),
            realised=("churned", lambda s: float(s.astype(float).mean())),
        )
        .reindex([b for b in bands if b in set(untreated["risk_band"])])
        .reset_index()
    )
    return figures, calibration


def _auc(y: np.ndarray, score: np.ndarray) -> float:
    return float(roc_auc_score(y, score)) if len(np.unique(y)) == 2 else math.nan


def breakdown(reviewed: pd.DataFrame, by: str, order: Sequence[str] = ()) -> pd.DataFrame:
    """Customers, labeled, churners, realised and predicted churn rate per value of ``by`` (values in
    ``order`` first, in that order: the bands from low to high; the others by name). Both rates are of
    the labeled customers, so that they compare the same people."""
    labeled = reviewed["churned"].notna()
    frame = reviewed.assign(
        _labeled=labeled,
        _churned=reviewed["churned"].astype(float).fillna(0.0),
        _p=reviewed["churn_probability"].where(labeled),
    )
    table = frame.groupby(frame[by].astype(str).fillna("–"), sort=True).agg(
        customers=("_labeled", "size"),
        labeled=("_labeled", "sum"),
        churners=("_churned", "sum"),
        predicted=("_p", "mean"),
    )
    table["realised"] = table["churners"] / table["labeled"].where(table["labeled"] > 0)
    first = [v for v in order if v in table.index]
    table = table.loc[first + [v for v in table.index if v not in first]]
    return table.reset_index().rename(columns={by: "value"})


# ---------------------------------------------------------------------------------------------------
# What did each play do?


def play_effects(reviewed: pd.DataFrame, assumed_success_rate: float, min_arm: int = MIN_ARM) -> pd.DataFrame:
    """One row per play run (contacted vs held out) and a last "all plays" row.

    ``effect`` = churn among held out - churn among contacted (positive: the play prevented churn), with
    Newcombe's 95% interval; ``saved`` = effect x contacted; ``revenue_saved`` = effect x the contacted
    customers' value; ``roi`` = revenue saved / cost (at least 1: the play paid for itself);
    ``success_rate`` = effect / churn among held out (share of would-be churners kept: the quantity
    ``campaign.success_rate`` assumes). A play without both arms has no effect (NaN). The "all plays"
    row adds up the plays that have both arms (``combine``). Contacted customers who could not have been
    held out (``randomised`` false: held out on the list before) are left out: they are not comparable.
    """
    randomised = reviewed.get("randomised", True)
    labeled = reviewed.loc[
        reviewed["churned"].notna() & reviewed["arm"].isin([TREATMENT, HOLDOUT]) & randomised
    ]
    rows = [
        _play_row(str(play), group, assumed_success_rate, min_arm)
        for play, group in labeled.groupby(labeled["play_run"].astype(str), sort=True)
    ]
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    total = combine(table, "all plays", assumed_success_rate, min_arm)
    return pd.concat([table, pd.DataFrame([total])], ignore_index=True)


def _play_row(play: str, group: pd.DataFrame, assumed: float, min_arm: int) -> dict[str, Any]:
    treated = group.loc[group["arm"] == TREATMENT]
    held = group.loc[group["arm"] == HOLDOUT]
    n_t, n_h = len(treated), len(held)
    k_t, k_h = float(treated["churned"].astype(float).sum()), float(held["churned"].astype(float).sum())
    effect, low, high = difference_interval(k_h, n_h, k_t, n_t)
    value = float(treated["customer_value"].astype(float).fillna(0.0).sum())
    churn_t = k_t / n_t if n_t else math.nan
    churn_h = k_h / n_h if n_h else math.nan
    cost = float(treated["contact_cost"].sum())
    return _effect_row(
        play, n_t, n_h, churn_t, churn_h, (effect, low, high), effect * value, cost, value, assumed, min_arm
    )


def _effect_row(
    play: str,
    contacted: int,
    held_out: int,
    churn_contacted: float,
    churn_held_out: float,
    interval: tuple[float, float, float],
    revenue: float,
    cost: float,
    value: float,
    assumed: float,
    min_arm: int,
) -> dict[str, Any]:
    """A row of the play table: the figures that follow from the counts, the effect and its interval."""
    effect, low, high = interval
    return {
        "play": play,
        "contacted": contacted,
        "held_out": held_out,
        "churn_contacted": churn_contacted,
        "churn_held_out": churn_held_out,
        "effect": effect,
        "effect_low": low,
        "effect_high": high,
        "saved": effect * contacted,
        "saved_low": low * contacted,
        "saved_high": high * contacted,
        "revenue_saved": revenue,
        "cost": cost,
        "roi": revenue / cost if cost > 0 else math.nan,
        "success_rate": effect / churn_held_out if churn_held_out > 0 else math.nan,
        "assumed_success_rate": assumed,
        "enough_data": bool(contacted >= min_arm and held_out >= min_arm),
        "_value": value,
    }


def combine(strata: pd.DataFrame, label: str, assumed: float, min_arm: int = MIN_ARM) -> dict[str, Any]:
    """Rows of ``play_effects`` (plays of one list, or one play over several lists) added up as strata.

    Only strata with both arms count, the counts and cost too (so ROI compares like with like); the
    effect is saves / contacted, each stratum's difference weighted by its contacted customers, so
    strata with different holdout shares or churn rates cannot bias it (Simpson). Its interval is the
    MOVER of Zou & Donner (2008): each stratum's own (Newcombe) interval, its distances to the estimate
    weighted and added in quadrature on each side. Unlike a sum of Wald variances it keeps its coverage
    when a stratum has a handful of holdouts or none of them churned, and a single stratum keeps its own
    interval. NaN when no stratum has both arms.
    """
    ok = strata.loc[strata["contacted"].gt(0) & strata["held_out"].gt(0)]
    n_t, n_h = int(ok["contacted"].sum()), int(ok["held_out"].sum())
    if not n_t:
        nan = math.nan
        return _effect_row(label, 0, 0, nan, nan, (nan, nan, nan), nan, 0.0, 0.0, assumed, min_arm)
    weight = ok["contacted"].to_numpy(float) / n_t
    effect = float((weight * ok["effect"]).sum())
    low = effect - math.sqrt(float(((weight * (ok["effect"] - ok["effect_low"])) ** 2).sum()))
    high = effect + math.sqrt(float(((weight * (ok["effect_high"] - ok["effect"])) ** 2).sum()))
    return _effect_row(
        label,
        n_t,
        n_h,
        float((weight * ok["churn_contacted"]).sum()),
        float((weight * ok["churn_held_out"]).sum()),
        (effect, low, high),
        float((ok["effect"] * ok["_value"]).sum()),
        float(ok["cost"].sum()),
        float(ok["_value"].sum()),
        assumed,
        min_arm,
    )


def pooled_effects(plays: Sequence[pd.DataFrame], assumed: float, min_arm: int = MIN_ARM) -> pd.DataFrame:
    """Several lists' play tables as one: each play's lists added up as strata, then every (list, play)
    with both arms in "all plays". (Pooling customers across lists instead would let a list with more
    holdouts and more churn pass for an effect.) A customer on several lists counts in each, so the
    interval is somewhat too narrow when lists overlap."""
    strata = (
        pd.concat([t.loc[t["play"] != "all plays"] for t in plays if len(t)], ignore_index=True)
        if any(len(t) for t in plays)
        else pd.DataFrame()
    )
    if strata.empty:
        return strata
    rows = [combine(group, str(play), assumed, min_arm) for play, group in strata.groupby("play", sort=True)]
    return pd.DataFrame([*rows, combine(strata, "all plays", assumed, min_arm)])


def public_plays(plays: pd.DataFrame) -> pd.DataFrame:
    """The play table without its working columns (for the CSV and the report)."""
    return plays.drop(columns=[c for c in plays.columns if c.startswith("_")])


# ---------------------------------------------------------------------------------------------------
# The whole review.


def review_list(
    risk_list: pd.DataFrame,
    dataset: Dataset,
    config: Config,
    as_of: pd.Timestamp,
    next_list: pd.Timestamp | None = None,
    held_before: Collection[str] = (),
    playbook: Playbook | None = None,
) -> Review:
    """Review one archived list against the data (its horizon must be observed: see ``observed_by``).

    ``next_list``: the as-of date of the list after it, where its contacts begin (``contact_window``).
    ``held_before``: customers held out on the list before it, whom the holdout draw could not pick
    again (``risk.holdout_repeat`` off): they are no part of the randomised comparison, in either arm (a
    team's own contact rows may hold one out again).
    ``playbook``: the plays' own contact costs (``arms``).
    """
    as_of = pd.Timestamp(as_of)
    until = horizon_end(as_of, config)
    start, end = contact_window(as_of, until, next_list)
    assigned, source = arms(
        risk_list,
        dataset.get("contacts"),
        start,
        end,
        config.campaign.cost_per_contact,
        config.review.arms,
        playbook,
    )
    reviewed = pd.concat([risk_list, assigned], axis=1)
    ids = risk_list["customer_id"].astype(str).map(canonical_id)
    held = {canonical_id(str(c)) for c in held_before}
    reviewed["randomised"] = ~(reviewed["arm"].isin([TREATMENT, HOLDOUT]) & ids.isin(held)).to_numpy()
    reviewed["churned"] = outcomes(risk_list, dataset, config, as_of)
    model, calibration = model_holdup(reviewed, list(config.risk.bands), config.evaluation.ece_bins)
    plays = play_effects(reviewed, config.campaign.success_rate, config.review.min_arm)
    notes = _notes(reviewed, plays, source, config.review.min_arm)
    orders = {"risk_band": list(config.risk.bands), "arm": [TREATMENT, HOLDOUT, NOT_CONTACTED]}
    breakdowns = {by: breakdown(reviewed, by, orders.get(by, ())) for by in BREAKDOWNS if by in reviewed}
    return Review(as_of, until, source, reviewed, model, calibration, breakdowns, plays, notes)


def _notes(reviewed: pd.DataFrame, plays: pd.DataFrame, source: str, min_arm: int) -> list[str]:
    notes = []
    kept_out = int((~reviewed["randomised"]).sum())
    if kept_out:
        notes.append(
            f"{kept_out:,} customers with an arm had been held out on the list before, whom this list's draw "
            "could not hold out again (risk.holdout_repeat); they are left out of the plays' comparison"
        )
    missing = int(reviewed["churned"].isna().sum())
    if missing:
        notes.append(
            f"{missing:,} listed customers have no outcome (no longer customers by the label's rules)"
        )
    if source == "contacts":
        planned = reviewed["action"].eq("contact")
        skipped = int((planned & reviewed["arm"].eq(NOT_CONTACTED)).sum())
        if skipped:
            notes.append(
                f"{skipped:,} customers the list said to contact have no contact row for the list; they are "
                "left out (if they were assigned but not reached, review.arms: list compares by the plan)"
            )
    else:
        notes.append("arms are the list's plan (action): a planned contact counts as contacted")
    for row in plays.itertuples():
        if row.play == "all plays":
            continue
        if not (row.contacted and row.held_out):
            notes.append(
                f"{row.play}: no {'held-out' if row.contacted else 'contacted'} customer; no effect measured"
            )
        elif not row.enough_data:
            notes.append(
                f"{row.play}: fewer than {min_arm} contacted or held-out customers; too few to judge"
            )
    return notes


def measured_success_rate(strata: pd.DataFrame) -> dict[str, Any] | None:
    """The success rate of the strata (rows of ``play_effects`` as it made them, whose rates times
    customers are the counts: one list's plays, or several lists'; not ``pooled_effects``' rows) with enough customers in both arms (``review.min_arm``) added up, with its interval, for
    ``campaign.effect: measured``; None when none qualifies.

    The rate is 1 - (churn among the contacted) / (churn among the held out), both weighted by each
    stratum's contacted customers as ``combine`` weights them. Its interval is the MOVER for that ratio
    on the log scale (Zou & Donner 2008) from each side's Wilson intervals, combined across strata as
    ``combine`` does: dividing the effect's interval by the held-out churn, as if that were known, was
    far too wide (a review measured 99.6-100% coverage)."""
    judged = strata.loc[(strata["play"] != "all plays") & strata["enough_data"]] if len(strata) else strata
    if judged.empty:
        return None
    total = combine(judged, "all plays", float(judged["assumed_success_rate"].iloc[0]))
    held = total["churn_held_out"]
    if not held > 0 or not np.isfinite(total["success_rate"]):
        return None
    low, high = ratio_interval(
        _weighted_rate(judged, "contacted", "churn_contacted"),
        _weighted_rate(judged, "held_out", "churn_held_out"),
    )
    return {
        "success_rate": float(total["success_rate"]),
        "success_rate_low": 1.0 - high,
        "success_rate_high": 1.0 - low,
        "contacted": int(total["contacted"]),
        "held_out": int(total["held_out"]),
        "plays_judged": sorted({str(p) for p in judged["play"]}),
    }


def _weighted_rate(strata: pd.DataFrame, customers: str, rate: str) -> tuple[float, float, float]:
    """A churn rate over strata weighted by their contacted customers (as ``combine`` weights them) and
    its interval: each stratum's Wilson distances, weighted, added in quadrature on each side (MOVER)."""
    weight = strata["contacted"].to_numpy(float) / float(strata["contacted"].sum())
    n = strata[customers].to_numpy(float)
    p = strata[rate].to_numpy(float)
    bounds = np.array([wilson(round(pk * nk), nk) for pk, nk in zip(p, n, strict=True)])
    estimate = float((weight * p).sum())
    low = estimate - math.sqrt(float(((weight * (p - bounds[:, 0])) ** 2).sum()))
    high = estimate + math.sqrt(float(((weight * (bounds[:, 1] - p)) ** 2).sum()))
    return estimate, max(low, 0.0), high


def ratio_interval(
    numerator: tuple[float, float, float], denominator: tuple[float, float, float]
) -> tuple[float, float]:
    """95% interval of a / b from the estimates and intervals of two independent rates a and b: the
    MOVER for log a - log b. ``b`` must be positive; a = 0 gives 0 to the limit of the upper bound,
    a's upper bound over b."""
    a, a_low, a_high = numerator
    b, b_low, b_high = denominator
    if a <= 0:  # the log-scale bound's limit as a -> 0
        return 0.0, a_high / b
    centre = math.log(a) - math.log(b)
    below = math.log(a) - math.log(a_low) if a_low > 0 else math.inf
    above_b = math.log(b_high) - math.log(b)
    low = centre - math.hypot(below, above_b)
    high = centre + math.hypot(
        math.log(a_high) - math.log(a), math.log(b) - math.log(b_low) if b_low > 0 else math.inf
    )
    return math.exp(low), math.exp(high)


def json_ready(values: Mapping[Any, Any]) -> dict[str, Any]:
    """Numbers as plain floats/ints and NaN as None (JSON has no NaN)."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, float) and not math.isfinite(value):
            value = None
        out[str(key)] = value
    return out
