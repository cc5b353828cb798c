"""How long does loading a business take from each kind of source? (docs/sources.md, issue 14)

    python benchmarks/bench_sources.py --customers 5000 --url postgresql://churnml@127.0.0.1:5432/postgres

Simulates a business, writes it as Parquet files, as a hive-partitioned Parquet dataset (by month) and
into PostgreSQL (a schema ``churnml_bench``, dropped at the end), then times ``load_dataset`` (read,
map, validate) from each, and, for comparison, reading the same PostgreSQL tables with
``pandas.read_sql`` over SQLAlchemy + psycopg (a Python tuple per row) without any validation. The
URL defaults to $CHURNML_DATABASE_URL; without one only the files are timed.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import adbc_driver_postgresql.dbapi as postgresql
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy

from churnml.config import DataConfig
from churnml.contract import TABLES
from churnml.data.database import DATABASE_URL_ENV
from churnml.data.load import load_dataset
from churnml.data.simulate import simulate

SCHEMA = "churnml_bench"


def best_of(repeats: int, work: Callable[[], object]) -> float:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        times.append(time.perf_counter() - started)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5000)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get(DATABASE_URL_ENV), help="a PostgreSQL URL")
    args = parser.parse_args()

    tables = simulate(args.customers, args.months, args.seed).tables
    print(
        f"{sum(len(t) for t in tables.values()):,} rows: "
        + ", ".join(f"{n} {len(t):,}" for n, t in tables.items())
    )
    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        files, hive = Path(tmp) / "files", Path(tmp) / "hive"
        files.mkdir()
        hive.mkdir()
        for name, frame in tables.items():
            frame.to_parquet(files / f"{name}.parquet", index=False)
            if name == "customers":
                frame.to_parquet(hive / "customers.parquet", index=False)
                continue
            month = frame[TABLES[name].time_column].dt.strftime("%Y-%m").rename("month")
            table = pa.Table.from_pandas(frame.assign(month=month), preserve_index=False)
            pq.write_to_dataset(table, hive / name, partition_cols=["month"])
        results["Parquet files, load_dataset"] = best_of(
            args.repeats, lambda: load_dataset(DataConfig(dir=str(files)))
        )
        results["hive-partitioned Parquet, load_dataset"] = best_of(
            args.repeats, lambda: load_dataset(DataConfig(dir=str(hive)))
        )
    if args.url:
        with postgresql.connect(args.url, autocommit=True) as connection, connection.cursor() as cursor:
            cursor.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            cursor.execute(f"CREATE SCHEMA {SCHEMA}")
            for name, frame in tables.items():
                cursor.adbc_ingest(
                    name, pa.Table.from_pandas(frame, preserve_index=False), db_schema_name=SCHEMA
                )
        try:
            config = DataConfig.model_validate(
                {"url": args.url, "tables": {n: {"table": f"{SCHEMA}.{n}"} for n in tables}}
            )
            results["PostgreSQL (ADBC), load_dataset"] = best_of(args.repeats, lambda: load_dataset(config))
            engine = sqlalchemy.create_engine(args.url.replace("postgresql://", "postgresql+psycopg://", 1))

            def read_sql() -> None:
                with engine.connect() as connection:
                    for name in tables:
                        pd.read_sql(f"SELECT * FROM {SCHEMA}.{name}", connection)

            results["PostgreSQL (SQLAlchemy + psycopg), read_sql only"] = best_of(args.repeats, read_sql)
            engine.dispose()
        finally:
            with postgresql.connect(args.url, autocommit=True) as connection, connection.cursor() as cursor:
                cursor.execute(f"DROP SCHEMA {SCHEMA} CASCADE")
    for what, seconds in results.items():
        print(f"{what:<52} {seconds:6.2f} s")


if __name__ == "__main__":
    main()
