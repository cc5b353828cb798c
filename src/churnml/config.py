"""Configuration as data: YAML files validated by pydantic, overridable as ``key.path=value``.

Every key is documented by its ``Field(description=...)``; ``churnml config --show`` prints them.
Nothing here touches the filesystem or global state at import time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from churnml.contract import TABLES
from churnml.errors import ConfigError


class _Model(BaseModel):
    # Unknown keys are typos, not silently ignored settings.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ReadOptions(_Model):
    sep: str = Field(",", description="CSV field separator (ignored for Parquet).")
    date_format: str | None = Field(
        None, description="strftime format of the table's timestamps, e.g. '%Y%m%d'; None = ISO 8601."
    )
    encoding: str = Field("utf-8", description="CSV text encoding.")
    header: bool = Field(True, description="Whether the CSV's first line holds column names.")
    names: list[str] | None = Field(
        None, description="Column names for a CSV without a header row (in file order)."
    )
    decimal: str = Field(".", description="CSV decimal separator.")


class TableSource(_Model):
    path: str | None = Field(
        None,
        description="File of this table (CSV or Parquet by extension), relative to data.dir. "
        "Default: <table>.parquet or <table>.csv in data.dir.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Contract column -> the user's column name, e.g. {customer_id: cust}. "
        "Columns not mentioned are expected under their contract name.",
    )
    read: ReadOptions = Field(default_factory=ReadOptions, description="How to read the file.")


class DataConfig(_Model):
    dir: str | None = Field(
        None, description="Directory holding the tables. None = generate the bundled simulator data."
    )
    tables: dict[str, TableSource] = Field(
        default_factory=dict,
        description="Per-table source settings; tables not listed are looked up in data.dir by name.",
    )
    end: dt.datetime | None = Field(
        None,
        description="When the data was extracted. Rows after it are dropped with a warning. "
        "None = the latest timestamp in the activity tables.",
    )
    unknown_customers: Literal["drop", "error"] = Field(
        "drop",
        description="Activity rows whose customer is not in customers: drop (with a counted warning) or error.",
    )

    @field_validator("tables")
    @classmethod
    def _known_tables(cls, value: dict[str, TableSource]) -> dict[str, TableSource]:
        unknown = sorted(set(value) - set(TABLES))
        if unknown:
            raise ValueError(f"unknown table(s) {unknown}; the contract's tables are {sorted(TABLES)}")
        return value


class SimulateConfig(_Model):
    customers: int = Field(5000, gt=0, description="Number of customers to simulate.")
    months: int = Field(12, gt=0, le=120, description="Months of history to simulate.")
    seed: int = Field(42, description="Random seed; the same seed gives byte-identical files.")
    start: dt.date = Field(dt.date(2025, 1, 1), description="First day of the simulated history.")


class CutoffSchedule(_Model):
    start: dt.date | None = Field(
        None,
        description="First cutoff. None = the first month start at least `min_history_days` into the data.",
    )
    end: dt.date | None = Field(None, description="Last cutoff. None = the end of the data.")
    freq: str = Field(
        "MS", description="pandas offset alias between cutoffs: 'MS' monthly, 'W-MON' weekly..."
    )
    dates: list[dt.date] | None = Field(None, description="Explicit cutoff dates; overrides start/end/freq.")
    min_history_days: int = Field(
        90, ge=0, description="With start=None: days of history required before the first cutoff."
    )


class LabelConfig(_Model):
    definition: Literal["subscription", "inactivity"] = Field(
        "subscription",
        description="subscription: an active subscription at the cutoff ends within the horizon and is not "
        "renewed within the grace period. inactivity: active before the cutoff, no activity within the horizon.",
    )
    horizon_days: int = Field(30, gt=0, description="How far after the cutoff churn is looked for.")
    grace_days: int = Field(
        7,
        ge=0,
        description="subscription: a new subscription starting within this many days of the end is a renewal.",
    )
    active_days: int = Field(
        30,
        gt=0,
        description="inactivity: a customer counts as active with any activity this many days before the cutoff.",
    )
    cutoffs: CutoffSchedule = Field(default_factory=CutoffSchedule, description="When to take snapshots.")


class FeatureConfig(_Model):
    windows: list[int] = Field([7, 30, 90], description="Lookback windows (days) for counts, sums and rates.")
    trend_window: int = Field(
        30, gt=0, description="Window (days) of the slipping-away trend: last window vs the one before."
    )
    include_families: list[str] | None = Field(
        None,
        description="Only these feature families (recency, frequency, monetary, engagement, support, billing, tenure); None = all.",
    )
    exclude: list[str] = Field(default_factory=list, description="Feature names to leave out.")
    partitions: int = Field(
        1, ge=1, description="Build features in this many customer partitions (bounds memory; same result)."
    )

    @field_validator("windows")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 for w in value):
            raise ValueError("windows must be a non-empty list of positive day counts")
        return sorted(set(value))


class OutputConfig(_Model):
    dir: str = Field("outputs", description="Where results are written (created if missing).")


class Config(_Model):
    """Top-level churnml configuration."""

    name: str = Field("churnml", description="A name for this configuration (used in outputs).")
    seed: int = Field(42, description="Seed for every random step downstream of the data.")
    data: DataConfig = Field(default_factory=DataConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)


def _parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"override '{item}' must look like key.path=value")
    key, raw = item.split("=", 1)
    path = [part for part in key.strip().split(".") if part]
    if not path:
        raise ConfigError(f"override '{item}' has an empty key")
    # YAML parsing gives ints, floats, bools, nulls, lists ([7,30]) and dicts the natural way.
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return path, value


def apply_overrides(raw: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``raw`` with each ``key.path=value`` set (intermediate dicts created)."""
    result = yaml.safe_load(yaml.safe_dump(raw)) or {}
    for item in overrides:
        path, value = _parse_override(item)
        node = result
        for part in path[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"override '{item}': '{part}' is a value, not a section")
            node = child
        node[path[-1]] = value
    return result


def _format_validation_error(error: ValidationError, source: str) -> str:
    lines = [f"invalid configuration in {source}:"]
    for issue in error.errors():
        key = ".".join(str(part) for part in issue["loc"]) or "(root)"
        got = issue.get("input")
        shown = "" if isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"  {key}: {issue['msg']}{shown}")
    return "\n".join(lines)


def load_config(path: str | Path | None = None, overrides: Sequence[str] = ()) -> Config:
    """Read a YAML config (or the embedded defaults when ``path`` is None) and apply overrides.

    Relative paths inside the config (``data.dir``, ``output.dir``) are taken relative to the
    current directory, as paths typed on the command line are.
    """
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            raw = yaml.safe_load(Path(path).read_text()) or {}
        except FileNotFoundError as exc:
            raise ConfigError(f"config file not found: {path}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"config file {path} must hold a mapping of keys, got {type(raw).__name__}")
    raw = apply_overrides(raw, overrides)
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_format_validation_error(exc, source)) from None


def describe(model: type[BaseModel] = Config, prefix: str = "") -> list[tuple[str, str, str]]:
    """(key, type/default, description) for every key, for documentation and ``churnml config``."""
    rows: list[tuple[str, str, str]] = []
    for name, info in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.extend(describe(annotation, prefix=f"{key}."))
            continue
        default = info.get_default(call_default_factory=True)
        rows.append((key, repr(default), info.description or ""))
    return rows
