"""Loading a user's tables: discovery, column mapping, every validation rule, normalisation.

Each validation test checks that the error names the table, the column and shows an offending row,
because that is what lets a user fix their export without reading churnml's code.
"""

from __future__ import annotations

import copy
import logging
from datetime import datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from churnml.config import DataConfig
from churnml.data.load import dataset_from_frames, load_dataset
from churnml.errors import DataValidationError


def assert_reported(exc: DataValidationError, table: str, column: str | None, shown: str) -> None:
    """The message names the table and column, and an offending row's value is among the examples."""
    message = str(exc)
    assert f"table '{table}'" in message
    if column is not None:
        assert f"column '{column}'" in message
    assert shown in message


def with_value(frame: pd.DataFrame, row: int, column: str, value) -> pd.DataFrame:
    frame = frame.copy()
    frame[column] = frame[column].astype(object)
    frame.loc[row, column] = value
    return frame


# ------------------------------------------------------------------------------------ required tables


def test_missing_customers_table_is_an_error(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({"events": tables["events"]})
    assert_reported(info.value, "customers", None, "required table not found")


def test_no_activity_table_is_an_error(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({"customers": tables["customers"]})
    assert "no activity table" in str(info.value)
    assert "events" in str(info.value)


def test_missing_table_file_names_the_directory(tmp_path, tables, write_tables):
    directory = write_tables({"events": tables["events"]})
    with pytest.raises(DataValidationError) as info:
        load_dataset(DataConfig(dir=str(directory)))
    assert_reported(info.value, "customers", None, str(directory))


def test_customers_and_one_activity_table_are_enough(tables):
    dataset = dataset_from_frames({"customers": tables["customers"], "transactions": tables["transactions"]})
    assert set(dataset.tables) == {"customers", "transactions"}
    assert dataset.end == pd.Timestamp("2024-02-15")


def test_unknown_table_name_is_an_error(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "evnets": tables["events"]})
    assert_reported(info.value, "evnets", None, "not a contract table")


# ------------------------------------------------------------------------------------------- columns


def test_missing_required_column_lists_columns_and_hints_at_mapping(tables):
    tables["events"] = tables["events"].drop(columns="event_type")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "events", "event_type", "required column is missing")
    assert "'timestamp'" in str(info.value)  # the available columns
    assert "data.tables.events.columns" in str(info.value)


def test_mapping_to_an_absent_column_names_it_and_the_available_ones(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables, columns={"events": {"event_type": "kind"}})
    assert_reported(info.value, "events", "event_type", "'kind'")
    assert "'timestamp'" in str(info.value)


def test_mapping_renames_and_keeps_only_contract_columns(tables):
    events = tables["events"].rename(columns={"customer_id": "user", "event_type": "action"})
    events["browser"] = "firefox"
    dataset = dataset_from_frames(
        {**tables, "events": events}, columns={"events": {"customer_id": "user", "event_type": "action"}}
    )
    assert list(dataset.tables["events"].columns) == ["customer_id", "timestamp", "event_type", "value"]
    # customers keep their extra static attributes
    assert "seats" in dataset.customers.columns


def test_mapping_an_unknown_contract_column_is_an_error(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables, columns={"events": {"event_kind": "event_type"}})
    assert_reported(info.value, "events", "event_kind", "not a column of the contract table")


# ---------------------------------------------------------------------------------------- timestamps


def test_unparseable_timestamps_show_examples_and_count(tables):
    events = with_value(tables["events"], 1, "timestamp", "yesterday")
    events = with_value(events, 3, "timestamp", "03/05/2024")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "events": events})
    assert_reported(info.value, "events", "timestamp", "yesterday")
    assert info.value.count == 2
    assert "date_format" in str(info.value)


@pytest.mark.parametrize(
    ("table", "column"),
    [
        ("customers", "signup_at"),
        ("events", "timestamp"),
        ("subscriptions", "start_at"),
        ("transactions", "timestamp"),
        ("tickets", "opened_at"),
        ("messages", "sent_at"),
    ],
)
def test_empty_time_column_is_an_error(tables, table, column):
    tables[table] = with_value(tables[table], 1, column, None if table != "events" else "  ")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, table, column, "empty timestamps")
    assert tables[table].loc[1, "customer_id"] in info.value.examples


