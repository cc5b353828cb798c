"""Benchmark the Optuna search: trials in this process vs in parallel on a Dask LocalCluster's workers.

    .venv/bin/python benchmarks/bench_tune.py --customers 5000 --trials 16 --workers 2

A business is simulated and its training set split once (not timed). Then ``tune`` runs the same study
definition (same config, seed, folds, budget; a fresh SQLite file each) locally, with XGBoost on
``--threads`` threads per trial, and on a LocalCluster of ``--workers`` processes of one thread each,
every worker running its share of the trials on the shared file. The time is ``tune``'s whole call,
including the best trial's cross-validation on every row (on the cluster always redone in this process)
and, for the cluster, sending the folds and building each worker's matrices; not the cluster's start.
Printed per engine: seconds, seconds per trial, the best pooled value and which worker ran each trial.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import Counter

import optuna

from churnml.config import Config, EngineConfig
from churnml.data.simulate import simulate
from churnml.engine import open_engine
from churnml.features.training_set import build_training_set
from churnml.training.split import split_by_time
from churnml.training.tune import WORKER_ATTR, CVData, tune


def config_for(out: str, trials: int, threads: int, seed: int) -> Config:
    return Config.model_validate(
        {
            "seed": seed,
            "output": {"dir": out},
            "tune": {"n_trials": trials, "progress_bar": False},
            "model": {"nthread": threads},
        }
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="XGBoost threads of the local trials")
    parser.add_argument("--memory-limit", default="4GiB")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    started = time.perf_counter()
    business = simulate(args.customers, args.months, seed=args.seed).to_dataset()
    training = build_training_set(business, Config().labels, Config().features)
    split = split_by_time(training.frame, training.label_settings, Config().split)
    print(
        f"{args.customers:,} customers: training set {len(training.frame):,} rows, "
        f"folds {[len(f.train) for f in split.folds]} training rows "
        f"(prepared in {time.perf_counter() - started:.1f} s, not timed)"
    )
    settings = EngineConfig(
        kind="dask",
        workers=args.workers,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        progress=False,
    )
    for kind in ("local", "dask"):
        with (
            tempfile.TemporaryDirectory() as out,
            open_engine(settings if kind == "dask" else EngineConfig()) as engine,
        ):
            config = config_for(out, args.trials, args.threads, args.seed)
            data = CVData.of(training.specs, split, args.threads, config.tune.search_negatives, config.seed)
            began = time.perf_counter()
            study, best = tune(config, data, "bench", engine=engine)
            elapsed = time.perf_counter() - began
            finished = [t for t in study.trials if t.state != optuna.trial.TrialState.FAIL]
            workers = Counter(t.user_attrs.get(WORKER_ATTR, "-") for t in finished)
            label = "local" if kind == "local" else f"dask x{args.workers}"
            print(
                f"{label:>8}: {elapsed:6.1f} s for {len(finished)} trials ({elapsed / len(finished):.2f} s/trial), "
                f"best #{study.best_trial.number} {config.tune.metric} {study.best_value:.5f} "
                f"(every row: {best.score:.5f}), trials per worker {dict(sorted(workers.items()))}"
            )


if __name__ == "__main__":
    main()
