"""Request and response models of the prediction service, generated from the model's feature specification.

Why generated: the service must refuse exactly what the model cannot score, and say which field is wrong.
One pydantic model per request shape is built from the ChurnModel's columns when the service starts:

- a **feature record** has one required field per model feature (``null`` = missing, as in training),
  floats strict and finite within float32 (XGBoost turns larger values into ``inf`` and refuses them),
  categoricals restricted to the training categories (an unseen category is an error naming the field and
  the allowed values, not silently missing), unknown fields refused;
- a **customer history** has the data contract's tables (``churnml.contract``), with the customer
  attributes the model's profile features read; rows are validated again by ``churnml.data.load`` exactly as a
  batch load is, and fed to the same feature builders as training. A raw column a categorical feature
  reads (``plan``, ``country``...) takes the training categories only, as the feature record does: the
  builders would read an unseen value as missing and score another customer than the one sent.

Field names of the generated models are ``f0, f1...`` with the feature name as alias, so any feature name
(``model_type``, names with spaces) is safe. Response models are plain classes shared by every model.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    ValidatorFunctionWrapHandler,
    WrapValidator,
    create_model,
    model_validator,
)
from pydantic_core import PydanticCustomError

from churnml.contract import CUSTOMERS, HISTORY_TABLES, TABLES
from churnml.data.load import text_array
from churnml.features.catalogue import raw_category_columns
from churnml.training.model import ChurnModel

FLOAT32_MAX = float(np.finfo(np.float32).max)  # XGBoost reads features as float32
AMOUNT_MAX = 1e12  # raw money and values: sums over thousands of rows stay far from float overflow
EARLIEST = datetime(1678, 1, 1)  # pandas' nanosecond timestamps hold 1677-09-21 .. 2262-04-11
LATEST = datetime(2262, 1, 1)
STRICT = ConfigDict(extra="forbid", allow_inf_nan=False, populate_by_name=False)

CustomerId = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]
Text = Annotated[str, StringConstraints(max_length=256)]
FeatureFloat = Annotated[float, Field(strict=True, ge=-FLOAT32_MAX, le=FLOAT32_MAX)]
Money = Annotated[float, Field(strict=True, ge=0, le=AMOUNT_MAX)]
Value = Annotated[float, Field(strict=True, ge=-AMOUNT_MAX, le=AMOUNT_MAX)]


def _naive_utc(value: datetime) -> datetime:
    """Timestamps as naive UTC (what ``churnml.data.load`` produces), within what pandas can hold."""
    if value.tzinfo is not None:
        try:
            value = value.astimezone(UTC).replace(tzinfo=None)
        except OverflowError:  # 0001-01-01 at UTC+8 minutes is before year 1 in UTC: a client mistake
            raise ValueError(
                f"timestamp must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}"
            ) from None
    if not EARLIEST <= value <= LATEST:
        raise ValueError(f"timestamp must lie between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    return value


Timestamp = Annotated[datetime, AfterValidator(_naive_utc)]


def _listed(values: Sequence[str]) -> str:
    """``'basic', 'free' or 'pro'``, as pydantic lists the values a field allows."""
    quoted = [repr(v) for v in values]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def training_category(categories: Sequence[str]) -> Any:
    """A value of a categorical feature: one of its training categories (the OpenAPI ``enum``).

    One rule for every endpoint: an unseen category is refused (400), naming the value and the known
    ones; the model never learnt what it means, and reading it as missing would score someone else.
    """
    expected = _listed(categories)

    def known(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        try:
            return handler(value)
        except ValidationError:
            if not isinstance(value, str):
                raise
            raise PydanticCustomError(
                "unseen_category",
                "{value} is not a category the model was trained on: expected {expected} (or null)",
                {"value": repr(value[:64]), "expected": expected},
            ) from None

    return Annotated[Literal[tuple(categories)], WrapValidator(known)]


def category_columns(model: ChurnModel) -> dict[tuple[str, str], tuple[str, ...]]:
    """``(table, column)`` of each raw value a categorical feature reads -> its training categories
    (``catalogue.raw_category_columns``)."""
    columns: dict[tuple[str, str], tuple[str, ...]] = {}
    for spec in model.specs:
        categories = tuple(spec.categories or ())
        for k, source in enumerate(raw_category_columns(spec)):  # its own column, then the fallback
            if k == 0:
                columns[source] = categories
            else:
                columns.setdefault(source, categories)
    return columns


# ---------------------------------------------------------------------------------------------------
# Feature records (/predict, /explain).


def field_key(position: int) -> str:
    """Python name of the generated field of the model's ``position``-th feature (the alias is the feature)."""
    return f"f{position}"


