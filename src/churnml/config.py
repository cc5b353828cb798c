"""Configuration as data: YAML files validated by pydantic, overridable as ``key.path=value``.

Every key is documented by its ``Field(description=...)``; ``churnml config --show`` prints them.
Nothing here touches the filesystem or global state at import time.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any, ClassVar, Literal, get_args

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from churnml.contract import TABLES
from churnml.errors import ConfigError

# Every duration in days is bounded: a horizon of 100000 days is a typo, and it overflows timestamps.
MAX_DAYS = 3660


def _wants_number(annotation: Any) -> bool:
    """Whether a field's type holds numbers (int or float, perhaps in a list or Optional), not booleans."""
    if annotation in (int, float):
        return True
    return any(_wants_number(arg) for arg in get_args(annotation)) and bool not in get_args(annotation)


def _has_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return True
    return isinstance(value, list | tuple) and any(isinstance(v, bool) for v in value)


class _Model(BaseModel):
    # Unknown keys are typos, not silently ignored settings.
    model_config = ConfigDict(extra="forbid", frozen=True)
    # Keys a section used to have -> the key that replaced them: an old config gets told where its
    # setting went, rather than "extra inputs are not permitted".
    moved_keys: ClassVar[dict[str, str]] = {}

    @model_validator(mode="before")
    @classmethod
    def _no_moved_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            moved = [f"{key!r} is gone: set {cls.moved_keys[key]}" for key in data if key in cls.moved_keys]
            if moved:
                raise ValueError("; ".join(moved))
        return data

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_as_number(cls, value: Any, info: ValidationInfo) -> Any:
        """pydantic takes ``true`` for 1 in an int field (lax mode): ``horizon_days: true`` would mean one
        day. A number field takes numbers only; the rest of lax parsing (dates from text) stays."""
        field = cls.model_fields.get(info.field_name or "")
        if field is not None and _has_bool(value) and _wants_number(field.annotation):
            raise ValueError(f"expected a number, got the boolean {value!r}")
        return value


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
    """Where one table comes from: a file or Parquet dataset (``path``), or a database (``sql``/``table``)."""

    path: str | None = Field(
        None,
        description="File of this table (CSV or Parquet by extension), or a directory of Parquet files "
        "(hive-partitioned or not), relative to data.dir. Default: <table>.parquet, <table>.csv... or the "
        "directory <table>/ in data.dir.",
    )
    table: str | None = Field(
        None,
        description="Database table (or view) holding this table, e.g. analytics.events, read from the "
        "database at url (docs/sources.md).",
    )
    sql: str | None = Field(
        None,
        description="SQL query whose result is this table, run on the database at url (docs/sources.md).",
    )
    url: str | None = Field(
        None,
        description="Database of this table's sql/table: postgresql://user@host:5432/db or sqlite:///file.db; "
        "${VAR} is taken from the environment (keep passwords out of config files). None = data.url.",
    )
    columns: dict[str, str] = Field(
        default_factory=dict,
        description="Contract column -> the user's column name, e.g. {customer_id: cust}. "
        "Columns not mentioned are expected under their contract name.",
    )
    read: ReadOptions = Field(default_factory=ReadOptions, description="How to read the file.")

    @model_validator(mode="after")
    def _one_source(self) -> TableSource:
        given = [key for key in ("path", "table", "sql") if getattr(self, key) is not None]
        if len(given) > 1:
            raise ValueError(f"give one of path, table or sql, not {' and '.join(given)}")
        if self.url is not None and not (self.table or self.sql):
            raise ValueError("url is the database of a table or sql source: set table or sql too")
        for key in ("table", "sql", "url"):
            if getattr(self, key) is not None and not getattr(self, key).strip():
                raise ValueError(f"{key} is empty")
        return self

    @property
    def in_database(self) -> bool:
        """Whether this table is read from a database (``table`` or ``sql``) rather than a file."""
        return self.table is not None or self.sql is not None


