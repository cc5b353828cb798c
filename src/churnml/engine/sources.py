"""Partitioned sources: each worker reads its own customers' rows from the Parquet files, so that the
client never holds the tables (out of core).

A customer's partition is a hash of its id's canonical text (``churnml.engine.partition.partition_of``):
the same customers as the client's split of the loaded data, whatever the files' layout (a chunked
simulation's part files are ranges of customer ids, a warehouse export's are not). First one scan splits
the data (:func:`stage`): a task per (table, file) reads the file in record batches and appends each
partition's rows to that partition's own files in a staging folder every worker reaches; a partition
then reads only its files. Where no such folder is known (a remote scheduler without
``engine.staging_dir``), every partition's task scans every file and keeps its rows instead (partitions x
rows). Either way a batch is read, hashed and split at a time, so a worker's memory follows its
partition, and the rows go through the loader's own validation (``churnml.data.load``) as a
``Dataset``. Nothing is held between steps: the summaries' step and the training set's each read the
partition (twice the reading, one partition per running task in a worker's memory: what lets the data
outgrow the cluster's memory).

What depends on the whole data is merged on the client from small per-partition summaries: the end
of the data (the latest time), the stray-row check (the latest 0.1 % of time values: each partition's
own latest ones hold the whole's), the earliest activity, event-type counts, the distinct values of the
columns the catalogue reads levels from, and the fingerprint (sums of row hashes).

Anything the loader would warn about or refuse (a bad value, unknown customers, stray rows, rows past
a configured end, contacts past the end of the data, a partition without customers), and a column the
partitions read with different types (its nulls in some partitions only: :func:`same_dtypes`), makes
:func:`open_partitions` return None: the caller then loads the data on the client as before, so the
messages are exactly the loader's. The same for sources this module does not read (databases, CSV).
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from churnml.config import DataConfig, EngineConfig
from churnml.contract import ACTIVITY_TABLES, TABLES
from churnml.data import load
from churnml.data.dataset import Dataset, combine_fingerprints
from churnml.engine.partition import partition_of
from churnml.errors import DataValidationError
from churnml.features.catalogue import MAX_CATEGORIES, event_type_counts, top_event_types

log = logging.getLogger(__name__)

NO_END = pd.Timestamp("2262-01-01")  # a partition is built before the end of the data is known
# Columns whose every level the catalogue reads (plan and channel levels, high-priority tickets);
# of the customers' other text columns it only needs to know whether there are more than MAX_CATEGORIES.
ALL_LEVELS = {("customers", "plan"), ("subscriptions", "plan"), ("customers", "acquisition_channel")}
ALL_LEVELS |= {("tickets", "priority")}


@dataclasses.dataclass(frozen=True)
class Partitions:
    """Customer partitions the workers read from the files, and what the client settled from their
    summaries. No partition is held between steps: a step reads its partition again (:meth:`load`), so a
    worker holds one partition per running task, whatever the size of the data."""

    paths: Mapping[str, Path]
    config: DataConfig
    count: int  # partitions
    end: pd.Timestamp
    stand_in: Dataset  # every table's columns and the values the catalogue and the schedule read
    kinds: tuple[str, ...]  # event types with their own features
    fingerprint: str
    staged: Path | None = None  # the rows split by partition (:func:`stage`), else None: scan the sources

    @property
    def parts(self) -> list[int]:
        return list(range(self.count))

    def load(self, k: int) -> Dataset:
        """Partition ``k``'s Dataset, with the whole data's end (on the worker that runs the step)."""
        dataset = load_partition(self.paths, self.config, k, self.count, self.staged)
        assert dataset is not None, "open_partitions refuses partitions without customers"
        return dataclasses.replace(dataset, end=self.end)


def table_paths(config: DataConfig, base_dir: Path | None) -> dict[str, Path] | None:
    """Each configured table's Parquet file or dataset, None when some table is read otherwise."""
    base = Path.cwd() if base_dir is None else Path(base_dir)
    data_dir = base / config.dir if config.dir is not None else None
    if data_dir is None and not config.tables:
        return None  # the simulator's business, made in the client
    paths = {}
    for name in TABLES:
        source = config.tables.get(name)
        if source is not None and source.in_database:
            return None
        path = load._table_path(name, source or load.TableSource(), data_dir, base)
        if path is None:
            continue
        if not load._is_parquet(path):
            return None
        paths[name] = path
    load._require_tables(paths, where=f" in {data_dir}" if data_dir is not None else "")  # type: ignore[arg-type]
    return paths


