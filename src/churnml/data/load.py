"""Read a user's tables, map their columns to the contract, validate, and normalise.

Everything downstream trusts the invariants documented on ``Dataset``; this module is where they are
established, so every check lives here and fails with a message a user can act on: the table, the
column, a count and a few offending rows (with their row numbers in the input).

All work is vectorised (a 10M-row table validates in seconds) and inputs are never modified.
"""

from __future__ import annotations

import difflib
import functools
import logging
import re
from collections.abc import Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from churnml.config import DataConfig, ReadOptions, TableSource
from churnml.contract import ACTIVITY_TABLES, ARM_SYNONYMS, ARMS, HISTORY_TABLES, TABLES, TableSpec
from churnml.data import database
from churnml.data.dataset import Dataset
from churnml.data.order import is_sorted
from churnml.errors import DataValidationError, DataWarning, example_rows

logger = logging.getLogger("churnml.data.load")

# Looked for, in this order, when a table has no configured path.
EXTENSIONS: tuple[str, ...] = (".parquet", ".csv", ".csv.gz", ".txt", ".tsv")

STRING_DTYPE = pd.StringDtype(na_value=np.nan)  # pandas' default ``str`` dtype
_STRING_ARRAY: Any = STRING_DTYPE.construct_array_type()  # its Arrow-backed array class

# A timestamp this far past the wall clock is corrupt (year 2099, a swapped day/month...), not early data.
FUTURE_TOLERANCE = pd.Timedelta(days=1)
# Scheduled facts may legitimately lie in the future (an annual plan's end); only sentinels are refused.
SCHEDULED_COLUMNS: dict[tuple[str, str], pd.Timedelta] = {
    ("subscriptions", "end_at"): pd.Timedelta(days=3660)
}
# datetime64[ns] cannot hold earlier dates; earlier ones are wrongly parsed, not real history.
EARLIEST = pd.Timestamp("1678-01-01")

# (table, later column, earlier column): the later event cannot happen before the earlier one.
ORDERINGS: tuple[tuple[str, str, str], ...] = (
    ("subscriptions", "end_at", "start_at"),
    ("tickets", "closed_at", "opened_at"),
    ("messages", "opened_at", "sent_at"),
    ("messages", "clicked_at", "sent_at"),
)
# Larger numbers are corrupt (a unit or parsing mistake, a placeholder like 1e308): features sum and
# count them and XGBoost reads them as float32, which overflows to inf above about 3.4e38.
MAX_MAGNITUDE = 1e15
# With no configured end, at most this share of rows (in data of at least STRAY_MIN_ROWS / STRAY_SHARE
# rows) this far past all
# other activity are strays, not the end of the data: a business does not go silent for a month and
# then record a handful of rows.
STRAY_GAP = pd.Timedelta(days=30)
STRAY_SHARE = 0.001
STRAY_MIN_ROWS = 5
# Columns that must not be negative, with the advice given when they are.
NON_NEGATIVE: dict[tuple[str, str], str] = {
    ("transactions", "amount"): "refunds must be filtered out or marked via transactions.status, "
    "not stored as negative amounts",
    ("customers", "mrr"): "monthly recurring revenue cannot be negative",
    ("subscriptions", "mrr"): "monthly recurring revenue cannot be negative",
    ("contacts", "cost"): "a contact's cost cannot be negative",
}


# --------------------------------------------------------------------------------------------- public API


def load_dataset(config: DataConfig, base_dir: Path | None = None) -> Dataset:
    """Read the configured tables (files, Parquet datasets, database tables or queries) and return a
    validated ``Dataset``.

    Relative ``data.dir``, table paths and SQLite files are taken relative to ``base_dir`` (default: the
    current directory); table paths are relative to ``data.dir`` when it is set.
    """
    base = Path.cwd() if base_dir is None else Path(base_dir)
    data_dir = base / config.dir if config.dir is not None else None
    frames: dict[str, pd.DataFrame] = {}
    with database.Connections() as connections:
        for name in TABLES:
            source = config.tables.get(name, TableSource())
            if source.in_database:
                db = database.resolve(name, source, config.url, base)
                frames[name] = read_database_table(name, source, db, connections)
                logger.info("read %s: %d rows from %s", name, len(frames[name]), db.shown)
                continue
            path = _table_path(name, source, data_dir, base)
            if path is None:
                continue
            frames[name] = read_table(name, path, source)
            logger.info("read %s: %d rows from %s", name, len(frames[name]), path)
    _require_tables(frames, where=f" in {data_dir}" if data_dir is not None else "")
    mappings = {name: source.columns for name, source in config.tables.items()}
    options = {name: source.read for name, source in config.tables.items()}
    return _build_dataset(frames, mappings, options, config.end, config.unknown_customers, config.stray_rows)


def dataset_from_frames(
    tables: Mapping[str, pd.DataFrame],
    end: datetime | None = None,
    columns: Mapping[str, Mapping[str, str]] | None = None,
    unknown_customers: Literal["drop", "error"] = "drop",
    stray_rows: Literal["error", "drop"] = "error",
) -> Dataset:
    """Validate in-memory frames exactly as ``load_dataset`` validates files; inputs are not modified.

    ``columns`` maps, per table, contract column -> the frame's column (as ``data.tables.<t>.columns``).
    String timestamps are parsed as ISO 8601.
    """
    unknown = sorted(set(tables) - set(TABLES))
    if unknown:
        raise DataValidationError(
            unknown[0], None, f"not a contract table; the contract's tables are {sorted(TABLES)}"
        )
    frames = {name: frame for name, frame in tables.items() if frame is not None}
    _require_tables(frames, where="")
    return _build_dataset(frames, columns or {}, {}, end, unknown_customers, stray_rows)