def test_empty_optional_timestamps_are_missing_values(tables):
    dataset = dataset_from_frames(tables)
    assert dataset.tables["subscriptions"]["end_at"].isna().sum() == 2
    assert dataset.tables["messages"]["clicked_at"].isna().sum() == 2


def test_timestamps_far_in_the_future_are_an_error(tables):
    tables["events"] = with_value(tables["events"], 2, "timestamp", "2099-01-01")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "events", "timestamp", "2099-01-01")


def test_later_timestamps_far_in_the_future_are_an_error_too(tables):
    tables["tickets"] = with_value(tables["tickets"], 1, "closed_at", "2099-12-31")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "tickets", "closed_at", "2099-12-31")


def test_a_scheduled_subscription_end_may_lie_in_the_future(tables):
    next_year = (datetime.now() + timedelta(days=365)).strftime("%Y-%m-%d")
    tables["subscriptions"] = with_value(tables["subscriptions"], 1, "end_at", next_year)
    dataset = dataset_from_frames(tables)
    assert dataset.tables["subscriptions"]["end_at"].max() == pd.Timestamp(next_year)


@pytest.mark.parametrize(
    ("table", "later", "earlier", "value"),
    [
        ("subscriptions", "end_at", "start_at", "2023-12-01"),
        ("tickets", "closed_at", "opened_at", "2024-01-19 09:00"),
        ("messages", "opened_at", "sent_at", "2024-01-31 09:00"),
        ("messages", "clicked_at", "sent_at", "2024-01-31 09:05"),
    ],
)
def test_impossible_order_of_timestamps_is_an_error(tables, table, later, earlier, value):
    tables[table] = with_value(tables[table], 0, later, value)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, table, later, value)
    assert f"{later} before {earlier}" in str(info.value)


def test_activity_before_signup_is_allowed(tables):
    events = tables["events"]
    events.loc[len(events)] = ["c3", "2023-06-01 00:00:00", "login", 1.0]  # imported history
    dataset = dataset_from_frames(tables)
    assert dataset.warnings == ()
    assert (dataset.tables["events"]["timestamp"] == pd.Timestamp("2023-06-01")).sum() == 1


# ------------------------------------------------------------------------------------------- numbers


def test_non_numeric_values_are_an_error(tables):
    tables["transactions"] = with_value(tables["transactions"], 1, "amount", "80 USD")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "transactions", "amount", "80 USD")


def test_negative_amounts_are_an_error_that_explains_refunds(tables):
    tables["transactions"] = with_value(tables["transactions"], 2, "amount", -80.0)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "transactions", "amount", "-80")
    assert "refund" in str(info.value) and "status" in str(info.value)


@pytest.mark.parametrize("table", ["customers", "subscriptions"])
def test_negative_mrr_is_an_error(tables, table):
    tables[table] = with_value(tables[table], 1, "mrr", -5.5)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, table, "mrr", "-5.5")


@pytest.mark.parametrize(
    ("table", "column", "value"),
    [
        ("transactions", "amount", 1e308),
        ("transactions", "amount", "1e40"),
        ("customers", "mrr", 1e308),
        ("subscriptions", "mrr", 3.5e38),
        ("events", "value", -1e20),
        ("tickets", "satisfaction", 1e16),
    ],
)
def test_huge_numbers_are_an_error_not_nan_features(tables, table, column, value):
    """1e308 once became NaN amount features in silence and crashed XGBoost (float32 overflow)."""
    tables[table] = with_value(tables[table], 1, column, value)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, table, column, "larger than")
    assert "\n1 " in info.value.examples  # the offending row, by its row number


@pytest.mark.parametrize("value", [float("inf"), float("-inf"), "inf", "NaN "])
def test_non_finite_numbers_are_an_error(tables, value):
    tables["transactions"] = with_value(tables["transactions"], 1, "amount", value)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "transactions", "amount", "not finite numbers")


def test_satisfaction_on_any_scale_and_missing_is_fine(tables):
    tickets = with_value(tables["tickets"], 0, "satisfaction", 97.0)
    dataset = dataset_from_frames({**tables, "tickets": tickets})
    assert dataset.tables["tickets"]["satisfaction"].tolist()[0] == 97.0
    assert dataset.tables["tickets"]["satisfaction"].isna().sum() == 1