def example_record(model: ChurnModel, typical: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A valid feature record: typical values where the model has them, else 0 / the first category."""
    typical = typical or {}
    record: dict[str, Any] = {"customer_id": "C-000123"}
    for column in model.columns:
        value = typical.get(column.name)
        if column.dtype == "category":
            categories = list(column.categories or ())
            record[column.name] = value if value in categories else (categories[0] if categories else None)
        else:
            number = value if isinstance(value, int | float) and math.isfinite(value) else 0.0
            record[column.name] = float(number)
    return record


def feature_record_model(model: ChurnModel) -> type[BaseModel]:
    """``CustomerFeatures``: one required, nullable field per model feature, typed from the spec."""
    descriptions = {spec.name: spec.description for spec in model.specs}
    fields: dict[str, Any] = {
        "customer_id": (
            CustomerId | None,
            Field(None, description="Your id for the customer; echoed back in the response."),
        )
    }
    for position, column in enumerate(model.columns):
        if column.dtype == "category":
            categories = tuple(column.categories or ())
            kind: Any = training_category(categories) if categories else None
            note = f"One of the training categories {list(categories)}, or null if unknown."
        else:
            kind = FeatureFloat
            note = "A finite number, or null if missing (as in training)."
        description = f"{descriptions.get(column.name) or column.name} {note}".strip()
        fields[field_key(position)] = (kind | None, Field(..., alias=column.name, description=description))
    config = ConfigDict(**STRICT, title="CustomerFeatures")
    return create_model("CustomerFeatures", __config__=config, **fields)


def records_frame(model: ChurnModel, records: Sequence[BaseModel]) -> pd.DataFrame:
    """Validated feature records as the frame ``ChurnModel.prepare`` expects (None -> missing)."""
    columns: dict[str, Any] = {"customer_id": [r.customer_id for r in records]}  # type: ignore[attr-defined]
    for position, column in enumerate(model.columns):
        key = field_key(position)
        values = [getattr(r, key) for r in records]
        columns[column.name] = (
            np.array(values, dtype=object) if column.dtype == "category" else np.array(values, dtype=float)
        )
    return pd.DataFrame(columns)


# ---------------------------------------------------------------------------------------------------
# Customer histories (/score_history): the data contract's tables, nested per customer.


class _Row(BaseModel):
    model_config = STRICT

    customer_id: CustomerId | None = Field(
        None, description="Optional; when given it must be the customer's own id."
    )


class EventRow(_Row):
    timestamp: Timestamp = Field(description="When the event happened (ISO 8601; naive = UTC).")
    event_type: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="What happened, e.g. login."
    )
    value: Value | None = Field(None, description="Optional numeric value of the event.")


class SubscriptionRow(_Row):
    start_at: Timestamp
    end_at: Timestamp | None = Field(None, description="Empty while the subscription is active.")
    plan: Text | None = None
    mrr: Money | None = Field(None, description="Monthly recurring revenue.")


class TransactionRow(_Row):
    timestamp: Timestamp
    amount: Money
    status: Text | None = Field(None, description="e.g. paid, failed, declined, chargeback.")


class TicketRow(_Row):
    opened_at: Timestamp
    closed_at: Timestamp | None = None
    priority: Text | None = None
    satisfaction: Value | None = None
    category: Text | None = None


class MessageRow(_Row):
    sent_at: Timestamp
    opened_at: Timestamp | None = None
    clicked_at: Timestamp | None = None
    campaign: Text | None = None


class ContactRow(_Row):
    contacted_at: Timestamp = Field(
        description="When the retention team contacted the customer (or held them out)."
    )
    play: Annotated[str, StringConstraints(min_length=1, max_length=256)] = Field(
        description="The play or campaign, e.g. Billing outreach."
    )
    arm: Annotated[str, StringConstraints(min_length=1, max_length=32)] = Field(
        description="treatment (contacted) or holdout (kept out at random)."
    )
    channel: Text | None = None
    cost: Money | None = None


ROW_MODELS: dict[str, type[_Row]] = {
    "events": EventRow,
    "subscriptions": SubscriptionRow,
    "transactions": TransactionRow,
    "tickets": TicketRow,
    "messages": MessageRow,
    "contacts": ContactRow,
}


def extra_customer_attributes(model: ChurnModel) -> dict[str, str]:
    """Customer attributes outside the contract that the model's profile features read: column -> dtype."""
    extras = {}
    for spec in model.specs:
        column = spec.column
        if spec.table == "customers" and column and column not in CUSTOMERS.columns:
            extras[column] = spec.dtype
    return extras


def _category_fields(model: ChurnModel, table: str, names: Iterable[str]) -> dict[str, Any]:
    """Fields of the columns among ``names`` of ``table`` that a categorical feature reads."""
    names = set(names)
    return {
        column: (
            training_category(known) | None,
            Field(None, description=f"One of the training categories {list(known)}, or null."),
        )
        for (where, column), known in category_columns(model).items()
        if where == table and column in names
    }


def customer_model(model: ChurnModel) -> type[BaseModel]:
    """``Customer``: the contract's customer columns plus the extra attributes the model uses."""
    fields: dict[str, Any] = {
        "customer_id": (CustomerId, Field(description="The customer's id.")),
        "signup_at": (Timestamp, Field(description="When the customer signed up.")),
        "plan": (Text | None, None),
        "mrr": (Money | None, Field(None, description="Monthly recurring revenue.")),
        "acquisition_channel": (Text | None, None),
        "country": (Text | None, None),
        "company_size": (Text | None, None),
    }
    for column, dtype in extra_customer_attributes(model).items():
        kind = Value if dtype == "float64" else Text
        fields[column] = (kind | None, Field(None, description=f"Customer attribute {column!r}."))
    fields.update(_category_fields(model, CUSTOMERS.name, fields))
    return create_model("Customer", __config__=ConfigDict(**STRICT, title="Customer"), **fields)


def row_model(model: ChurnModel, table: str) -> type[_Row]:
    """The row model of an activity table, with the columns categorical features read restricted."""
    base = ROW_MODELS[table]
    changed = _category_fields(model, table, base.model_fields)
    return create_model(base.__name__, __base__=base, **changed) if changed else base


def history_table_names(model: ChurnModel) -> tuple[str, ...]:
    """The tables a history carries: every activity table, and ``contacts`` only for a model that reads
    them (each table, even empty, costs about a millisecond of checks per history)."""
    reads_contacts = any(spec.table == "contacts" for spec in model.specs)
    return tuple(t for t in HISTORY_TABLES if t != "contacts" or reads_contacts)


def tables_of(history: BaseModel) -> tuple[str, ...]:
    """The history tables a validated history has (those of its model)."""
    return tuple(t for t in HISTORY_TABLES if t in type(history).model_fields)


def history_model(model: ChurnModel, max_rows: int) -> type[BaseModel]:
    """``CustomerHistory``: one customer and their rows of each history table (each may be empty)."""

    def rows(table: str) -> tuple[Any, Any]:
        spec = TABLES[table]
        kind: Any = Annotated[list[row_model(model, table)], Field(max_length=max_rows)]  # type: ignore[misc]
        described = f"The customer's {table} ({', '.join(spec.required[1:])} required), any order."
        return kind, Field(default_factory=list, description=described)

    def same_customer(history: Any) -> Any:
        own = history.customer.customer_id
        for table in tables_of(history):
            for index, row in enumerate(getattr(history, table)):
                if row.customer_id is not None and row.customer_id != own:
                    raise ValueError(
                        f"{table}[{index}].customer_id is {row.customer_id!r}, not the customer's {own!r}"
                    )
        return history

    config = ConfigDict(**STRICT, title="CustomerHistory")
    validators: dict[str, Any] = {"_same_customer": model_validator(mode="after")(same_customer)}
    return create_model(  # type: ignore[call-overload]  # fields made at run time from the model
        "CustomerHistory",
        __config__=config,
        __validators__=validators,
        customer=(customer_model(model), Field(description="The customers-table row.")),
        **{table: rows(table) for table in history_table_names(model)},
    )


HISTORY_EXAMPLE: dict[str, Any] = {
    "customer": {
        "customer_id": "C-000123",
        "signup_at": "2025-01-10T09:30:00",
        "plan": "pro",
        "mrr": 99.0,
        "acquisition_channel": "organic",
        "country": "DE",
        "company_size": "11-50",
    },
    "events": [
        {"timestamp": "2025-05-02T10:00:00", "event_type": "login"},
        {"timestamp": "2025-05-02T10:05:00", "event_type": "core_feature_use", "value": 3.0},
    ],
    "subscriptions": [{"start_at": "2025-01-10T09:30:00", "end_at": None, "plan": "pro", "mrr": 99.0}],
    "transactions": [{"timestamp": "2025-05-10T00:00:00", "amount": 99.0, "status": "paid"}],
    "tickets": [{"opened_at": "2025-04-20T08:00:00", "closed_at": "2025-04-21T08:00:00", "priority": "high"}],
    "messages": [{"sent_at": "2025-05-15T07:00:00", "opened_at": "2025-05-15T12:00:00"}],
}


def example_history(model: ChurnModel) -> dict[str, Any]:
    """A valid ``/score_history`` customer: ``HISTORY_EXAMPLE`` with categories the model knows."""
    example = copy.deepcopy(HISTORY_EXAMPLE)
    for (table, column), known in category_columns(model).items():
        for row in [example["customer"]] if table == CUSTOMERS.name else example.get(table, []):
            if column in row and row[column] not in known:
                row[column] = known[0]
    return example


def _typed(table: str, column: str, values: list[Any]) -> Any:
    """A column of validated values with its contract dtype: inferring dtypes from Python objects (the
    timestamps above all) cost more than everything else in building one customer's tables."""
    spec = TABLES[table]
    if column in spec.timestamps:  # naive UTC datetimes (see Timestamp); None -> NaT
        return pa.array(values, pa.timestamp("us")).to_numpy(zero_copy_only=False)
    if column in spec.numeric:  # None -> NaN
        return np.array(values, dtype=np.float64)
    if column in spec.columns:  # text, or null
        return text_array(pa.array(values, pa.large_string()))
    return values  # a customer attribute outside the contract: as pandas reads it


def history_tables(
    histories: Sequence[BaseModel], ids: Sequence[str] | None = None
) -> dict[str, pd.DataFrame]:
    """Contract tables of the customers sent: every table present (empty when no rows were sent), every
    contract column present, so features see the same tables and columns as in training. ``ids``, one per
    history, replace the customer ids (requests scored together keep their customers apart)."""
    customers = [h.customer.model_dump() for h in histories]  # type: ignore[attr-defined]
    own_ids = list(ids) if ids is not None else [row["customer_id"] for row in customers]
    for row, own in zip(customers, own_ids, strict=True):
        row["customer_id"] = own
    tables = {
        "customers": pd.DataFrame(
            {c: _typed("customers", c, [row[c] for row in customers]) for c in customers[0]}
        )
    }
    for table in tables_of(histories[0]):
        columns = list(TABLES[table].columns)
        owned = [(own, row) for own, h in zip(own_ids, histories, strict=True) for row in getattr(h, table)]
        tables[table] = pd.DataFrame(
            {
                c: _typed(table, c, [own if c == "customer_id" else getattr(row, c) for own, row in owned])
                for c in columns
            }
        )
    return tables


# ---------------------------------------------------------------------------------------------------
# Responses. (Examples live in RESPONSE_EXAMPLES: BentoML's OpenAPI writer refuses ``examples`` keys, so
# ``churnml.serving.http.complete_openapi`` adds them to the document.)

ResponseConfig = ConfigDict(extra="forbid")


class Prediction(BaseModel):
    """The score of one record: calibrated probability, its risk band and the model that produced it."""

    model_config = ResponseConfig

    customer_id: str | None = Field(description="The customer_id sent, if any.")
    churn_probability: float = Field(
        ge=0, le=1, description="Calibrated probability of churn within the label horizon."
    )
    risk_band: str = Field(description="Band of the probability (fixed thresholds, config risk.bands).")
    at_risk: bool = Field(description="Probability at or above risk.at_risk_threshold.")
    model_version: str = Field(description="The model that produced the score, e.g. churn-model/3.")


class DriverOut(BaseModel):
    """One reason pushing the risk up, as the risk list gives it."""

    model_config = ResponseConfig

    signal: str = Field(description="The behaviour (all windows of one activity add up to one signal).")
    family: str
    feature: str = Field(description="The signal's feature contributing most; its value is shown.")
    contribution: float = Field(description="SHAP contribution in log-odds, summed over the signal (> 0).")
    value: float | str | None = Field(description="The customer's value of the feature.")
    typical: float | str | None = Field(description="Typical value among retained customers, if known.")
    text: str = Field(description="The reason as a sentence.")


class Explanation(Prediction):
    """A prediction with its top drivers."""

    drivers: list[DriverOut] = Field(description="Strongest first; only signals that raise the risk.")


class HistoryScore(Explanation):
    """The score of one customer's history at the as-of time, with the features it was computed from."""

    as_of: datetime = Field(description="Features see only rows strictly before this moment (UTC).")
    features: dict[str, float | str | None] | None = Field(
        description="The computed features (when include_features is true), else null."
    )


class UpliftFields(BaseModel):
    """What a contact would change, from the uplift model registered beside the churn model (answered only
    by a service that found one; docs/uplift.md). Computed as `churnml score` computes the risk list's
    uplift columns (``churnml.uplift.targeting``)."""

    model_config = ResponseConfig

    uplift: float | None = Field(
        description="The best play's reduction in churn probability (negative: the contact pushes the "
        "customer out); null when no play applies (uplift.plays: risk_group gives an at-risk customer "
        "their risk group's play, the others none)."
    )
    best_play: str | None = Field(description="The applicable play with the highest net value, if any.")
    net_value: float | None = Field(
        description="uplift x customer value - the play's contact cost (playbook group cost, else "
        "campaign.cost_per_contact)."
    )
    sleeping_dog: bool = Field(
        description="Every applicable play's uplift is below -uplift.sleeping_dog_tolerance."
    )
    uplift_by_play: dict[str, float | None] = Field(
        description="Each play of the uplift model: its uplift where it applies to the customer, else null."
    )
    uplift_model_version: str = Field(description="The uplift model, e.g. churn-model-uplift/2.")


class UpliftPrediction(UpliftFields, Prediction):
    """A prediction with what a contact would change."""


class UpliftExplanation(UpliftFields, Explanation):
    """An explanation with what a contact would change."""


class UpliftHistoryScore(UpliftFields, HistoryScore):
    """A history's score with what a contact would change."""


class ErrorItem(BaseModel):
    type: str
    loc: list[str | int] = Field(description="Where: request field, list index, record field...")
    msg: str
    url: str | None = None


class ErrorBody(BaseModel):
    """Every 4xx answer: a one-line message naming the field(s), and one item per problem."""

    error: str
    detail: list[ErrorItem] = Field(default_factory=list)


def error_body(message: str, kind: str, loc: Sequence[str | int] = ()) -> dict[str, Any]:
    """The body of every 4xx the service writes itself, in ``ErrorBody``'s shape (as BentoML's 400s):
    ``error`` says where and what in one line, ``detail`` holds the one problem."""
    where = ".".join(map(str, loc))
    detail = {"type": kind, "loc": list(loc), "msg": message}
    return {"error": f"{where}: {message}" if where else message, "detail": [detail]}


_PREDICTION_EXAMPLE = {
    "customer_id": "C-000123",
    "churn_probability": 0.23,
    "risk_band": "medium",
    "at_risk": True,
    "model_version": "churn-model/3",
}
_DRIVER_EXAMPLE = {
    "signal": "login_activity",
    "family": "recency",
    "feature": "days_since_last_login",
    "contribution": 0.82,
    "value": 41.0,
    "typical": 3.0,
    "text": "No login for 41 days (retained customers: 3)",
}
_EXPLANATION_EXAMPLE = {**_PREDICTION_EXAMPLE, "drivers": [_DRIVER_EXAMPLE]}
_UPLIFT_EXAMPLE = {
    "uplift": 0.061,
    "best_play": "Billing outreach",
    "net_value": 53.2,
    "sleeping_dog": False,
    "uplift_by_play": {"Billing outreach": 0.061, "Re-engagement": None},
    "uplift_model_version": "churn-model-uplift/2",
}
_HISTORY_EXAMPLE = {**_EXPLANATION_EXAMPLE, "as_of": "2025-06-01T00:00:00Z", "features": None}
RESPONSE_EXAMPLES: dict[str, dict[str, Any]] = {
    "Prediction": _PREDICTION_EXAMPLE,
    "DriverOut": _DRIVER_EXAMPLE,
    "Explanation": _EXPLANATION_EXAMPLE,
    "HistoryScore": _HISTORY_EXAMPLE,
    "UpliftPrediction": {**_PREDICTION_EXAMPLE, **_UPLIFT_EXAMPLE},
    "UpliftExplanation": {**_EXPLANATION_EXAMPLE, **_UPLIFT_EXAMPLE},
    "UpliftHistoryScore": {**_HISTORY_EXAMPLE, **_UPLIFT_EXAMPLE},
    "ErrorBody": {
        "error": "records.0.plan: 'platinum' is not a category the model was trained on: expected 'basic', "
        "'free' or 'pro' (or null)",
        "detail": [
            {
                "type": "unseen_category",
                "loc": ["records", 0, "plan"],
                "msg": "'platinum' is not a category the model was trained on: expected 'basic', 'free' or "
                "'pro' (or null)",
            }
        ],
    },
}
