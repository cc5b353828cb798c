"""Benchmark scoring + explaining a large customer base (issue #4: 100k customers in under 60 s on 2 cores).

    python benchmarks/bench_explain.py --customers 100000            # CPU, the whole scoring pipeline
    python benchmarks/bench_explain.py --customers 100000 --device cuda   # TreeSHAP on the GPU

Phases: (1) simulate the business and write it as Parquet, and fit a model directory (fixed XGBoost
settings: ``--trees`` rounds of depth ``--depth``, a stand-in for a tuned model), both cached in
``--work``; (2) in a fresh process, the timed run: ``churnml.pipelines.score.run`` from reading the data to
the written risk list and report (no MLflow), with its step timings, rows/s, how many customers were
explained and the peak RSS of that process; (3) the raw TreeSHAP cost per row on the chosen device, and
what explaining *every* customer would cost, which is why only the customers that need reasons are
explained (``scoring.explain=at_risk``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import xgboost as xgb

from churnml.config import load_config
from churnml.data.simulate import simulate, write_simulation
from churnml.features.training_set import build_training_set
from churnml.risk.explain import contributions
from churnml.training.model import ChurnModel


def prepare_data(work: Path, customers: int, months: int, seed: int) -> Path:
    data = work / f"sim-{customers}-{months}-{seed}"
    if not (data / "simulation.json").exists():
        started = time.perf_counter()
        write_simulation(simulate(customers, months, seed), data)
        print(f"simulated {customers:,} customers x {months} months in {time.perf_counter() - started:.0f} s")
    return data


def prepare_model(work: Path, customers: int, months: int, trees: int, depth: int, device: str) -> Path:
    """A model directory fitted on a smaller simulation of the same business (another seed), with early
    stopping on the last labeled cutoff choosing the number of trees (at most ``trees``), as tuning does."""
    target = work / f"model-{customers}-{months}-{trees}x{depth}-es"
    if (target / "booster.json").exists():
        return target
    started = time.perf_counter()
    config = load_config(None, [])
    sim = simulate(customers, months, seed=1)
    training_set = build_training_set(sim.to_dataset(), config.labels, config.features)
    labeled = training_set.labeled
    untrained = ChurnModel.untrained(labeled, training_set.specs)
    last = labeled["cutoff"] == labeled["cutoff"].max()
    x, y = untrained.xy(labeled.loc[~last])
    x_valid, y_valid = untrained.xy(labeled.loc[last])
    params = {
        "objective": "binary:logistic",
        "tree_method": "hist",
        "max_depth": depth,
        "eta": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.7,
        "min_child_weight": 5,
        "nthread": 2,
        "seed": 0,
        "device": device,
    }
    booster = xgb.train(
        params,
        xgb.DMatrix(x, label=y, enable_categorical=True),
        num_boost_round=trees,
        evals=[(xgb.DMatrix(x_valid, label=y_valid, enable_categorical=True), "valid")],
        early_stopping_rounds=50,
        verbose_eval=False,
    )
    best = booster.best_iteration
    booster = booster[: best + 1]
    booster.set_param({"device": "cpu"})
    untrained.with_booster(booster, best_iteration=best).save(target)
    print(
        f"fitted {best + 1} trees (early stopping, at most {trees}) of depth {depth} on {len(x):,} rows "
        f"in {time.perf_counter() - started:.0f} s"
    )
    return target


def measure(args: argparse.Namespace) -> None:
    """The timed run (in its own process, so the peak RSS is the scoring's own)."""
    from churnml.pipelines import score

    config = load_config(
        None,
        [
            f"data.dir={args.data}",
            f"output.dir={args.out}",
            "scoring.log_to_mlflow=false",
            f"scoring.device={args.device}",
            f"scoring.explain={args.explain}",
            *args.overrides,
        ],
    )
    started = time.perf_counter()
    result = score.run(config, model_uri=str(args.model))
    wall = time.perf_counter() - started
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    print(json.dumps({"wall_s": wall, "peak_rss_mib": peak, **result.summary}, default=str))


def shap_cost(model_dir: Path, data: Path, device: str, rows: int) -> dict[str, float]:
    """Seconds per row of plain prediction and of TreeSHAP on ``rows`` customers."""
    from churnml.data.load import load_dataset
    from churnml.features import build_features
    from churnml.features.labels import make_label_times

    config = load_config(None, [f"data.dir={data}"])
    dataset = load_dataset(config.data)
    model = ChurnModel.load(model_dir)
    eligible = make_label_times(dataset, config.labels, [dataset.end]).frame.head(rows)
    frame = build_features(dataset, eligible, config.features, list(model.specs))
    started = time.perf_counter()
    model.margin(frame)
    predict = (time.perf_counter() - started) / len(frame)
    contributions(model, frame.head(100), device=device)  # warm-up (GPU context, caches)
    started = time.perf_counter()
    contributions(model, frame, device=device, nthread=2)
    explain = (time.perf_counter() - started) / len(frame)
    return {"rows": len(frame), "predict_us_per_row": predict * 1e6, "shap_us_per_row": explain * 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--train-customers", type=int, default=5000)
    parser.add_argument("--trees", type=int, default=1000, help="most boosting rounds of the stand-in model")
    parser.add_argument("--depth", type=int, default=6, help="max_depth of the stand-in model")
    parser.add_argument("--model", type=Path, default=None, help="a model directory to use instead")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--explain", choices=["at_risk", "all"], default="at_risk")
    parser.add_argument("--shap-rows", type=int, default=5000, help="rows for the per-row TreeSHAP cost")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "churnml-bench-explain")
    parser.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--data", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("overrides", nargs="*", help="config overrides key.path=value for the scoring run")
    args = parser.parse_args()
    if args.measure:
        measure(args)
        return

    args.work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args.work, args.customers, args.months, args.seed)
    model = args.model or prepare_model(
        args.work, args.train_customers, args.months, args.trees, args.depth, args.device
    )
    command = [
        sys.executable, __file__, "--measure", f"--data={data}", f"--out={args.work / 'out'}",
        f"--model={model}", f"--device={args.device}", f"--explain={args.explain}", *args.overrides,
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        sys.exit(completed.stderr[-4000:])
    run = json.loads(completed.stdout.strip().splitlines()[-1])
    t = run["timings"]
    scored = int(run["customers_scored"])
    print(f"\nscore + explain, {args.device}, {scored:,} active customers ({args.customers:,} simulated)")
    print(f"  model: {run['trees']} trees" + ("" if args.model else f" of depth {args.depth}"))
    print(
        f"  wall time {run['wall_s']:.1f} s   ({scored / run['wall_s']:,.0f} customers/s)   peak RSS {run['peak_rss_mib']:,.0f} MiB"
    )
    print(
        "  steps: " + ", ".join(f"{k.removesuffix('_s')} {v:.1f} s" for k, v in t.items() if k != "total_s")
    )
    print(
        f"  explained {int(run['customers_explained']):,} customers ({int(run['customers_at_risk']):,} at risk); "
        f"TreeSHAP on {int(run['rows_contributions']):,} rows took {run['contributions_seconds']:.1f} s"
    )
    cost = shap_cost(model, data, args.device, args.shap_rows)
    print(
        f"\nper row on {args.device} ({cost['rows']:,} rows): predict {cost['predict_us_per_row']:.1f} us, "
        f"TreeSHAP {cost['shap_us_per_row']:.0f} us ({cost['shap_us_per_row'] / max(cost['predict_us_per_row'], 1e-9):.0f}x)"
    )
    every = cost["shap_us_per_row"] * scored / 1e6
    print(f"explaining all {scored:,} customers would take about {every:.0f} s of TreeSHAP alone")


if __name__ == "__main__":
    main()
