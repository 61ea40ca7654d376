"""schemathesis against the API's own OpenAPI document (issue 5, item 7):
whatever a client sends, valid or not, no answer is a 5xx, and every answer is
one the document declares (status, content type, headers, body).

Over HTTP against the running e2e stack, not in-process: the fuzzed requests go
through what a client's go through (uvicorn's HTTP parsing, the body-size limit
on real ``Content-Length`` headers, the rate limit, the real worker behind
Temporal). Generated payment ids name no payment, so the routes about one
payment are fuzzed a second time against real ones, in each state.

Deterministic: a fixed seed, derandomized Hypothesis, no example database.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from api.app import create_app
from devstack import Stack

pytestmark = pytest.mark.e2e

OPERATOR_KEY = "sk_test_operator"  # the setting's local default
# Per operation and test; with both generation modes (valid and invalid input)
# and the coverage phase's boundary values on top, the file takes about 25 s.
MAX_EXAMPLES = 25
SEED = 20261126

CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    # Input the document calls invalid is refused with a 4xx, never accepted.
    negative_data_rejection,
]


def _document() -> dict[str, Any]:
    document: dict[str, Any] = create_app().openapi()
    return document


# Loaded at collection, from the app itself: schemathesis parametrizes a test by
# the operations it finds, and the stack is not running yet then. The first test
# shows the running API serves this very document.
schema = schemathesis.openapi.from_dict(
    _document(),
    config=schemathesis.Config.from_dict(
        {
            "seed": SEED,
            "generation": {
                "mode": "all",
                "max-examples": MAX_EXAMPLES,
                "deterministic": True,
                "database": "none",
            },
            "phases": {"stateful": {"enabled": False}},
            "request-timeout": 20,
        }
    ),
)


def test_the_running_api_serves_the_document_checked_here(stack: Stack) -> None:
    served = httpx.get(f"{stack.api_url}/openapi.json")
    assert served.json() == _document()


def _auth(stack: Stack, case: schemathesis.Case) -> dict[str, str]:
    operator = case.operation.path.startswith("/v1/reconciliation")
    return {"Authorization": f"Bearer {OPERATOR_KEY if operator else stack.api_key}"}


@schema.parametrize()
def test_every_answer_is_declared_and_none_is_a_server_error(
    case: schemathesis.Case, stack: Stack
) -> None:
    case.call_and_validate(base_url=stack.api_url, headers=_auth(stack, case), checks=CHECKS)


# Fuzzed above with generated ids, which answer 404 and nothing else.
ABOUT_ONE_PAYMENT = [
    ("GET", "/v1/payments/{payment_id}"),
    ("GET", "/v1/payments/{payment_id}/events"),
    ("GET", "/v1/payments/{payment_id}/stream"),
    ("POST", "/v1/payments/{payment_id}/capture"),
    ("POST", "/v1/payments/{payment_id}/cancel"),
    ("POST", "/v1/payments/{payment_id}/refunds"),
]


@pytest.fixture(scope="module")
def payment_ids(stack: Stack) -> list[str]:
    """Settled payments in each state an operation may meet: captured, waiting
    for a capture, declined."""
    created = []
    with httpx.Client(base_url=stack.api_url, timeout=30) as http:
        for method, capture in [
            ("pm_card_visa", "automatic"),
            ("pm_card_visa", "manual"),
            ("pm_card_chargeDeclined", "automatic"),
        ]:
            response = http.post(
                "/v1/payments",
                json={
                    "amount": 5000,
                    "currency": "usd",
                    "payment_method": method,
                    "capture_method": capture,
                },
                headers={"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=20"},
            )
            assert response.status_code == 200, response.text
            created.append(response.json()["id"])
    return created


@pytest.mark.parametrize(("method", "path"), ABOUT_ONE_PAYMENT)
def test_answers_about_real_payments_are_declared(
    stack: Stack, payment_ids: list[str], method: str, path: str
) -> None:
    operation = schema[path][method]
    # ``follow`` streams until the workflow closes, months later: not for a fuzzer.
    query = {"follow": False} if path.endswith("/stream") else None
    cases = st.sampled_from(payment_ids).flatmap(
        lambda payment_id: operation.as_strategy(
            path_parameters={"payment_id": payment_id}, query=query
        )
    )

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=cases)
    def answers_are_declared(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=stack.api_url, headers=_auth(stack, case), checks=CHECKS)

    answers_are_declared()
