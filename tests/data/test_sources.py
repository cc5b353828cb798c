"""Tables from every kind of source: Parquet datasets (a directory of files, hive-partitioned), SQLite and
a real PostgreSQL (tests/conftest.py). Each must give exactly the Dataset, and the training set, that the
same tables give as plain files; each failure must name the table and the source, never a password.
"""

from __future__ import annotations

from pathlib import Path

import adbc_driver_postgresql.dbapi as postgresql
import adbc_driver_sqlite.dbapi as sqlite
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from typer.testing import CliRunner

from churnml.cli import app
from churnml.config import DataConfig, TableSource, load_config
from churnml.contract import TABLES
from churnml.data.database import CONNECT_TIMEOUT_S, DATABASE_URL_ENV, resolve
from churnml.data.dataset import Dataset
from churnml.data.load import dataset_from_frames, load_dataset, read_table
from churnml.data.simulate import simulate
from churnml.errors import ConfigError, DataValidationError
from churnml.features.training_set import TRAINING_SET_FILE
from churnml.pipelines.features import data_source
from churnml.redact import mask_url, redact

SIMULATED = simulate(150, 6, 11).tables  # every contract table but contacts, a few thousand rows


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The simulated tables as plain Parquet files: the reference every other source must match."""
    directory = tmp_path_factory.mktemp("files")
    for name, frame in SIMULATED.items():
        frame.to_parquet(directory / f"{name}.parquet", index=False)
    return directory


def assert_same(actual: Dataset, expected: Dataset) -> None:
    assert set(actual.tables) == set(expected.tables)
    for name, frame in expected.tables.items():
        pd.testing.assert_frame_equal(actual.tables[name], frame, obj=name)
    assert actual.end == expected.end
    assert actual.warnings == expected.warnings


def to_postgres(url: str, tables: dict[str, pd.DataFrame]) -> None:
    with postgresql.connect(url, autocommit=True) as connection, connection.cursor() as cursor:
        for name, frame in tables.items():
            cursor.adbc_ingest(name, pa.Table.from_pandas(frame, preserve_index=False), mode="create")


def to_sqlite(path: Path, tables: dict[str, pd.DataFrame]) -> None:
    with sqlite.connect(str(path), autocommit=True) as connection, connection.cursor() as cursor:
        for name, frame in tables.items():
            cursor.adbc_ingest(name, pa.Table.from_pandas(frame, preserve_index=False), mode="create")


# ---------------------------------------------------------------------------------------- Parquet datasets


def test_a_directory_of_parquet_files_and_a_hive_dataset_read_as_the_files(
    files: Path, tmp_path: Path
) -> None:
    split, hive = tmp_path / "split", tmp_path / "hive"
    for name, frame in SIMULATED.items():
        # Spark's layout: <table>.parquet/ holding part files; the customers table stays one file.
        parts = split / f"{name}.parquet"
        parts.mkdir(parents=True)
        half = len(frame) // 2
        frame.iloc[:half].to_parquet(parts / "part-0.parquet", index=False)
        frame.iloc[half:].to_parquet(parts / "part-1.parquet", index=False)
        if name == "customers":
            hive.mkdir(exist_ok=True)
            frame.to_parquet(hive / "customers.parquet", index=False)
            continue
        # Partitioned by the month of the time column (a key churnml does not use, so it is not read).
        month = frame[TABLES[name].time_column].dt.strftime("%Y-%m").rename("month")
        table = pa.Table.from_pandas(frame.assign(month=month), preserve_index=False)
        pq.write_to_dataset(table, hive / f"{name}_by_month", partition_cols=["month"])
    expected = load_dataset(DataConfig(dir=str(files)))
    assert_same(load_dataset(DataConfig(dir=str(split))), expected)
    paths = {name: {"path": f"{name}_by_month"} for name in SIMULATED if name != "customers"}
    assert_same(load_dataset(DataConfig.model_validate({"dir": str(hive), "tables": paths})), expected)


def test_a_parquet_dataset_reads_only_the_columns_churnml_needs(tmp_path: Path) -> None:
    events = SIMULATED["events"].assign(payload="x" * 100, tenant="acme")
    pq.write_to_dataset(
        pa.Table.from_pandas(events, preserve_index=False), tmp_path / "events", partition_cols=["tenant"]
    )
    read = read_table("events", tmp_path / "events", TableSource())
    assert list(read.columns) == ["customer_id", "timestamp", "event_type", "value"]


def test_hive_partition_keys_are_text_so_ids_keep_their_leading_zeros(tmp_path: Path) -> None:
    """Inferred as integers, ``customer_id=000001`` would read as 1 and match no customer (every row
    dropped with only a warning)."""
    transactions = SIMULATED["transactions"].assign(customer_id=lambda f: "0" + f["customer_id"].str[1:])
    table = pa.Table.from_pandas(transactions, preserve_index=False)
    pq.write_to_dataset(table, tmp_path / "transactions", partition_cols=["customer_id"])
    read = read_table("transactions", tmp_path / "transactions", TableSource())
    assert sorted(read["customer_id"].unique()) == sorted(transactions["customer_id"].unique())
    assert read["customer_id"].str.startswith("0").all() and len(read) == len(transactions)


@pytest.mark.parametrize(
    ("second", "problem"),
    [
        (lambda f: f.drop(columns="amount"), "has no column 'amount'"),
        ("first", "has no column 'amount'"),  # the first file lacks it: still the file that disagrees
        (lambda f: f.assign(amount=f["amount"] > 50), "disagree on the type of 'amount'"),
        (lambda f: f.assign(timestamp=f["timestamp"].astype("int64") // 10**9), "type of 'timestamp'"),
    ],
    ids=["missing column", "missing in the first file", "bool amount", "epoch integers"],
)
def test_files_of_a_dataset_that_disagree_are_refused_not_cast(tmp_path: Path, second, problem: str) -> None:
    """pyarrow would take the first file's schema and fill or cast the others: a silent wrong result."""
    frame = SIMULATED["transactions"]
    parts = tmp_path / "transactions"
    parts.mkdir()
    if second == "first":
        frame.iloc[:100].drop(columns="amount").to_parquet(parts / "a.parquet", index=False)
        frame.iloc[100:].to_parquet(parts / "b.parquet", index=False)
        odd = "a.parquet"
    else:
        frame.iloc[:100].to_parquet(parts / "a.parquet", index=False)
        second(frame.iloc[100:]).to_parquet(parts / "b.parquet", index=False)
        odd = "b.parquet"
    with pytest.raises(DataValidationError, match=problem) as caught:
        read_table("transactions", parts, TableSource())
    assert odd in str(caught.value) and caught.value.table == "transactions"