def read_table(name: str, path: Path, source: TableSource) -> pd.DataFrame:
    """Read one table file or Parquet dataset with the user's column names, only the columns the
    contract needs (Parquet reads nothing else from disk).

    CSV columns holding ids, timestamps and text are read as strings so that ids keep leading zeros
    and the validators, not the CSV parser, decide what a bad value is.
    """
    try:
        if path.is_dir():
            dataset = _parquet_dataset(name, path)
            stored = [(fragment.path, fragment.physical_schema) for fragment in dataset.get_fragments()]
            names = [*dataset.schema.names, *(n for _, schema in stored for n in schema.names)]
            wanted = _columns_to_read(name, list(dict.fromkeys(names)), source.columns)
            _check_file_schemas(name, path, stored, dataset.schema.names if wanted is None else wanted)
            return dataset.to_table(columns=wanted).to_pandas()
        if _is_parquet(path):
            wanted = _columns_to_read(name, list(pq.read_schema(path).names), source.columns)
            return pd.read_parquet(path, columns=wanted, engine="pyarrow")
        kwargs = _csv_kwargs(path, source.read)
        available = [str(c) for c in pd.read_csv(path, nrows=0, **kwargs).columns]
        wanted = _columns_to_read(name, available, source.columns)
        text = {source.columns.get(c, c) for c in _text_columns(TABLES[name])} & set(available)
        return pd.read_csv(
            path, usecols=wanted, dtype={c: "str" for c in text}, decimal=source.read.decimal, **kwargs
        )
    except DataValidationError:
        raise
    except (
        OSError,
        ValueError,
        TypeError,
        UnicodeError,
        pd.errors.ParserError,
        ImportError,
        pa.ArrowException,
    ) as exc:
        # pyarrow's errors derive from these; the message says what the reader found.
        hint = (
            f"; the file is not {source.read.encoding}: set data.tables.{name}.read.encoding (e.g. cp1252)"
            if isinstance(exc, UnicodeError)
            else ""
        )
        raise DataValidationError(
            name, None, f"cannot read {path}: {type(exc).__name__}: {exc}{hint}"
        ) from exc


def read_database_table(
    name: str, source: TableSource, db: database.Database, connections: database.Connections
) -> pd.DataFrame:
    """Read one table from a database: the same column choice (and mapping checks) as a file, and only
    the chosen columns leave the database."""
    text = {source.columns.get(c, c) for c in _text_columns(TABLES[name])}
    choose = functools.partial(_columns_to_read, name, mapping=source.columns)
    return database.read(name, db, source, choose, text, connections)


# ---------------------------------------------------------------------------------------- finding files


def _is_parquet(path: Path) -> bool:
    """A Parquet file by its extension, or a directory: a Parquet dataset (Spark's ``events.parquet/``,
    a hive-partitioned ``events/month=2024-06/...``)."""
    return path.is_dir() or path.name.lower().endswith((".parquet", ".pq"))


def _parquet_dataset(name: str, path: Path) -> ds.Dataset:
    """A directory of Parquet files, its hive partition keys read as text: inferred as integers they would
    turn the id ``000123`` into ``123`` and match no customer."""
    found = ds.dataset(path, format="parquet")
    if not found.files:
        raise DataValidationError(name, None, f"the Parquet dataset {path} holds no Parquet files")
    keys = dict.fromkeys(
        part.split("=", 1)[0]
        for file in found.files
        for part in Path(file).relative_to(path).parts[:-1]
        if "=" in part
    )
    text = ds.partitioning(pa.schema([(key, pa.string()) for key in keys]), flavor="hive")
    return ds.dataset(path, format="parquet", partitioning=text)


def _check_file_schemas(
    name: str, path: Path, stored: list[tuple[str, pa.Schema]], columns: list[str]
) -> None:
    """Every file must hold each stored column read, with one type: pyarrow would otherwise take the
    first file's schema and quietly fill a missing column with nulls or cast other types (epoch integers
    to timestamps, booleans to amounts), a silent wrong result. Hive partition keys are not stored."""
    held = {n for _, schema in stored for n in schema.names}
    for column in (c for c in columns if c in held):
        kinds: dict[pa.DataType, str] = {}
        for file, schema in stored:
            index = schema.get_field_index(column)
            if index < 0:
                raise DataValidationError(
                    name, column, f"the file {file} of the Parquet dataset {path} has no column {column!r}"
                )
            kinds.setdefault(schema.field(index).type, file)
        if len(kinds) > 1:
            (first, a), (second, b) = list(kinds.items())[:2]
            raise DataValidationError(
                name,
                column,
                f"the files of the Parquet dataset {path} disagree on the type of {column!r}: {a} has "
                f"{first}, {b} has {second}; write one type",
            )


def _holds_parquet(directory: Path) -> bool:
    """Whether a directory found by name is a Parquet dataset: an unrelated ``tickets/`` folder of CSV
    exports stays ignored, as before datasets were read (a configured path is read whatever it holds)."""
    return directory.is_dir() and any(
        next(directory.rglob(f"*{ext}"), None) is not None for ext in (".parquet", ".pq")
    )


