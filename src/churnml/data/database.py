"""Read one table from a database (PostgreSQL or SQLite) as Arrow, for ``churnml.data.load`` to validate.

Why ADBC: its drivers write a query's result straight into Arrow buffers in C (libpq's binary COPY for
PostgreSQL), so millions of rows arrive without a Python loop over rows, and the drivers travel inside
their wheels (nothing downloaded at run time, unlike DuckDB's postgres extension). The result is handed
to the same column mapping and validation as a Parquet file; this module only connects, lists the
columns, reads the chosen ones, and reports what went wrong without ever showing a password.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from churnml.config import TableSource
from churnml.errors import ConfigError, DataValidationError
from churnml.redact import MASK, mask_url, url_secrets

# Where the database URL comes from when neither data.url nor data.tables.<t>.url is set.
DATABASE_URL_ENV = "CHURNML_DATABASE_URL"
# URL scheme (before any SQLAlchemy-style "+driver") -> the ADBC driver that reads it.
SCHEMES: dict[str, Literal["postgresql", "sqlite"]] = {
    "postgresql": "postgresql",
    "postgres": "postgresql",
    "sqlite": "sqlite",
}
# Seconds to wait for a PostgreSQL server unless the URL (connect_timeout=) or PGCONNECT_TIMEOUT says.
CONNECT_TIMEOUT_S = 30
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


@dataclass(frozen=True)
class Database:
    """A resolved database: its driver, what the driver connects to, and how messages show it."""

    kind: Literal["postgresql", "sqlite"]
    target: str  # a libpq URI, or the SQLite file's path
    shown: str  # the URL with its password masked
    secrets: tuple[str, ...] = ()  # strings no message may contain

    def scrub(self, text: str) -> str:
        """``text`` with every secret of the URL masked (a driver may echo what it was given)."""
        for secret in self.secrets:
            text = text.replace(secret, MASK)
        return text


def _expand(url: str, key: str) -> str:
    """``${VAR}`` replaced from the environment; an unset variable is a ConfigError naming the key."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise ConfigError(f"{key} refers to ${{{name}}}, which is not set in the environment")
        return os.environ[name]

    return _VARIABLE.sub(value, url)


def resolve(name: str, source: TableSource, default_url: str | None, base: Path) -> Database:
    """The database of table ``name``: its own url, else data.url, else $CHURNML_DATABASE_URL.

    Relative SQLite paths are taken from ``base`` (as SQLAlchemy and MLflow take them from the current
    directory); the file must exist, since SQLite would otherwise create an empty one.
    """
    kind = "table" if source.table is not None else "sql"
    if source.url is not None:
        raw, key = source.url, f"data.tables.{name}.url"
    elif default_url is not None:
        raw, key = default_url, "data.url"
    elif os.environ.get(DATABASE_URL_ENV):
        raw, key = os.environ[DATABASE_URL_ENV], f"${DATABASE_URL_ENV}"
    else:
        raise ConfigError(
            f"data.tables.{name}.{kind} needs a database URL: set data.tables.{name}.url or data.url "
            f"(e.g. postgresql://user@host:5432/db, sqlite:///file.db), or the environment variable "
            f"{DATABASE_URL_ENV}"
        )
    url = _expand(raw, key)
    shown = mask_url(url)
    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    driver = SCHEMES.get(scheme.split("+", 1)[0])
    if driver is None:
        raise ConfigError(
            f"{key}: {shown!r} is not a database URL churnml reads; use postgresql://user@host:port/db "
            "or sqlite:///path/to/file.db"
        )
    if driver == "postgresql":
        target = "postgresql://" + url.split("://", 1)[1]
        if "connect_timeout=" not in target and "PGCONNECT_TIMEOUT" not in os.environ:
            # libpq waits for the operating system's TCP timeout (minutes) on a host that never answers.
            target += ("&" if "?" in target else "?") + f"connect_timeout={CONNECT_TIMEOUT_S}"
        return Database(driver, target, shown, url_secrets(url))
    path = urlsplit(url).path[1:]  # sqlite:///relative.db, sqlite:////absolute.db (SQLAlchemy's form)
    if not path or path == ":memory:":
        raise ConfigError(f"{key}: {shown!r} names no database file; use sqlite:///path/to/file.db")
    file = base / path
    if not file.is_file():
        raise DataValidationError(
            name, None, f"{key} points to the SQLite database {file}, which is not a file"
        )
    return Database(driver, str(file), shown)


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def relation(source: TableSource) -> str:
    """What to select from: the user's query as a subquery, or the table (``schema.table``) quoted."""
    if source.sql is not None:
        # On lines of its own, so that a trailing -- comment does not swallow the alias.
        return f"(\n{source.sql.strip().rstrip(';')}\n) AS churnml_source"
    assert source.table is not None
    if '"' in source.table:  # already quoted by the user: taken as written
        return source.table
    return ".".join(_quote(part) for part in source.table.split("."))