def test_a_file_wins_over_a_directory_and_a_folder_without_parquet_is_no_table(
    files: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    for name in ("customers", "events"):
        (data / f"{name}.parquet").write_bytes((files / f"{name}.parquet").read_bytes())
    (data / "events").mkdir()  # a dataset of the same name: the file still wins, as before
    SIMULATED["events"].head(3).to_parquet(data / "events" / "part-0.parquet")
    (data / "tickets").mkdir()  # raw exports that happen to share a table's name: not a table
    SIMULATED["tickets"].to_csv(data / "tickets" / "tickets-2024.csv", index=False)
    dataset = load_dataset(DataConfig(dir=str(data)))
    assert set(dataset.tables) == {"customers", "events"}
    assert len(dataset.tables["events"]) == len(SIMULATED["events"])


def test_a_broken_parquet_dataset_names_the_table_and_path(files: Path, tmp_path: Path) -> None:
    broken = tmp_path / "events"
    broken.mkdir()
    (broken / "part-0.parquet").write_text("not parquet")
    config = DataConfig.model_validate({"dir": str(files), "tables": {"events": {"path": str(broken)}}})
    with pytest.raises(DataValidationError) as info:
        load_dataset(config)
    assert "table 'events'" in str(info.value) and str(broken) in str(info.value)


# ------------------------------------------------------------------------------------------------ SQLite


def database_tables(url: str | None = None) -> dict:
    """Every table from the database: most by name, events by a query under the user's own names."""
    tables: dict = {name: {"table": name} for name in SIMULATED}
    tables["events"] = {
        "sql": "SELECT customer_id AS account, timestamp AS ts, event_type, value FROM events;",
        "columns": {"customer_id": "account", "timestamp": "ts"},
    }
    if url is not None:
        tables["transactions"]["url"] = url
    return tables


def test_sqlite_tables_and_queries_read_as_the_files(files: Path, tmp_path: Path) -> None:
    to_sqlite(tmp_path / "shop.db", SIMULATED)
    config = DataConfig.model_validate({"url": "sqlite:///shop.db", "tables": database_tables()})
    assert_same(load_dataset(config, base_dir=tmp_path), load_dataset(DataConfig(dir=str(files))))


def test_a_sqlite_column_of_mixed_types_is_named_with_the_cast_to_write(tmp_path: Path) -> None:
    """SQLite lets a column hold integers and text; the driver types it from its first rows."""
    customers = pd.DataFrame({"customer_id": list(range(1500)), "signup_at": "2024-01-01"})
    to_sqlite(tmp_path / "shop.db", {"customers": customers, "events": SIMULATED["events"].head(5)})
    with (
        sqlite.connect(str(tmp_path / "shop.db"), autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("INSERT INTO customers VALUES ('c-1500', '2024-01-02')")
    tables = {"customers": {"table": "customers"}, "events": {"sql": "SELECT * FROM events -- all of it"}}
    config = DataConfig.model_validate({"url": "sqlite:///shop.db", "tables": tables})
    with pytest.raises(DataValidationError) as info:
        load_dataset(config, base_dir=tmp_path)
    assert "table 'customers'" in str(info.value) and "CAST(customer_id AS TEXT)" in str(info.value)
    tables["customers"] = {"sql": "SELECT CAST(customer_id AS TEXT) AS customer_id, signup_at FROM customers"}
    config = DataConfig.model_validate({"url": "sqlite:///shop.db", "tables": tables})
    assert len(load_dataset(config, base_dir=tmp_path).tables["customers"]) == 1501


def test_a_mixed_sqlite_column_past_the_first_is_named_not_the_id(tmp_path: Path) -> None:
    """The driver names the column by its position in the SELECT: the error names it by its name."""
    events = SIMULATED["events"].head(1500).assign(value=1.0)
    to_sqlite(tmp_path / "shop.db", {"customers": SIMULATED["customers"], "events": events})
    with (
        sqlite.connect(str(tmp_path / "shop.db"), autocommit=True) as connection,
        connection.cursor() as cursor,
    ):
        cursor.execute("UPDATE events SET value = 'lots' WHERE rowid > 1400")
    tables = {"customers": {"table": "customers"}, "events": {"table": "events"}}
    config = DataConfig.model_validate({"url": "sqlite:///shop.db", "tables": tables})
    with pytest.raises(DataValidationError) as info:
        load_dataset(config, base_dir=tmp_path)
    assert info.value.table == "events" and info.value.column == "value"
    assert "CAST(value AS TEXT)" in str(info.value)


def test_a_missing_sqlite_file_is_named_and_not_created(tmp_path: Path) -> None:
    config = DataConfig.model_validate(
        {"url": "sqlite:///nowhere.db", "tables": {"customers": {"table": "c"}}}
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config, base_dir=tmp_path)
    assert "table 'customers'" in str(info.value) and "nowhere.db" in str(info.value)
    assert not (tmp_path / "nowhere.db").exists()


# -------------------------------------------------------------------------------------------- PostgreSQL


def test_postgres_tables_and_queries_read_as_the_files(
    files: Path, postgres_url: str, tmp_path: Path
) -> None:
    to_postgres(postgres_url, SIMULATED)
    to_sqlite(tmp_path / "billing.db", {"transactions": SIMULATED["transactions"]})
    # Each table may have its own database: transactions from SQLite, the rest from PostgreSQL.
    # SQLAlchemy's form of the URL works too, so one URL can serve churnml, Optuna and MLflow.
    url = postgres_url.replace("postgresql://", "postgresql+psycopg://")
    config = DataConfig.model_validate(
        {"url": url, "tables": database_tables(f"sqlite:///{tmp_path / 'billing.db'}")}
    )
    assert_same(load_dataset(config), load_dataset(DataConfig(dir=str(files))))


def test_postgres_types_are_normalised_like_the_files(postgres_url: str) -> None:
    """numeric, timestamptz, date and integer ids arrive as the contract's float64, naive UTC and text."""
    with postgresql.connect(postgres_url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE accounts (id bigint, created date, mrr numeric(10, 2), seats numeric)")
        cursor.execute(
            "INSERT INTO accounts VALUES (17, '2024-01-02', 20.50, 3), (18, '2024-01-03', NULL, 1)"
        )
        cursor.execute("CREATE TABLE payments (account bigint, paid timestamptz, total numeric(12, 2))")
        cursor.execute(
            "INSERT INTO payments VALUES (17, '2024-02-01 10:00+02', 20.50), (18, '2024-02-02 00:00Z', 9)"
        )
    config = DataConfig.model_validate(
        {
            "url": postgres_url,
            "tables": {
                "customers": {"table": "accounts", "columns": {"customer_id": "id", "signup_at": "created"}},
                "transactions": {
                    "table": "payments",
                    "columns": {"customer_id": "account", "timestamp": "paid", "amount": "total"},
                },
            },
        }
    )
    dataset = load_dataset(config)
    customers, payments = dataset.tables["customers"], dataset.tables["transactions"]
    assert list(customers["customer_id"]) == ["17", "18"]
    assert customers["mrr"].dtype == "float64" and customers["mrr"].iloc[0] == 20.5
    assert customers["seats"].dtype == "float64"  # an extra attribute: a number, not text
    assert list(payments["timestamp"]) == [pd.Timestamp("2024-02-01 08:00"), pd.Timestamp("2024-02-02")]
    assert payments["amount"].dtype == "float64"


def test_postgres_types_without_a_pandas_column_are_refused_with_a_cast_to_write(postgres_url: str) -> None:
    with postgresql.connect(postgres_url, autocommit=True) as connection, connection.cursor() as cursor:
        cursor.execute("CREATE TABLE accounts (id uuid, created date, trial interval)")
        cursor.execute(
            "INSERT INTO accounts VALUES ('6f1c0e4e-8a51-4c1e-9d1e-3f1f3b1c2a10', '2024-01-02', '14 days')"
        )
        cursor.execute("CREATE TABLE logins (id uuid, at timestamp)")
        cursor.execute("INSERT INTO logins VALUES ('6f1c0e4e-8a51-4c1e-9d1e-3f1f3b1c2a10', '2024-02-01')")
    events = {"sql": "SELECT id::text AS customer_id, at AS timestamp, 'login' AS event_type FROM logins"}
    tables = {"customers": {"table": "accounts", "columns": {"customer_id": "id", "signup_at": "created"}}}
    for refused in ("id", "trial"):
        with pytest.raises(DataValidationError) as info:
            load_dataset(
                DataConfig.model_validate({"url": postgres_url, "tables": {**tables, "events": events}})
            )
        assert f"table 'customers', column '{refused}'" in str(info.value) and "::text" in str(info.value)
        query = "SELECT id::text, created" + (", trial" if refused == "id" else "") + " FROM accounts"
        tables = {"customers": {"sql": query, "columns": {"customer_id": "id", "signup_at": "created"}}}
    dataset = load_dataset(
        DataConfig.model_validate({"url": postgres_url, "tables": {**tables, "events": events}})
    )
    assert list(dataset.tables["events"]["customer_id"]) == ["6f1c0e4e-8a51-4c1e-9d1e-3f1f3b1c2a10"]


def test_churnml_features_from_postgres_equal_those_from_files(
    files: Path, postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    to_postgres(postgres_url, SIMULATED)
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)  # the URL stays out of the config file
    config = tmp_path / "warehouse.yaml"
    config.write_text(yaml.safe_dump({"data": {"tables": database_tables()}}))
    runner = CliRunner()
    for name, args in (("db", ["-c", str(config)]), ("files", [f"data.dir={files}"])):
        result = runner.invoke(app, ["features", *args, f"output.dir={tmp_path / name}"])
        assert result.exit_code == 0, result.output
    from_db = pd.read_parquet(tmp_path / "db" / "churnml" / "training_set" / TRAINING_SET_FILE)
    from_files = pd.read_parquet(tmp_path / "files" / "churnml" / "training_set" / TRAINING_SET_FILE)
    assert len(from_files) > 0
    pd.testing.assert_frame_equal(from_db, from_files)


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ({"table": "no_such_table"}, 'relation "no_such_table" does not exist'),
        ({"sql": "SELEC customer_id FROM events"}, "data.tables.events.sql"),
        ({"sql": "SELECT customer_id, timestamp FROM events"}, "required column is missing"),
        ({"table": "events", "columns": {"event_type": "kind"}}, "has no column 'kind'"),
    ],
    ids=["missing table", "failed query", "missing column", "bad mapping"],
)
def test_postgres_errors_name_the_table_and_source(postgres_url: str, source: dict, expected: str) -> None:
    to_postgres(postgres_url, {n: SIMULATED[n] for n in ("customers", "events")})
    config = DataConfig.model_validate(
        {"url": postgres_url, "tables": {"customers": {"table": "customers"}, "events": source}}
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config)
    assert "table 'events'" in str(info.value)
    assert expected in str(info.value)


def test_an_unreachable_server_is_named_without_its_password(tmp_path: Path, free_port: int) -> None:
    url = f"postgresql://churnml:s3cret-pw@127.0.0.1:{free_port}/warehouse"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({"data": {"url": url, "tables": {"customers": {"table": "accounts"}}}}))
    result = CliRunner().invoke(app, ["features", "-c", str(config)])
    assert result.exit_code == 2, result.output
    assert "table 'customers'" in result.output and "127.0.0.1" in result.output
    assert "churnml:***@" in result.output and "s3cret" not in result.output
    assert "Traceback" not in result.output


# -------------------------------------------------------------------------------------- URLs and config


def test_urls_come_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    to_sqlite(tmp_path / "shop.db", {n: SIMULATED[n] for n in ("customers", "events")})
    tables = {
        "customers": {"table": "customers"},
        "events": {"table": "events", "url": "sqlite:///${SHOP_DB}"},
    }
    monkeypatch.setenv(DATABASE_URL_ENV, f"sqlite:///{tmp_path / 'shop.db'}")
    monkeypatch.setenv("SHOP_DB", str(tmp_path / "shop.db"))  # absolute: sqlite:////tmp/...
    dataset = load_dataset(DataConfig.model_validate({"tables": tables}))
    assert len(dataset.tables["events"]) > 0
    monkeypatch.delenv("SHOP_DB")
    with pytest.raises(ConfigError, match=r"data.tables.events.url refers to \$\{SHOP_DB\}"):
        load_dataset(DataConfig.model_validate({"tables": tables}))
    monkeypatch.delenv(DATABASE_URL_ENV)
    with pytest.raises(
        ConfigError, match=f"data.tables.customers.table needs a database URL.*{DATABASE_URL_ENV}"
    ):
        load_dataset(DataConfig.model_validate({"tables": tables}))


def test_an_unsupported_url_is_a_config_error_without_its_password() -> None:
    config = DataConfig.model_validate(
        {"url": "mysql://me:hunter2@db/shop", "tables": {"customers": {"table": "c"}}}
    )
    with pytest.raises(ConfigError) as info:
        load_dataset(config)
    assert "data.url" in str(info.value) and "mysql://me:***@db/shop" in str(info.value)
    assert "hunter2" not in str(info.value)


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://me:p%40ss@db:5432/shop", "postgresql://me:***@db:5432/shop"),
        (
            "postgresql://db/shop?user=me&password=pw&sslmode=require",
            "postgresql://db/shop?user=me&password=***&sslmode=require",
        ),
        ("postgresql://me@db/shop", "postgresql://me@db/shop"),
        ("sqlite:///outputs/shop.db", "sqlite:///outputs/shop.db"),
        ("postgresql://me:Sl/ash?Q@db:5432/shop", "postgresql://me:***@db:5432/shop"),  # unencoded / and ?
        ("host=db user=me password=Kw0rd dbname=shop", "host=db user=me password=*** dbname=shop"),  # libpq
        ("host=db password='a b' dbname=shop", "host=db password=*** dbname=shop"),
    ],
)
def test_mask_hides_passwords_only(url: str, shown: str) -> None:
    assert mask_url(url) == shown


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"path": "events.csv", "table": "events"}, "give one of path, table or sql"),
        ({"path": "events.csv", "url": "sqlite:///x.db"}, "url is the database of a table or sql source"),
        ({"sql": "  "}, "sql is empty"),
    ],
)
def test_contradictory_sources_are_config_errors(table: dict, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"data\.tables\.events") as info:
        load_config(None, [f"data.tables.events={table}"])
    assert problem in str(info.value)


