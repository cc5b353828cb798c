"""Benchmark the chunked simulator: time and peak memory by business size, in chunks and at once.

    .venv/bin/python benchmarks/bench_simulate.py --customers 100000,300000,1000000 --out /tmp/bench_sim

Each size runs in a fresh process (``churnml.data.simulate.simulate_chunks`` then
``write_simulation_chunks``, as ``churnml simulate --chunk-customers`` does), so its peak resident
memory (VmHWM, read by the process itself) belongs to that size alone. ``--whole`` sizes are also
simulated at once and written as one file per table (``simulate`` + ``write_simulation``), for comparison.
Printed: time per customer (it should stay flat: the work is linear), peak memory (chunked: it should
follow the chunk, not the business), events and the Parquet bytes written.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from churnml.data.simulate import (
    BLOCK_CUSTOMERS,
    simulate,
    simulate_chunks,
    write_simulation,
    write_simulation_chunks,
)
from churnml.engine.cluster import peak_memory

GIB = 2**30


def one(customers: int, months: int, seed: int, chunk: int, out: Path, whole: bool) -> dict:
    """Simulate and write one business in this process; its time, peak memory and output size."""
    started = time.perf_counter()
    if whole:
        write_simulation(simulate(customers, months, seed), out)
    else:
        write_simulation_chunks(simulate_chunks(customers, months, seed, chunk_customers=chunk), out)
    seconds = time.perf_counter() - started
    meta = json.loads((out / "simulation.json").read_text())
    size = sum(p.stat().st_size for p in out.rglob("*.parquet") if p.is_file())
    return {
        "seconds": seconds,
        "peak": peak_memory(),
        "events": meta["rows"]["events"],
        "parts": meta.get("parts", 1),
        "bytes": size,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", default="100000,300000", help="comma-separated business sizes")
    parser.add_argument("--whole", default="", help="sizes also simulated at once (comma-separated)")
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--chunk-customers", type=int, default=BLOCK_CUSTOMERS)
    parser.add_argument("--out", type=Path, required=True, help="scratch directory (emptied per size)")
    parser.add_argument("--keep", action="store_true", help="keep the written businesses")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child: one size, prints JSON
    parser.add_argument("--at-once", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one is not None:
        target = args.out / f"{'whole' if args.at_once else 'chunked'}-{args.one}"
        result = one(args.one, args.months, args.seed, args.chunk_customers, target, args.at_once)
        print(json.dumps(result))
        return 0
    runs = [(int(n), False) for n in args.customers.split(",")]
    runs += [(int(n), True) for n in args.whole.split(",") if n]
    print(f"# chunk {args.chunk_customers:,} customers (blocks of {BLOCK_CUSTOMERS:,}), {args.months} months")
    print(
        f"{'customers':>9} {'mode':<8} {'parts':>5} {'events':>12} {'time':>8} {'µs/cust':>8} {'peak RSS':>9} {'Parquet':>9}"
    )
    for customers, at_once in runs:
        command = [sys.executable, __file__, "--one", str(customers), "--out", str(args.out)]
        command += ["--months", str(args.months), "--seed", str(args.seed)]
        command += ["--chunk-customers", str(args.chunk_customers)] + (["--at-once"] if at_once else [])
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            print(f"{customers:>9,} failed: {done.stderr.strip().splitlines()[-1:]}", flush=True)
            continue
        r = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"{customers:>9,} {'at once' if at_once else 'chunked':<8} {r['parts']:>5} {r['events']:>12,} "
            f"{r['seconds']:>7.1f}s {r['seconds'] / customers * 1e6:>8.0f} {r['peak'] / GIB:>7.2f}Gi "
            f"{r['bytes'] / GIB:>7.2f}Gi",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(args.out / f"{'whole' if at_once else 'chunked'}-{customers}", ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