def _connect(database: Database) -> Any:
    # Imported here: only a database source needs a driver (the service and the CLI start without).
    if database.kind == "postgresql":
        import adbc_driver_postgresql.dbapi as postgresql

        return postgresql.connect(database.target, autocommit=True)
    import adbc_driver_sqlite.dbapi as sqlite

    return sqlite.connect(database.target, autocommit=True)


class Connections(contextlib.AbstractContextManager["Connections"]):
    """One connection per database, opened when a table first needs it and shared by the tables of one
    load (a PostgreSQL connection costs a round of catalog queries, ~70 ms); all closed on exit."""

    def __init__(self) -> None:
        self._open: dict[str, Any] = {}

    def __call__(self, database: Database) -> Any:
        if database.target not in self._open:
            self._open[database.target] = _connect(database)
        return self._open[database.target]

    def __exit__(self, *exc: object) -> None:
        for connection in self._open.values():
            with contextlib.suppress(Exception):  # closing must not hide what went wrong reading
                connection.close()
        self._open.clear()


def read(
    name: str,
    database: Database,
    source: TableSource,
    choose: Callable[[list[str]], list[str] | None],
    text_columns: Collection[str],
    connections: Connections,
) -> pd.DataFrame:
    """Read table ``name``: list the source's columns, keep those ``choose`` picks (None = all), and
    select only them, so the database sends nothing churnml does not use.

    Every failure (no connection, a missing table, a query the database refuses) is a
    DataValidationError naming the table and the masked URL.
    """
    from adbc_driver_manager import Error as DriverError

    what = f"table {source.table}" if source.table is not None else f"data.tables.{name}.sql"
    selected: list[str] = []
    try:
        with connections(database).cursor() as cursor:
            cursor.execute(f"SELECT * FROM {relation(source)} LIMIT 0")
            available = [str(c) for c in cursor.fetch_arrow_table().column_names]
            duplicated = sorted({c for c in available if available.count(c) > 1})
            if duplicated:
                problem = f"column names appear more than once in {what}: {duplicated}"
                raise DataValidationError(name, duplicated[0], problem)
            wanted = choose(available)
            selected = available if wanted is None else wanted
            columns = "*" if wanted is None else ", ".join(_quote(c) for c in wanted)
            cursor.execute(f"SELECT {columns} FROM {relation(source)}")
            table = cursor.fetch_arrow_table()
    except (DriverError, pa.ArrowException, OSError) as exc:  # the driver's, or Arrow's reading its stream
        message = database.scrub(str(exc)).strip()
        column = None
        if database.kind == "sqlite" and "Type mismatch" in message:
            # SQLite lets a column mix types; the driver types it from the first rows it reads and
            # names the column by its position in the SELECT. Read as text, the validation then names
            # the values that do not fit.
            found = re.search(r"column (\d+)", message)
            if found and int(found.group(1)) < len(selected):
                column = selected[int(found.group(1))]
            shown = column or "the_column"
            message += (
                f". The column {shown} holds values of several types: cast it in a query, e.g. "
                f"data.tables.{name}.sql: SELECT CAST({shown} AS TEXT) AS {shown}, ..."
            )
        problem = f"cannot read {what} from {database.shown}: {message}"
        raise DataValidationError(name, column, problem) from None
    return _to_pandas(name, table, text_columns)


def _readable(kind: pa.DataType) -> bool:
    """Arrow types that become a pandas column the validation understands (text, numbers, times)."""
    return any(
        check(kind)
        for check in (
            pa.types.is_string,
            pa.types.is_large_string,
            pa.types.is_integer,
            pa.types.is_floating,
            pa.types.is_decimal,
            pa.types.is_boolean,
            pa.types.is_timestamp,
            pa.types.is_date,
            pa.types.is_null,
        )
    )


def _to_pandas(name: str, table: pa.Table, text_columns: Collection[str]) -> pd.DataFrame:
    """Arrow to pandas as a Parquet file converts; database types Arrow marks as extensions are unwrapped
    (PostgreSQL ``numeric`` to float64, or kept as exact text in a contract text column such as an id),
    and types without a faithful pandas column (uuid, interval, arrays...) are refused, naming the column."""
    columns = {}
    for field, column in zip(table.schema, table.columns, strict=True):
        kind = field.type
        if isinstance(kind, pa.BaseExtensionType) and _readable(kind.storage_type):
            column = pa.chunked_array([chunk.storage for chunk in column.chunks], type=kind.storage_type)
            if field.name not in text_columns and getattr(kind, "type_name", "") == "numeric":
                # Text that is no float ('Infinity') stays text, for the validation to name.
                with contextlib.suppress(pa.ArrowInvalid, pa.ArrowNotImplementedError):
                    column = pc.cast(column, pa.float64())
        elif not _readable(kind):
            raise DataValidationError(
                name,
                field.name,
                f"the database type {kind} has no pandas counterpart churnml reads: cast it in the "
                f"query, e.g. data.tables.{name}.sql: SELECT {field.name}::text AS {field.name}, ...",
            )
        columns[field.name] = column
    return pa.table(columns).to_pandas()