class DataConfig(_Model):
    dir: str | None = Field(
        None,
        description="Directory holding the tables. None, with no data.tables either = generate the "
        "bundled simulator data.",
    )
    tables: dict[str, TableSource] = Field(
        default_factory=dict,
        description="Per-table source settings; tables not listed are looked up in data.dir by name.",
    )
    url: str | None = Field(
        None,
        description="Database of every table given as data.tables.<t>.table or .sql without its own url: "
        "postgresql://user@host:5432/db or sqlite:///file.db; ${VAR} is taken from the environment. "
        "None = $CHURNML_DATABASE_URL.",
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

    stray_rows: Literal["error", "drop"] = Field(
        "error",
        description="With data.end unset: a handful of rows far past where all other activity stops "
        "(a typo'd year, a test row) would move the end of the data and every cutoff. error (refuse, "
        "naming the rows) or drop (end the data where activity stops, with a counted warning).",
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
    signal: float = Field(
        1.0,
        ge=0,
        description="Strength of the churn signal: scales every risk factor's log-odds contribution "
        "(1 = as documented, 0 = churn at random); the intercept is re-centred to keep the churn rate.",
    )
    programme: bool = Field(
        False,
        description="Run the simulated retention programme: monthly contacts with randomised holdouts "
        "(a contacts table) whose true, heterogeneous effects are in truth_contacts (docs/simulator.md).",
    )
    exploration: float = Field(
        0.0,
        ge=0,
        le=1,
        description="With the programme: share of the customers the risk rule did not pick that are also "
        "contacted each month at random, half held out (how a team learns who responds; docs/uplift.md).",
    )


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
        90,
        ge=0,
        le=MAX_DAYS,
        description="With start=None: days of history required before the first cutoff.",
    )


class LabelConfig(_Model):
    definition: Literal["subscription", "inactivity"] = Field(
        "subscription",
        description="subscription: an active subscription at the cutoff ends within the horizon and is not "
        "renewed within the grace period. inactivity: active before the cutoff, no activity within the horizon.",
    )
    horizon_days: int = Field(
        30, gt=0, le=MAX_DAYS, description="How far after the cutoff churn is looked for."
    )
    grace_days: int = Field(
        7,
        ge=0,
        le=MAX_DAYS,
        description="subscription: a new subscription starting within this many days of the end is a renewal.",
    )
    active_days: int = Field(
        30,
        gt=0,
        le=MAX_DAYS,
        description="inactivity: a customer counts as active with any activity this many days before the cutoff.",
    )
    cutoffs: CutoffSchedule = Field(default_factory=CutoffSchedule, description="When to take snapshots.")


class FeatureConfig(_Model):
    windows: list[int] = Field([7, 30, 90], description="Lookback windows (days) for counts, sums and rates.")
    trend_window: int = Field(
        30,
        gt=0,
        le=MAX_DAYS,
        description="Window (days) of the slipping-away trend: last window vs the one before.",
    )
    include_families: list[str] | None = Field(
        None,
        description="Only these feature families (recency, frequency, monetary, engagement, support, billing, tenure, profile, contacts); None = all.",
    )
    exclude: list[str] = Field(default_factory=list, description="Feature names to leave out.")
    partitions: int = Field(
        1, ge=1, description="Build features in this many customer partitions (bounds memory; same result)."
    )

    @field_validator("windows")
    @classmethod
    def _positive_windows(cls, value: list[int]) -> list[int]:
        if not value or any(w <= 0 or w > MAX_DAYS for w in value):
            raise ValueError(f"windows must be a non-empty list of day counts from 1 to {MAX_DAYS}")
        return sorted(set(value))


class OutputConfig(_Model):
    dir: str = Field("outputs", description="Where results are written (created if missing).")


class SplitConfig(_Model):
    test_cutoff: dt.date | None = Field(
        None, description="Cutoff to test on. None = the latest cutoff whose labels are all observed."
    )
    folds: int = Field(
        3,
        ge=1,
        description="Rolling-origin cross-validation folds: each of the last `folds` labeled cutoffs before "
        "the test cutoff is validated on by a model trained on the cutoffs whose labels it could have seen. "
        "Tuning, early stopping, the choice of model and calibration use the pooled out-of-fold predictions.",
    )
    train_cutoffs: int | None = Field(
        None, ge=1, description="Train on only this many most recent eligible cutoffs; None = all."
    )
    cv_customers: int | None = Field(
        None,
        ge=20,
        description="Cross-validate on a seeded sample of about this many customers (every row of each): "
        "the search, the candidates' comparison, the calibrator's out-of-fold margins, the logistic "
        "regression and the evaluation's baselines use their rows, while the boosters are fitted on every "
        "row and tested on every customer of the test cutoff. On a Dask engine reading Parquet data the "
        "workers then write the training set into output.dir and the client never holds it (out of "
        "core). None = every customer.",
    )


class TuneConfig(_Model):
    n_trials: int | None = Field(
        30, ge=1, description="Optuna trial budget (total for the study); None = no limit."
    )
    timeout_s: float | None = Field(
        None, gt=0, description="Optuna time budget in seconds for this run; None = no limit."
    )
    metric: Literal["logloss", "auc", "aucpr"] = Field(
        "logloss", description="Validation metric that early stopping, pruning and the tuning objective use."
    )
    storage: str | None = Field(
        None,
        description="Optuna storage URL (e.g. postgresql://... for a shared study). "
        "None = sqlite:///<output.dir>/<name>/optuna.db (resumable).",
    )
    study_name: str | None = Field(
        None,
        description="Study name. None = derived from config name, data fingerprint, split and search settings.",
    )
    n_jobs: int = Field(
        1,
        ge=1,
        description="Parallel trials in this process (>1 loses exact reproducibility; never with SQLite).",
    )
    startup_trials: int = Field(8, ge=1, description="Random trials before TPE starts modelling the space.")
    pruner: Literal["optimistic", "median", "none"] = Field(
        "optimistic",
        description="optimistic: stop a trial only when it cannot catch up with the best finished one "
        "(see tune.OptimisticPruner); median: Optuna's median rule; none: never prune.",
    )
    pruner_warmup: float = Field(
        3.0,
        gt=0,
        description="Learning progress (rounds x learning rate) a trial makes before the pruner may "
        "stop it. Progress, not rounds: a slow learner is compared with a fast one at equal progress.",
    )
    prune_interval: float = Field(
        0.25, gt=0, description="Learning progress between reports to the pruner (each is a storage write)."
    )
    progress_bar: bool = Field(
        True,
        description="Show the trials' progress bar: Optuna's (off when timeout_s is set or n_jobs > 1), "
        "or with engine.kind=dask the count of the study's finished trials while the workers run them.",
    )
    search_negatives: float | None = Field(
        2.0,
        gt=0,
        description="During the search only, each fold trains on every churner and a seeded sample of the "
        "other rows, weighted up by the inverse rate: at least this many per churner and at least 10,000 "
        "rows in all (smaller folds are kept whole). The best trial is then cross-validated again on "
        "every row, and that is what is compared and shipped. None = search on every row.",
    )


class ModelConfig(_Model):
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="XGBoost device; cuda trains on a GPU where one exists."
    )
    nthread: int = Field(2, ge=1, description="XGBoost threads; fixed so the same seed gives the same model.")
    max_rounds: int = Field(
        2000, ge=1, description="Most boosting rounds; early stopping picks the number used."
    )
    early_stopping_rounds: int = Field(
        50, ge=1, description="Stop when the validation metric has not improved for this many rounds."
    )
    refit_on: Literal["all", "development"] = Field(
        "all",
        description="Rows the shipped model is refitted on once the test is done: all = every labeled cutoff "
        "(the test cutoff included, boosting rounds scaled with the rows); development = the cutoffs "
        "before the test (the model the test figures describe). Champion/challenger always uses the "
        "test figures of the development model.",
    )
    candidates: list[Literal["xgboost_tuned", "xgboost_robust", "logreg"]] = Field(
        ["xgboost_tuned", "xgboost_robust", "logreg"],
        min_length=1,
        description="Models compared by cross-validation; the best one ships. xgboost_tuned: Optuna-tuned "
        "XGBoost; xgboost_robust: shallow, strongly regularised XGBoost with fixed settings for small "
        "data; logreg: regularised logistic regression on log-scaled, standardised features.",
    )
    select_by: Literal["roc_auc", "log_loss", "pr_auc"] = Field(
        "roc_auc",
        description="Pooled out-of-fold metric that chooses among the candidates (calibration is fitted "
        "afterwards, so a ranking metric is the default).",
    )
    select_rule: Literal["one_se", "best"] = Field(
        "one_se",
        description="one_se: the simplest candidate (logreg, then xgboost_robust, then xgboost_tuned) whose "
        "figure is within one standard error (customer bootstrap of the paired difference) of the best; "
        "best: the best figure, however small the lead.",
    )
    params: dict[str, float | int | str] = Field(
        default_factory=dict,
        description="Fixed XGBoost parameters; they override (and are not searched by) the tuner, e.g. {max_depth: 4}.",
    )


