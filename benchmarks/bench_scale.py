"""Benchmark the engines: features and scoring per customer, local vs a Dask LocalCluster of 1 and 2 workers.

    .venv/bin/python benchmarks/bench_scale.py --customers 20000,50000,100000 --workers 1,2 --memory-limit 6GiB

For each size a business is simulated once (``churnml.data.simulate``; its time is printed, not counted),
a small booster is trained on its local training set (not counted), and each engine then runs:

- **features**: ``build_training_set`` at the last ``--cutoffs`` monthly cutoffs (labels + features);
- **score**: ``score_customers`` at the end of the data (eligibility, features, calibrated probability);
- **shap**: TreeSHAP contributions of the first ``--explain`` scored customers (what drivers cost).

Times per customer (of the business) and per scored row are printed, with each Dask worker's peak
resident memory against its memory limit (the worker process's own peak, read on the worker), and
whether the results equal the local engine's (features bit for bit, probabilities and contributions
within float tolerance). A fresh cluster per size and worker count, so each peak belongs to one run.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass

import numpy as np
import pandas as pd
import xgboost as xgb

from churnml.config import Config, CutoffSchedule, EngineConfig, FeatureConfig, LabelConfig
from churnml.data.dataset import Dataset
from churnml.data.simulate import simulate
from churnml.engine import Engine, LocalEngine, open_engine
from churnml.engine.cluster import DaskEngine, peak_memory
from churnml.features.training_set import TrainingSet, build_training_set
from churnml.risk.drivers import contributions_of
from churnml.risk.population import score_customers
from churnml.training.model import ChurnModel

GIB = 2**30


def last_cutoffs(dataset: Dataset, count: int) -> CutoffSchedule:
    """The last ``count`` month starts before the end of the data."""
    last = dataset.end.normalize().replace(day=1)
    starts = pd.date_range(end=last, periods=count, freq="MS")
    return CutoffSchedule(dates=[d.date() for d in starts])


def small_model(training: TrainingSet, threads: int) -> ChurnModel:
    labeled = training.labeled
    untrained = ChurnModel.untrained(labeled, training.specs)
    params = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.2, "nthread": threads, "seed": 0}
    matrix = xgb.DMatrix(
        untrained.prepare(labeled), label=labeled["label"].astype(int), enable_categorical=True
    )
    return untrained.with_booster(xgb.train(params, matrix, num_boost_round=100), best_iteration=99)


@dataclass
class Run:
    features_s: float
    score_s: float
    shap_s: float
    training: TrainingSet
    frame: pd.DataFrame
    probability: np.ndarray
    contribs: np.ndarray

    def equals(self, other: Run) -> str:
        """Features bit for bit, probabilities and contributions within float tolerance."""
        try:
            pd.testing.assert_frame_equal(self.training.frame, other.training.frame, check_exact=True)
            pd.testing.assert_frame_equal(self.frame, other.frame, check_exact=True)
            np.testing.assert_allclose(self.probability, other.probability, rtol=1e-6, atol=1e-7)
            np.testing.assert_allclose(self.contribs, other.contribs, rtol=1e-5, atol=1e-6)
        except AssertionError:
            return "NO"
        return "yes"


def run_engine(
    engine: Engine,
    dataset: Dataset,
    labels: LabelConfig,
    features: FeatureConfig,
    model: ChurnModel,
    explain: int,
) -> Run:
    config = Config(labels=labels, features=features)
    started = time.perf_counter()
    training = build_training_set(dataset, labels, features, engine)
    features_s = time.perf_counter() - started
    started = time.perf_counter()
    frame, probability = score_customers(engine, dataset, model, dataset.end, config)
    score_s = time.perf_counter() - started
    rows = frame.iloc[:explain]
    started = time.perf_counter()
    pieces = engine.map(
        contributions_of, engine.row_parts(rows, 20_000), model, 20_000, "cpu", engine.threads
    )
    shap_s = time.perf_counter() - started
    return Run(features_s, score_s, shap_s, training, frame, probability, np.concatenate(pieces))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="20000,50000", help="comma-separated business sizes")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--cutoffs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts")
    parser.add_argument("--threads", type=int, default=1, help="threads per Dask worker")
    parser.add_argument("--memory-limit", default="6GiB", help="memory limit per Dask worker")
    parser.add_argument("--customers-per-partition", type=int, default=50_000)
    parser.add_argument("--explain", type=int, default=5000, help="scored customers explained with TreeSHAP")
    parser.add_argument(
        "--local-threads", type=int, default=2, help="XGBoost/SHAP threads of the local engine"
    )
    args = parser.parse_args(argv)

    labels_base = LabelConfig()
    features = FeatureConfig()
    lines = []
    print(
        f"{'customers':>9} {'engine':<10} {'features':>9} {'µs/cust':>8} {'score':>7} {'µs/cust':>8} "
        f"{'shap':>6} {'µs/row':>7} {'total µs/cust':>13}  equal  worker peak / limit"
    )
    for n in (int(x) for x in args.customers.split(",")):
        started = time.perf_counter()
        dataset = simulate(n, args.months, args.seed).to_dataset()
        simulate_s = time.perf_counter() - started
        rows = {name: len(frame) for name, frame in dataset.tables.items()}
        labels = labels_base.model_copy(update={"cutoffs": last_cutoffs(dataset, args.cutoffs)})
        print(
            f"# {n:,} customers: simulated in {simulate_s:.1f} s; rows "
            + ", ".join(f"{k} {v:,}" for k, v in rows.items()),
            flush=True,
        )
        reference: Run | None = None
        model = None
        engines: list[tuple[str, EngineConfig | None]] = [("local", None)]
        engines += [
            (
                f"dask x{w}",
                EngineConfig(
                    kind="dask",
                    workers=w,
                    threads_per_worker=args.threads,
                    memory_limit=args.memory_limit,
                    customers_per_partition=args.customers_per_partition,
                    dashboard=False,
                ),
            )
            for w in (int(x) for x in args.workers.split(","))
        ]
        for name, settings in engines:
            if settings is None:
                engine: Engine = LocalEngine(args.local_threads)
                if model is None:
                    model = small_model(build_training_set(dataset, labels, features), args.local_threads)
                result = run_engine(engine, dataset, labels, features, model, args.explain)
                reference = result
                memory, equal = "-", "-"
            else:
                with open_engine(settings) as engine:
                    assert model is not None and reference is not None
                    result = run_engine(engine, dataset, labels, features, model, args.explain)
                    assert isinstance(engine, DaskEngine)
                    peaks = engine.worker_memory()
                memory = "  ".join(
                    f"{peak / GIB:.2f}/{(limit or 0) / GIB:.1f} GiB" for peak, limit in peaks.values()
                )
                equal = result.equals(reference)
            scored, explained = len(result.frame), len(result.contribs)
            f_s, s_s, x_s = result.features_s, result.score_s, result.shap_s
            total = (f_s + s_s + x_s) / n * 1e6
            line = (
                f"{n:>9,} {name:<10} {f_s:>8.1f}s {f_s / n * 1e6:>8.0f} {s_s:>6.1f}s {s_s / n * 1e6:>8.0f} "
                f"{x_s:>5.1f}s {x_s / max(explained, 1) * 1e6:>7.0f} {total:>13.0f}  {equal:<5}  {memory}"
            )
            print(line, flush=True)
            lines.append(line)
        assert reference is not None
        print(
            f"# scored {scored:,} active customers, explained {explained:,}; training set "
            f"{len(reference.training.frame):,} rows x {len(reference.training.specs)} features",
            flush=True,
        )
        del dataset, reference
    peak = peak_memory()
    print(f"# this process (the client, which holds the whole data): peak RSS {peak / GIB:.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
