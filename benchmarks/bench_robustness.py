"""Robustness of churnml's shipped champion across simulated businesses, scored as a user would use it.

    python benchmarks/bench_robustness.py --sizes 1000,3000,20000 --signals 1.0,0.4 --trials 30 --seeds 42,43

A grid of cells (customers x churn signal strength x data shape). In each cell the simulated history is
*extracted at a date D*: rows after D are dropped by churnml's own loader (``data.end``, through
``dataset_from_frames``) and facts learned after D (a subscription's end, a ticket's closing time and
rating, a message's open and click) are blanked, as in a real extract. churnml trains on that extract
(``churnml.pipelines.train.run``) and ships its champion; the champion then scores the cutoffs 1, 2 and 3
months after the last cutoff whose label was observable at D (churnml's own test cutoff), with features
and labels from the full simulated history. Nothing labeled after D reaches any scorer's training rows.
D is the first cutoff at which that last label is observable, taken as late as the simulated months
allow (the last scoring cutoff's label must be in the full history): with 18 months, 2026-04-01.

Scorers on the same rows: the champion; the recency rule (days since last activity, isotonic);
logistic regression on log-scaled features; XGBoost with fixed settings (300 trees, depth 3, learning
rate 0.05). The baselines are fitted on every labeled row of the extract. The oracle is a reference,
not a target:

- ``subscription`` shape (all six tables, subscription labels): bench_model's oracle, the Bayes-optimal
  forecast at the cutoff (``churn_forecast``: the probability that a renewal decision in ``[cutoff,
  cutoff + horizon)`` goes against the customer given everything the simulation knows at the cutoff,
  over ``--futures`` simulated futures). The ``hindsight`` row is bench_model's hindsight oracle, which
  also knows the behaviour between the cutoff and each renewal: no forecast can reach it.
- ``transactions`` shape (customers and transactions only, inactivity labels: no transaction in
  ``[cutoff, cutoff + horizon)``, active = a transaction in the last ``active_days``): customers pay at
  each monthly renewal, so with a 90-day horizon the label is 1 exactly when the *first* renewal after
  the cutoff is a churn that leaves no transaction behind: a cancellation (an involuntary churn shows as
  three failed payment attempts, which are transactions). The oracle is therefore that renewal's
  ``churn_prob`` when its dominant factor is not billing (involuntary churn is decided by the factors,
  not drawn), 0 when it is; a customer with no renewal in the window had already left: 1, or 0 when an
  involuntary churn in the week before the cutoff still has dunning retries to come. Win-backs inside
  the window (about 1% of departed customers a month) are ignored. This one is a hindsight reference.

Each cell can hold several businesses (``--seeds``: the simulator's and training's seed): with a few
dozen churners per scoring cutoff, one business's AUC moves by a few hundredths from seed to seed, so
every business is printed and the targets are read on each cell's mean over its businesses.

Targets: in every cell champion AUC >= best baseline - 0.005; averaged over cells champion > best
baseline; on the 20k strong subscription cell champion >= 0.97 x oracle and ECE <= 0.02. The simulator is
never tuned for these figures: the weak-signal cells exist to show where churn is hard to predict.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import xgboost as xgb
from bench_model import forecast_oracle, oracle_probability
from sklearn.metrics import roc_auc_score

from churnml.config import Config, load_config
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames
from churnml.data.simulate import Simulation, simulate
from churnml.features.catalogue import recency_feature
from churnml.features.labels import cutoff_dates
from churnml.features.training_set import TrainingSet, build_training_set
from churnml.pipelines import train
from churnml.training.evaluate import (
    expected_calibration_error,
    fit_recency_rule,
    logistic_regression,
    recency_scores,
)
from churnml.training.model import ChurnModel
from churnml.training.split import label_window_days

SHAPES = ("subscription", "transactions")
SCORING_MONTHS = 3
XGB_FIXED = {"objective": "binary:logistic", "max_depth": 3, "eta": 0.05, "tree_method": "hist"}
XGB_FIXED_ROUNDS = 300
BASELINES = ("recency", "logreg", "xgboost_fixed")
# Facts recorded after a row's own time: blank when later than the extraction (with what depends on them).
LEARNED_LATER = {
    "subscriptions": {"end_at": ()},
    "tickets": {"closed_at": ("satisfaction",)},
    "messages": {"opened_at": (), "clicked_at": ()},
}


@dataclass(frozen=True)
class Cell:
    customers: int
    signal: float
    shape: str
    seed: int = 42

    @property
    def name(self) -> str:
        size = f"{self.customers // 1000}k" if self.customers % 1000 == 0 else str(self.customers)
        return f"{self.shape}-{size}-s{self.signal:g}"

    @property
    def run_name(self) -> str:
        return f"{self.name}-seed{self.seed}"


# --- data: shapes and extraction ---------------------------------------------------------------------


def shape_dataset(sim: Simulation, shape: str) -> Dataset:
    """The full simulated history in the cell's shape."""
    if shape == "subscription":
        return sim.to_dataset()
    return Dataset(tables={name: sim.tables[name] for name in ("customers", "transactions")}, end=sim.end)