class CalibrationConfig(_Model):
    method: Literal["auto", "isotonic", "sigmoid", "none"] = Field(
        "auto",
        description="auto = whichever of isotonic and sigmoid has the lower cross-validated log loss on the "
        "calibration slice.",
    )
    folds: int = Field(5, ge=2, description="Cross-validation folds (by customer) that choose the method.")


class EvaluationConfig(_Model):
    top_fractions: list[float] = Field(
        [0.05, 0.1, 0.2], description="Shares of customers, highest risk first, for lift and churn capture."
    )
    threshold: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Probability at or above which a customer is flagged (precision/recall). "
        "None = the campaign's most profitable targeting depth.",
    )
    ece_bins: int = Field(10, ge=2, description="Bins of the expected calibration error.")
    ece_strategy: Literal["quantile", "uniform"] = Field(
        "quantile", description="ECE bins of equal size (quantile) or equal probability width (uniform)."
    )
    recency_feature: str | None = Field(
        None,
        description="Feature of the recency-rule baseline (days since last activity). "
        "None = the first 'recency' family feature.",
    )


class CampaignConfig(_Model):
    """The retention campaign of the training report's profit curve; each customer's value comes from the
    ``customer_value`` section (the risk list's value too)."""

    moved_keys: ClassVar[dict[str, str]] = {
        "customer_value": "customer_value.constant instead (one customer value for training and the risk list)",
        "value_feature": "customer_value.feature instead (one customer value for training and the risk list)",
        "value_multiplier": "customer_value.months instead (one customer value for training and the risk list)",
    }

    cost_per_contact: float = Field(20.0, ge=0, description="Cost of contacting one customer.")
    success_rate: float = Field(
        0.25, gt=0, le=1, description="Share of contacted would-be churners the campaign retains."
    )
    effect: Literal["assumed", "measured"] = Field(
        "assumed",
        description="assumed = success_rate; measured = the success rate `churnml review` measured on past "
        "lists with holdouts (<output.dir>/<name>/review/measured_effect.json), success_rate until one exists.",
    )


