"""Benchmark the whole pipeline at scale on a LocalCluster: simulate in chunks, load, features, train, score.

    .venv/bin/python benchmarks/bench_pipeline_scale.py --customers 30000,100000 --workers 1,2 \
        --memory-limit 3GiB --customers-per-partition 25000 --out /tmp/bench_pipeline

Per business size: ``churnml simulate --chunk-customers`` writes it as Parquet part files (in a child
process, so its memory is not the client's), churnml's loader reads it into the client, then for each
worker count a fresh LocalCluster (``engine.kind=dask``, memory limit per worker) runs:

- **features**: ``build_training_set`` at the last ``--cutoffs`` monthly cutoffs (labels + features);
- **train**: ``engine.boosting.train_on_cluster`` (``xgboost.dask``), ``--rounds`` trees of depth 5;
- **score**: ``score_customers`` at the end of the data (eligibility, features, probability).

Printed: each step's time per customer, each worker's peak resident memory against its limit, and the
client's own peak. The client loads the whole data (the engine splits and ships it from there), so the
client, not the workers, is what bounds the size on one machine.

``--read-on-workers``: the client loads nothing. Each worker reads its customers' rows from the part
files (``churnml.engine.sources``), as ``churnml features engine.kind=dask`` does with Parquet data. With
``--steps features`` the training set comes back to the client (what ``churnml features`` writes); with
all three steps it stays on the workers (``keep_training_set_on_workers``, float32 features), the
booster is trained there on the development cutoffs (``train_on_parts``), its test cutoff's
probabilities come back (printed: the test AUC beside the recency baseline's), and the customers are
scored from the partitions the workers read (``score_with_context`` of ``Partitions``, as ``churnml
score`` does). The client's peak
(VmHWM, over the whole process) is then the figure to compare: run one size per invocation for it.
``--keep`` keeps the simulated business (and reuses one already there), to compare both ways on it:

    .venv/bin/python benchmarks/bench_pipeline_scale.py --customers 100000 --workers 2 --steps features \
        --read-on-workers --keep --memory-limit 3GiB --out /tmp/bench_pipeline
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import numpy as np
import pandas as pd
from bench_scale import last_cutoffs
from sklearn.metrics import roc_auc_score

from churnml.config import Config, DataConfig, EngineConfig, FeatureConfig, LabelConfig, SplitConfig
from churnml.data.load import load_dataset
from churnml.data.simulate import BLOCK_CUSTOMERS
from churnml.engine import open_engine, sources
from churnml.engine.boosting import (
    keep_model_inputs,
    keep_rows,
    predict_parts,
    train_on_cluster,
    train_on_parts,
)
from churnml.engine.cluster import DaskEngine, peak_memory
from churnml.features.catalogue import recency_feature
from churnml.features.training_set import (
    build_training_set,
    build_training_set_on_workers,
    keep_training_set_on_workers,
)
from churnml.risk.population import score_customers, score_with_context
from churnml.training.evaluate import NEVER_ACTIVE_DAYS
from churnml.training.model import ChurnModel
from churnml.training.split import split_by_time

GIB = 2**30


def _engine_settings(args: argparse.Namespace, workers: int) -> EngineConfig:
    """The benchmark's LocalCluster: one thread per worker, the given memory limit and partition size."""
    return EngineConfig(
        kind="dask",
        workers=workers,
        threads_per_worker=1,
        memory_limit=args.memory_limit,
        customers_per_partition=args.customers_per_partition,
        dashboard=False,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="30000,100000", help="comma-separated business sizes")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--cutoffs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workers", default="1,2", help="comma-separated Dask worker counts")
    parser.add_argument("--memory-limit", default="3GiB", help="memory limit per Dask worker")
    parser.add_argument("--customers-per-partition", type=int, default=25_000)
    parser.add_argument("--chunk-customers", type=int, default=BLOCK_CUSTOMERS)
    parser.add_argument("--rounds", type=int, default=100)
    parser.add_argument(
        "--model-out",
        type=Path,
        help="with --read-on-workers: save the trained model here (for churnml score)",
    )
    parser.add_argument("--out", type=Path, required=True, help="scratch directory for the businesses")
    parser.add_argument("--steps", default="features,train,score", help="features, or all three")
    parser.add_argument("--read-on-workers", action="store_true", help="workers read the part files")
    parser.add_argument(
        "--scan",
        action="store_true",
        help="with --read-on-workers: every partition scans every file (no staging), as before the split",
    )
    parser.add_argument("--keep", action="store_true", help="keep (and reuse) the simulated business")
    args = parser.parse_args(argv)
    steps = args.steps.split(",")
    if steps not in (["features"], ["features", "train", "score"]):
        parser.error("--steps: features, or features,train,score")
    if args.scan and not args.read_on_workers:
        parser.error("--scan: only with --read-on-workers")

    features = FeatureConfig()
    print(
        f"{'customers':>9} {'engine':<8} {'simulate':>9} {'load':>7} {'features':>9} {'train':>7} "
        f"{'score':>7} {'µs/cust (features+train+score)':>31}  worker peak / limit"
    )
    for n in (int(x) for x in args.customers.split(",")):
        data = args.out / f"sim-{n}"
        started = time.perf_counter()
        if not (args.keep and (data / "simulation.json").is_file()):
            command = [sys.executable, "-m", "churnml.cli", "simulate", "--out", str(data)]
            command += ["--customers", str(n), "--months", str(args.months), "--seed", str(args.seed)]
            subprocess.run(
                [*command, "--chunk-customers", str(args.chunk_customers)], check=True, capture_output=True
            )
        simulate_s = time.perf_counter() - started
        if args.read_on_workers:
            on_workers(args, n, data, features, simulate_s, steps)
            continue
        started = time.perf_counter()
        dataset = load_dataset(DataConfig(dir=str(data)))
        load_s = time.perf_counter() - started
        labels = LabelConfig().model_copy(update={"cutoffs": last_cutoffs(dataset, args.cutoffs)})
        config = Config(labels=labels, features=features)
        events = len(dataset.tables["events"])
        for workers in (int(x) for x in args.workers.split(",")):
            with open_engine(_engine_settings(args, workers)) as engine:
                assert isinstance(engine, DaskEngine)
                started = time.perf_counter()
                training = build_training_set(dataset, labels, features, engine)
                features_s = time.perf_counter() - started
                train_s = score_s = 0.0
                rows, scored, columns = len(training.frame), 0, 3 + len(training.specs)
                if steps == ["features"]:
                    peaks = engine.worker_memory()
                    print(_line(n, workers, simulate_s, load_s, features_s, 0.0, 0.0, peaks), flush=True)
                    continue
                started = time.perf_counter()
                labeled = training.labeled
                untrained = ChurnModel.untrained(labeled, training.specs)
                params = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.2, "seed": 0}
                booster = train_on_cluster(engine, untrained, params, args.rounds, labeled)
                model = untrained.with_booster(booster, best_iteration=args.rounds - 1)
                train_s = time.perf_counter() - started
                started = time.perf_counter()
                frame, _ = score_customers(engine, dataset, model, dataset.end, config)
                score_s = time.perf_counter() - started
                peaks = engine.worker_memory()
            print(_line(n, workers, simulate_s, load_s, features_s, train_s, score_s, peaks), flush=True)
            rows, scored = len(training.frame), len(frame)
            del training, labeled, frame, model, booster
        print(
            f"# {n:,} customers, {events:,} events; training set {rows:,} rows x {columns} "
            f"columns; {scored:,} scored; client peak RSS so far {peak_memory() / GIB:.2f} GiB",
            flush=True,
        )
        del dataset
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return 0