def extracted_at(dataset: Dataset, end: pd.Timestamp) -> Dataset:
    """The history as an extract taken at ``end``: the loader drops later rows, later facts are blanked."""
    cut = dataset_from_frames(dataset.tables, end=end)
    tables = dict(cut.tables)
    for name, columns in LEARNED_LATER.items():
        if name not in tables:
            continue
        frame = tables[name].copy()
        for column, dependent in columns.items():
            later = frame[column] > end
            frame.loc[later, [column, *dependent]] = None
        tables[name] = frame
    return Dataset(tables=tables, end=cut.end)


def extraction_plan(
    cutoffs: list[pd.Timestamp], window_days: int, end: pd.Timestamp
) -> tuple[pd.Timestamp, pd.Timestamp, list[pd.Timestamp]]:
    """When to extract: (D, the last cutoff labeled at D, the SCORING_MONTHS cutoffs after it).

    The latest last-labeled cutoff whose scoring cutoffs all have their labels in the full history,
    extracted at the first cutoff where its label is observable (so the last scoring cutoff is about D).
    """
    window = pd.Timedelta(days=window_days)
    for position in range(len(cutoffs) - SCORING_MONTHS - 1, -1, -1):
        last_labeled, scoring = cutoffs[position], cutoffs[position + 1 : position + 1 + SCORING_MONTHS]
        extract = next((c for c in cutoffs if c >= last_labeled + window), None)
        if extract is None or scoring[-1] + window > end:
            continue
        if max(c for c in cutoffs if c + window <= extract) == last_labeled:
            return extract, last_labeled, scoring
    raise SystemExit(f"not enough months for {SCORING_MONTHS} scoring cutoffs: raise --months")


# --- oracles -----------------------------------------------------------------------------------------


def inactivity_oracle(rows: pd.DataFrame, truth: pd.DataFrame, horizon_days: int) -> np.ndarray:
    """True probability of no transaction in ``[cutoff, cutoff + horizon)`` (see the module doc)."""
    keyed = rows[["customer_id", "cutoff"]].reset_index(drop=True).rename_axis("row").reset_index()
    columns = ["customer_id", "renewal_at", "churn_prob", "true_cause", "involuntary"]
    pairs = keyed.merge(truth[columns], on="customer_id").sort_values(["row", "renewal_at"])
    probability = np.ones(len(keyed))
    before = pairs.loc[pairs["renewal_at"] < pairs["cutoff"]].drop_duplicates("row", keep="last")
    # Dunning retries come 3 and 7 days after an involuntary churn's renewal: still inside the window.
    retrying = before["renewal_at"] >= before["cutoff"] - pd.Timedelta(days=7)
    dunning = before.loc[before["involuntary"] & retrying]
    probability[dunning["row"].to_numpy()] = 0.0
    first = pairs.loc[pairs["renewal_at"] >= pairs["cutoff"]].drop_duplicates("row", keep="first")
    first = first.loc[first["renewal_at"] < first["cutoff"] + pd.Timedelta(days=horizon_days)]
    cancels = first["churn_prob"].to_numpy() * (first["true_cause"] != "billing").to_numpy()
    probability[first["row"].to_numpy()] = cancels
    return probability


def oracles(shape: str, rows: pd.DataFrame, sim: Simulation, horizon_days: int, futures: int) -> dict:
    """The oracle (and, for subscriptions, the hindsight oracle) on the scoring rows."""
    if shape == "subscription":
        return {
            "oracle": forecast_oracle(rows, sim, horizon_days, futures),
            "hindsight": oracle_probability(rows, sim.truth, horizon_days),
        }
    return {"oracle": inactivity_oracle(rows, sim.truth, horizon_days)}


# --- baselines (fitted on every labeled row of the extract) ------------------------------------------


def recency_baseline(
    train_rows: pd.DataFrame, rows: pd.DataFrame, config: Config, specs
) -> np.ndarray | None:
    """Days since last activity (the ranking score), or None when the data has no recency feature."""
    feature = recency_feature(specs, config.evaluation.recency_feature)
    if feature is None:
        return None
    rule = fit_recency_rule(train_rows, feature)
    return recency_scores(rule, rows, feature)[0]