# -------------------------------------------------------------------------------------------- ids


def test_duplicate_customer_ids_are_an_error(tables):
    tables["customers"] = with_value(tables["customers"], 2, "customer_id", "c1")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "customers", "customer_id", "c1")
    assert info.value.count == 2


def test_ids_that_differ_only_in_type_are_duplicates(tables):
    customers = tables["customers"].assign(customer_id=pd.Series([17, "17", "18"], dtype=object))
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "customers": customers})
    assert_reported(info.value, "customers", "customer_id", "17")


@pytest.mark.parametrize("spelled", ["17.0", "17.00", 17.0, 17])
def test_an_integral_id_written_with_decimals_is_the_same_customer(tables, spelled):
    """The contract says ``17.0`` and ``17`` are one customer: a float id column in one export once
    dropped all of that customer's rows as unknown."""
    tables["customers"] = with_value(tables["customers"], 0, "customer_id", "17")
    for name in ("events", "subscriptions", "transactions", "tickets", "messages"):
        ids = tables[name]["customer_id"].astype(object)
        tables[name] = tables[name].assign(
            customer_id=ids.where(ids != "c1", spelled if name == "events" else "17")
        )
    dataset = dataset_from_frames(tables)
    assert dataset.warnings == ()
    assert (
        (dataset.tables["events"]["customer_id"] == "17").sum()
        == (tables["events"]["customer_id"] == spelled).sum()
        > 0
    )


@pytest.mark.parametrize("other", ["017", "17.5", "17.0.0", "c17.0"])
def test_other_ids_keep_their_text(tables, other):
    tables["customers"] = with_value(tables["customers"], 0, "customer_id", other)
    dataset = dataset_from_frames(tables)
    assert other in set(dataset.customers["customer_id"])


def test_csv_ids_with_decimals_match_across_files(tmp_path, tables, write_tables):
    tables["customers"] = with_value(tables["customers"], 0, "customer_id", "17")
    tables["transactions"] = tables["transactions"].assign(
        customer_id=tables["transactions"]["customer_id"].where(
            tables["transactions"]["customer_id"] != "c1", "17.0"
        )
    )
    data_dir = write_tables(tables, "csv")
    dataset = load_dataset(DataConfig(dir=str(data_dir)))
    assert not any(w.table == "transactions" for w in dataset.warnings)
    assert (dataset.tables["transactions"]["customer_id"] == "17").any()


@pytest.mark.parametrize("blank", [None, "", "   "])
def test_empty_customer_id_is_an_error(tables, blank):
    tables["events"] = with_value(tables["events"], 3, "customer_id", blank)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, "events", "customer_id", "empty customer ids")
    assert "\n3 " in info.value.examples  # the offending row, by its row number


def test_rows_of_unknown_customers_are_dropped_with_a_counted_warning(tables, caplog):
    events = tables["events"]
    events.loc[len(events)] = ["c9", "2024-03-01 00:00:00", "login", 1.0]
    events.loc[len(events)] = ["c9", "2024-03-02 00:00:00", "login", 1.0]
    with caplog.at_level(logging.WARNING, logger="churnml.data.load"):
        dataset = dataset_from_frames(tables)
    (warning,) = dataset.warnings
    assert (warning.table, warning.column, warning.count) == ("events", "customer_id", 2)
    assert "c9" in warning.examples
    assert len(dataset.tables["events"]) == 5
    assert "c9" not in set(dataset.tables["events"]["customer_id"])
    assert "events.customer_id" in caplog.text and "(2 rows)" in caplog.text


def test_rows_of_unknown_customers_can_be_an_error(tables):
    tables["tickets"] = with_value(tables["tickets"], 1, "customer_id", "c9")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables, unknown_customers="error")
    assert_reported(info.value, "tickets", "customer_id", "c9")
    assert info.value.count == 1


# ------------------------------------------------------------------------------------------------ end


