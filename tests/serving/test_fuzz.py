"""Schema-driven fuzzing of the live service: schemathesis reads the service's own OpenAPI document and
sends generated requests (valid ones, schema-breaking ones, the documented examples) to every operation.

Every answer must be a non-5xx, with a status code, content type and body the document declares.
Bounded: ``FUZZ_EXAMPLES`` generated cases per operation (env ``CHURNML_FUZZ_EXAMPLES`` to raise it).
"""

from __future__ import annotations

import datetime as dt
import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation.modes import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

if TYPE_CHECKING:
    from conftest import Live

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]

FUZZ_EXAMPLES = int(os.environ.get("CHURNML_FUZZ_EXAMPLES", "40"))
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_rejection,
]
CASES: Counter[str] = Counter()
STATUSES: Counter[int] = Counter()
REFUSALS: Counter[str] = Counter()  # 422s of plausible histories, by what they break


@pytest.fixture(scope="session")
def api_schema(live: Live) -> schemathesis.schemas.BaseSchema:
    return schemathesis.openapi.from_url(f"{live.url}/docs.json")


@pytest.fixture(scope="module", autouse=True)
def report_counts() -> Iterator[None]:
    yield
    total = sum(CASES.values())
    print(f"\nschemathesis: {total} cases {dict(CASES)}; statuses {dict(sorted(STATUSES.items()))}")
    print(f"plausible histories refused (422) for: {dict(REFUSALS.most_common())}")


# schemathesis' own pytest loader (``from_fixture``) breaks on pytest 9: strategies are driven directly.
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("path", ["/predict", "/explain", "/score_history"])
def test_no_server_errors_and_conforming_responses(
    api_schema: schemathesis.schemas.BaseSchema, live: Live, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path]["POST"]

    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(
            base_url=live.url, headers={"X-API-Key": live.api_key}, checks=CHECKS
        )
        CASES[f"{path} {mode.value}"] += 1
        STATUSES[response.status_code] += 1

    call()


def test_documented_examples_are_accepted(api_schema: schemathesis.schemas.BaseSchema, live: Live) -> None:
    for path in ("/predict", "/explain", "/score_history"):
        operation = api_schema[path]["POST"]
        example = operation.definition.raw["requestBody"]["content"]["application/json"]["example"]
        case = operation.Case(body=example, media_type="application/json")
        response = case.call_and_validate(
            base_url=live.url, headers={"X-API-Key": live.api_key}, checks=CHECKS
        )
        assert response.status_code == 200, (path, response.text)
        CASES[f"{path} example"] += 1
        STATUSES[response.status_code] += 1


# Schema-valid timestamps are mostly years the data contract refuses (0001..9999), so generated histories
# rarely reach the feature builders; this strategy keeps them plausible so that they do.
STAMPS = st.datetimes(min_value=dt.datetime(2024, 1, 1), max_value=dt.datetime(2025, 9, 30))
TEXT = st.one_of(st.none(), st.text(max_size=12))
AMOUNT = st.floats(min_value=0, max_value=1e6)
# A later fact (an end, a close, an open) is mostly after its row's time; -1 day now and then breaks the
# contract's ordering on purpose.
DELAY = st.one_of(st.none(), st.timedeltas(min_value=dt.timedelta(days=-1), max_value=dt.timedelta(days=200)))


def _rows(
    base: str, later: tuple[str, ...], fields: dict, max_size: int = 8
) -> st.SearchStrategy[list[dict]]:
    def place(row: dict) -> dict:
        start = row[base]
        return {**row, **{name: None if row[name] is None else start + row[name] for name in later}}

    strategy = st.fixed_dictionaries({base: STAMPS, **{name: DELAY for name in later}, **fields})
    return st.lists(strategy.map(place), max_size=max_size)


HISTORY = st.fixed_dictionaries(
    {
        "customer": st.fixed_dictionaries(
            {
                "customer_id": st.text(alphabet="ABC0123456789", min_size=1, max_size=6),
                "signup_at": st.datetimes(
                    min_value=dt.datetime(2023, 6, 1), max_value=dt.datetime(2025, 6, 1)
                ),
                "plan": st.one_of(st.none(), st.sampled_from(["free", "basic", "pro", "enterprise"])),
                "mrr": st.one_of(st.none(), AMOUNT),
                "country": TEXT,
            }
        ),
        "events": _rows(
            "timestamp",
            (),
            {
                "event_type": st.sampled_from(
                    ["login", "core_feature_use", "export", "report_created", "x y"]
                ),
                "value": st.one_of(st.none(), st.floats(min_value=-1e6, max_value=1e6)),
            },
            max_size=30,
        ),
        "subscriptions": _rows("start_at", ("end_at",), {"plan": TEXT, "mrr": AMOUNT}, 3),
        "transactions": _rows("timestamp", (), {"amount": AMOUNT, "status": TEXT}),
        "tickets": _rows(
            "opened_at",
            ("closed_at",),
            {
                "priority": st.one_of(st.none(), st.sampled_from(["low", "high", "urgent"])),
                "satisfaction": st.one_of(st.none(), st.floats(min_value=1, max_value=5)),
            },
        ),
        "messages": _rows("sent_at", ("opened_at", "clicked_at"), {"campaign": TEXT}),
    }
)


def _json_ready(value: object) -> object:
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_ready(v) for v in value]
    return value.isoformat() if isinstance(value, dt.datetime) else value


def test_plausible_histories_are_scored_or_refused_never_failed(live: Live) -> None:
    """Histories in the contract's shape with realistic timestamps: 200 with probabilities, or a 422
    naming what breaks the contract (an end before its start...), never a 5xx."""

    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(
        histories=st.lists(HISTORY, min_size=1, max_size=3, unique_by=lambda h: h["customer"]["customer_id"]),
        as_of=st.datetimes(min_value=dt.datetime(2025, 6, 2), max_value=dt.datetime(2025, 10, 1)),
    )
    def call(histories: list[dict], as_of: dt.datetime) -> None:
        body = _json_ready({"customers": histories, "as_of": as_of, "include_features": True})
        answer = live.post("/score_history", body)
        STATUSES[answer.status_code] += 1
        CASES["/score_history plausible"] += 1
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 200:
            rows = answer.json()
            assert len(rows) == len(histories)
            assert all(0 <= r["churn_probability"] <= 1 for r in rows)
        else:
            error = answer.json()["error"]
            REFUSALS[error.splitlines()[0].split(" (")[0]] += 1

    call()
