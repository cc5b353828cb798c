"""Does `churnml review` measure what the retention programme really did? (issue 12)

    python benchmarks/bench_review.py --seeds 10 --customers 5000 --trials 5

Per seed: the simulator's business with its retention programme (monthly contacts with a 20% random
holdout and heterogeneous true effects, docs/simulator.md). churnml trains on the data up to
``--train-end``, scores a list at each later month whose outcomes are in the data, and reviews every list
against the full data. The review's measured effect per play (pooled over the lists) is compared with
the true average effect of the same customers, from the simulator's truth table: each customer's churn
probability at the next renewal with and without the contact, counted only when that renewal falls in
the list's horizon (the review counts churn in that window); lists are strata, weighted by their
contacted customers in both (``pooled_effects``). Also: the measured total saves vs the true saves of
the contacted customers, and each list's realised ROC-AUC vs the model's test-cutoff ROC-AUC (both over
all customers, contacted ones included, with Hanley-McNeil standard errors).

Prints a table per seed and the coverage over all (seed, play) pairs; the targets (≥ 90% covered, total
saves within the interval) are printed beside the figures.
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.config import load_config
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import simulate
from churnml.features.training_set import build_training_set
from churnml.pipelines import review, score, train
from churnml.risk.review import TREATMENT, contact_window, observed_by, pooled_effects, public_plays

TARGET_COVERAGE = 0.90


def auc_se(auc: float, positives: int, negatives: int) -> float:
    """Hanley & McNeil's standard error of an ROC-AUC."""
    q1, q2 = auc / (2 - auc), 2 * auc * auc / (1 + auc)
    var = (auc * (1 - auc) + (positives - 1) * (q1 - auc**2) + (negatives - 1) * (q2 - auc**2)) / (
        positives * negatives
    )
    return math.sqrt(max(var, 0.0))


def true_effects(
    reviewed: pd.DataFrame, truth: pd.DataFrame, horizon_days: int, next_list: pd.Timestamp | None
) -> pd.DataFrame:
    """Per reviewed customer the review compares (an arm, an outcome, randomised): the true effect of
    the contact on churn within the horizon, from the contact rows the review read (``contact_window``)."""
    rows = reviewed.loc[
        reviewed["arm"].isin([TREATMENT, "holdout"]) & reviewed["churned"].notna() & reviewed["randomised"]
    ]
    as_of = pd.Timestamp(rows["as_of"].iloc[0]) if len(rows) else None
    if as_of is None:
        return rows.assign(true_effect=np.nan)
    start, end = contact_window(as_of, as_of + pd.Timedelta(days=horizon_days), next_list)
    window = truth.loc[(truth["contacted_at"] >= start) & (truth["contacted_at"] < end)]
    first = window.sort_values("contacted_at").drop_duplicates("customer_id").set_index("customer_id")
    in_horizon = first["renewal_at"] < as_of + pd.Timedelta(days=horizon_days)
    effect = first["effect"].where(in_horizon, 0.0).fillna(0.0)
    return rows.assign(true_effect=rows["customer_id"].map(effect).to_numpy(float))


