"""Benchmark the prediction service over real HTTP on 127.0.0.1, next to the in-process floor.

    python benchmarks/bench_serving.py                      # trains a small model in a temp MLflow store
    python benchmarks/bench_serving.py --tracking-uri sqlite:///outputs/mlflow.db   # the registered champion

Starts the real server (``bentoml serve churnml.serving.service:ChurnService``, as ``churnml serve`` does) and
drives it from a separate client process (raw asyncio keep-alive connections, closed loop, requests
serialised up front; its CPU per request is printed), bounded in requests and seconds per scenario:

- single-record ``/predict`` at ``--concurrency`` clients (target on 2 cores: p99 <= 50 ms, no errors);
- 1000-record ``/predict`` batches, one at a time (target: <= 200 ms);
- single-record ``/explain`` and one-customer ``/score_history`` at 4 clients (target for the latter:
  p99 <= 50 ms).

``--only history`` (repeatable) runs just the scenarios named.

The floor is what a worker computes for the same records, in this process with one thread: validating
them into the service's request model and ``Scorer.predict`` / ``Scorer.explain`` /
``Scorer.score_history`` (the code behind the
endpoints); the gap to the HTTP figures is the server's (BentoML, HTTP, JSON). Client and server share
the machine's cores, so check ``uptime`` and re-run when other jobs are busy.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
WARMUP_REQUESTS = 1000  # single-record /predict requests before the counted ones


# ---------------------------------------------------------------------------------------------------
# Client (runs in its own process).


async def _connection(
    host: str, port: int, requests: list[bytes], state: dict, latencies: list[float], errors: dict
) -> None:
    """One keep-alive HTTP/1.1 connection sending requests back to back (a closed-loop client); it
    reconnects when the server answers ``Connection: close``, as HTTP clients do."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while state["sent"] < state["max"] and time.perf_counter() < state["deadline"]:
            request = requests[state["sent"] % len(requests)]
            state["sent"] += 1
            t0 = time.perf_counter()
            try:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                headers = {
                    name.strip().lower(): value.strip()
                    for name, _, value in (h.partition(b":") for h in head.split(b"\r\n")[1:] if h)
                }
                if b"content-length" not in headers:  # the service always sends it; anything else is a fault
                    raise ConnectionError("response without Content-Length")
                await reader.readexactly(int(headers[b"content-length"]))
                if headers.get(b"connection", b"").lower() == b"close":
                    writer.close()
                    reader, writer = await asyncio.open_connection(host, port)
                    state["reconnects"] = state.get("reconnects", 0) + 1
            except (ConnectionError, asyncio.IncompleteReadError, ValueError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                return
            status = head[9:12].decode()
            if status != "200":
                errors[status] = errors.get(status, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
    finally:
        writer.close()


async def _drive(
    url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float, warmup: int
) -> dict:
    """Closed loop: ``concurrency`` connections, each sending its next request when the last answered.

    A lean client on raw asyncio streams with pre-serialised requests: on 2 shared cores a full HTTP
    client library (aiohttp) spent as much CPU per request as the server and throttled it.
    """
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    requests = [
        f"POST {parts.path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body
        for body in bodies
    ]
    latencies: list[float] = []
    errors: dict[str, int] = {}
    # Warm-up (connections, the batching dispatcher's estimates), not counted.
    warm = {"sent": 0, "max": max(concurrency * 4, warmup), "deadline": time.perf_counter() + 30}
    await asyncio.gather(*(_connection(host, port, requests, warm, [], {}) for _ in range(concurrency)))
    cpu0 = time.process_time()
    started = time.perf_counter()
    state = {"sent": 0, "max": max_requests, "deadline": started + max_seconds}
    await asyncio.gather(
        *(_connection(host, port, requests, state, latencies, errors) for _ in range(concurrency))
    )
    elapsed = time.perf_counter() - started
    return {
        "latencies": latencies,
        "errors": errors,
        "elapsed": elapsed,
        "sent": state["sent"],
        "client_cpu_s": time.process_time() - cpu0,
        "reconnects": state.get("reconnects", 0),
        "warmup": warm["sent"],
    }


def _client(
    url: str, bodies: list[bytes], concurrency: int, max_requests: int, max_seconds: float, warmup: int, out
) -> None:
    out.send(asyncio.run(_drive(url, bodies, concurrency, max_requests, max_seconds, warmup)))
    out.close()


def server_cpu_s(pid: int) -> float:
    """CPU seconds used so far by the server: its process and all its workers."""
    import psutil

    process = psutil.Process(pid)
    total = 0.0
    for p in [process, *process.children(recursive=True)]:
        try:
            times = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def drive(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    max_requests: int,
    max_seconds: float,
    server_pid: int,
    warmup: int = 0,
) -> dict:
    """Run the load from a separate process (spawned: it shares nothing with this one), after at least
    ``warmup`` uncounted requests (steady state: the batching dispatcher's estimates and the heap settle)."""
    cpu0 = server_cpu_s(server_pid)
    ctx = mp.get_context("spawn")
    receive, send = ctx.Pipe(duplex=False)
    process = ctx.Process(
        target=_client, args=(url, bodies, concurrency, max_requests, max_seconds, warmup, send)
    )
    process.start()
    result = receive.recv()
    process.join(timeout=30)
    result["server_cpu_s"] = server_cpu_s(server_pid) - cpu0  # includes the warm-up requests
    result["server_requests"] = result["sent"] + result["warmup"]
    return result


# ---------------------------------------------------------------------------------------------------
# Model, data, server.


def train_small(directory: Path, customers: int, trials: int) -> list[str]:
    """Train and register a champion in a temp store; returns the config overrides that point at it."""
    from churnml.config import load_config
    from churnml.data.simulate import simulate
    from churnml.features.training_set import build_training_set
    from churnml.pipelines import train

    overrides = [
        f"simulate.customers={customers}",
        "simulate.months=12",
        f"tune.n_trials={trials}",
        "tune.progress_bar=false",
        f"output.dir={directory}",
        f"tracking.uri=sqlite:///{directory / 'mlflow.db'}",
    ]
    config = load_config(None, overrides)
    sim = config.simulate
    dataset = simulate(sim.customers, sim.months, sim.seed, sim.start).to_dataset()
    train.run(config, training_set=build_training_set(dataset, config.labels, config.features))
    return overrides


def feature_rows(config, model, n: int) -> pd.DataFrame:
    """Realistic feature records: the simulated business's customers at its end."""
    from churnml.data.simulate import simulate
    from churnml.pipelines import score

    sim = config.simulate
    dataset = simulate(sim.customers, sim.months, sim.seed, sim.start).to_dataset()
    frame = score.active_customer_features(dataset, model, pd.Timestamp(dataset.end), config)
    repeats = -(-n // len(frame))
    return pd.concat([frame] * repeats, ignore_index=True).head(n), dataset


def feature_records(model, frame: pd.DataFrame) -> list[dict]:
    """Feature rows as ``/predict`` records (pandas writes NaN as null, categories as their text)."""
    columns = ["customer_id", *model.feature_names]
    return json.loads(
        frame[columns].astype({"customer_id": str}).to_json(orient="records", double_precision=15)
    )


def history_body(dataset, customer_id: str, as_of: pd.Timestamp) -> bytes:
    """One customer's rows of every table as a ``/score_history`` body (ISO timestamps, NaN as null)."""

    def rows(frame: pd.DataFrame) -> list[dict]:
        own = frame.loc[frame["customer_id"] == customer_id].drop(columns="customer_id")
        return json.loads(own.to_json(orient="records", date_format="iso", double_precision=15))

    customer = rows(dataset.customers)[0] | {"customer_id": customer_id}
    tables = {name: rows(frame) for name, frame in dataset.tables.items() if name != "customers"}
    return json.dumps({"customers": [{"customer": customer} | tables], "as_of": as_of.isoformat()}).encode()


def start_server(overrides: list[str], port: int, workers: int, nthread: int) -> subprocess.Popen:
    from churnml.serving import launch

    pinned = [
        *overrides,
        f"serving.workers={workers}",
        f"serving.nthread={nthread}",
        "serving.max_records=1000",
    ]
    config, env = launch.server_environment(None, pinned)
    command = launch.serve_command(config, "127.0.0.1", port)
    log = open(Path(tempfile.gettempdir()) / f"churnml-bench-server-{port}.log", "w")  # noqa: SIM115
    return subprocess.Popen(
        command, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )


# ---------------------------------------------------------------------------------------------------
# Report.


def summary(name: str, result: dict, records_per_request: int) -> dict:
    lat = np.array(result["latencies"]) * 1000
    ok = len(lat)
    return {
        "scenario": name,
        "requests": ok,
        "errors": sum(result["errors"].values()),
        "p50_ms": float(np.percentile(lat, 50)) if ok else float("nan"),
        "p99_ms": float(np.percentile(lat, 99)) if ok else float("nan"),
        "max_ms": float(lat.max()) if ok else float("nan"),
        "req_per_s": ok / result["elapsed"],
        "records_per_s": ok * records_per_request / result["elapsed"],
        "error_kinds": result["errors"],
        "client_cpu_ms_per_request": result["client_cpu_s"] * 1000 / max(result["sent"], 1),
        "server_cpu_ms_per_request": result["server_cpu_s"] * 1000 / max(result["server_requests"], 1),
        "reconnects": result["reconnects"],
    }


def floor_ms(function, repeats: int) -> tuple[float, float]:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        function()
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.percentile(times, 50)), float(np.percentile(times, 99))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--tracking-uri", help="MLflow store holding the champion (default: train a small one)"
    )
    parser.add_argument("--model", default=None, help="model URI (default: models:/churn-model@champion)")
    parser.add_argument(
        "--customers", type=int, default=3000, help="simulated customers (training and records)"
    )
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--requests", type=int, default=6000, help="most single-record requests")
    parser.add_argument("--seconds", type=float, default=15.0, help="most seconds per scenario")
    parser.add_argument("--batches", type=int, default=40, help="1000-record requests")
    parser.add_argument(
        "--workers", type=int, default=2, help="server workers (2 x 1 thread on the 2-core target)"
    )
    parser.add_argument("--nthread", type=int, default=1)
    parser.add_argument("--port", type=int, default=3987)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--only",
        choices=["predict", "batch", "explain", "history"],
        action="append",
        help="run only these scenarios (repeatable; default: all)",
    )
    args = parser.parse_args()

    from churnml.config import load_config
    from churnml.serving import launch
    from churnml.serving.loading import load_served_model
    from churnml.serving.schemas import feature_record_model, history_model
    from churnml.serving.scorer import Scorer

    if args.tracking_uri:
        overrides = [f"tracking.uri={args.tracking_uri}", f"simulate.customers={args.customers}"]
    else:
        started = time.perf_counter()
        overrides = train_small(
            Path(tempfile.mkdtemp(prefix="churnml-bench-serving-")), args.customers, args.trials
        )
        print(f"trained a champion in a temp store in {time.perf_counter() - started:.0f} s")
    if args.model:
        overrides.append(f"serving.model_uri={args.model}")
    config = load_config(None, overrides)
    loaded = load_served_model(config)
    model = loaded.model
    frame, dataset = feature_rows(config, model, 1000)
    records = feature_records(model, frame)
    singles = [json.dumps({"records": [r]}).encode() for r in records]
    batch = [json.dumps({"records": records}).encode()]
    explains = [json.dumps({"records": [r], "top_k": 3}).encode() for r in records[:200]]
    as_of = pd.Timestamp(dataset.end)
    histories = [history_body(dataset, c, as_of) for c in frame["customer_id"].unique()[:50]]
    booster = model.trained_booster
    print(
        f"model {loaded.version}: {booster.num_boosted_rounds()} trees, {len(model.columns)} features; "
        f"server workers={args.workers} nthread={args.nthread}; load {os.getloadavg()[0]:.2f} (1 min)"
    )

    scorer = Scorer(
        loaded,
        config.model_copy(update={"serving": config.serving.model_copy(update={"nthread": args.nthread})}),
    )
    record_model = feature_record_model(model)
    history_model_ = history_model(model, config.serving.max_rows)
    histories_cycle = itertools.cycle(
        [history_model_.model_validate(json.loads(body)["customers"][0]) for body in histories]
    )

    def validated(rows: list[dict]) -> list:
        return [record_model.model_validate(r) for r in rows]

    floors = {
        "predict 1 record": floor_ms(lambda: scorer.predict(validated(records[:1])), 300),
        "predict 1000 records": floor_ms(lambda: scorer.predict(validated(records)), 30),
        "explain 1 record": floor_ms(lambda: scorer.explain(validated(records[:1]), 3), 100),
        "score_history 1 customer": floor_ms(
            lambda: scorer.score_history([next(histories_cycle)], as_of.to_pydatetime(), 3, False), 100
        ),
    }

    server = start_server(overrides, args.port, args.workers, args.nthread)
    url = f"http://127.0.0.1:{args.port}"
    try:
        launch.wait_ready(url, timeout_s=180)
        scenarios = {
            "predict": lambda: summary(
                f"/predict 1 record x{args.concurrency} clients",
                drive(
                    f"{url}/predict",
                    singles,
                    args.concurrency,
                    args.requests,
                    args.seconds,
                    server.pid,
                    WARMUP_REQUESTS,
                ),
                1,
            ),
            "batch": lambda: summary(
                "/predict 1000 records x1 client",
                drive(f"{url}/predict", batch, 1, args.batches, args.seconds, server.pid),
                1000,
            ),
            "explain": lambda: summary(
                "/explain 1 record x4 clients",
                drive(f"{url}/explain", explains, 4, 2000, args.seconds / 2, server.pid),
                1,
            ),
            "history": lambda: summary(
                "/score_history 1 customer x4 clients",
                # 1500 requests: a p99 from a few hundred is the 3rd-worst request, mostly noise.
                drive(f"{url}/score_history", histories, 4, 1500, args.seconds, server.pid, 20),
                1,
            ),
        }
        results = {name: run() for name, run in scenarios.items() if not args.only or name in args.only}
    finally:
        os.killpg(server.pid, 15)
        server.wait(timeout=60)

    print(
        f"\n{'scenario':40} {'ok':>6} {'err':>4} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} {'req/s':>8} {'rec/s':>9}"
    )
    for r in results.values():
        print(
            f"{r['scenario']:40} {r['requests']:6d} {r['errors']:4d} {r['p50_ms']:8.1f} {r['p99_ms']:8.1f} "
            f"{r['max_ms']:8.1f} {r['req_per_s']:8.0f} {r['records_per_s']:9.0f}"
            + (f"  errors: {r['error_kinds']}" if r["errors"] else "")
        )
    print(
        "server CPU per request (ms, all workers): "
        + ", ".join(f"{r['server_cpu_ms_per_request']:.2f}" for r in results.values())
    )
    print(
        "client CPU per request (ms): "
        + ", ".join(f"{r['client_cpu_ms_per_request']:.2f}" for r in results.values())
    )
    print(
        "reconnects asked by the server (Connection: close): "
        + ", ".join(str(r["reconnects"]) for r in results.values())
    )
    print("\nin-process floor (validation + Scorer, one thread)  p50 ms   p99 ms")
    for name, (p50, p99) in floors.items():
        print(f"  {name:44} {p50:8.2f} {p99:8.2f}")
    # scenario -> (what the target is, the p99 limit in ms)
    limits = {
        "predict": ("single /predict p99 {p99_ms:.1f} ms <= 50", 50),
        "batch": ("1000-record batch p50 {p50_ms:.1f} ms / p99 {p99_ms:.1f} ms <= 200", 200),
        "history": ("one-customer /score_history p99 {p99_ms:.1f} ms <= 50", 50),
    }
    targets = [
        f"{text.format(**results[name])} with {results[name]['errors']} errors: "
        + ("met" if results[name]["p99_ms"] <= limit and not results[name]["errors"] else "NOT met")
        for name, (text, limit) in limits.items()
        if name in results
    ]
    print("\ntargets: " + "; ".join(targets))
    if args.json:
        args.json.write_text(json.dumps({"results": results, "floors": floors}, indent=2))


if __name__ == "__main__":
    sys.exit(main())