class ReviewConfig(_Model):
    """``churnml review``: how past lists are judged (docs/risk_list.md, "Did it work?")."""

    arms: Literal["auto", "contacts", "list"] = Field(
        "auto",
        description="Who counts as contacted or held out. contacts: the arm of each customer's first row of "
        "the contacts table from the list's day to the end of its horizon or the next list's day (write each row when the customer is assigned, holdouts "
        "too); list: the list's own action, contact or holdout (intention to treat: a planned contact counts "
        "as contacted whether or not it happened); auto: contacts when the data has a contacts table, else list.",
    )
    min_arm: int = Field(
        10,
        ge=1,
        description="Fewest contacted and held-out customers for a play's effect to be judged and to count "
        "in the measured success rate.",
    )


class UpliftTuneConfig(_Model):
    """Optuna tuning of each play's uplift boosters (``churnml.uplift.tune``), out of time."""

    n_trials: int = Field(
        10,
        ge=0,
        description="Optuna trials per play (TPE over the churn model's search space, tune.search_space); "
        "0 = the fixed robust settings. The tuned settings are kept only when they beat those on the "
        "validation lists.",
    )
    timeout_s: float | None = Field(None, gt=0, description="Seconds per play's study; None = no limit.")
    startup_trials: int = Field(5, ge=1, description="Random trials before TPE starts modelling the space.")
    validation_lists: int = Field(
        1,
        ge=1,
        description="The latest list dates before the test lists that judge each trial (fitted on the "
        "earlier ones): tuned out of time, as the churn model is.",
    )


