"""Schema-driven fuzzing of the live service: schemathesis reads the service's own OpenAPI document and
sends generated requests (valid ones, schema-breaking ones, the documented examples) to every operation.

Every answer must be a non-5xx, with a status code, content type and body the document declares. Bodies
of other media types and raw bytes are fuzzed too (415 or 400, never a 5xx). Every call carries the API
key as the server reads it (``Live.auth``), so the authenticated paths are the ones exercised.
Bounded: ``FUZZ_EXAMPLES`` generated cases per test and mode (env ``CHURNML_FUZZ_EXAMPLES``), at least
``MIN_CASES`` in all at the default; about three minutes on two cores.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest
import requests
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

from churnml.serving.schemas import category_columns

if TYPE_CHECKING:
    from servers import Live

pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("serving")]

FUZZ_EXAMPLES = int(os.environ.get("CHURNML_FUZZ_EXAMPLES", "260"))
MIN_CASES = 2000  # 8 generated groups of FUZZ_EXAMPLES, plus the documented examples


@schemathesis.check
def negative_data_refused(ctx: Any, response: Any, case: schemathesis.Case) -> bool | None:
    """``negative_data_rejection``, with 413 counted as a refusal: a schema-breaking body can also be over
    ``serving.max_body_bytes`` (a list far past its maxItems), which the documented 413 refuses unread."""
    if response.status_code == 413:
        return None
    return negative_data_rejection(ctx, response, case)


CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    negative_data_refused,
]
PATHS = ("/predict", "/explain", "/score_history")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
GROUPS = {
    *(f"{path} {mode.value}" for path in PATHS for mode in MODES),
    *(f"{path} example" for path in PATHS),
    "/score_history plausible",
    "media types",
}
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
    print(f"\nfuzz: {total} cases {dict(CASES)}; statuses {dict(sorted(STATUSES.items()))}")
    print(f"plausible histories refused (422) for: {dict(REFUSALS.most_common())}")
    assert not [status for status in STATUSES if status >= 500], STATUSES
    if set(CASES) >= GROUPS and FUZZ_EXAMPLES * 8 >= MIN_CASES:  # every test of the module ran
        assert total >= MIN_CASES, CASES


# schemathesis' own pytest loader (``from_fixture``) breaks on pytest 9: strategies are driven directly.
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("path", PATHS)
def test_no_server_errors_and_conforming_responses(
    api_schema: schemathesis.schemas.BaseSchema, live: Live, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path]["POST"]

    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(case=operation.as_strategy(mode))
    def call(case: schemathesis.Case) -> None:
        response = case.call_and_validate(base_url=live.url, headers=live.auth, checks=CHECKS)
        CASES[f"{path} {mode.value}"] += 1
        STATUSES[response.status_code] += 1

    call()


def test_documented_examples_are_accepted(api_schema: schemathesis.schemas.BaseSchema, live: Live) -> None:
    for path in PATHS:
        operation = api_schema[path]["POST"]
        example = operation.definition.raw["requestBody"]["content"]["application/json"]["example"]
        case = operation.Case(body=example, media_type="application/json")
        response = case.call_and_validate(base_url=live.url, headers=live.auth, checks=CHECKS)
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


def _category(categories: dict, table: str, column: str) -> st.SearchStrategy:
    """A training category of the column (or null) when a categorical feature reads it, else any text."""
    known = categories.get((table, column))
    return st.one_of(st.none(), st.sampled_from(known)) if known else TEXT


def histories(categories: dict) -> st.SearchStrategy[dict]:
    """Plausible customer histories; categorical columns take the model's training categories (an unseen
    one is a 400 of its own, tested in test_service)."""
    return st.fixed_dictionaries(
        {
            "customer": st.fixed_dictionaries(
                {
                    "customer_id": st.text(alphabet="ABC0123456789", min_size=1, max_size=6),
                    "signup_at": st.datetimes(
                        min_value=dt.datetime(2023, 6, 1), max_value=dt.datetime(2025, 6, 1)
                    ),
                    "plan": _category(categories, "customers", "plan"),
                    "mrr": st.one_of(st.none(), AMOUNT),
                    "country": _category(categories, "customers", "country"),
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
            "subscriptions": _rows(
                "start_at",
                ("end_at",),
                {"plan": _category(categories, "subscriptions", "plan"), "mrr": AMOUNT},
                3,
            ),
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
        customers=st.lists(
            histories(category_columns(live.trained.model)),
            min_size=1,
            max_size=3,
            unique_by=lambda h: h["customer"]["customer_id"],
        ),
        as_of=st.datetimes(min_value=dt.datetime(2025, 6, 2), max_value=dt.datetime(2025, 10, 1)),
    )
    def call(customers: list[dict], as_of: dt.datetime) -> None:
        body = _json_ready({"customers": customers, "as_of": as_of, "include_features": True})
        answer = live.post("/score_history", body)
        STATUSES[answer.status_code] += 1
        CASES["/score_history plausible"] += 1
        assert answer.status_code in (200, 422), answer.text
        if answer.status_code == 200:
            rows = answer.json()
            assert len(rows) == len(customers)
            assert all(0 <= r["churn_probability"] <= 1 for r in rows)
        else:
            error = answer.json()["error"]
            REFUSALS[error.splitlines()[0].split(" (")[0]] += 1

    call()


# Media types a client may send by mistake, and any other; bodies from valid JSON to raw bytes.
MEDIA = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "multipart/form-data",
            "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded",
            "text/plain",
            "application/xml",
            "application/vnd.bentoml+pickle",
            "application/octet-stream",
        ]
    ),
    st.text(alphabet=st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
)
BODIES = st.one_of(
    st.binary(max_size=300),
    st.just(b'--x\r\nContent-Disposition: form-data; name="records"\r\n\r\n[]\r\n--x--\r\n'),
    st.recursive(
        st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=10),
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
        max_leaves=12,
    ).map(lambda value: json.dumps(value).encode()),
)


def test_any_media_type_and_body_get_a_4xx_never_a_5xx(live: Live) -> None:
    """Not JSON: 415 naming the Content-Type; JSON (or no Content-Type) that is not a request: 400."""

    @settings(
        max_examples=FUZZ_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    @given(path=st.sampled_from(PATHS), media=MEDIA, body=BODIES)
    def call(path: str, media: str | None, body: bytes) -> None:
        headers = {**live.auth, **({"content-type": media} if media else {})}
        answer = requests.post(f"{live.url}{path}", data=body, headers=headers, timeout=60)
        STATUSES[answer.status_code] += 1
        CASES["media types"] += 1
        json_media = media is None or media.partition(";")[0].strip().lower() == "application/json"
        assert answer.status_code == (400 if json_media else 415), (media, body[:100], answer.text)
        assert answer.json()["detail"], answer.text

    call()
