"""The data contract: which tables churnml reads and what each column means.

Every loader, builder and validator reads this one description, so the contract is stated once.
Column names here are churnml's own; a config maps them to the user's names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TableSpec:
    """One table of the contract.

    ``time_column`` is the moment a row becomes known: features at a cutoff see a row only when this
    is strictly before the cutoff. Other timestamp columns (``closed_at``, ``opened_at``...) are facts
    learned later and must each be checked against the cutoff on their own.
    """

    name: str
    required: tuple[str, ...]
    time_column: str
    optional: tuple[str, ...] = ()
    timestamps: tuple[str, ...] = ()
    numeric: tuple[str, ...] = ()
    extra_columns_allowed: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return self.required + self.optional


CUSTOMERS = TableSpec(
    name="customers",
    required=("customer_id", "signup_at"),
    optional=("plan", "mrr", "acquisition_channel", "country", "company_size"),
    timestamps=("signup_at",),
    numeric=("mrr",),
    time_column="signup_at",
    # Any other static attribute known at signup is kept and becomes a feature.
    extra_columns_allowed=True,
)
EVENTS = TableSpec(
    name="events",
    required=("customer_id", "timestamp", "event_type"),
    optional=("value",),
    timestamps=("timestamp",),
    numeric=("value",),
    time_column="timestamp",
)
SUBSCRIPTIONS = TableSpec(
    name="subscriptions",
    required=("customer_id", "start_at", "end_at"),
    optional=("plan", "mrr"),
    timestamps=("start_at", "end_at"),
    numeric=("mrr",),
    time_column="start_at",
)
TRANSACTIONS = TableSpec(
    name="transactions",
    required=("customer_id", "timestamp", "amount"),
    optional=("status",),
    timestamps=("timestamp",),
    numeric=("amount",),
    time_column="timestamp",
)
TICKETS = TableSpec(
    name="tickets",
    required=("customer_id", "opened_at"),
    optional=("closed_at", "priority", "satisfaction", "category"),
    timestamps=("opened_at", "closed_at"),
    numeric=("satisfaction",),
    time_column="opened_at",
)
MESSAGES = TableSpec(
    name="messages",
    required=("customer_id", "sent_at"),
    optional=("opened_at", "clicked_at", "campaign"),
    timestamps=("sent_at", "opened_at", "clicked_at"),
    time_column="sent_at",
)

CONTACTS = TableSpec(
    name="contacts",
    required=("customer_id", "contacted_at", "play", "arm"),
    optional=("channel", "cost"),
    timestamps=("contacted_at",),
    numeric=("cost",),
    time_column="contacted_at",
)

TABLES: dict[str, TableSpec] = {
    spec.name: spec for spec in (CUSTOMERS, EVENTS, SUBSCRIPTIONS, TRANSACTIONS, TICKETS, MESSAGES, CONTACTS)
}
# What customers do (the data needs one of these; inactivity labels and the data's start read them).
ACTIVITY_TABLES: tuple[str, ...] = ("events", "subscriptions", "transactions", "tickets", "messages")
# Every table of facts per customer over time: the activity plus what the business did to customers.
HISTORY_TABLES: tuple[str, ...] = (*ACTIVITY_TABLES, "contacts")

# ``contacts.arm``: contacted (treatment) or kept out of the contact at random (holdout). Other spellings
# a retention team uses are read as these two.
ARMS: tuple[str, str] = ("treatment", "holdout")
ARM_SYNONYMS: dict[str, str] = {
    "treatment": "treatment",
    "treated": "treatment",
    "contact": "treatment",
    "contacted": "treatment",
    "holdout": "holdout",
    "hold-out": "holdout",
    "hold_out": "holdout",
    "control": "holdout",
}

# Values of ``transactions.status`` that mean a payment did not go through.
FAILED_PAYMENT_STATUSES: frozenset[str] = frozenset({"failed", "declined", "error", "chargeback"})