class UpliftConfig(_Model):
    """``churnml uplift``: who a play saves, learned from the contacts table's randomised arms (docs/uplift.md)."""

    learner: Literal["offset", "x", "t"] = Field(
        "offset",
        description="Learner on XGBoost: offset = the churn model without contact, then per play how a contact "
        "moves its log-odds (an average shift plus trees); x = Kunzel et al.'s X-learner (imputed effects); "
        "t = a churn model per arm, uplift their difference (docs/uplift.md).",
    )
    shift_trees: bool = Field(
        True,
        description="Offset learner: trees that learn where a play's shift in log-odds is larger or smaller; "
        "false = one odds ratio per play on each customer's no-contact risk (docs/uplift.md: on the benchmark "
        "about as good at 9 months of contacts).",
    )
    controls: Literal["holdouts", "all"] = Field(
        "all",
        description="Rows of the churn-without-contact model: holdouts = the held-out arms only (randomised); "
        "all = also every customer on no list at a list date (valid when lists are chosen by what the data "
        "shows, as churnml's own and a risk rule are).",
    )
    min_treated: int = Field(
        200, ge=1, description="Fewest contacted customers (labeled) for a play to get its own uplift model."
    )
    min_held_out: int = Field(
        100,
        ge=1,
        description="Fewest held-out customers (labeled) for a play to get its own uplift model; below either "
        "minimum the play falls back to its measured average effect (holdout vs contacted churn; with "
        "controls: all, as the odds ratio it implies on each customer's own risk).",
    )
    test_lists: int = Field(
        2,
        ge=1,
        description="The latest fully labeled list dates kept out of training to evaluate on (out of time).",
    )
    list_days: int = Field(
        1,
        ge=1,
        description="1 = each contact day is a list. N > 1, for lists worked through over several days: "
        "contacts within N days of a list's first contact day are that list, dated that day (lists or plays "
        "less than N days apart merge, a customer on both keeping their first row).",
    )
    max_rounds: int = Field(500, ge=1, le=10_000, description="Most boosting rounds per booster.")
    early_stopping_rounds: int = Field(
        30, ge=1, description="Rounds without improvement on the validation customers before stopping."
    )
    validation_share: float = Field(
        0.2,
        gt=0,
        lt=1,
        description="Share of customers (by a hash of the id) whose rows choose the rounds; all rows refit.",
    )
    budget: float = Field(
        0.1,
        gt=0,
        le=1,
        description="Contact budget as a share of the scored customers, for uplift at budget.",
    )
    use: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Whether `churnml score` and the service add uplift, best play and net value: auto = when "
        "an uplift model is found (uplift.model_uri, else the registered champion), always = it must be "
        "found (an error otherwise), never = the risk list without uplift.",
    )
    model_uri: str | None = Field(
        None,
        description="Uplift model to score with: an MLflow model URI or the model/ directory `churnml uplift` "
        "wrote. None = models:/<uplift.registered_model>@champion.",
    )
    registered_model: str | None = Field(
        None,
        description="Registered model name of the uplift models (each `churnml uplift` run registers a "
        "version and makes it champion). None = <tracking.registered_model>-uplift.",
    )
    plays: Literal["risk_group", "all"] = Field(
        "risk_group",
        description="Which plays apply to a customer in the risk list: risk_group = the play of the customer's "
        "risk group (at-risk customers; a play's model learnt from the customers it was tried on), all = every "
        "play of the uplift model, the best by net value (sound only where plays were randomised across "
        "customers, docs/uplift.md).",
    )
    sleeping_dog_tolerance: float = Field(
        0.01,
        ge=0,
        lt=1,
        description="A customer is a sleeping dog when every play's uplift is below minus this (a contact "
        "is expected to raise churn by more than this probability).",
    )
    tune: UpliftTuneConfig = Field(
        default_factory=UpliftTuneConfig,
        description="Optuna tuning of the boosters per play, judged on the lists before the test lists.",
    )


class CustomerValueConfig(_Model):
    """What a churned customer costs: the campaign's saved value (training) and the risk list's revenue at
    risk use this one rule (``churnml.features.value``)."""

    feature: str | None = Field(
        "mrr",
        description="Feature holding a customer's monthly revenue: value = feature x months. Where the data "
        "(the model) has no such feature, every customer is worth `constant`. None = `constant` for everyone.",
    )
    months: float = Field(
        12.0, gt=0, description="Months of revenue lost with a churned customer (value = feature x months)."
    )
    constant: float = Field(
        500.0, ge=0, description="Value of every customer when there is no value feature."
    )


class TrackingConfig(_Model):
    uri: str | None = Field(
        None,
        description="MLflow tracking URI. None = $MLFLOW_TRACKING_URI, else sqlite:///<output.dir>/mlflow.db "
        "with artifacts in <output.dir>/mlartifacts.",
    )
    experiment: str | None = Field(None, description="MLflow experiment name. None = the config name.")
    registered_model: str = Field("churn-model", description="Registered model name.")
    register_model: bool = Field(
        True, description="Register the model and run the champion/challenger decision."
    )
    promotion_metric: Literal["roc_auc", "pr_auc", "log_loss", "brier"] = Field(
        "roc_auc", description="Test metric on which a challenger must beat the champion to be promoted."
    )
    min_improvement: float = Field(
        0.0, ge=0, description="How much better than the champion the challenger must be to be promoted."
    )


class ScoringConfig(_Model):
    as_of: dt.datetime | None = Field(
        None, description="Score customers active at this moment. None = the end of the data."
    )
    model_uri: str | None = Field(
        None,
        description="Model to score with: an MLflow model URI or a directory written by ChurnModel.save. "
        "None = models:/<tracking.registered_model>@champion.",
    )
    out_dir: str | None = Field(
        None, description="Directory of the risk list and report. None = <output.dir>/<name>/score."
    )
    device: Literal["cpu", "cuda"] = Field(
        "cpu", description="Where SHAP contributions are computed; cuda needs a GPU build of XGBoost."
    )
    nthread: int = Field(2, ge=1, description="CPU threads for scoring and explaining.")
    batch_size: int = Field(
        20_000, ge=1, description="Rows per pred_contribs call (bounds memory: rows x features x 4 bytes)."
    )
    explain: Literal["at_risk", "all"] = Field(
        "at_risk",
        description="Whose drivers are computed: at_risk (customers at or above risk.at_risk_threshold, "
        "the only ones that get a risk group and a play) or all. Explaining is ~100x the cost of scoring.",
    )
    explain_top: int = Field(
        100,
        ge=0,
        description="The first customers of the ranking always get drivers, at risk or not, so the head of "
        "the list has reasons.",
    )
    explain_max: int | None = Field(
        30_000,
        ge=0,
        description="Explain at most this many customers, the first in the ranking; None = no cap.",
    )
    global_sample: int = Field(
        1000,
        ge=0,
        description="Customers sampled from everyone scored (not only the at-risk) for the global drivers plot.",
    )
    log_to_mlflow: bool = Field(
        True,
        description="Log the risk list and report to an MLflow scoring run (and each review to a review run).",
    )