def _table_path(name: str, source: TableSource, data_dir: Path | None, base: Path) -> Path | None:
    """The configured path (which must exist), else the first ``<dir>/<name>.<ext>`` file found, else a
    directory ``<dir>/<name>.parquet/`` or ``<dir>/<name>/`` holding Parquet files, else None."""
    if source.path is not None:
        path = (data_dir if data_dir is not None else base) / source.path
        if not path.exists():
            raise DataValidationError(
                name, None, f"data.tables.{name}.path points to {path}, which does not exist"
            )
        return path
    if data_dir is None:
        return None
    found = next(
        (data_dir / f"{name}{ext}" for ext in EXTENSIONS if (data_dir / f"{name}{ext}").is_file()), None
    )
    if found is not None:
        return found
    return next(
        (path for path in (data_dir / f"{name}.parquet", data_dir / name) if _holds_parquet(path)), None
    )


def _csv_kwargs(path: Path, options: ReadOptions) -> dict:
    """pandas.read_csv arguments for the table's ReadOptions (decimal and dtypes are added per call)."""
    sep = options.sep
    if path.name.lower().endswith(".tsv") and "sep" not in options.model_fields_set:
        sep = "\t"
    if sep.strip(" ") == "" and sep:
        # Space-separated exports pad with runs of spaces (CDNow); a single-space split would invent columns.
        sep = r"\s+"
    kwargs: dict = {"sep": sep, "encoding": options.encoding, "header": 0 if options.header else None}
    if options.names is not None:
        kwargs["names"] = list(options.names)
    elif not options.header:
        # Without a header or names, columns are called "0", "1", ... and mapped by position.
        width = pd.read_csv(path, nrows=1, **kwargs).shape[1]
        kwargs["names"] = [str(i) for i in range(width)]
    return kwargs


def _columns_to_read(name: str, available: list[str], mapping: Mapping[str, str]) -> list[str] | None:
    """The user's columns that matter (None = all, for customers' extra attributes); checks the mapping."""
    selection = _resolve_columns(name, available, mapping)
    if TABLES[name].extra_columns_allowed:
        return None
    # Look-alikes of missing columns are read too, so that validation can warn about them.
    return list(selection) + list(_lookalikes(name, available, mapping))


def _lookalikes(name: str, available: list[str], mapping: Mapping[str, str]) -> dict[str, str]:
    """User column -> the missing optional contract column it looks like (``statsu`` -> ``status``).

    A misspelled optional column is otherwise ignored in silence and its features are simply absent.
    """
    spec = TABLES[name]
    used = {mapping.get(c, c) for c in spec.columns} | set(mapping.values())
    missing = [c for c in spec.optional if mapping.get(c, c) not in available]
    found = {}
    for column in available:
        if column in used or not missing:
            continue
        close = difflib.get_close_matches(column.strip().lower(), missing, n=1, cutoff=0.75)
        if close:
            found[column] = close[0]
    return found


def _text_columns(spec: TableSpec) -> tuple[str, ...]:
    """Contract columns read as strings from CSV: everything except numeric columns."""
    return tuple(c for c in spec.columns if c not in spec.numeric)


# ------------------------------------------------------------------------------------- column mapping


def _resolve_columns(name: str, available: list[str], mapping: Mapping[str, str]) -> dict[str, list[str]]:
    """User column -> the contract column(s) it becomes; raises for mapping mistakes and missing columns."""
    spec = TABLES[name]
    present = set(available)
    for contract_col, user_col in mapping.items():
        if contract_col not in spec.columns and not spec.extra_columns_allowed:
            raise DataValidationError(
                name,
                contract_col,
                f"data.tables.{name}.columns maps '{contract_col}', which is not a column of the "
                f"contract table; its columns are {list(spec.columns)}",
            )
        if user_col not in present:
            raise DataValidationError(
                name,
                contract_col,
                f"data.tables.{name}.columns maps '{contract_col}' to '{user_col}', but the data has no "
                f"column '{user_col}'; its columns are {available}",
            )
    selection: dict[str, list[str]] = {}
    for contract_col in spec.columns:
        user_col = mapping.get(contract_col, contract_col)
        if user_col in present:
            selection.setdefault(user_col, []).append(contract_col)
        elif contract_col in spec.required:
            raise DataValidationError(
                name,
                contract_col,
                f"required column is missing; the data has columns {available}. If it is named differently, "
                f"map it with data.tables.{name}.columns: {{{contract_col}: <your column>}}",
            )
    if spec.extra_columns_allowed:
        for target, user_col in mapping.items():
            if target not in spec.columns:  # a renamed extra attribute
                selection.setdefault(user_col, []).append(target)
        targets = {target for names in selection.values() for target in names}
        for user_col in available:
            # A column whose name a mapped column takes over (a shadowed one) is not kept twice.
            if user_col not in selection and user_col not in targets:
                selection[user_col] = [user_col]
    return selection


def _warn_lookalikes(
    name: str, frame: pd.DataFrame, mapping: Mapping[str, str], warnings: list[DataWarning]
) -> None:
    for column, contract in _lookalikes(name, [str(c) for c in frame.columns], mapping).items():
        problem = (
            f"column '{column}' looks like the contract column '{contract}', which is missing: it is "
            + (
                "kept as an extra attribute, not as " + contract
                if TABLES[name].extra_columns_allowed
                else "ignored"
            )
            + f". Rename it, or map it with data.tables.{name}.columns: {{{contract}: {column}}}"
        )
        values = frame[column]
        mask = values.notna().to_numpy()
        warnings.append(
            DataWarning(name, column, problem, int(mask.sum()), example_rows(frame[[column]], mask))
        )