def staging_folder(settings: EngineConfig, stack: ExitStack) -> Path | None:
    """A folder of this run for :func:`stage`, removed when ``stack`` closes; None where the workers may
    not share one (a remote scheduler without ``engine.staging_dir``)."""
    if settings.staging_dir is None and settings.scheduler is not None:
        return None
    parent = None if settings.staging_dir is None else Path(settings.staging_dir)
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="churnml-staging-", dir=parent))
    stack.callback(shutil.rmtree, folder, ignore_errors=True)
    return folder


def customer_count(path: Path) -> int:
    """Rows of the customers table, from the Parquet footers."""
    return ds.dataset(path, format="parquet").count_rows()


def _open_table(name: str, path: Path, config: DataConfig) -> tuple[ds.Dataset, list[str] | None, str]:
    """A table's Parquet dataset, the columns to read (as ``load.read_table`` chooses and checks them)
    and the user's name of its customer id column."""
    source = config.tables.get(name, load.TableSource())
    dataset = load._parquet_dataset(name, path) if path.is_dir() else ds.dataset(path, format="parquet")
    stored = [(fragment.path, fragment.physical_schema) for fragment in dataset.get_fragments()]
    names = [*dataset.schema.names, *(n for _, schema in stored for n in schema.names)]
    wanted = load._columns_to_read(name, list(dict.fromkeys(names)), source.columns)
    load._check_file_schemas(name, path, stored, dataset.schema.names if wanted is None else wanted)
    return dataset, wanted, source.columns.get("customer_id", "customer_id")