class SegmentConfig(_Model):
    new_days: int = Field(
        30, ge=0, le=MAX_DAYS, description="Tenure (days) below which a customer is new (onboarding)."
    )
    slipping_days: int = Field(
        30, gt=0, le=MAX_DAYS, description="No activity for at least this many days: slipping away."
    )
    inactive_days: int = Field(
        90, gt=0, le=MAX_DAYS, description="No activity for at least this many days (or ever): inactive."
    )
    past_due_days: int = Field(
        35,
        gt=0,
        le=MAX_DAYS,
        description="A failed payment in this many days and no successful payment since: past due.",
    )
    activity_feature: str | None = Field(
        None,
        description="Feature giving days since the last activity. None = evaluation.recency_feature, else the "
        "first 'recency' feature of the model.",
    )


class ReportConfig(_Model):
    title: str = Field("Customers at risk", description="Title of risk_report.html.")
    table_rows: int = Field(
        1000, ge=1, description="Rows of the ranked list shown in the report (the CSV has every customer)."
    )
    waterfalls: int = Field(5, ge=0, description="Top customers with a waterfall explanation in the report.")


class RiskConfig(_Model):
    moved_keys: ClassVar[dict[str, str]] = {
        "value": "customer_value.feature instead (null = customer_value.constant for everyone)",
        "value_feature": "customer_value.feature instead (one customer value for training and the risk list)",
        "value_months": "customer_value.months instead (one customer value for training and the risk list)",
        "constant_value": "customer_value.constant instead (one customer value for training and the risk list)",
    }

    bands: dict[str, float] = Field(
        {"low": 0.0, "medium": 0.1, "high": 0.3},
        description="Risk bands: name -> lowest churn probability in the band, increasing from 0. "
        "Fixed thresholds, so a band means the same thing in every run.",
    )
    at_risk_threshold: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="Churn probability at or above which a customer is at risk (gets a risk group and a play).",
    )
    rank_by: Literal["revenue", "probability", "net_value"] = Field(
        "revenue",
        description="Rank by expected revenue at risk (probability x customer value, see customer_value), "
        "by probability, or by net value (best play's uplift x customer value - contact cost; needs an "
        "uplift model, docs/uplift.md).",
    )
    top_k: int = Field(3, ge=1, le=10, description="Drivers (reasons) per customer in the risk list.")
    holdout_fraction: float = Field(
        0.1,
        ge=0,
        lt=1,
        description="Share of the at-risk customers of each risk group held out (action: holdout, not "
        "contacted), drawn by a hash of seed, as-of date and customer: what later measures whether "
        "contacting works. 0 = contact everyone at risk.",
    )
    holdout_repeat: bool = Field(
        False,
        description="Allow holding out a customer held out on the previous list (default: never twice in a row).",
    )
    exclude_from_reasons: list[str] = Field(
        default_factory=list,
        description="Features, signals or families never given as reasons; 'non_actionable' drops every "
        "feature the catalogue marks non-actionable (tenure, plan price...). Risk groups still use them.",
    )
    playbook: str | None = Field(
        None,
        description="YAML file mapping driver signals/families to risk groups and plays. "
        "None = the built-in playbook (configs/playbook.yaml is a copy to edit).",
    )
    segments: SegmentConfig = Field(default_factory=SegmentConfig, description="Retention segments.")
    report: ReportConfig = Field(default_factory=ReportConfig, description="The HTML report.")

    @field_validator("bands")
    @classmethod
    def _increasing_bands(cls, value: dict[str, float]) -> dict[str, float]:
        # Ordered by threshold, whatever order the mapping came in (YAML round trips may sort keys).
        ordered = dict(sorted(value.items(), key=lambda item: item[1]))
        lows = list(ordered.values())
        if not lows or lows[0] != 0 or any(b <= a for a, b in pairwise(lows)):
            raise ValueError(
                "bands need one band starting at 0 and distinct lower bounds, e.g. {low: 0, medium: 0.1, high: 0.3}"
            )
        if lows[-1] >= 1:
            raise ValueError("every band's lower bound must be below 1")
        return ordered