def test_end_defaults_to_the_latest_time_column_value(tables):
    # a ticket closed later does not move the end: only time columns (and signup_at) do
    tables["tickets"] = with_value(tables["tickets"], 0, "closed_at", "2024-04-01")
    dataset = dataset_from_frames(tables)
    assert dataset.end == pd.Timestamp("2024-03-05 16:00:00")
    assert dataset.warnings == ()


def test_rows_after_a_configured_end_are_dropped_with_a_counted_warning(tables):
    dataset = dataset_from_frames(tables, end=datetime(2024, 3, 1, 9, 0))
    assert dataset.end == pd.Timestamp("2024-03-01 09:00")
    counts = {(w.table, w.column): w.count for w in dataset.warnings}
    assert counts == {("events", "timestamp"): 3}
    assert dataset.tables["events"]["timestamp"].max() <= dataset.end
    assert len(dataset.tables["messages"]) == 3  # sent exactly at 08:00 < end: kept


def test_customers_who_sign_up_after_end_are_dropped_with_their_history(tables):
    events = tables["events"]
    events.loc[len(events)] = ["c3", "2024-01-10 00:00:00", "login", 1.0]  # history before c3's signup
    dataset = dataset_from_frames(tables, end=datetime(2024, 1, 20))
    counts = {(w.table, w.column): w.count for w in dataset.warnings}
    assert counts[("customers", "signup_at")] == 1
    assert counts[("events", "customer_id")] == 1  # c3's early event, orphaned
    assert set(dataset.customers["customer_id"]) == {"c1", "c2"}
    for table in dataset.tables.values():
        assert set(table["customer_id"]) <= {"c1", "c2"}


def test_a_timezone_aware_end_is_taken_as_utc(tables):
    dataset = dataset_from_frames(tables, end=pd.Timestamp("2024-03-01 10:00", tz="Europe/Paris"))
    assert dataset.end == pd.Timestamp("2024-03-01 09:00")
    assert dataset.end.tz is None


# -------------------------------------------------------------------------------------- normalisation


def test_dtypes_are_normalised(tables):
    customers = tables["customers"].assign(customer_id=[17, 18, 19], mrr=[20, 80, 20])
    paris = pd.to_datetime(["2024-03-01 10:00", "2024-03-01 11:00", "2024-03-01 12:00"]).tz_localize(
        "Europe/Paris"
    )
    events = pd.DataFrame(
        {
            "customer_id": pd.Series(["17", 18.0, " 19 "], dtype=object),
            "timestamp": paris,
            "event_type": [" login", "export ", "login"],
            "value": [1, 2, 3],
        }
    )
    dataset = dataset_from_frames({"customers": customers, "events": events})
    out, cust = dataset.tables["events"], dataset.customers
    assert out["customer_id"].tolist() == ["17", "18", "19"]  # ints, floats and strings all match
    assert pd.api.types.is_string_dtype(out["customer_id"]) and pd.api.types.is_string_dtype(
        cust["customer_id"]
    )
    assert out["timestamp"].dtype == "datetime64[ns]" and cust["signup_at"].dtype == "datetime64[ns]"
    assert out["timestamp"].iloc[0] == pd.Timestamp("2024-03-01 09:00")  # UTC, naive
    assert out["value"].dtype == "float64" and cust["mrr"].dtype == "float64"
    assert out["event_type"].tolist() == ["login", "export", "login"]
    assert cust["seats"].dtype == np.int64  # extra attributes as read


def test_activity_is_sorted_stably_by_customer_and_time(tables):
    dataset = dataset_from_frames(tables)
    events = dataset.tables["events"]
    assert events["customer_id"].tolist() == ["c1", "c1", "c1", "c2", "c3"]
    # two c1 rows share a timestamp: their input order (login, then report) is kept
    assert events["event_type"].tolist() == ["login", "report", "export", "login", "login"]
    assert events.index.equals(pd.RangeIndex(len(events)))


def test_inputs_are_not_modified(tables):
    tables["events"] = tables["events"].assign(
        timestamp=pd.to_datetime(tables["events"]["timestamp"]).dt.tz_localize("UTC")
    )
    tables["customers"] = tables["customers"].assign(customer_id=[1, 2, 3])
    tables["transactions"] = tables["transactions"].assign(customer_id=["1", "2", "2", "3 "])
    before = copy.deepcopy(tables)
    dataset_from_frames(tables, end=datetime(2024, 3, 1), columns={"events": {"customer_id": "customer_id"}})
    for name, frame in tables.items():
        pd.testing.assert_frame_equal(frame, before[name])