def logreg_baseline(train_rows: pd.DataFrame, rows: pd.DataFrame, config: Config, specs) -> np.ndarray:
    inputs = ChurnModel.untrained(train_rows, specs)
    model = logistic_regression(inputs.columns)
    model.fit(inputs.prepare(train_rows), train_rows["label"].to_numpy(int))
    return model.predict_proba(inputs.prepare(rows))[:, 1]


def xgboost_baseline(train_rows: pd.DataFrame, rows: pd.DataFrame, config: Config, specs) -> np.ndarray:
    inputs = ChurnModel.untrained(train_rows, specs)
    params = {
        **XGB_FIXED,
        "seed": config.seed,
        "nthread": config.model.nthread,
        "device": config.model.device,
    }
    fit = xgb.DMatrix(
        inputs.prepare(train_rows), label=train_rows["label"].to_numpy(int), enable_categorical=True
    )
    booster = xgb.train(params, fit, num_boost_round=XGB_FIXED_ROUNDS)
    return booster.predict(xgb.DMatrix(inputs.prepare(rows), enable_categorical=True))


# --- one cell ----------------------------------------------------------------------------------------


def cell_config(cell: Cell, args: argparse.Namespace, out: Path) -> Config:
    directory = out / cell.run_name
    labels = []
    if cell.shape == "transactions":
        labels = [
            "labels.definition=inactivity",
            f"labels.horizon_days={args.inactivity_horizon}",
            f"labels.active_days={args.active_days}",
        ]
    return load_config(
        None,
        [
            f"simulate.customers={cell.customers}",
            f"simulate.months={args.months}",
            f"simulate.seed={cell.seed}",
            f"simulate.signal={cell.signal}",
            f"seed={cell.seed}",
            f"tune.n_trials={args.trials}",
            f"output.dir={directory}",
            f"name={cell.name}",
            "tune.progress_bar=false",
            "tracking.register_model=false",
            f"tracking.uri=sqlite:///{directory / 'mlflow.db'}",
            *labels,
            *args.overrides,
        ],
    )


def auc(y: np.ndarray, score: np.ndarray | None) -> float:
    if score is None or len(np.unique(y)) < 2:
        return float("nan")
    return float(roc_auc_score(y, score))


def scoring_rows(full: Dataset, config: Config, cutoffs: list[pd.Timestamp]) -> TrainingSet:
    """Features and labels at the scoring cutoffs, from the full history."""
    schedule = config.labels.cutoffs.model_copy(update={"dates": [c.date() for c in cutoffs]})
    labels = config.labels.model_copy(update={"cutoffs": schedule})
    return build_training_set(full, labels, config.features)


def run_cell(cell: Cell, sim: Simulation, args: argparse.Namespace, out: Path) -> dict:
    config = cell_config(cell, args, out)
    full = shape_dataset(sim, cell.shape)
    window = label_window_days({"horizon_days": config.labels.horizon_days, "grace_days": _grace(config)})
    cutoffs = cutoff_dates(full, config.labels.cutoffs)
    extract_at, last_labeled, scoring = extraction_plan(cutoffs, window, full.end)
    started = time.perf_counter()
    training_set = build_training_set(extracted_at(full, extract_at), config.labels, config.features)
    assert training_set.labeled["cutoff"].max() == last_labeled, "labels observed after the extraction"
    result = train.run(config, training_set=training_set)
    train_s = time.perf_counter() - started

    rows = scoring_rows(full, config, scoring).frame
    assert rows["label"].notna().all()
    y = rows["label"].to_numpy(int)
    train_rows = training_set.labeled.reset_index(drop=True)
    scores = {
        "churnml": result.model.predict_proba(rows),
        "recency": recency_baseline(train_rows, rows, config, training_set.specs),
        "logreg": logreg_baseline(train_rows, rows, config, training_set.specs),
        "xgboost_fixed": xgboost_baseline(train_rows, rows, config, training_set.specs),
        **oracles(cell.shape, rows, sim, config.labels.horizon_days, args.futures),
    }
    months = [c.date().isoformat() for c in scoring]
    masks = {m: (rows["cutoff"] == c).to_numpy() for m, c in zip(months, scoring, strict=True)}
    by_month = {
        name: {m: auc(y[mask], None if s is None else s[mask]) for m, mask in masks.items()}
        | {"pooled": auc(y, s)}
        for name, s in scores.items()
    }
    pooled = {name: figures["pooled"] for name, figures in by_month.items()}
    reported = result.evaluation.model.metrics
    figures = {
        "cell": cell.name,
        "seed": cell.seed,
        "customers": cell.customers,
        "signal": cell.signal,
        "shape": cell.shape,
        "extracted_at": extract_at.date().isoformat(),
        "last_labeled_cutoff": last_labeled.date().isoformat(),
        "scoring_cutoffs": months,
        "train_rows": len(train_rows),
        "rows": [int(mask.sum()) for mask in masks.values()],
        "churners": [int(y[mask].sum()) for mask in masks.values()],
        "auc": by_month,
        **versus_baselines(pooled),
        "ece": expected_calibration_error(
            y, scores["churnml"], config.evaluation.ece_bins, config.evaluation.ece_strategy
        ),
        "reported_test_roc_auc": reported.get("roc_auc"),
        "reported_test_ece": reported.get("ece"),
        "candidate": result.model.info.get("candidate", "-"),
        "train_s": round(train_s, 1),
    }
    _print_cell(figures)
    return figures


