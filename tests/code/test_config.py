"""Configuration: YAML + pydantic + key.path=value overrides; errors name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from churnml.config import Config, apply_overrides, describe, load_config
from churnml.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_default_yaml_equals_embedded_defaults() -> None:
    assert load_config(ROOT / "configs" / "default.yaml") == load_config(None)


PLAYBOOK = ROOT / "configs" / "playbook.yaml"  # not a run config: tests/code/test_risk.py checks it
RUN_CONFIGS = sorted(p for p in (ROOT / "configs").glob("*.yaml") if p != PLAYBOOK)


@pytest.mark.parametrize("path", RUN_CONFIGS, ids=lambda p: p.name)
def test_every_shipped_config_is_valid(path: Path) -> None:
    assert isinstance(load_config(path), Config)


def test_overrides_parse_types_and_nest() -> None:
    config = load_config(None, ["labels.horizon_days=60", "features.windows=[30,7]", "data.end=2025-06-01"])
    assert config.labels.horizon_days == 60
    assert config.features.windows == [7, 30]
    assert str(config.data.end.date()) == "2025-06-01"


def test_overrides_create_sections_without_touching_input() -> None:
    raw = {"labels": {"horizon_days": 30}}
    result = apply_overrides(raw, ["data.tables.events.path=ev.csv"])
    assert result["data"]["tables"]["events"]["path"] == "ev.csv"
    assert raw == {"labels": {"horizon_days": 30}}


@pytest.mark.parametrize(
    ("override", "named"),
    [
        ("labels.horizon_days=abc", "labels.horizon_days"),
        ("labels.horizon_dayz=3", "labels.horizon_dayz"),
        ("labels.definition=churny", "labels.definition"),
        ("features.windows=[0]", "features.windows"),
        ("data.tables.payments.path=x.csv", "data.tables"),
        # A boolean is not a number (pydantic's lax mode would read true as 1 day).
        ("labels.horizon_days=true", "labels.horizon_days"),
        ("labels.grace_days=false", "labels.grace_days"),
        ("features.windows=[7,true]", "features.windows"),
        ("tune.timeout_s=true", "tune.timeout_s"),
        ("campaign.success_rate=true", "campaign.success_rate"),
        ("seed=true", "seed"),
        # Every duration is bounded: 100000 days overflows timestamps.
        ("labels.horizon_days=100000", "labels.horizon_days"),
        ("labels.grace_days=100000", "labels.grace_days"),
        ("labels.active_days=100000", "labels.active_days"),
        ("labels.cutoffs.min_history_days=100000", "labels.cutoffs.min_history_days"),
        ("features.windows=[7,100000]", "features.windows"),
        ("features.trend_window=100000", "features.trend_window"),
        ("risk.segments.inactive_days=100000", "risk.segments.inactive_days"),
    ],
)
def test_invalid_values_name_the_key(override: str, named: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(None, [override])
    assert named in str(info.value)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("campaign.customer_value=500", "customer_value.constant"),
        ("campaign.value_feature=mrr", "customer_value.feature"),
        ("campaign.value_multiplier=12", "customer_value.months"),
        ("risk.value=constant", "customer_value.feature"),
        ("risk.value_feature=mrr", "customer_value.feature"),
        ("risk.value_months=12", "customer_value.months"),
        ("risk.constant_value=500", "customer_value.constant"),
    ],
)
def test_old_customer_value_keys_name_the_new_key(old: str, new: str) -> None:
    """The campaign's and the risk list's value settings became one section: an old config is told where
    its setting went, not silently run with the default."""
    with pytest.raises(ConfigError) as info:
        load_config(None, [old])
    section, key = old.split("=")[0].split(".")
    assert f"{section}: " in str(info.value) and f"'{key}' is gone: set {new}" in str(info.value)


def test_customer_value_section() -> None:
    default = load_config(None).customer_value
    assert (default.feature, default.months, default.constant) == ("mrr", 12.0, 500.0)
    assert load_config(None, ["customer_value.feature=null"]).customer_value.feature is None
    with pytest.raises(ConfigError, match=r"customer_value\.months"):
        load_config(None, ["customer_value.months=0"])


def test_booleans_stay_booleans_and_bounds_admit_real_durations() -> None:
    config = load_config(None, ["labels.horizon_days=3660", "features.windows=[7,3660]", "tune.n_trials=5"])
    assert config.labels.horizon_days == 3660 and config.features.windows == [7, 3660]
    assert load_config(None, ["tune.progress_bar=true"]).tune.progress_bar is True


def test_malformed_override_and_missing_file() -> None:
    with pytest.raises(ConfigError, match=r"key\.path=value"):
        load_config(None, ["labels"])
    with pytest.raises(ConfigError, match="not found"):
        load_config("does/not/exist.yaml")


def test_invalid_yaml_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)


def test_every_key_is_documented() -> None:
    undocumented = [key for key, _, meaning in describe() if not meaning]
    assert undocumented == []