def test_runs_record_database_sources_with_passwords_masked() -> None:
    tables = {"customers": {"table": "crm.accounts"}, "events": {"path": "events.parquet"}}
    config = load_config(None, [f"data.tables={tables}", "data.url=postgresql://me:hunter2@db/shop"])
    assert data_source(config) == {
        "dir": None,
        "tables": {
            "customers": {"table": "crm.accounts", "url": "postgresql://me:***@db/shop"},
            "events": "events.parquet",
        },
    }


def test_a_server_that_never_answers_is_given_up_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without connect_timeout libpq would wait for the TCP timeout (minutes); churnml sets one."""
    monkeypatch.delenv("PGCONNECT_TIMEOUT", raising=False)
    source = TableSource(table="accounts")
    target = resolve("customers", source, "postgresql://me@db.example/shop", Path.cwd()).target
    assert target == f"postgresql://me@db.example/shop?connect_timeout={CONNECT_TIMEOUT_S}"
    given = resolve(
        "customers", source, "postgresql://me@db/shop?sslmode=require&connect_timeout=3", Path.cwd()
    )
    assert given.target == "postgresql://me@db/shop?sslmode=require&connect_timeout=3"


def test_config_records_and_churnml_config_show_urls_without_passwords() -> None:
    overrides = [
        "data.url=postgresql://me:hunter2@db/shop?sslmode=require",
        "data.tables.events={sql: 'SELECT * FROM events -- see https://wiki/x?password=not-a-url'}",
        "tune.storage=postgresql://me:hunter3@db/optuna",
        "data.tables.tickets={table: tickets, url: 'host=db user=me password=hunter4 dbname=shop'}",
    ]
    dumped = redact(load_config(None, overrides).model_dump(mode="json"))
    assert dumped["data"]["url"] == "postgresql://me:***@db/shop?sslmode=require"
    assert dumped["tune"]["storage"] == "postgresql://me:***@db/optuna"
    assert dumped["data"]["tables"]["tickets"]["url"] == "host=db user=me password=*** dbname=shop"
    assert dumped["data"]["tables"]["events"]["sql"].endswith("?password=not-a-url")  # text, not a URL
    result = CliRunner().invoke(app, ["config", *overrides])
    assert result.exit_code == 0, result.output
    assert "hunter" not in result.output and "postgresql://me:***@db/optuna" in result.output


def test_the_example_warehouse_config_reads_a_warehouse(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """configs/warehouse.yaml against a warehouse laid out as it expects: the simulated business, renamed."""
    renamed = {
        "crm.accounts": ("customers", {"customer_id": "account_id", "signup_at": "created_at", "plan": "tier"}),
        "billing.subscriptions": ("subscriptions", {"customer_id": "account_id", "start_at": "started_at", "end_at": "ended_at"}),
        "billing.payments": ("transactions", {"customer_id": "account_id", "timestamp": "paid_at", "amount": "amount_eur"}),
        "product.events": ("events", {"customer_id": "account_id", "timestamp": "occurred_at", "event_type": "name"}),
    }  # fmt: skip
    with postgresql.connect(postgres_url, autocommit=True) as connection, connection.cursor() as cursor:
        for target, (name, columns) in renamed.items():
            schema, table = target.split(".")
            cursor.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
            frame = SIMULATED[name].rename(columns=columns)
            cursor.adbc_ingest(
                table, pa.Table.from_pandas(frame, preserve_index=False), db_schema_name=schema
            )
    monkeypatch.setenv(DATABASE_URL_ENV, postgres_url)
    config = load_config(Path(__file__).parents[2] / "configs" / "warehouse.yaml")
    expected = dataset_from_frames({name: SIMULATED[name] for name, _ in renamed.values()})
    assert_same(load_dataset(config.data), expected)