# ------------------------------------------------------------------------------------- files on disk


@pytest.mark.parametrize("ext", ["parquet", "csv", "csv.gz", "tsv"])
def test_tables_are_discovered_by_name_in_the_directory(tables, write_tables, tmp_path, ext):
    write_tables(tables, ext)
    dataset = load_dataset(DataConfig(dir="data"), base_dir=tmp_path)
    assert set(dataset.tables) == set(tables)
    expected = dataset_from_frames(tables)
    for name, frame in expected.tables.items():
        pd.testing.assert_frame_equal(dataset.tables[name], frame)
    assert dataset.fingerprint() == expected.fingerprint()


def test_parquet_is_preferred_and_extra_files_are_ignored(tables, write_tables, tmp_path):
    write_tables({"customers": tables["customers"], "events": tables["events"]}, "parquet")
    broken = tables["events"].assign(timestamp="not a time")
    directory = write_tables({"events": broken, "notes": tables["events"]}, "csv")
    dataset = load_dataset(DataConfig(dir=str(directory)))
    assert set(dataset.tables) == {"customers", "events"}


def test_files_are_not_modified(tables, write_tables, tmp_path):
    directory = write_tables(tables, "csv")
    before = {path.name: path.read_bytes() for path in directory.iterdir()}
    load_dataset(DataConfig(dir=str(directory), end=datetime(2024, 3, 1)))
    assert {path.name: path.read_bytes() for path in directory.iterdir()} == before


def test_cdnow_like_file_is_mapped_and_read_with_its_options(tmp_path, write_tables):
    write_tables({"customers": pd.DataFrame({"id": ["00001", "00002"], "joined": ["1997-01-01"] * 2})})
    (tmp_path / "data" / "cdnow.txt").write_text(
        "cust date n_items dollar_value\n00001 19970101 1 11.77\n00002 19970112 1 12.00\n00002 19970102 2 77.00\n"
    )
    raw = yaml.safe_load(
        """
        dir: data
        tables:
          customers: {columns: {customer_id: id, signup_at: joined}}
          transactions:
            path: cdnow.txt
            columns: {customer_id: cust, timestamp: date, amount: dollar_value}
            read: {sep: " ", date_format: "%Y%m%d"}
        """
    )
    dataset = load_dataset(DataConfig.model_validate(raw), base_dir=tmp_path)
    transactions = dataset.tables["transactions"]
    assert list(transactions.columns) == ["customer_id", "timestamp", "amount"]
    assert transactions["customer_id"].tolist() == ["00001", "00002", "00002"]  # leading zeros kept
    assert transactions["timestamp"].tolist() == [
        pd.Timestamp(d) for d in ("1997-01-01", "1997-01-02", "1997-01-12")
    ]
    assert transactions["amount"].tolist() == [11.77, 77.0, 12.0]
    assert dataset.end == pd.Timestamp("1997-01-12")


def test_headerless_padded_file_with_names(tmp_path, write_tables):
    directory = write_tables(
        {"customers": pd.DataFrame({"customer_id": ["00001", "00002"], "signup_at": ["1997-01-01"] * 2})}
    )
    (directory / "cdnow.txt").write_text("  00001 19970101  1   11.77\n  00002 19970112  1   12.00\n")
    source = {
        "path": "cdnow.txt",
        "columns": {"customer_id": "cust", "timestamp": "date", "amount": "dollar_value"},
        "read": {
            "sep": " ",
            "header": False,
            "names": ["cust", "date", "n_items", "dollar_value"],
            "date_format": "%Y%m%d",
        },
    }
    dataset = load_dataset(
        DataConfig.model_validate({"dir": str(directory), "tables": {"transactions": source}})
    )
    assert dataset.tables["transactions"]["amount"].tolist() == [11.77, 12.0]
    assert dataset.tables["transactions"]["customer_id"].tolist() == ["00001", "00002"]