def versus_baselines(auc: dict[str, float]) -> dict[str, object]:
    """churnml's AUC beside the best baseline's (chosen after the fact) and the oracle's."""
    available = {name: auc[name] for name in BASELINES if np.isfinite(auc[name])}
    best = max(available, key=available.get)
    return {
        "churnml_auc": auc["churnml"],
        "best_baseline": best,
        "best_baseline_auc": available[best],
        "margin": auc["churnml"] - available[best],
        "oracle_auc": auc["oracle"],
        "ratio_to_oracle": auc["churnml"] / auc["oracle"],
    }


def _grace(config: Config) -> int | None:
    return config.labels.grace_days if config.labels.definition == "subscription" else None


def _print_cell(f: dict) -> None:
    months = f["scoring_cutoffs"]
    print(
        f"\n== {f['cell']} (seed {f['seed']}): extracted at {f['extracted_at']}, {f['train_rows']:,} labeled training rows up to "
        f"{f['last_labeled_cutoff']}; trained in {f['train_s']} s"
    )
    print(f"   {'scorer':<15}" + "".join(f"{m:>12}" for m in months) + f"{'pooled':>12}")
    for name, figures in f["auc"].items():
        print(f"   {name:<15}" + "".join(f"{figures[m]:>12.4f}" for m in [*months, "pooled"]))
    counts = "".join(f"{f'{c}/{n}':>12}" for c, n in zip(f["churners"], f["rows"], strict=True))
    print(f"   {'churners/rows':<15}" + counts)
    print(
        f"   champion ECE {f['ece']:.4f}; churnml's test cutoff {f['last_labeled_cutoff']}: roc_auc "
        f"{_fmt(f['reported_test_roc_auc'])}, ece {_fmt(f['reported_test_ece'])}; candidate {f['candidate']}"
    )


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


# --- the grid ----------------------------------------------------------------------------------------


def across_seeds(runs: list[dict]) -> list[dict]:
    """One row per cell: each scorer's pooled AUC averaged over the seeds, the best baseline by that mean.

    With a few dozen churners per scoring cutoff one business's AUC moves by several hundredths from
    seed to seed; the targets are read on the means, and every seed's figures are printed above.
    """
    cells: dict[str, list[dict]] = {}
    for run in runs:
        cells.setdefault(run["cell"], []).append(run)
    rows = []
    for name, group in cells.items():
        mean = {
            scorer: float(np.nanmean([g["auc"][scorer]["pooled"] for g in group]))
            for scorer in group[0]["auc"]
        }
        first = group[0]
        rows.append(
            {
                "cell": name,
                "seeds": [g["seed"] for g in group],
                "customers": first["customers"],
                "signal": first["signal"],
                "shape": first["shape"],
                "auc": mean,
                **versus_baselines(mean),
                "ece": float(np.mean([g["ece"] for g in group])),
                "churners": [int(np.mean([g["churners"][k] for g in group])) for k in range(SCORING_MONTHS)],
                "candidates": [g["candidate"] for g in group],
                "train_s": float(np.mean([g["train_s"] for g in group])),
            }
        )
    return rows


def checks(cells: list[dict]) -> dict[str, bool | None]:
    """The targets; None when the cell a target is about was not run."""
    result: dict[str, bool | None] = {
        "every cell: churnml >= best baseline - 0.005": all(c["margin"] >= -0.005 for c in cells),
        "mean over cells: churnml > best baseline": float(np.mean([c["churnml_auc"] for c in cells]))
        > float(np.mean([c["best_baseline_auc"] for c in cells])),
    }
    key = [
        c for c in cells if c["customers"] == 20_000 and c["signal"] == 1.0 and c["shape"] == "subscription"
    ]
    result["subscription-20k-s1: churnml >= 0.97 x oracle"] = (
        key[0]["ratio_to_oracle"] >= 0.97 if key else None
    )
    result["subscription-20k-s1: ECE <= 0.02"] = key[0]["ece"] <= 0.02 if key else None
    return result