class DriftConfig(_Model):
    """Drift between the model's training data and each scoring run (``churnml.risk.drift``)."""

    psi_warn: float = Field(
        0.2,
        gt=0,
        description="A feature (or the score) whose population stability index against the training "
        "reference reaches this is flagged: a warning in the report and the terminal. Rule of thumb: "
        "< 0.1 stable, 0.1-0.25 moving, > 0.25 shifted.",
    )
    ks_warn: float = Field(
        0.18,
        gt=0,
        le=1,
        description="Flag a numeric feature (or the score) whose two-sample KS statistic (largest gap "
        "between the cumulative distributions) reaches this; 0.18 is the shift PSI 0.2 means for a "
        "normal feature (0.45 standard deviations).",
    )
    unseen_warn: float = Field(
        0.01,
        gt=0,
        le=1,
        description="Flag a categorical feature when this share of scored customers has a value the model "
        "never saw (the model reads it as missing).",
    )
    top: int = Field(
        10, ge=1, description="Features with the largest drift shown in the report and summary.json."
    )
    window: int = Field(
        10_000,
        ge=100,
        le=1_000_000,
        description="Service: the last this many probabilities a worker served, compared with the training "
        "reference on /metrics (churnml_score_psi).",
    )
    min_window: int = Field(
        500,
        ge=1,
        description="Service: churnml_score_psi is NaN until a worker has served this many probabilities "
        "(PSI of a few scores is noise).",
    )


class ServingConfig(_Model):
    model_uri: str | None = Field(
        None,
        description="Model the service loads: an MLflow model URI, a ChurnModel directory or bentoml:<tag>. "
        "None = $CHURNML_MODEL_URI, else models:/<tracking.registered_model>@champion.",
    )
    host: str = Field("127.0.0.1", description="Address the service listens on (0.0.0.0 in a container).")
    port: int = Field(3000, ge=1, le=65535, description="Port the service listens on.")
    workers: int = Field(1, ge=1, description="Worker processes; each holds its own copy of the model.")
    nthread: int = Field(
        1, ge=1, description="XGBoost threads per worker (workers x nthread should not exceed the cores)."
    )
    max_batch_size: int = Field(
        1000,
        ge=1,
        description="Adaptive batching: most records of concurrent /predict requests merged in one call.",
    )
    max_latency_ms: int = Field(
        10_000,
        ge=1,
        description="Adaptive batching deadline: a request still queued after this long is refused (503). "
        "A load-shedding limit, not a target; batching waits adapt to the load on their own.",
    )
    history_wait_ms: float = Field(
        5.0,
        ge=0,
        le=1000,
        description="/score_history requests of one worker are scored together; a batch waits up to this "
        "long for as many requests as were outstanding during the last one (0 = never wait). See "
        "churnml.serving.batching.",
    )
    max_records: int = Field(1000, ge=1, description="Most records in one /predict or /explain request.")
    max_customers: int = Field(100, ge=1, description="Most customers in one /score_history request.")
    max_rows: int = Field(
        10_000, ge=1, description="Most rows of one table for one customer in a /score_history request."
    )
    max_body_bytes: int = Field(
        16 * 2**20,
        ge=1024,
        description="Largest request body in bytes; a larger one is refused with 413 before it is read. "
        "16 MiB holds 1000 records of 126 features four times over, or 100 customers with nine months of "
        "history (~100 KB each); raise it with max_records, max_customers or max_rows.",
    )
    cors_origins: list[str] = Field(
        default_factory=list,
        description="Origins allowed by CORS (e.g. https://crm.example.com); empty = CORS off.",
    )
    api_key_env: str = Field(
        "CHURNML_API_KEY",
        description="Environment variable holding the API key; when it is set and non-empty, API calls "
        "without it get 401 (health, metrics and the OpenAPI document stay open).",
    )
    timeout_s: int = Field(60, ge=1, description="Longest a request may run before the server gives up.")
    reconnect_every: int = Field(
        64,
        ge=0,
        description="Each worker asks the client of one response in this many to reconnect (Connection: "
        "close), so keep-alive connections spread over the workers by load; 0 = never.",
    )
    access_log: bool = Field(
        False, description="Log every request (BentoML's access log); /metrics counts them either way."
    )
    tracing: bool = Field(
        False,
        description="OpenTelemetry spans for API requests (configure an exporter in BentoML's config). Off by "
        "default: on 2 cores they cost about a third of a small request's time.",
    )