def test_separator_decimal_and_encoding_options(tmp_path, tables, write_tables):
    directory = write_tables({"customers": tables["customers"]})
    (directory / "payments.csv").write_bytes(
        "customer_id;timestamp;amount;status\nc1;2024-01-01;20,50;payé\nc2;2024-01-02;1,5;paid\n".encode(
            "latin-1"
        )
    )
    source = {"path": "payments.csv", "read": {"sep": ";", "decimal": ",", "encoding": "latin-1"}}
    dataset = load_dataset(
        DataConfig.model_validate({"dir": str(directory), "tables": {"transactions": source}})
    )
    assert dataset.tables["transactions"]["amount"].tolist() == [20.5, 1.5]
    assert dataset.tables["transactions"]["status"].tolist() == ["payé", "paid"]
    source["read"].pop("encoding")  # read as UTF-8, the default: an error that says which key to set
    with pytest.raises(DataValidationError) as info:
        load_dataset(DataConfig.model_validate({"dir": str(directory), "tables": {"transactions": source}}))
    assert "set data.tables.transactions.read.encoding" in str(info.value)


def test_unreadable_file_names_the_table_and_path(tables, write_tables):
    directory = write_tables({"customers": tables["customers"]}, "parquet")
    (directory / "events.parquet").write_bytes(b"this is not parquet")
    with pytest.raises(DataValidationError) as info:
        load_dataset(DataConfig(dir=str(directory)))
    assert_reported(info.value, "events", None, str(directory / "events.parquet"))


def test_configured_path_that_does_not_exist_is_an_error(tables, write_tables):
    directory = write_tables({"customers": tables["customers"], "events": tables["events"]})
    config = DataConfig.model_validate(
        {"dir": str(directory), "tables": {"tickets": {"path": "support.csv"}}}
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config)
    assert_reported(info.value, "tickets", None, "support.csv")


def test_file_validation_errors_use_the_mapping_and_file_rows(tmp_path, tables, write_tables):
    events = tables["events"].rename(columns={"timestamp": "when"})
    events.loc[2, "when"] = "2024-13-45"
    directory = write_tables({"customers": tables["customers"], "events": events})
    config = DataConfig.model_validate(
        {"dir": str(directory), "tables": {"events": {"columns": {"timestamp": "when"}}}}
    )
    with pytest.raises(DataValidationError) as info:
        load_dataset(config)
    assert_reported(info.value, "events", "timestamp", "2024-13-45")
    assert "\n2 " in info.value.examples  # the row number in the file


# ------------------------------------------------------------------------------------ stray late rows


@pytest.fixture(scope="module")
def simulated_tables() -> dict[str, pd.DataFrame]:
    from churnml.data.simulate import simulate

    return simulate(300, 6, 7).tables


def _with_stray(
    tables: dict[str, pd.DataFrame], table: str, days: int, rows: int = 1
) -> dict[str, pd.DataFrame]:
    frame = tables[table]
    column = {"events": "timestamp", "transactions": "timestamp", "tickets": "opened_at"}[table]
    stray = frame.tail(rows).copy()
    stray[column] = frame[column].max() + pd.Timedelta(days=days)
    if table == "tickets":
        stray["closed_at"] = pd.NaT
    return {**tables, table: pd.concat([frame, stray], ignore_index=True)}


@pytest.mark.parametrize("table", ["events", "transactions", "tickets"])
def test_a_stray_row_far_past_the_data_is_refused_not_a_new_end(simulated_tables, table):
    """One row months after everything else once moved the end: 32 cutoffs, ten at 0% churn."""
    baseline = dataset_from_frames(simulated_tables)
    tables = _with_stray(simulated_tables, table, days=200)
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames(tables)
    assert_reported(info.value, table, None, "data.stray_rows")
    assert info.value.count == 1 and str(baseline.end.date()) in str(info.value)
    assert str(len(tables[table]) - 1) in info.value.examples  # the stray row, by its row number
    dropped = dataset_from_frames(tables, stray_rows="drop")
    assert dropped.end == baseline.end
    assert len(dropped.tables[table]) == len(baseline.tables[table])
    assert any(w.table == table and w.count == 1 for w in dropped.warnings)