@contextmanager
def _read_errors(name: str, path: Path) -> Iterator[None]:
    """Reading errors as the loader words them (``load.read_table``)."""
    try:
        yield
    except DataValidationError:
        raise
    except (OSError, ValueError, TypeError, KeyError, pa.ArrowException) as exc:
        raise DataValidationError(name, None, f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def read_partition(
    name: str, path: Path, config: DataConfig, k: int, partitions: int, staged: Path | None = None
) -> pd.DataFrame:
    """The rows of one table whose customer is in partition ``k``, as ``load.read_table`` reads them:
    from the files :func:`stage` wrote for it when ``staged``, else by scanning the table's files."""
    with _read_errors(name, path):
        files = sorted((staged / name / _part_folder(k)).glob("*.parquet")) if staged is not None else []
        if files:  # the split checked the sources' columns already
            return pa.concat_tables([pq.read_table(file) for file in files]).to_pandas()
        dataset, wanted, id_column = _open_table(name, path, config)
        schema = dataset.schema if wanted is None else pa.schema([dataset.schema.field(c) for c in wanted])
        if staged is not None:
            return schema.empty_table().to_pandas()  # no rows of this partition in this table
        kept = []
        for batch in dataset.to_batches(columns=wanted):
            if batch.num_rows == 0 or id_column not in batch.schema.names:
                continue
            mine = _partitions_of_rows(batch.column(id_column), partitions) == k
            if mine.any():
                kept.append(batch.filter(pa.array(mine)))
        return pa.Table.from_batches(kept, schema=kept[0].schema if kept else schema).to_pandas()


# Rows a staged file collects per partition before it writes them as one row group.
STAGE_ROW_GROUP = 65_536


def _part_folder(k: int) -> str:
    return f"part-{k:05d}"


# Rows one split task reads at most (whole row groups): a large file is split by several tasks at once.
STAGE_TASK_ROWS = 4_000_000


def stage(paths: Mapping[str, Path], config: DataConfig, partitions: int, engine: Any, staging: Path) -> Path:
    """One scan of the data: a task per (table, file, run of row groups) reads its rows once and writes
    them into one file per partition, ``staging/<table>/part-<k>/<file>-<first row group>.parquet``; a
    partition then reads only its own files (:func:`read_partition`). Without it every partition's task
    scans every file: partitions x rows, quadratic in the size of the business. ``staging`` must be a
    folder every worker can write and read (a LocalCluster's machine, or shared storage). Rows keep their
    order within a partition (files in order, then row groups, then rows), as the scan gives them."""
    jobs = [(name, *piece) for name, path in paths.items() for piece in _pieces(name, path, config)]
    engine.map(split_file, jobs, dict(paths), config, partitions, str(staging), name="split")
    return staging


def _pieces(name: str, path: Path, config: DataConfig) -> list[tuple[int, int, int]]:
    """(file, first row group, end row group) of each split task: runs of whole row groups of at most
    ``STAGE_TASK_ROWS`` rows (one row group at least)."""
    with _read_errors(name, path):
        dataset, _, _ = _open_table(name, path, config)
        pieces = []
        for index, fragment in enumerate(dataset.get_fragments()):
            sizes = [group.num_rows for group in fragment.row_groups]
            first, rows = 0, 0
            for group, size in enumerate(sizes):
                if rows and rows + size > STAGE_TASK_ROWS:
                    pieces.append((index, first, group))
                    first, rows = group, 0
                rows += size
            pieces.append((index, first, len(sizes)))
        return pieces


def split_file(
    job: tuple[str, int, int, int],
    paths: Mapping[str, Path],
    config: DataConfig,
    partitions: int,
    staging: str,
) -> int:
    """Write row groups ``job[2]`` to ``job[3]`` of file ``job[1]`` of table ``job[0]`` split by partition
    (see :func:`stage`); returns their rows. Memory: one batch plus at most ``STAGE_ROW_GROUP`` rows per
    partition."""
    name, index, first, end = job
    path = paths[name]
    with _read_errors(name, path):
        dataset, wanted, id_column = _open_table(name, path, config)
        fragment = list(dataset.get_fragments())[index].subset(row_group_ids=list(range(first, end)))
        writers: dict[int, pq.ParquetWriter] = {}
        pending: dict[int, list[pa.RecordBatch]] = {}
        rows = 0

        def flush(k: int) -> None:
            if not pending.get(k):
                return
            if k not in writers:
                folder = Path(staging) / name / _part_folder(k)
                folder.mkdir(parents=True, exist_ok=True)
                writers[k] = pq.ParquetWriter(
                    folder / f"{index:06d}-{first:06d}.parquet", pending[k][0].schema
                )
            writers[k].write_table(pa.Table.from_batches(pending.pop(k)))

        try:
            for batch in fragment.to_batches(schema=dataset.schema, columns=wanted):
                if batch.num_rows == 0 or id_column not in batch.schema.names:
                    continue
                rows += batch.num_rows
                part = _partitions_of_rows(batch.column(id_column), partitions)
                order = np.argsort(part, kind="stable")
                bounds = np.searchsorted(part[order], np.arange(partitions + 1))
                grouped = batch.take(pa.array(order))
                for part_k in np.flatnonzero(np.diff(bounds)).tolist():
                    lo, hi = int(bounds[part_k]), int(bounds[part_k + 1])
                    pending.setdefault(part_k, []).append(grouped.slice(lo, hi - lo))
                    if sum(b.num_rows for b in pending[part_k]) >= STAGE_ROW_GROUP:
                        flush(part_k)
            for part_k in list(pending):
                flush(part_k)
        finally:
            for writer in writers.values():
                writer.close()
        return rows


def _partitions_of_rows(ids: pa.Array | pa.ChunkedArray, partitions: int) -> np.ndarray:
    """Each row's partition: each distinct id is canonicalised and hashed once (a batch repeats a
    customer's id on every row of its history)."""
    encoded = pc.dictionary_encode(ids)
    levels = load._canonical_ids(load._as_text(encoded.dictionary.to_pandas()))
    # a missing id (refused by the loader) is hashed as the empty text, so one partition sees it
    part = np.append(partition_of(levels.fillna(""), partitions), partition_of([""], partitions))
    return part[np.asarray(encoded.indices.fill_null(len(levels)))]


def load_partition(
    paths: Mapping[str, Path], config: DataConfig, k: int, partitions: int, staged: Path | None = None
) -> Dataset | None:
    """Partition ``k``'s validated ``Dataset`` (on a worker), None when it has no customers. Its end is
    the configured one, else a placeholder until the whole data's is known (:func:`with_end`)."""
    frames = {name: read_partition(name, path, config, k, partitions, staged) for name, path in paths.items()}
    if frames["customers"].empty:
        return None
    mappings = {name: source.columns for name, source in config.tables.items()}
    options = {name: source.read for name, source in config.tables.items()}
    end = config.end if config.end is not None else NO_END.to_pydatetime()
    return load._build_dataset(frames, mappings, options, end, config.unknown_customers, config.stray_rows)


def summary(
    k: int, paths: Mapping[str, Path], config: DataConfig, partitions: int, staged: Path | None = None
) -> dict[str, Any] | None:
    """What the client merges of partition ``k`` (read here, then let go): its times, counts, levels and
    the fingerprint's sums, and its latest time values for the stray-row check. None: no customers."""
    dataset = load_partition(paths, config, k, partitions, staged)
    if dataset is None:
        return None
    times = {
        name: load._known(frame[TABLES[name].time_column].to_numpy())
        for name, frame in dataset.tables.items()
        if name == "customers" or name in ACTIVITY_TABLES
    }
    stamps = np.concatenate(list(times.values()))
    later = [
        frame[TABLES[name].time_column].max()
        for name, frame in dataset.tables.items()
        if name != "customers" and name not in ACTIVITY_TABLES and len(frame)
    ]
    return {
        "warnings": len(dataset.warnings),
        "time_values": len(stamps),
        "latest": np.sort(stamps)[-latest_count(len(stamps), partitions) :],
        "later_facts": max((t for t in later if pd.notna(t)), default=None),
        "events": event_type_counts(dataset),
        "values": {name: _values(name, frame) for name, frame in dataset.tables.items()},
        "schemas": {name: frame.iloc[:0] for name, frame in dataset.tables.items()},
        "fingerprint": dataset.fingerprint_parts(),
    }


def latest_count(time_values: int, partitions: int) -> int:
    """How many of its latest time values a partition sends for the stray-row check, which looks at the
    whole data's latest ``STRAY_SHARE``: twice its share of them were the partitions of equal size (they
    nearly are: a hash), and :func:`open_partitions` checks that it was enough."""
    return 2 * int(time_values * load.STRAY_SHARE * partitions) + 2


def _strays(parts: list[dict[str, Any]]) -> bool | None:
    """Whether the loader would find stray rows (``load._activity_end`` on the whole data's times, from
    the partitions' latest ones); None when a partition's latest values were too few to tell."""
    total = sum(p["time_values"] for p in parts)
    if not load.strays_checked(total):
        return False
    size = int(total * load.STRAY_SHARE)
    merged = np.sort(np.concatenate([p["latest"] for p in parts]))
    tail = merged[-(size + 1) :]
    for p in parts:
        sent = p["latest"]
        if len(sent) < p["time_values"] and len(sent) and sent[0] >= tail[0]:
            return None  # all it sent is in the tail: its next ones may be too
    return bool(np.any(np.diff(tail) >= load.STRAY_GAP.value))


def _values(name: str, frame: pd.DataFrame) -> dict[str, list[Any]]:
    """Per column, values a stand-in table needs: the earliest time, one number, the text levels."""
    values: dict[str, list[Any]] = {}
    for column in frame.columns:
        series = frame[column].dropna()
        if pd.api.types.is_datetime64_any_dtype(series):
            values[column] = [series.min()] if len(series) else []
        elif (
            column == "customer_id"
            or pd.api.types.is_numeric_dtype(series)
            or pd.api.types.is_bool_dtype(series)
        ):
            values[column] = series.iloc[:1].tolist()
        elif (name, column) in ALL_LEVELS or (name == "customers"):
            levels = series.unique()
            values[column] = list(levels if (name, column) in ALL_LEVELS else levels[: MAX_CATEGORIES + 1])
        else:
            values[column] = series.iloc[:1].tolist()
    return values


def same_dtypes(schemas: list[dict[str, pd.DataFrame]]) -> bool:
    """Whether every partition read each column with the same type. Arrow gives a column with a null
    another pandas type than one without (bool becomes object, int64 float64, unless the file says
    which), so a column whose nulls fall in some partitions only is typed by chance per partition, and
    its features would differ from the whole table's. When all agree, the whole table reads the same
    type: it has a null exactly when a partition does. Categories may differ (each holds its own)."""

    def kinds(frame: pd.DataFrame) -> dict[str, str]:
        return {
            str(column): "category" if isinstance(dtype, pd.CategoricalDtype) else str(dtype)
            for column, dtype in frame.dtypes.items()
        }

    first = {name: kinds(frame) for name, frame in schemas[0].items()}
    return all({name: kinds(frame) for name, frame in schema.items()} == first for schema in schemas[1:])


def stand_in(summaries: list[dict[str, Any]], end: pd.Timestamp) -> Dataset:
    """A small Dataset with the whole data's tables and columns (dtypes as read), each column holding
    the merged values of :func:`_values`: what ``cutoff_dates`` and ``feature_catalogue`` read (the
    earliest activity, the distinct levels, whether a text column has more than MAX_CATEGORIES)."""
    tables = {}
    for name, schema in summaries[0]["schemas"].items():
        merged: dict[str, list[Any]] = {column: [] for column in schema.columns}
        for part in summaries:
            for column, values in part["values"][name].items():
                merged[column].extend(values)
        for column, values in merged.items():
            if pd.api.types.is_datetime64_any_dtype(schema[column]):
                merged[column] = [min(values)] if values else []
            else:
                merged[column] = list(dict.fromkeys(values))
        rows = max(len(values) for values in merged.values())
        columns = {}
        for column, values in merged.items():
            dtype = schema[column].dtype
            dtype = object if isinstance(dtype, pd.CategoricalDtype) else dtype
            padded = values + values[-1:] * (rows - len(values)) if values else [None] * rows
            columns[column] = pd.Series(padded, dtype=dtype)
        tables[name] = pd.DataFrame(columns)
    return Dataset(tables=tables, end=end)


def open_partitions(
    paths: Mapping[str, Path], config: DataConfig, engine: Any, staging: Path | None = None
) -> Partitions | None:
    """The partitions' summaries, each read by a worker, merged; None when the loader, on the client, must
    be the one to say what is wrong with the data (see the module's docstring). With ``staging`` (a
    folder every worker reaches) the files are first split by partition in one scan (:func:`stage`)."""
    count = engine.partitions(customer_count(paths["customers"]))
    staged = None
    try:
        if staging is not None and count > 1:
            staged = stage(paths, config, count, engine, staging)
        parts = engine.map(summary, range(count), dict(paths), config, count, staged, name="read")
    except DataValidationError as exc:
        log.info("a partition failed validation (%s): loading the data on the client", exc)
        return None
    if any(p is None or p["warnings"] for p in parts):
        return None
    if not same_dtypes([p["schemas"] for p in parts]):
        log.info("the partitions read a column with different types: loading the data on the client")
        return None
    if config.end is not None:
        end = pd.Timestamp(config.end)
        end = (end.tz_convert("UTC").tz_localize(None) if end.tz is not None else end).as_unit("ns")
    else:
        end = pd.Timestamp(max(int(p["latest"][-1]) for p in parts if len(p["latest"]))).as_unit("ns")
        if _strays(parts) is not False:
            return None  # stray rows (or maybe): the loader refuses or drops them, with its own message
        if any(p["later_facts"] is not None and p["later_facts"] > end for p in parts):
            return None  # contacts after the end: the loader drops them, with a warning
    events = pd.concat([p["events"] for p in parts]).groupby(level=0).sum()
    return Partitions(
        paths=dict(paths),
        config=config,
        count=count,
        end=end,
        stand_in=stand_in(parts, end),
        kinds=top_event_types(events),
        fingerprint=combine_fingerprints(end, [p["fingerprint"] for p in parts]),
        staged=staged,
    )