def _select_columns(name: str, frame: pd.DataFrame, mapping: Mapping[str, str]) -> pd.DataFrame:
    """A frame with contract column names, only the columns kept (the input itself when it already is
    one); the input frame is never modified."""
    available = [str(c) for c in frame.columns]
    if len(set(available)) != len(available):
        duplicated = sorted({c for c in available if available.count(c) > 1})
        raise DataValidationError(name, duplicated[0], f"column names appear more than once: {duplicated}")
    spec = TABLES[name]
    in_order = available == [c for c in spec.columns if c in available]
    if not mapping and in_order and set(spec.required) <= set(available):
        return frame  # already the contract's names in its order: nothing to select (never modified)
    renamed = frame.rename(columns=str) if any(not isinstance(c, str) for c in frame.columns) else frame
    columns = {
        target: renamed[user_col]
        for user_col, targets in _resolve_columns(name, available, mapping).items()
        for target in targets
    }
    order = [c for c in spec.columns if c in columns] + [c for c in columns if c not in spec.columns]
    return pd.DataFrame({c: columns[c] for c in order}, index=frame.index)


# -------------------------------------------------------------------------------------- normalisation


INTEGRAL_DECIMAL = r"^([+-]?\d+)\.0+$"  # an id like 17.0 (see _canonical_ids)


def _integral_float_as_int(value: object) -> object:
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _as_text(values: pd.Series) -> pd.Series:
    """Values as stripped strings, blanks missing; integral floats lose their '.0' so that 17.0 == '17'."""
    if len(values) == 0:  # what the steps below give an empty column, without their fixed cost
        return pd.Series([], dtype=STRING_DTYPE, index=values.index, name=values.name)
    if pd.api.types.is_float_dtype(values):
        finite = values.dropna().to_numpy()
        if np.all(np.abs(finite) < 2**53) and np.array_equal(finite, np.round(finite)):
            values = values.astype("Int64")
    elif values.dtype == object and pd.api.types.infer_dtype(values, skipna=True) not in ("string", "empty"):
        # mixed Python values: per element, as object columns already are (text alone has no floats)
        values = values.map(_integral_float_as_int, na_action="ignore")
    text = values if values.dtype == STRING_DTYPE else values.astype(STRING_DTYPE)
    # Arrow's kernels directly (pandas' str.strip is this same kernel, behind more per-call cost).
    array = _arrow_text(text)
    sample = _representatives(array)
    if sample is not array and not _needs_trimming(sample):
        return text  # every value is one of a few clean ones (ids grouped by customer, event types)
    stripped = pc.utf8_trim_whitespace(array)
    blank = pc.equal(stripped, "")
    if pc.any(blank).as_py():
        stripped = pc.if_else(blank, None, stripped)
    elif stripped.equals(array):  # nothing to strip, no blanks (the usual case)
        return text
    return pd.Series(text_array(stripped), index=values.index, name=values.name)


# Text columns at least this long are checked through their representatives (_representatives).
REPRESENTED_ROWS = 65_536


def _representatives(array: pa.ChunkedArray) -> pa.ChunkedArray | pa.Array:
    """Values that include every distinct value of a long text column (its nulls too), to check a few
    instead of every row: the first of each run of equal values when runs are long (a table grouped by
    customer: one per customer); ``array`` itself when it is short or its runs are.

    Checking 7 M ids one by one (trim, blank, ``17.0``) took 0.25 s; finding their runs takes 0.03 s.
    """
    if len(array) < REPRESENTED_ROWS:
        return array
    changes = pc.fill_null(pc.not_equal(array[1:], array[:-1]), True)  # a null starts its own run
    if (pc.sum(changes).as_py() + 1) * 8 > len(array):
        # short runs: every row. A hash pass (pc.unique) costs ~130 ns a row on distinct ids, more
        # than the per-row kernels it would save (trim ~10 ns, the 17.0 regex ~20 ns).
        return array
    starts = np.flatnonzero(np.concatenate([[True], changes.to_numpy(zero_copy_only=False)]))
    # Chunk by chunk: a chunked take of a few rows first joins every chunk (a copy of the whole text).
    bounds = np.cumsum([0, *(len(chunk) for chunk in array.chunks)])
    which = np.searchsorted(bounds, starts, side="right") - 1  # sorted, as starts are
    cuts = np.searchsorted(which, np.arange(len(bounds)))  # chunk k's starts: cuts[k]:cuts[k + 1]
    return pa.concat_arrays(
        [
            chunk.take(pa.array(starts[cuts[k] : cuts[k + 1]] - bounds[k]))
            for k, chunk in enumerate(array.chunks)
            if cuts[k + 1] > cuts[k]
        ]
    )


def _needs_trimming(values: pa.ChunkedArray | pa.Array) -> bool:
    """Whether some value has surrounding whitespace or is blank (what :func:`_as_text` rewrites)."""
    stripped = pc.utf8_trim_whitespace(values)
    return bool(pc.any(pc.equal(stripped, "")).as_py()) or not stripped.equals(values)


def text_array(values: pa.Array | pa.ChunkedArray) -> pd.api.extensions.ExtensionArray:
    """Arrow strings as pandas' ``str`` array, without a copy (no per-value conversion)."""
    return _STRING_ARRAY(values, dtype=STRING_DTYPE)


def canonical_id(text: str) -> str:
    """One id as the contract stores it (stripped; ``17.0`` is ``17``, as ``_canonical_ids`` writes it)."""
    return re.sub(INTEGRAL_DECIMAL, r"\1", text.strip(), flags=re.ASCII)  # Arrow's regex: ASCII digits