def test_stray_rows_are_judged_only_when_no_end_is_configured(simulated_tables):
    tables = _with_stray(simulated_tables, "events", days=200, rows=3)
    end = dataset_from_frames(simulated_tables).end
    dataset = dataset_from_frames(tables, end=end.to_pydatetime())
    assert dataset.end == end and any(w.table == "events" and w.count == 3 for w in dataset.warnings)


@pytest.mark.parametrize("days", [5, 29])
def test_a_quiet_spell_shorter_than_the_gap_is_data(simulated_tables, days):
    tables = _with_stray(simulated_tables, "events", days=days)
    assert dataset_from_frames(tables).end == tables["events"]["timestamp"].max()


def test_many_late_rows_are_data_not_strays(simulated_tables):
    """A business that went quiet for months and came back has more than a handful of rows after."""
    events = simulated_tables["events"]
    tables = _with_stray(simulated_tables, "events", days=100, rows=int(len(events) * 0.01))
    assert dataset_from_frames(tables).end == tables["events"]["timestamp"].max()


# ------------------------------------------------------------------------------- misspelled columns


@pytest.mark.parametrize(
    ("table", "column", "typo"),
    [
        ("transactions", "status", "statsu"),
        ("transactions", "status", "Status"),
        ("tickets", "satisfaction", "satisfation"),
        ("events", "value", "vaule"),
        ("customers", "country", "contry"),
    ],
)
@pytest.mark.parametrize("source", ["frames", "csv"])
def test_a_misspelled_optional_column_is_a_warning(tables, write_tables, table, column, typo, source):
    """A misspelled optional column once dropped its features with no word."""
    tables[table] = (
        tables[table].rename(columns={column: typo})
        if column in tables[table]
        else tables[table].assign(**{typo: "x"})
    )
    if source == "frames":
        dataset = dataset_from_frames(tables)
    else:
        dataset = load_dataset(DataConfig(dir=str(write_tables(tables, "csv"))))
    (warning,) = [w for w in dataset.warnings if w.column == typo]
    assert (
        warning.table == table and f"'{column}'" in warning.problem and f"{column}: {typo}" in warning.problem
    )
    assert column not in dataset.tables[table]


def test_unrelated_extra_columns_are_no_warning(tables):
    tables["transactions"] = tables["transactions"].assign(currency="EUR", status_code=1)
    tables["customers"] = tables["customers"].assign(industry="retail")
    assert dataset_from_frames(tables).warnings == ()


def test_canonical_id_is_the_contracts_form_of_one_id() -> None:
    """The service keys a request's customers by this form; it must equal the contract's (Arrow's regex
    reads ASCII digits only)."""
    from churnml.data.load import canonical_id

    assert canonical_id(" 17.00 ") == "17" and canonical_id("017") == "017" and canonical_id("-3.0") == "-3"
    assert canonical_id("１７.0") == "１７.0"  # fullwidth digits are text, as the contract reads them
    assert canonical_id("17.5") == "17.5" and canonical_id("C-17.0") == "C-17.0"


@pytest.mark.parametrize("grouped", [True, False], ids=["grouped by customer", "shuffled"])
@pytest.mark.parametrize("odd", [None, " C00017", "", "   ", "17.0", "C00017 "])
def test_long_id_columns_are_checked_through_their_representatives(grouped, odd):
    """A long column is checked on the first row of each run (or its distinct values): one odd value
    anywhere, in any chunk, is still trimmed, blanked or rewritten as when every row is checked."""
    import pyarrow as pa

    from churnml.data.load import INTEGRAL_DECIMAL, REPRESENTED_ROWS, _as_text, _canonical_ids, text_array

    rng = np.random.default_rng(3)
    rows = 2 * REPRESENTED_ROWS
    ids = np.array([f"C{i:05d}" for i in rng.integers(0, 3000, rows)], dtype=object)
    ids = np.sort(ids) if grouped else ids
    if odd is not None:
        ids[rng.integers(0, rows)] = odd
    ids[rng.integers(0, rows)] = None
    chunks = [pa.array(part, pa.large_string()) for part in np.array_split(ids, 7)]  # as Parquet reads
    column = pd.Series(text_array(pa.chunked_array(chunks)))

    got = _canonical_ids(_as_text(column))
    expected = pd.Series(ids, dtype="str").str.strip().replace("", None)
    expected = expected.str.replace(INTEGRAL_DECIMAL, r"\1", regex=True)
    assert got.isna().equals(expected.isna())
    assert got.dropna().tolist() == expected.dropna().tolist()
    if odd is None:
        assert got is column  # nothing to rewrite: the column itself, not a copy


