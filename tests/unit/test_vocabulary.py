"""The names running payments know the workflow by (CONTRACT §7) are defined
once (payments/names.py) and never change; every refusal code has one HTTP
answer (api/errors.py)."""

from __future__ import annotations

import pytest
from temporalio import activity, workflow

from activities.payment_activities import PaymentActivities
from activities.webhooks import WebhookActivities
from api.errors import IdempotencyConflict, InvalidRequest, refused
from gateway.memory import InMemoryGateway
from payments import refusals
from payments.refusals import Refusal
from workflows.payment import PaymentWorkflow
from workflows.webhooks import (
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    WebhookEndpointsWorkflow,
)


def test_the_workflow_answers_to_the_names_running_payments_use() -> None:
    definition = workflow._Definition.must_from_class(PaymentWorkflow)
    assert definition.name == "PaymentWorkflow"
    assert set(definition.updates) == {"capture", "cancel", "refund", "wait_settled"}
    assert set(definition.signals) == {"cancel", "refund", "gateway_event", "webhooks_on"}
    assert set(definition.queries) == {"state"}


def test_the_webhook_workflows_answer_to_their_names() -> None:
    endpoints = workflow._Definition.must_from_class(WebhookEndpointsWorkflow)
    assert endpoints.name == "WebhookEndpointsWorkflow"
    assert set(endpoints.updates) == {
        "add_endpoint",
        "change_endpoint",
        "delete_endpoint",
        "rotate_secret",
    }
    assert set(endpoints.queries) == {"endpoints", "stored_endpoints"}
    deliveries = workflow._Definition.must_from_class(WebhookDeliveryWorkflow)
    assert deliveries.name == "WebhookDeliveryWorkflow"
    assert set(deliveries.signals) == {"announce", "redeliver", "hand_off"}
    assert set(deliveries.queries) == {"deliveries"}
    dispatch = workflow._Definition.must_from_class(WebhookDispatchWorkflow)
    assert dispatch.name == "WebhookDispatchWorkflow"
    assert set(dispatch.signals) == {"announce", "announce_all"}
    assert set(dispatch.queries) == {"deliveries"}


def test_the_webhook_activities_keep_their_names() -> None:
    names = {
        activity._Definition.must_from_callable(fn).name
        for fn in WebhookActivities(None, None, None).all()  # type: ignore[arg-type]
    }
    assert names == {
        "announce_events",
        "deliver_first_attempts",
        "new_deliveries",
        "redelivery",
        "deliver_webhook",
        "tell_payments_of_webhooks",
    }


def test_the_activities_keep_their_names() -> None:
    names = {
        activity._Definition.must_from_callable(fn).name
        for fn in PaymentActivities(InMemoryGateway()).all()
    }
    assert names == {
        "authorize",
        "capture",
        "void",
        "refund",
        "find_operation",
        "committed_operations",
        "look_up_authentication",
        "cancel_authentication",
    }


CODES = [
    value
    for name, value in vars(refusals).items()
    if name.isupper() and isinstance(value, str) and name != "OUTCOME_UNKNOWN"
]


def test_every_refusal_code_is_in_the_table() -> None:
    documented = refusals.__doc__ or ""
    assert len(CODES) == 11
    assert all(f"| {code} " in documented for code in CODES)


# Every other code is a conflict with the state of what it names.
EXPECTED_STATUS = {
    refusals.RESOURCE_MISSING: 404,
    refusals.URL_INVALID: 422,
    refusals.URL_NOT_ALLOWED: 422,
}


@pytest.mark.parametrize("code", CODES)
def test_each_refusal_has_one_http_answer(code: str) -> None:
    answer = refused(Refusal(code, "why"))
    if code == refusals.IDEMPOTENCY_KEY_REUSED:
        assert isinstance(answer, IdempotencyConflict)
        assert (answer.status_code, answer.type) == (409, "idempotency_error")
    else:
        assert isinstance(answer, InvalidRequest) and answer.type == "invalid_request_error"
        assert answer.status_code == EXPECTED_STATUS.get(code, 409)
    assert (answer.code, answer.message) == (code, "why")