class EngineConfig(_Model):
    """Where the data steps run (``churnml.engine``, docs/scale.md): in this process, or on a Dask
    cluster with customers hash-partitioned, each partition's tables on one worker."""

    kind: Literal["local", "dask"] = Field(
        "local",
        description="local: everything in this process. dask: features, scoring and SHAP run per customer "
        "partition on a Dask cluster (pip install 'churnml[dask]'); results equal the local engine's.",
    )
    scheduler: str | None = Field(
        None,
        description="Address of a running Dask scheduler (tcp://host:8786, or a Coiled / dask-kubernetes "
        "cluster's). None = start a LocalCluster of `workers` processes on this machine.",
    )
    workers: int = Field(2, ge=1, description="LocalCluster: worker processes.")
    threads_per_worker: int = Field(
        1, ge=1, description="LocalCluster: threads per worker (XGBoost and SHAP use this many per task)."
    )
    memory_limit: str | None = Field(
        "auto",
        description="LocalCluster: memory per worker, e.g. '4GiB'; 'auto' = the machine's memory split "
        "evenly; None = no limit. Dask spills, pauses and finally restarts a worker past it.",
    )
    partitions: int | None = Field(
        None,
        ge=1,
        description="Customer partitions. None = enough for `customers_per_partition`, and at least one "
        "per worker.",
    )
    customers_per_partition: int = Field(
        50_000, ge=1, description="With partitions=None: customers per partition (bounds a task's memory)."
    )
    staging_dir: str | None = Field(
        None,
        description="A folder every worker and this process can write and read (shared storage on a "
        "real cluster) where "
        "Parquet data is split by customer partition in one scan before the partitions read it; each run "
        "writes its own subfolder and removes it after. None: a temporary folder on this machine for a "
        "LocalCluster; with engine.scheduler, every partition scans every file instead.",
    )
    dashboard: bool = Field(
        True, description="LocalCluster: serve the Dask dashboard (its address is printed)."
    )
    progress: bool = Field(
        True,
        description="A progress bar of the cluster's tasks while a step waits on them (training set, "
        "scoring, SHAP); false in tests or when a program parses the output. Tuning's bar is "
        "tune.progress_bar.",
    )

    @field_validator("memory_limit")
    @classmethod
    def _memory(cls, value: str | None) -> str | None:
        """Dask's own spelling (``4GiB``, ``500 MB``, ``2e9``, ``auto``), checked here rather than as a
        traceback from a starting worker."""
        if value is None or value == "auto" or re.fullmatch(_BYTES, value.strip(), re.IGNORECASE):
            return value
        raise ValueError(f"{value!r} is not an amount of memory: write e.g. '4GiB', '500MB' or 'auto'")


_BYTES = r"\d+(\.\d+)?(e\d+)?\s*([kmgtp]i?)?b?"


class Config(_Model):
    """Top-level churnml configuration."""

    name: str = Field("churnml", description="A name for this configuration (used in outputs).")
    seed: int = Field(42, description="Seed for every random step downstream of the data.")
    data: DataConfig = Field(default_factory=DataConfig)
    simulate: SimulateConfig = Field(default_factory=SimulateConfig)
    labels: LabelConfig = Field(default_factory=LabelConfig)
    features: FeatureConfig = Field(default_factory=FeatureConfig)
    output: OutputConfig = Field(default_factory=OutputConfig)
    split: SplitConfig = Field(default_factory=SplitConfig)
    tune: TuneConfig = Field(default_factory=TuneConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    calibration: CalibrationConfig = Field(default_factory=CalibrationConfig)
    evaluation: EvaluationConfig = Field(default_factory=EvaluationConfig)
    campaign: CampaignConfig = Field(default_factory=CampaignConfig)
    review: ReviewConfig = Field(default_factory=ReviewConfig)
    uplift: UpliftConfig = Field(default_factory=UpliftConfig)
    customer_value: CustomerValueConfig = Field(default_factory=CustomerValueConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    scoring: ScoringConfig = Field(default_factory=ScoringConfig)
    risk: RiskConfig = Field(default_factory=RiskConfig)
    drift: DriftConfig = Field(default_factory=DriftConfig)
    serving: ServingConfig = Field(default_factory=ServingConfig)
    engine: EngineConfig = Field(default_factory=EngineConfig)

    @model_validator(mode="after")
    def _net_value_needs_uplift(self) -> Config:
        if self.risk.rank_by == "net_value" and self.uplift.use == "never":
            raise ValueError("risk.rank_by=net_value needs uplift models: uplift.use cannot be never")
        return self

    def uplift_registered_model(self) -> str:
        """The registered name of the uplift models (beside the churn model's)."""
        return self.uplift.registered_model or f"{self.tracking.registered_model}-uplift"


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