# ------------------------------------------------------------------------------------ contacts


def _contacts(**changes) -> pd.DataFrame:
    frame = pd.DataFrame(
        {
            "customer_id": ["c1", "c2", "c3"],
            "contacted_at": ["2024-03-01 10:00:00", "2024-03-01 10:05:00", "2024-03-01 10:10:00"],
            "play": ["Billing outreach", "Loyalty offer", "Loyalty offer"],
            "arm": ["Treatment", "control", "holdout"],
            "cost": [5.0, 0.0, None],
        }
    )
    return frame.assign(**changes)


def test_contacts_are_read_with_arms_in_the_contract_words(tables):
    dataset = dataset_from_frames({**tables, "contacts": _contacts()})
    contacts = dataset.tables["contacts"]
    assert contacts["arm"].tolist() == ["treatment", "holdout", "holdout"]
    assert contacts["contacted_at"].dtype == "datetime64[ns]"
    assert contacts["cost"].isna().tolist() == [False, False, True]


def test_an_unknown_arm_is_an_error_naming_the_row(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "contacts": _contacts(arm=["treatment", "maybe", "holdout"])})
    assert_reported(info.value, "contacts", "arm", "maybe")
    assert "treatment or holdout" in str(info.value)


def test_an_empty_play_and_a_negative_cost_are_errors(tables):
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "contacts": _contacts(play=["Offer", None, "Offer"])})
    assert_reported(info.value, "contacts", "play", "c2")
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "contacts": _contacts(cost=[5.0, -1.0, 0.0])})
    assert_reported(info.value, "contacts", "cost", "-1")


def test_one_customer_contacted_and_held_out_at_the_same_moment_is_an_error(tables):
    """Which arm happened has no answer when the rows tie; the same arm twice (a duplicate) is fine."""
    tied = _contacts(
        customer_id=["c1", "c1", "c3"],
        contacted_at=["2024-03-01 10:00:00", "2024-03-01 10:00:00", "2024-03-01 10:10:00"],
    )
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({**tables, "contacts": tied})
    assert_reported(info.value, "contacts", "arm", "c1")
    assert "both contacted and held out" in str(info.value) and info.value.count == 2
    same_arm = tied.assign(arm=["treatment", "treatment", "holdout"])
    assert len(dataset_from_frames({**tables, "contacts": same_arm}).tables["contacts"]) == 3
    later = tied.assign(contacted_at=["2024-03-01 10:00:00", "2024-03-02 10:00:00", "2024-03-01 10:10:00"])
    assert len(dataset_from_frames({**tables, "contacts": later}).tables["contacts"]) == 3


def test_contacts_are_not_customer_activity(tables):
    """A contact is what the business did: data with only contacts has no activity to learn from."""
    with pytest.raises(DataValidationError) as info:
        dataset_from_frames({"customers": tables["customers"], "contacts": _contacts()})
    assert "no activity table" in str(info.value)


def test_contacts_of_unknown_customers_are_dropped_and_rows_are_sorted(tables):
    frame = _contacts(customer_id=["c3", "zz", "c1"])
    dataset = dataset_from_frames({**tables, "contacts": frame})
    contacts = dataset.tables["contacts"]
    assert contacts["customer_id"].tolist() == ["c1", "c3"]
    assert any(w.table == "contacts" for w in dataset.warnings)


def test_contacts_do_not_move_the_end_of_the_data(tables):
    """A contact scheduled after the last activity must not make unobserved weeks look observed."""
    without = dataset_from_frames(tables)
    late = _contacts(contacted_at=["2024-03-01 10:00:00", "2024-03-01 10:00:00", "2024-06-30 09:00:00"])
    dataset = dataset_from_frames({**tables, "contacts": late})
    assert dataset.end == without.end
    assert dataset.tables["contacts"]["contacted_at"].max() <= dataset.end
    assert any(w.table == "contacts" and "after end" in w.problem for w in dataset.warnings)