def print_table(cells: list[dict]) -> None:
    header = (
        f"{'cell':<26}{'churnml':>9}  {'best baseline':<22}{'margin':>8}{'oracle':>8}{'ratio':>7}"
        f"{'ECE':>8}  churners per scoring cutoff (mean)  shipped candidates"
    )
    print("\n" + header + "\n" + "-" * len(header))
    for c in cells:
        best = f"{c['best_baseline']} {c['best_baseline_auc']:.4f}"
        print(
            f"{c['cell']:<26}{c['churnml_auc']:>9.4f}  {best:<22}{c['margin']:>+8.4f}{c['oracle_auc']:>8.4f}"
            f"{c['ratio_to_oracle']:>7.3f}{c['ece']:>8.4f}  {'/'.join(map(str, c['churners'])):<32}"
            f"{','.join(c.get('candidates', [c.get('candidate', '-')]))}"
        )
    means = [float(np.mean([c[k] for c in cells])) for k in ("churnml_auc", "best_baseline_auc", "margin")]
    print(f"{'mean':<26}{means[0]:>9.4f}  {f'best {means[1]:.4f}':<22}{means[2]:>+8.4f}")


def _json_safe(value):
    """NaN (an AUC on one class, a missing scorer) as null: strict JSON has no NaN."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, float | np.floating):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer | np.bool_):
        return value.item()
    return value


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,3000,20000", help="customers per cell, comma-separated")
    parser.add_argument("--signals", default="1.0,0.4", help="churn signal strengths (simulate.signal)")
    parser.add_argument("--shapes", default=",".join(SHAPES), help="subscription and/or transactions")
    parser.add_argument("--months", type=int, default=18, help="months simulated per business")
    parser.add_argument(
        "--seeds", default="42", help="businesses per cell (simulator and training seeds), comma-separated"
    )
    parser.add_argument("--trials", type=int, default=30)
    parser.add_argument("--futures", type=int, default=100, help="simulated futures per cutoff (oracle)")
    parser.add_argument("--inactivity-horizon", type=int, default=90, help="transactions shape: horizon_days")
    parser.add_argument(
        "--active-days",
        type=int,
        default=31,
        help="transactions shape: a monthly payer has paid within 31 days",
    )
    parser.add_argument("--out", type=Path, default=None, help="output directory (default: a temp dir)")
    parser.add_argument("overrides", nargs="*", help="extra config overrides key.path=value")
    args = parser.parse_args()
    shapes = [s for s in args.shapes.split(",") if s]
    unknown = sorted(set(shapes) - set(SHAPES))
    if unknown:
        parser.error(f"unknown shape(s) {unknown}; choose from {SHAPES}")
    out = args.out or Path(tempfile.mkdtemp(prefix="churnml-robustness-"))
    logging.getLogger("churnml.data.load").setLevel(logging.ERROR)  # the extraction's "rows dropped" notes
    logging.getLogger("mlflow").setLevel(logging.WARNING)
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

    runs = []
    for customers in (int(v) for v in _floats(args.sizes)):
        for signal in _floats(args.signals):
            for seed in (int(v) for v in _floats(args.seeds)):
                started = time.perf_counter()
                sim = simulate(customers, args.months, seed, signal=signal)
                print(
                    f"\nsimulated {customers:,} customers x {args.months} months, signal {signal:g}, seed "
                    f"{seed}: {time.perf_counter() - started:.1f} s"
                )
                for shape in shapes:
                    runs.append(run_cell(Cell(customers, signal, shape, seed), sim, args, out))

    print("\nevery business (seed):")
    print_table(runs)
    cells = across_seeds(runs)
    print("\ncells, averaged over the seeds (the targets are read here):")
    print_table(cells)
    results = checks(cells)
    for check, ok in results.items():
        print(f"{'SKIP' if ok is None else 'PASS' if ok else 'FAIL'}  {check}")
    out.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    summary = {"args": settings, "runs": runs, "cells": cells, "checks": results}
    (out / "robustness.json").write_text(json.dumps(_json_safe(summary), indent=2) + "\n")
    print(f"outputs: {out} (table: {out / 'robustness.json'})")


if __name__ == "__main__":
    main()