def run_seed(seed: int, args: argparse.Namespace, out: Path) -> dict:
    sim = simulate(args.customers, args.months, seed, programme=True)
    full = sim.to_dataset()
    config = load_config(
        None,
        [
            f"output.dir={out / f'seed{seed}'}",
            f"tune.n_trials={args.trials}",
            "tune.progress_bar=false",
            f"seed={seed}",
            *args.overrides,
        ],
    )
    then = dataset_from_frames(sim.tables, end=pd.Timestamp(args.train_end))
    trained = train.run(config, training_set=build_training_set(then, config.labels, config.features))
    test_auc = float(trained.evaluation.model.metrics["roc_auc"])
    test_y = trained.evaluation.y
    test_se = auc_se(test_auc, int(test_y.sum()), int(len(test_y) - test_y.sum()))
    horizon = config.labels.horizon_days
    months = pd.date_range(args.train_end, full.end, freq="MS")
    listed = [m for m in months if observed_by(m, config) <= full.end]
    for as_of in listed:
        data = dataset_from_frames(sim.tables, end=as_of)  # scored as it was: nothing after as_of
        score.run(config, as_of=as_of, dataset=data)
    result = review.run(config, dataset=full)
    # The review's pooled figure adds up (list, play) strata weighted by their contacted customers; the
    # truth is weighted the same way, stratum by stratum.
    plays = public_plays(pooled_effects([r.plays for r in result.reviews], config.campaign.success_rate))
    dates = [r.as_of for r in result.reviews]
    truth = pd.concat(
        [
            true_effects(r.customers, sim.contact_truth, horizon, nxt).assign(list=str(r.as_of.date()))
            for r, nxt in zip(result.reviews, [*dates[1:], None], strict=True)
        ],
        ignore_index=True,
    )
    strata = truth.groupby(["play_run", "list"]).agg(
        true_effect=("true_effect", "mean"),
        contacted=("arm", lambda a: int((a == TREATMENT).sum())),
        held_out=("arm", lambda a: int((a == "holdout").sum())),
    )
    strata = strata.loc[(strata["contacted"] > 0) & (strata["held_out"] > 0)].reset_index()
    weighted = strata.assign(w=strata["true_effect"] * strata["contacted"])
    by_play = weighted.groupby("play_run")[["w", "contacted"]].sum()
    true_by_play = by_play["w"] / by_play["contacted"]
    plays["true_effect"] = plays["play"].map(true_by_play)
    plays.loc[plays["play"] == "all plays", "true_effect"] = weighted["w"].sum() / weighted["contacted"].sum()
    measurable = np.isfinite(plays["effect_low"].to_numpy(float)) & plays["true_effect"].notna().to_numpy()
    plays["covered"] = (
        measurable
        & (plays["effect_low"] <= plays["true_effect"])
        & (plays["true_effect"] <= plays["effect_high"])
    )
    total = plays.loc[plays["play"] == "all plays"].iloc[0]
    true_saves = float(weighted["w"].sum())
    print(f"\nseed {seed}: lists {[str(m.date()) for m in listed]}, test-cutoff ROC-AUC {test_auc:.3f}")
    shown = plays.loc[(plays["play"] != "all plays") & measurable]
    print(
        shown[
            ["play", "contacted", "held_out", "effect", "effect_low", "effect_high", "true_effect", "covered"]
        ]
        .round(4)
        .to_string(index=False)
    )
    saves_ok = total["saved_low"] <= true_saves <= total["saved_high"]
    print(
        f"  total saves: measured {total['saved']:.1f} (95% CI {total['saved_low']:.1f} to "
        f"{total['saved_high']:.1f}), true {true_saves:.1f} -> {'within' if saves_ok else 'OUTSIDE'}"
    )
    aucs = []
    for r in result.reviews:
        # Like with like: the test cutoff's customers include the programme's contacted ones too, so the
        # list's AUC over all its customers is the comparable figure (the not-contacted AUC drops the
        # riskiest customers and reads lower).
        m = r.model
        labeled = r.customers.loc[r.customers["churned"].notna()]
        pos = int(labeled["churned"].astype(float).sum())
        se = auc_se(m["roc_auc"], pos, len(labeled) - pos)
        z = (m["roc_auc"] - test_auc) / math.hypot(se, test_se)
        aucs.append(z)
        print(
            f"  list {r.as_of.date()}: realised ROC-AUC {m['roc_auc']:.3f} ({m['roc_auc_not_contacted']:.3f} not "
            f"contacted) vs test {test_auc:.3f}: z = {z:+.2f} (SE {se:.3f} and {test_se:.3f}, {pos} churners)"
        )
    return {
        "pairs": len(shown),
        "covered": int(shown["covered"].sum()),
        "saves_ok": bool(saves_ok),
        "auc_z": aucs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--train-end", default="2025-09-01", help="training data ends here (lists after it)")
    parser.add_argument("--trials", type=int, default=5)
    parser.add_argument("overrides", nargs="*", help="extra config overrides key.path=value")
    args = parser.parse_args()
    out = Path(tempfile.mkdtemp(prefix="churnml-bench-review-"))
    results = [run_seed(seed, args, out) for seed in range(args.first_seed, args.first_seed + args.seeds)]
    pairs = sum(r["pairs"] for r in results)
    covered = sum(r["covered"] for r in results)
    saves = sum(r["saves_ok"] for r in results)
    z = np.array([v for r in results for v in r["auc_z"]], float)
    print(
        f"\nmeasured effect covers the true average effect in {covered}/{pairs} (seed, play) pairs = "
        f"{covered / max(pairs, 1):.1%} (target >= {TARGET_COVERAGE:.0%})"
    )
    print(f"measured total saves interval contains the true saves in {saves}/{len(results)} seeds")
    print(
        f"realised vs test-cutoff ROC-AUC over {len(z)} lists: mean z {np.nanmean(z):+.2f}, "
        f"|z| <= 2 in {int((np.abs(z) <= 2).sum())}/{len(z)}"
    )


if __name__ == "__main__":
    main()