def _line(
    n: int,
    workers: int,
    simulate_s: float,
    load_s: float | None,
    features_s: float,
    train_s: float,
    score_s: float,
    peaks: dict[str, tuple[int, int | None]],
) -> str:
    memory = "  ".join(f"{p / GIB:.2f}/{(limit or 0) / GIB:.1f} GiB" for p, limit in peaks.values())
    work = (features_s + train_s + score_s) / n * 1e6
    load = "-" if load_s is None else f"{load_s:.1f}s"
    return (
        f"{n:>9,} {'dask x' + str(workers):<8} {simulate_s:>8.1f}s {load:>7} {features_s:>8.1f}s "
        f"{train_s:>6.1f}s {score_s:>6.1f}s {work:>31.0f}  {memory}"
    )


def on_workers(
    args: argparse.Namespace,
    n: int,
    data: Path,
    features: FeatureConfig,
    simulate_s: float,
    steps: list[str],
) -> None:
    """The steps with the workers reading the part files; the client loads nothing (see the docstring)."""
    config = DataConfig(dir=str(data))
    paths = sources.table_paths(config, None)
    assert paths is not None
    for workers in (int(x) for x in args.workers.split(",")):
        settings = _engine_settings(args, workers)
        with open_engine(settings) as engine, ExitStack() as stack:
            assert isinstance(engine, DaskEngine)
            started = time.perf_counter()
            staging = None if args.scan else sources.staging_folder(settings, stack)
            held = sources.open_partitions(paths, config, engine, staging)
            assert held is not None, "the data needs the loader's messages: run without --read-on-workers"
            read_s = time.perf_counter() - started
            labels = LabelConfig().model_copy(update={"cutoffs": last_cutoffs(held.stand_in, args.cutoffs)})
            if steps == ["features"]:
                training = build_training_set_on_workers(held, labels, features, engine)
                features_s = time.perf_counter() - started
                peaks = engine.worker_memory()
                shape = f"{len(training.frame):,} rows x {training.frame.shape[1]} columns, gathered"
                del training
                print(_line(n, workers, simulate_s, None, features_s, 0.0, 0.0, peaks), flush=True)
                test = ""
            else:
                kept = keep_training_set_on_workers(held, labels, features, engine)
                features_s = time.perf_counter() - started
                shape = f"{len(kept.labels):,} rows x {len(kept.specs) + 3} columns, left on the workers"
                started = time.perf_counter()
                split = split_by_time(kept.labels, kept.label_settings, SplitConfig(folds=1))
                development = [pd.Timestamp(c) for c in split.boundaries["train_cutoffs"]]
                test_cutoff = pd.Timestamp(split.boundaries["test_cutoff"])
                head = engine.client.submit(lambda part: part.iloc[:1000], kept.parts[0]).result()
                untrained = ChurnModel.untrained(head, kept.specs)
                params = {"objective": "binary:logistic", "max_depth": 5, "eta": 0.2, "seed": 0}
                # The test cutoff's rows and the development rows' inputs, then the training set goes:
                # the workers hold only what XGBoost reads while it trains.
                test_rows = keep_rows(engine, kept.parts, [test_cutoff])
                inputs = keep_model_inputs(engine, untrained, kept.parts, development)
                recency = recency_feature(kept.specs)
                kept_settings = kept.label_settings
                del kept
                booster = train_on_parts(engine, untrained, params, args.rounds, inputs)
                del inputs
                model = untrained.with_booster(booster, best_iteration=args.rounds - 1)
                if args.model_out is not None:
                    model.with_info(labels=kept_settings).save(args.model_out / f"model-{n}")
                extra = [] if recency is None else [recency]
                predicted = predict_parts(engine, model, test_rows, [test_cutoff], extra)
                del test_rows
                train_s = time.perf_counter() - started
                started = time.perf_counter()
                frame, _, _ = score_with_context(engine, held, model, held.end, Config(labels=labels))
                score_s = time.perf_counter() - started
                peaks = engine.worker_memory()
                print(_line(n, workers, simulate_s, None, features_s, train_s, score_s, peaks), flush=True)
                y = predicted["label"].to_numpy(int)
                days = None if recency is None else predicted[recency].to_numpy(float)
                test = (
                    f"; test cutoff {test_cutoff.date()}: {len(predicted):,} customers, AUC "
                    f"{roc_auc_score(y, predicted['probability']):.4f}"
                    + ("" if days is None else f" (recency rule {_recency_auc(y, days):.4f})")
                    + f"; {len(frame):,} scored"
                )
                del frame, predicted
        print(
            f"# {n:,} customers, read on the workers ({held.count} partitions, "
            f"{'every partition scanning every file' if args.scan else 'files split by partition in one scan'}): "
            f"summaries {read_s:.1f} s; training set {shape}{test}; "
            f"client peak RSS so far {peak_memory() / GIB:.2f} GiB",
            flush=True,
        )
    if not args.keep:
        shutil.rmtree(data, ignore_errors=True)


def _recency_auc(y: np.ndarray, days: np.ndarray) -> float:
    """The recency rule's AUC: more days since the last activity, riskier (none at all: the riskiest)."""
    return float(roc_auc_score(y, np.where(np.isnan(days), NEVER_ACTIVE_DAYS, days)))


if __name__ == "__main__":
    raise SystemExit(main())