def _canonical_ids(ids: pd.Series) -> pd.Series:
    """Ids as text where an integral number written with a decimal part is the integer: ``17.0`` is
    ``17``, as a spreadsheet export or a float column of another table writes it; ``017`` keeps its zero."""
    if not pc.any(pc.match_substring_regex(_representatives(_arrow_text(ids)), INTEGRAL_DECIMAL)).as_py():
        return ids  # nothing to rewrite: skips pandas' per-call cost, which dominates small tables
    return ids.str.replace(INTEGRAL_DECIMAL, r"\1", regex=True)


def _parse_timestamps(values: pd.Series, date_format: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(timestamps as tz-naive UTC datetime64, any unit; which values were blank). Unparseable -> NaT."""
    if len(values) == 0:  # an empty table (a customer without tickets): nothing to parse
        return np.array([], dtype="datetime64[ns]"), np.array([], dtype=bool)
    if isinstance(values.dtype, pd.ArrowDtype) and (
        pa.types.is_timestamp(values.dtype.pyarrow_dtype) or pa.types.is_date(values.dtype.pyarrow_dtype)
    ):
        values = pd.Series(pa.array(values).to_pandas(date_as_object=False).array, index=values.index)
    if isinstance(values.dtype, pd.DatetimeTZDtype):
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    if pd.api.types.is_datetime64_dtype(values):
        stamps = values.to_numpy()
        return stamps, np.isnat(stamps)
    text = _as_text(values)
    parsed = pd.to_datetime(text, format=date_format or "ISO8601", errors="coerce", utc=True)
    return parsed.dt.tz_localize(None).to_numpy(), text.isna().to_numpy(dtype=bool)


def _text_to_float(text: pd.Series) -> pd.Series:
    """Arrow's cast when every value is a number (fast); else pandas, which turns bad values into NaN."""
    try:
        return pd.Series(pc.cast(_arrow_text(text), pa.float64()).to_numpy(), index=text.index)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return pd.to_numeric(text, errors="coerce").astype("float64")


def _parse_numbers(values: pd.Series, decimal: str) -> tuple[np.ndarray, np.ndarray]:
    """(float64 values, which values were blank); text that is not a finite number becomes NaN."""
    if values.dtype.kind == "f":  # numpy floats: NaN is the blank
        numbers = values.to_numpy(dtype=np.float64)
        blank = np.isnan(numbers)
    elif pd.api.types.is_numeric_dtype(values):  # bools and nullable integers included
        numbers = values.to_numpy(dtype=np.float64, na_value=np.nan)
        blank = values.isna().to_numpy(dtype=bool)
    else:
        text = _as_text(values)
        if decimal != ".":
            text = text.str.replace(decimal, ".", regex=False)
        numbers = _text_to_float(text).to_numpy(dtype=np.float64)
        blank = text.isna().to_numpy(dtype=bool)
    return np.where(np.isfinite(numbers), numbers, np.nan), blank


def _fail(
    table: str,
    column: str,
    problem: str,
    frame: pd.DataFrame,
    mask: pd.Series | np.ndarray,
    also: tuple[str, ...] = (),
) -> None:
    """Raise when ``mask`` selects any rows, showing the id and the offending column(s) of a few of them.

    ``mask`` is a boolean Series or array aligned with ``frame``'s rows.
    """
    count = int(np.count_nonzero(np.asarray(mask, dtype=bool)))
    if count:
        shown = [c for c in dict.fromkeys(["customer_id", column, *also]) if c in frame]
        raise DataValidationError(table, column, problem, example_rows(frame[shown], mask), count)


def _normalise_timestamps(
    name: str, column: str, raw: pd.DataFrame, date_format: str | None, now: pd.Timestamp
) -> np.ndarray:
    """Parse once, check every rule on the parsed values, and return datetime64[ns]."""
    spec = TABLES[name]
    # The rules compare plain numpy arrays (NaT compares False, as in pandas), each bound in the values'
    # own unit (no overflow): a pandas comparison costs more than the data on the small tables the
    # prediction service validates.
    stamps, blanks = _parse_timestamps(raw[column], date_format)
    how = f"with date_format '{date_format}'" if date_format else "as ISO 8601 (YYYY-MM-DD[ HH:MM:SS][+TZ])"
    _fail(
        name,
        column,
        f"values that are not timestamps: could not parse {how}; "
        f"set data.tables.{name}.read.date_format to your format",
        raw,
        np.isnat(stamps) & ~blanks,
    )
    if column == spec.time_column:
        _fail(
            name, column, "empty timestamps; every row needs one (it says when the row happened)", raw, blanks
        )
    _fail(
        name,
        column,
        f"timestamps before {EARLIEST.date()}: corrupt or parsed with the wrong date_format",
        raw,
        stamps < EARLIEST.to_datetime64().astype(stamps.dtype),
    )
    horizon = SCHEDULED_COLUMNS.get((name, column), FUTURE_TOLERANCE)
    _fail(
        name,
        column,
        f"timestamps more than {horizon.days} day(s) after now ({now:%Y-%m-%d}): corrupt or a placeholder"
        + ("; leave end_at empty for subscriptions that have not ended" if column == "end_at" else ""),
        raw,
        stamps > (now + horizon).to_datetime64().astype(stamps.dtype),
    )
    stamps = stamps.astype("datetime64[ns]", copy=False)
    return stamps if stamps.flags.writeable else stamps.copy()  # a read-only view of the input: own it


def _normalise_numbers(name: str, column: str, raw: pd.DataFrame, decimal: str) -> np.ndarray:
    values, blanks = _parse_numbers(raw[column], decimal)
    hint = f" (decimal separator '{decimal}'; set data.tables.{name}.read.decimal if it differs)"
    _fail(
        name,
        column,
        "values that are not finite numbers" + hint,
        raw,
        np.isnan(values) & ~blanks,
    )
    _fail(
        name,
        column,
        f"values larger than {MAX_MAGNITUDE:.0e} in magnitude: corrupt, or in the wrong unit",
        raw,
        np.abs(values) > MAX_MAGNITUDE,
    )
    advice = NON_NEGATIVE.get((name, column))
    if advice:
        _fail(name, column, f"negative values: {advice}", raw, values < 0)
    return values


def _normalise_text(name: str, column: str, raw: pd.DataFrame) -> pd.Series:
    """Contract text columns as stripped strings; required ones (event_type) always become strings."""
    values = raw[column]
    keep_numbers = column not in TABLES[name].required and pd.api.types.is_numeric_dtype(values)
    return values if keep_numbers else _as_text(values)


def _normalise_table(
    name: str, raw: pd.DataFrame, date_format: str | None, decimal: str, now: pd.Timestamp
) -> pd.DataFrame:
    """One table with contract dtypes; raises on the first broken rule. Extra columns pass through as read."""
    spec = TABLES[name]
    ids = _canonical_ids(_as_text(raw["customer_id"]))
    _fail(name, "customer_id", "empty customer ids", raw, ids.isna())
    # New values as arrays, assembled once without copies (building a Series per column cost more than
    # checking a small table); columns kept from the input stay Series, whose copy-on-write protects it.
    columns: dict[str, Any] = {"customer_id": ids}
    for column in (c for c in raw.columns if c != "customer_id"):
        if column in spec.timestamps:
            columns[column] = _normalise_timestamps(name, column, raw, date_format, now)
        elif column in spec.numeric:
            columns[column] = _normalise_numbers(name, column, raw, decimal)
        elif column in spec.columns:
            columns[column] = _normalise_text(name, column, raw)
        else:
            columns[column] = raw[column]
    table = pd.DataFrame(columns, index=raw.index, copy=False)
    for ordered_name, later, earlier in ORDERINGS:
        if ordered_name == name and later in columns and earlier in columns:
            _fail(
                name,
                later,
                f"{later} before {earlier}",
                raw,
                columns[later] < columns[earlier],
                also=(earlier,),
            )
    if name == "customers":
        _fail(
            name,
            "customer_id",
            "duplicate customer ids; each customer needs exactly one row",
            raw,
            ids.duplicated(keep=False),
        )
    if name == "contacts":
        table["arm"] = _arms(raw, table["arm"])
        # One customer both contacted and held out at the same moment: which one happened has no answer
        # (the first row of a day or window is the assignment, and these tie).
        moments = np.sort(np.asarray(table["contacted_at"], dtype="datetime64[ns]").view("i8"))
        tied = np.zeros(len(table), dtype=bool)
        if (moments[1:] == moments[:-1]).any():  # cheap first: the service checks every history's contacts
            tied = table.duplicated(["customer_id", "contacted_at"], keep=False).to_numpy()
        if tied.any():
            arms = table.loc[tied].groupby(["customer_id", "contacted_at"], sort=False)["arm"]
            both = np.zeros(len(table), dtype=bool)
            both[np.flatnonzero(tied)] = (arms.transform("nunique") > 1).to_numpy()
            _fail(
                name,
                "arm",
                "one customer both contacted and held out at the same contacted_at; keep the arm the "
                "customer was assigned",
                raw,
                both,
                also=("contacted_at",),
            )
        _fail(
            name,
            "play",
            "empty plays; every contact needs the play (or campaign) it was part of",
            raw,
            table["play"].isna().to_numpy(),
        )
    return table


def _arms(raw: pd.DataFrame, values: pd.Series) -> pd.Series:
    """``contacts.arm`` in the contract's words (``ARMS``); other spellings are read, unknown ones refused."""
    arms = values.str.lower().map(ARM_SYNONYMS)
    problem = (
        f"values that are not an arm: use {' or '.join(ARMS)} (holdout = kept out of the contact at random)"
    )
    _fail("contacts", "arm", problem, raw, arms.isna().to_numpy())
    return arms.astype(STRING_DTYPE)


# ------------------------------------------------------------------------------------ the whole dataset


def _require_tables(frames: Mapping[str, pd.DataFrame], where: str) -> None:
    if "customers" not in frames:
        raise DataValidationError(
            "customers", None, f"required table not found{where}: customers (one row per customer)"
        )
    if not any(name in frames for name in ACTIVITY_TABLES):
        raise DataValidationError(
            "/".join(ACTIVITY_TABLES), None, f"no activity table found{where}: need at least one of them"
        )


def _known(stamps: np.ndarray) -> np.ndarray:
    """The non-missing datetime64[ns] values as int64 nanoseconds (a view when none is missing)."""
    stamps = stamps.astype("datetime64[ns]", copy=False)
    missing = np.isnat(stamps)
    return (stamps[~missing] if missing.any() else stamps).view("i8")


def _selected(values: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``values[rows]`` for increasing ``rows``; ``values`` itself when every row is selected."""
    return values if len(rows) == len(values) else values[rows]


def _resolve_end(end: datetime | None, known: list[np.ndarray]) -> pd.Timestamp:
    """The configured end as naive UTC, else the latest time-column value (the extraction moment).

    ``known`` are the time columns' non-missing values (:func:`_known`)."""
    if end is not None:
        stamp = pd.Timestamp(end)
        if stamp.tz is not None:
            stamp = stamp.tz_convert("UTC").tz_localize(None)
        return stamp.as_unit("ns")
    return pd.Timestamp(max(int(values.max()) for values in known if len(values))).as_unit("ns")


def strays_checked(time_values: int) -> bool:
    """Whether data with this many time-column values (customers' signups included) is checked for
    stray rows: fewer cannot tell strays from a quiet spell (see ``_activity_end``)."""
    return int(time_values * STRAY_SHARE) >= STRAY_MIN_ROWS


def _activity_end(known: list[np.ndarray]) -> pd.Timestamp | None:
    """Where activity stops when a few stray rows lie far past it (see ``STRAY_GAP``), else None.

    Looks only at the latest ``STRAY_SHARE`` of the time-column values (``known``, as :func:`_known`
    gives them): the first gap of at least ``STRAY_GAP`` among them separates the data from the strays.
    """
    stamps = np.concatenate(known)
    if not strays_checked(len(stamps)):
        return None  # too few rows to tell strays from a quiet spell (one customer's history, say)
    tail_size = int(len(stamps) * STRAY_SHARE)
    tail = np.sort(np.partition(stamps, len(stamps) - tail_size - 1)[-(tail_size + 1) :])
    gaps = np.flatnonzero(np.diff(tail) >= STRAY_GAP.value)
    return None if len(gaps) == 0 else pd.Timestamp(int(tail[gaps[0]]))


def _refuse_strays(
    times: Mapping[str, np.ndarray],
    rows: Mapping[str, np.ndarray],
    tables: Mapping[str, pd.DataFrame],
    end: pd.Timestamp,
) -> None:
    """Raise, naming the table, column and rows that lie past ``end``, where activity stops.

    ``times[name]`` are the time-column values of the table's rows at positions ``rows[name]``.
    """
    limit = end.to_datetime64()
    count = sum(int((values > limit).sum()) for values in times.values())
    for name, values in times.items():
        after = values > limit
        if after.any():
            column = TABLES[name].time_column
            problem = (
                f"{count} row(s) lie more than {STRAY_GAP.days} days after all other activity, which "
                f"stops at {end}; they would move the end of the data and every cutoff. Fix or remove "
                "them, set data.end, or set data.stray_rows: drop to end the data where activity stops"
            )
            raise DataValidationError(
                name, column, problem, example_rows(tables[name].iloc[rows[name][after]]), count
            )


def _warn(
    warnings: list[DataWarning], table: pd.DataFrame, name: str, column: str, problem: str, mask: np.ndarray
) -> None:
    """Record a counted warning (with examples) for the rows in ``mask``, when there are any."""
    count = int(mask.sum())
    if count:
        shown = [c for c in dict.fromkeys(["customer_id", column]) if c in table]
        warnings.append(DataWarning(name, column, problem, count, example_rows(table[shown], mask)))


def _arrow_text(values: pd.Series) -> pa.ChunkedArray:
    """A string column as Arrow without copying (pandas' ``str`` dtype is Arrow-backed)."""
    array = pa.array(values, type=pa.large_string())
    return array if isinstance(array, pa.ChunkedArray) else pa.chunked_array([array])


def _sorted_ids(ids: pd.Series) -> pa.Array:
    """The customer ids in sorted (code point) order, as Arrow, so that a code's order is the id's order."""
    values = _arrow_text(ids)
    return pc.take(values, pc.array_sort_indices(values)).combine_chunks()


def _customer_codes(ids: pd.Series, known: pa.Array) -> np.ndarray:
    """Position of each row's customer in ``known``, -1 for unknown ones: one Arrow hash pass, no Python."""
    codes = pc.index_in(_arrow_text(ids), value_set=known)
    return np.asarray(pc.fill_null(codes, -1), dtype=np.int64)


def _stable_order(codes: np.ndarray, times: np.ndarray) -> np.ndarray | None:
    """Row order sorting by (customer, time), ties kept in input order; None when already in order."""
    if is_sorted(codes, times):
        return None
    keys = pa.table({"code": codes, "time": times})
    return pc.sort_indices(keys, sort_keys=[("code", "ascending"), ("time", "ascending")]).to_numpy()


def _take(values: pd.Series, rows: np.ndarray) -> pd.Series:
    """``values`` at ``rows``; text goes through a dictionary because taking strings one by one is slow."""
    if not isinstance(values.dtype, pd.StringDtype):
        return values.take(rows).reset_index(drop=True)
    encoded = pc.dictionary_encode(_arrow_text(values)).combine_chunks()
    taken = pa.DictionaryArray.from_arrays(encoded.indices.take(pa.array(rows)), encoded.dictionary)
    return pd.Series(taken.dictionary_decode(), dtype=values.dtype)


def _with_range_index(table: pd.DataFrame) -> pd.DataFrame:
    """The table indexed 0..n-1; itself when it already is (``reset_index`` copies every column)."""
    index = table.index
    if isinstance(index, pd.RangeIndex) and index.start == 0 and index.step == 1:
        return table
    return table.reset_index(drop=True)


def _finish_activity(
    table: pd.DataFrame, codes: np.ndarray, keep: np.ndarray, known: pa.Array, time_column: str
) -> pd.DataFrame:
    """Keep the ``keep`` rows, sorted by (customer_id, time), in one take per column; new RangeIndex."""
    rows = np.flatnonzero(keep)
    times = table[time_column].to_numpy().view("i8")
    order = _stable_order(_selected(codes, rows), _selected(times, rows))
    if order is not None:
        rows = rows[order]
    if len(rows) == len(table) and order is None:
        return _with_range_index(table)
    columns = {c: _take(table[c], rows) for c in table.columns if c != "customer_id"}
    ids = pd.Series(known.take(pa.array(codes[rows])), dtype=STRING_DTYPE)
    return pd.DataFrame({"customer_id": ids, **columns})[list(table.columns)]


def _drop_unknown_customers(
    activity: Mapping[str, pd.DataFrame],
    codes: Mapping[str, np.ndarray],
    policy: Literal["drop", "error"],
    warnings: list[DataWarning],
) -> dict[str, np.ndarray]:
    """Rows to keep per activity table: those whose customer exists (or raise, with ``policy='error'``)."""
    keep = {}
    for name, table in activity.items():
        unknown = codes[name] < 0
        if policy == "error":
            problem = (
                "rows for customers that are not in the customers table "
                "(data.unknown_customers: drop skips them with a warning)"
            )
            _fail(name, "customer_id", problem, table, pd.Series(unknown, index=table.index))
        _warn(warnings, table, name, "customer_id", "rows for customers not in customers dropped", unknown)
        keep[name] = ~unknown
    return keep


def _drop_after_end(
    customers: pd.DataFrame,
    activity: Mapping[str, pd.DataFrame],
    codes: Mapping[str, np.ndarray],
    keep: dict[str, np.ndarray],
    known: pa.Array,
    end: pd.Timestamp,
    warnings: list[DataWarning],
) -> pd.DataFrame:
    """Enforce a configured end: drop later rows, and customers who signed up later with all their rows.

    Narrows ``keep`` in place and returns the remaining customers.
    """
    late = (customers["signup_at"] > end).to_numpy()
    problem = f"customers who signed up after end {end} dropped"
    _warn(warnings, customers, "customers", "signup_at", problem, late)
    gone = np.zeros(len(known), dtype=bool)
    gone[_customer_codes(customers.loc[late, "customer_id"], known)] = True
    for name, table in activity.items():
        time_column = TABLES[name].time_column
        after = keep[name] & (table[time_column] > end).to_numpy()
        _warn(warnings, table, name, time_column, f"rows after end {end} dropped", after)
        orphaned = keep[name] & ~after & gone[np.maximum(codes[name], 0)]
        problem = "rows of customers who signed up after end dropped"
        _warn(warnings, table, name, "customer_id", problem, orphaned)
        keep[name] &= ~(after | orphaned)
    return customers.loc[~late]


def _build_dataset(
    frames: Mapping[str, pd.DataFrame],
    mappings: Mapping[str, Mapping[str, str]],
    options: Mapping[str, ReadOptions],
    end: datetime | None,
    unknown_customers: Literal["drop", "error"],
    stray_rows: Literal["error", "drop"] = "error",
) -> Dataset:
    """Map, normalise and validate every table, then enforce the cross-table invariants of ``Dataset``."""
    now = pd.Timestamp.now(tz="UTC").tz_localize(None)
    tables: dict[str, pd.DataFrame] = {}
    warnings: list[DataWarning] = []
    for name in (n for n in TABLES if n in frames):
        _warn_lookalikes(name, frames[name], mappings.get(name, {}), warnings)
        raw = _select_columns(name, frames[name], mappings.get(name, {}))
        read = options.get(name, ReadOptions())
        tables[name] = _normalise_table(name, raw, read.date_format, read.decimal, now)
    customers = tables["customers"]
    if customers.empty:
        raise DataValidationError("customers", None, "the table has no rows")
    activity = {name: tables[name] for name in HISTORY_TABLES if name in tables}

    # Customers are matched by their position among the sorted ids: one hash pass per table, and the
    # same codes then sort each table by customer.
    known = _sorted_ids(customers["customer_id"])
    codes = {name: _customer_codes(table["customer_id"], known) for name, table in activity.items()}
    keep = _drop_unknown_customers(activity, codes, unknown_customers, warnings)
    rows = {"customers": np.arange(len(customers)), **{n: np.flatnonzero(k) for n, k in keep.items()}}
    # The end of the data is where the customers' own activity ends: what the business did to them
    # (contacts) cannot extend it, or a scheduled contact would make unobserved weeks look observed.
    times = {
        name: _selected(tables[name][TABLES[name].time_column].to_numpy(), rows[name])
        for name in ("customers", *activity)
        if name == "customers" or name in ACTIVITY_TABLES
    }
    present = [_known(values) for values in times.values()]  # once: the end and the stray check share them
    stamp = _resolve_end(end, present)
    stops = _activity_end(present) if end is None else None
    if stops is not None and stray_rows == "error":
        _refuse_strays(times, rows, tables, stops)
    stamp = stamp if stops is None else stops
    later_facts = any(
        (
            _selected(tables[name][TABLES[name].time_column].to_numpy(), rows[name]) > stamp.to_datetime64()
        ).any()
        for name in activity
        if name not in ACTIVITY_TABLES
    )
    if end is not None or stops is not None or later_facts:
        customers = _drop_after_end(customers, activity, codes, keep, known, stamp, warnings)

    result = {"customers": _with_range_index(customers)}
    for name, table in activity.items():
        result[name] = _finish_activity(table, codes[name], keep[name], known, TABLES[name].time_column)
    for warning in warnings:
        logger.warning("%s", warning)
    return Dataset(tables=result, end=stamp, warnings=tuple(warnings))
