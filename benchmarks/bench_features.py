"""Benchmark the point-in-time feature engine: every customer at several monthly cutoffs.

    .venv/bin/python benchmarks/bench_features.py --customers 100000 --months 12 --cutoffs 6

Data comes from ``churnml.data.simulate`` (or, with --synthetic or when the simulator is unavailable, a quick
numpy generator below); its generation time is reported separately. The timed part is
``build_features`` (catalogue included) on customers x cutoffs rows. Exits 1 when over --budget seconds.
"""

from __future__ import annotations

import argparse
import collections
import resource
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from churnml.config import FeatureConfig
from churnml.data.dataset import Dataset
from churnml.features import build_features, engine, feature_catalogue


def synthetic_dataset(
    customers: int, months: int, seed: int, events_per_day: float = 0.4, event_types: int = 5
) -> Dataset:
    """A plain random dataset with every contract table: Poisson activity, monthly payments, some tickets.
    ``events_per_day`` and ``event_types`` make a dense business (few customers, many events); the
    defaults give the figures in docs/features.md."""
    rng = np.random.default_rng(seed)
    origin = pd.Timestamp("2025-01-01")
    span_s = (months * 30 + 365) * 86_400
    ids = np.array([f"C{i:07d}" for i in range(customers)], dtype=object)
    signup = rng.integers(0, span_s // 2, customers)

    def activity(per_day: float, extra: dict) -> pd.DataFrame:
        active_days = (span_s - signup) / 86_400
        counts = rng.poisson(per_day * active_days * rng.gamma(2.0, 0.5, customers))
        who = np.repeat(np.arange(customers), counts)
        when = signup[who] + (rng.random(len(who)) * (span_s - signup[who])).astype(np.int64)
        order = np.lexsort((when, who))
        who, when = who[order], when[order]
        frame = {"customer_id": pd.array(ids[who], dtype="str"), "at": origin + pd.to_timedelta(when, "s")}
        frame.update({name: make(len(who), when) for name, make in extra.items()})
        return pd.DataFrame(frame)

    def times_after(base_s: np.ndarray, hours: float, missing: float) -> pd.Series:
        later = base_s + rng.exponential(hours * 3600, len(base_s)).astype(np.int64)
        values = pd.Series(origin + pd.to_timedelta(later, "s"))
        return values.where(rng.random(len(base_s)) > missing).astype("datetime64[ns]")

    names = ["login", "core_feature_use", "report_created", "export", "teammate_invite"]
    names += [f"action_{k}" for k in range(len(names), event_types)]
    kinds = np.array(names[:event_types], dtype=object)
    if event_types == 5:
        shares = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
    else:  # Zipf-like: a few common types, a tail of rare ones
        shares = 1.0 / np.arange(1, event_types + 1)
        shares /= shares.sum()
    events = activity(
        events_per_day,
        {
            "event_type": lambda n, _: pd.array(kinds[rng.choice(len(kinds), n, p=shares)]),
            "value": lambda n, _: np.where(rng.random(n) < 0.3, rng.lognormal(2, 0.8, n), np.nan),
        },
    ).rename(columns={"at": "timestamp"})
    statuses = np.array(["paid", "failed"], dtype=object)
    transactions = activity(
        1 / 30,
        {
            "amount": lambda n, _: rng.choice([29.0, 99.0, 299.0], n),
            "status": lambda n, _: pd.array(statuses[(rng.random(n) < 0.05).astype(int)], dtype="str"),
        },
    ).rename(columns={"at": "timestamp"})
    priorities = np.array(["low", "normal", "high", "urgent"], dtype=object)
    tickets = activity(
        1 / 60,
        {
            "closed_at": lambda n, at: times_after(at, 30, 0.05),
            "priority": lambda n, _: pd.array(priorities[rng.integers(0, 4, n)], dtype="str"),
            "satisfaction": lambda n, _: np.where(rng.random(n) < 0.5, rng.integers(1, 6, n), np.nan),
        },
    ).rename(columns={"at": "opened_at"})
    messages = activity(
        1 / 10,
        {
            "opened_at": lambda n, at: times_after(at, 24, 0.6),
            "clicked_at": lambda n, at: times_after(at, 30, 0.9),
        },
    ).rename(columns={"at": "sent_at"})
    plans = np.array(["basic", "pro"], dtype=object)
    customers_frame = pd.DataFrame(
        {
            "customer_id": pd.array(ids, dtype="str"),
            "signup_at": origin + pd.to_timedelta(signup, "s"),
            "plan": pd.array(plans[rng.integers(0, 2, customers)], dtype="str"),
            "mrr": rng.choice([29.0, 99.0], customers),
        }
    )
    subscriptions = pd.DataFrame(
        {
            "customer_id": customers_frame["customer_id"],
            "start_at": customers_frame["signup_at"],
            "end_at": times_after(signup, 24 * 300, 0.5),
            "plan": customers_frame["plan"],
            "mrr": customers_frame["mrr"],
        }
    )
    tables = {
        "customers": customers_frame,
        "events": events,
        "subscriptions": subscriptions,
        "transactions": transactions,
        "tickets": tickets,
        "messages": messages,
    }
    for frame in tables.values():
        for column in frame.columns:
            if frame[column].dtype.kind == "M":
                frame[column] = frame[column].astype("datetime64[ns]")
    return Dataset(tables=tables, end=origin + pd.Timedelta(seconds=span_s))


def load(args: argparse.Namespace) -> tuple[Dataset, str]:
    if not args.synthetic:
        try:
            from churnml.data.simulate import simulate
        except ImportError:
            print("churnml.data.simulate unavailable: using the synthetic generator")
        else:
            return simulate(args.customers, args.months, args.seed).to_dataset(), "churnml.data.simulate"
    dataset = synthetic_dataset(args.customers, args.months, args.seed, args.events_per_day, args.event_types)
    return dataset, "synthetic"


def monthly_cutoffs(dataset: Dataset, count: int) -> pd.DatetimeIndex:
    """The last ``count`` month starts at or before the end of the data."""
    last = dataset.end.to_period("M").to_timestamp()
    return pd.date_range(end=last, periods=count, freq="MS")


def profiled() -> dict[str, float]:
    """Wrap every aggregate to add up its time (positions are cached, so the first user pays for them)."""
    spent: dict[str, float] = collections.defaultdict(float)
    for name, function in list(engine.AGGREGATES.items()):

        def timed(ctx, spec, function=function, name=name):
            start = time.perf_counter()
            result = function(ctx, spec)
            spent[name] += time.perf_counter() - start
            return result

        engine.AGGREGATES[name] = timed
    return spent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--cutoffs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--partitions", type=int, default=1)
    parser.add_argument("--synthetic", action="store_true", help="use the numpy generator, not the simulator")
    parser.add_argument("--events-per-day", type=float, default=0.4, help="synthetic: mean events per day")
    parser.add_argument("--event-types", type=int, default=5, help="synthetic: how many event types")
    parser.add_argument(
        "--write",
        type=Path,
        default=None,
        help="also write the tables here as Parquet (for `churnml features`)",
    )
    parser.add_argument("--profile", action="store_true", help="print time per aggregate")
    parser.add_argument("--budget", type=float, default=60.0, help="seconds allowed for the build")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    dataset, source = load(args)
    generated = time.perf_counter() - start
    rows = {name: len(frame) for name, frame in dataset.tables.items()}
    print(f"data: {source}, {generated:.1f} s to generate; rows: {rows}")
    if args.write is not None:
        args.write.mkdir(parents=True, exist_ok=True)
        for name, frame in dataset.tables.items():
            frame.to_parquet(args.write / f"{name}.parquet", index=False)
        print(f"tables written to {args.write} (data ends {dataset.end})")

    cutoff_dates = monthly_cutoffs(dataset, args.cutoffs)
    ids = dataset.customers["customer_id"]
    cutoffs = pd.DataFrame(
        {
            "customer_id": np.repeat(ids.to_numpy(), len(cutoff_dates)),
            "cutoff": np.tile(cutoff_dates.to_numpy(dtype="datetime64[ns]"), len(ids)),
        }
    )
    config = FeatureConfig(partitions=args.partitions)
    spent = profiled() if args.profile else {}
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    features = build_features(dataset, cutoffs, config)
    wall = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    n_features = len(feature_catalogue(dataset, config))
    activity = sum(n for name, n in rows.items() if name != "customers")
    print(f"cutoffs: {', '.join(str(d.date()) for d in cutoff_dates)}")
    print(f"output: {features.shape[0]:,} rows x {n_features} features")
    print(f"build wall time: {wall:.2f} s (budget {args.budget:.0f} s)")
    print(f"throughput: {len(features) / wall:,.0f} rows/s, {rows.get('events', 0) / wall:,.0f} events/s, ")
    print(
        f"            {activity / wall:,.0f} activity rows/s, {len(features) * n_features / wall:,.0f} values/s"
    )
    print(f"peak RSS: {peak:,.0f} MiB (before the build: {rss_before:,.0f} MiB, incl. data generation)")
    for name, seconds in sorted(spent.items(), key=lambda item: -item[1]):
        print(f"  {name:<20} {seconds:6.2f} s")
    return 0 if wall <= args.budget else 1


if __name__ == "__main__":
    sys.exit(main())
