"""Every button of the Temporal UI (and its CLI line) on a real dev server,
with the API served in this process and a worker on the in-memory simulator:
Request Cancellation, Reset, Terminate, and an Idempotency-Key sent again with
another request. Each test asserts the payment as the API shows it, its events,
and the gateway's ledger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support import MERCHANT, TEMPORAL_CLI, Stack, event_types, running_stack, serving
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.testing import ActivityEnvironment

from activities.reconciliation import ReconciliationActivities
from api.app import create_app
from gateway.simulator.core import Faults
from payments.models import PaymentState
from payments.reconciliation import Window
from payments.settings import Settings

KEY = "sk_test_buttons"
HANG = 30


@contextlib.asynccontextmanager
async def _stack_and_api(client: Client, task_queue: str) -> AsyncIterator[tuple[Stack, Any]]:
    async with running_stack(client, task_queue) as stack:
        settings = Settings(task_queue=task_queue, api_keys={KEY: MERCHANT})
        async with serving(create_app(settings, client=client)) as url:
            headers = {"Authorization": f"Bearer {KEY}"}
            async with httpx.AsyncClient(base_url=url, headers=headers, timeout=HANG) as http:
                yield stack, http


@pytest.fixture
async def buttons(dev_client: Client, task_queue: str) -> AsyncIterator[tuple[Stack, Any]]:
    async with _stack_and_api(dev_client, task_queue) as both:
        try:
            yield both
        finally:
            query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
            async for execution in dev_client.list_workflows(query):
                await dev_client.get_workflow_handle(execution.id).terminate("test over")


async def temporal(client: Client, *args: str) -> str:
    """One `temporal` CLI line, as an operator types it, against the test's server."""
    process = await asyncio.create_subprocess_exec(
        str(TEMPORAL_CLI),
        *args,
        "--address",
        client.service_client.config.target_host,
        "--namespace",
        client.namespace,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), HANG)
    assert process.returncode == 0, err.decode()
    return out.decode()


async def reset(client: Client, payment_id: str, *point: str, reason: str) -> None:
    """The UI's Reset: ``point`` is ``--type …`` or ``--event-id …``."""
    await temporal(
        client, "workflow", "reset", "--workflow-id", payment_id, *point, "--reason", reason
    )


async def signal(client: Client, payment_id: str, name: str, *payload: str) -> None:
    """The UI's Send a Signal; ``payload`` is its JSON input, if any."""
    given = ("--input", *payload) if payload else ()
    await temporal(
        client, "workflow", "signal", "--workflow-id", payment_id, "--name", name, *given
    )


async def create(http: httpx.AsyncClient, **fields: Any) -> str:
    body = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", **fields}
    answer = await http.post("/v1/payments", json=body)
    assert answer.status_code == 202, answer.text
    payment_id: str = answer.json()["id"]
    return payment_id


async def act(
    http: httpx.AsyncClient, action: str, payment_id: str, body: dict[str, Any], key: str | None
) -> httpx.Response:
    """POST a capture or refund, waiting for its outcome, with ``key`` if given."""
    headers = {"Prefer": "wait=20"}
    if key is not None:
        headers["Idempotency-Key"] = key
    return await http.post(f"/v1/payments/{payment_id}/{action}", json=body, headers=headers)


async def refund(
    http: httpx.AsyncClient, payment_id: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await act(http, "refunds", payment_id, body, key)


async def capture(
    http: httpx.AsyncClient, payment_id: str, body: dict[str, Any], key: str | None = None
) -> httpx.Response:
    return await act(http, "capture", payment_id, body, key)


def amounts(stack: Stack, payment_id: str, kind: str) -> list[int]:
    return [op.amount for op in stack.ledger(payment_id) if op.kind == kind]


async def events_of(stack: Stack, payment_id: str, event_type: str) -> list[dict[str, Any]]:
    return [e.data for e in await stack.events(payment_id) if e.type == event_type]


async def wait_event(stack: Stack, payment_id: str, event_type: str) -> dict[str, Any]:
    for _ in range(HANG * 20):
        found = await events_of(stack, payment_id, event_type)
        if found:
            return found[-1]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event_type} on {payment_id}")


async def status_of(client: Client, payment_id: str) -> WorkflowExecutionStatus | None:
    return (await client.get_workflow_handle(payment_id).describe()).status


async def wait_closed(client: Client, payment_id: str) -> WorkflowExecutionStatus | None:
    for _ in range(HANG * 20):
        status = await status_of(client, payment_id)
        if status != WorkflowExecutionStatus.RUNNING:
            return status
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} is still running")


async def reset_before(client: Client, payment_id: str, event_type: EventType.ValueType) -> int:
    """The id of the last workflow task completed before the first event of
    ``event_type``: resetting there reapplies that event."""
    last_task = 0
    async for event in client.get_workflow_handle(payment_id).fetch_history_events():
        if event.event_type == event_type:
            return last_task
        if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            last_task = event.event_id
    raise AssertionError(f"no {EventType.Name(event_type)} in {payment_id}")


# -- Request Cancellation ------------------------------------------------------


async def test_request_cancellation_before_capture_voids_and_ends_canceled(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http, capture_method="manual")
    await stack.wait_status(payment_id, "requires_capture")

    await temporal(stack.client, "workflow", "cancel", "--workflow-id", payment_id)

    canceled = await stack.wait_status(payment_id, "canceled")
    assert (canceled.amount_capturable, canceled.amount_captured) == (0, 0)
    assert stack.kinds(payment_id) == ["authorization", "void"]
    events = await stack.events(payment_id)
    assert event_types(events)[-3:] == [
        "payment.cancel_requested",
        "payment.voided",
        "payment.canceled",
    ]
    assert events[-3].data["source"] == "temporal"
    # The workflow completes: it was canceled as a payment, not as a workflow.
    assert await wait_closed(stack.client, payment_id) == WorkflowExecutionStatus.COMPLETED
    assert (await http.get(f"/v1/payments/{payment_id}")).json()["status"] == "canceled"


async def test_request_cancellation_while_a_slow_authorize_is_in_flight_lets_it_finish_then_voids(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    stack.gateway.ledger.faults = Faults(latency_ms=1500)
    payment_id = await create(http)
    handle = stack.client.get_workflow_handle(payment_id)
    for _ in range(HANG * 20):
        if (await handle.describe()).raw_description.pending_activities:
            break
        await asyncio.sleep(0.05)

    await temporal(stack.client, "workflow", "cancel", "--workflow-id", payment_id)

    canceled = await stack.wait_status(payment_id, "canceled", within=HANG)
    assert canceled.amount_captured == 0
    # Authorize ran to its end, and what it authorized was voided: no money held.
    assert stack.kinds(payment_id) == ["authorization", "void"]
    assert event_types(await stack.events(payment_id)) == [
        "payment.requested",
        "payment.cancel_requested",
        "payment.authorized",
        "payment.voided",
        "payment.canceled",
    ]
    assert await wait_closed(stack.client, payment_id) == WorkflowExecutionStatus.COMPLETED


async def test_request_cancellation_after_capture_is_refused_and_refunds_stay_open(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http)
    await stack.wait_status(payment_id, "succeeded")

    await temporal(stack.client, "workflow", "cancel", "--workflow-id", payment_id)

    refused = await wait_event(stack, payment_id, "payment.cancel_failed")
    assert (refused["code"], refused["source"]) == ("payment_not_cancelable", "temporal")
    assert await status_of(stack.client, payment_id) == WorkflowExecutionStatus.RUNNING
    answer = await refund(http, payment_id, {"amount": 500})
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded"
    after = await stack.get(payment_id)
    assert (after.status, after.amount_refunded) == ("partially_refunded", 500)
    assert stack.kinds(payment_id) == ["authorization", "capture", "refund"]


# -- Reset ---------------------------------------------------------------------


async def test_reset_to_the_start_relearns_a_refund_and_never_refunds_beyond_the_capture(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http)
    await stack.wait_status(payment_id, "succeeded")
    assert (await refund(http, payment_id, {"amount": 1000})).status_code == 200

    await reset(stack.client, payment_id, "--type", "FirstWorkflowTask", reason="test")

    def relearned(state: PaymentState) -> bool:
        return state.amount_refunded == 1000 and state.status == "partially_refunded"

    after = await stack.wait_for(payment_id, relearned, within=HANG)
    assert after.amount_captured == 1999
    # The new run authorized and captured under the same keys: the gateway
    # answered with what it had; it refunded once.
    assert stack.kinds(payment_id) == ["authorization", "capture", "refund"]
    assert [d.get("source") for d in await events_of(stack, payment_id, "refund.succeeded")] == [
        "gateway"
    ]
    rest = await refund(http, payment_id, {})
    assert rest.status_code == 200 and rest.json()["amount"] == 999, rest.text
    beyond = await refund(http, payment_id, {"amount": 1})
    assert beyond.status_code == 409, beyond.text
    assert (
        sum(amounts(stack, payment_id, "refund"))
        == 1999
        == sum(amounts(stack, payment_id, "capture"))
    )
    assert (await stack.get(payment_id)).status == "refunded"


async def test_reset_to_the_start_after_a_partial_capture_and_a_refund(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http, amount=1000, capture_method="manual")
    await stack.wait_status(payment_id, "requires_capture")
    assert (await capture(http, payment_id, {"amount": 600})).status_code == 200
    assert (await refund(http, payment_id, {"amount": 100})).status_code == 200

    await reset(stack.client, payment_id, "--type", "FirstWorkflowTask", reason="test")

    def relearned(state: PaymentState) -> bool:
        return state.amount_captured == 600 and state.amount_refunded == 100

    await stack.wait_for(payment_id, relearned, within=HANG)
    captured = await events_of(stack, payment_id, "payment.captured")
    assert [(d["amount"], d.get("source")) for d in captured] == [(600, "gateway")]
    assert amounts(stack, payment_id, "capture") == [600]
    rest = await refund(http, payment_id, {})
    assert rest.status_code == 200 and rest.json()["amount"] == 500, rest.text
    assert (await refund(http, payment_id, {"amount": 1})).status_code == 409
    assert amounts(stack, payment_id, "refund") == [100, 500]
    assert (await stack.get(payment_id)).status == "refunded"


async def test_reset_to_before_a_refund_reapplies_it_and_the_gateway_pays_it_once(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http)
    await stack.wait_status(payment_id, "succeeded")
    assert (await refund(http, payment_id, {"amount": 700}, key="refund-1")).status_code == 200
    point = await reset_before(
        stack.client, payment_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED
    )

    await reset(stack.client, payment_id, "--event-id", str(point), reason="test")

    # The reapplied refund met a succeeded payment, was accepted again and
    # carried out under its key: the gateway answered with the first refund.
    def refunded_again(state: PaymentState) -> bool:
        return state.amount_refunded == 700 and not any(
            r.status == "pending" for r in state.refunds
        )

    after = await stack.wait_for(payment_id, refunded_again, within=HANG)
    assert [r.amount for r in after.refunds] == [700]
    assert amounts(stack, payment_id, "refund") == [700]
    assert len(await events_of(stack, payment_id, "refund.succeeded")) == 1
    # Sent again with its key, the refund is the same one.
    again = await refund(http, payment_id, {"amount": 700}, key="refund-1")
    assert (again.status_code, again.json()["id"]) == (200, after.refunds[0].id)
    assert amounts(stack, payment_id, "refund") == [700]


async def reset_at_signal(client: Client, payment_id: str) -> int:
    """The id of the workflow task that took the first signal in: resetting
    there reapplies the signals after it, in a run with a random seed of its own."""
    signaled = False
    async for event in client.get_workflow_handle(payment_id).fetch_history_events():
        signaled = signaled or event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        if signaled and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return event.event_id
    raise AssertionError(f"no signal taken in by {payment_id}")


@pytest.mark.parametrize("where", ["before the capture was taken in", "in the refund window"])
async def test_reset_to_before_a_refund_signal_pays_the_refund_once(
    buttons: tuple[Stack, httpx.AsyncClient], where: str
) -> None:
    stack, http = buttons
    payment_id = await create(http)
    await stack.wait_status(payment_id, "succeeded")
    if where == "in the refund window":
        # A signal of no consequence, so the refund window has a task to reset to.
        await signal(stack.client, payment_id, "cancel")
        await wait_event(stack, payment_id, "payment.cancel_failed")
    await signal(stack.client, payment_id, "refund", '{"amount": 500, "reason": "goodwill"}')
    before = await stack.wait_for(payment_id, lambda s: s.amount_refunded == 500)
    if where == "before the capture was taken in":
        point = await reset_before(
            stack.client, payment_id, EventType.EVENT_TYPE_WORKFLOW_EXECUTION_SIGNALED
        )
    else:
        point = await reset_at_signal(stack.client, payment_id)

    await reset(stack.client, payment_id, "--event-id", str(point), reason="test")

    def settled(state: PaymentState) -> bool:
        done = not any(r.status == "pending" for r in state.refunds)
        return done and any(r.status == "succeeded" for r in state.refunds)

    after = await stack.wait_for(payment_id, settled, within=HANG)
    # Reapplied before the capture was taken in, the signal met a processing
    # payment and the gateway's refund was re-learned; reapplied in the refund
    # window, it was carried out again under the same refund id, so the same
    # gateway key. Either way the gateway paid once.
    assert [(r.id, r.amount, r.status) for r in after.refunds if r.status != "failed"] == [
        (before.refunds[0].id, 500, "succeeded")
    ]
    assert after.amount_refunded == 500
    assert amounts(stack, payment_id, "refund") == [500]


# -- Terminate -----------------------------------------------------------------


async def test_terminate_is_reported_by_reconciliation_and_reset_then_cancel_releases_the_hold(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    began = datetime.now(UTC) - timedelta(seconds=1)
    payment_id = await create(http, capture_method="manual")
    await stack.wait_status(payment_id, "requires_capture")

    await temporal(
        stack.client, "workflow", "terminate", "--workflow-id", payment_id, "--reason", "test"
    )
    assert await wait_closed(stack.client, payment_id) == WorkflowExecutionStatus.TERMINATED

    async def mismatches() -> list[str]:
        window = Window(start=began, end=datetime.now(UTC) + timedelta(seconds=1))
        reconcile = ReconciliationActivities(stack.gateway, stack.client).reconcile
        report = await ActivityEnvironment().run(reconcile, window)
        assert payment_id not in report.in_flight
        return [m.kind for m in report.mismatches if m.payment_id == payment_id]

    assert await mismatches() == ["authorization_orphaned"]
    assert stack.kinds(payment_id) == ["authorization"]

    # The README's next step: bring the run back where it stopped, then cancel it.
    await reset(
        stack.client,
        payment_id,
        "--type",
        "LastWorkflowTask",
        reason="terminated with an open authorization",
    )
    await signal(stack.client, payment_id, "cancel", '{"reason": "terminated by mistake"}')
    await stack.wait_status(payment_id, "canceled", within=HANG)
    assert stack.kinds(payment_id) == ["authorization", "void"]
    assert await mismatches() == []


# -- an Idempotency-Key sent again with another request ------------------------


async def test_a_key_reused_with_another_request_is_refused_on_capture_cancel_and_refunds(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    manual = await create(http, amount=1000, capture_method="manual")
    await stack.wait_status(manual, "requires_capture")
    first = await capture(http, manual, {"amount": 500}, key="cap-1")
    assert first.status_code == 200, first.text
    other = await capture(http, manual, {"amount": 600}, key="cap-1")
    assert other.status_code == 409, other.text
    assert other.json()["error"]["type"] == "idempotency_error"
    again = await capture(http, manual, {"amount": 500}, key="cap-1")
    assert (again.status_code, again.json()["amount_captured"]) == (200, 500)
    assert amounts(stack, manual, "capture") == [500]

    refunded = await refund(http, manual, {"amount": 100}, key="re-1")
    assert refunded.status_code == 200, refunded.text
    for body in ({"amount": 200}, {"amount": 100, "reason": "other"}, {}):
        reused = await refund(http, manual, body, key="re-1")
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"]["type"] == "idempotency_error"
    assert amounts(stack, manual, "refund") == [100]

    to_cancel = await create(http, capture_method="manual")
    await stack.wait_status(to_cancel, "requires_capture")
    headers = {"Idempotency-Key": "cancel-1"}
    url = f"/v1/payments/{to_cancel}/cancel"
    assert (await http.post(url, json={"reason": "fraud"}, headers=headers)).status_code == 202
    reused_cancel = await http.post(url, json={"reason": "duplicate"}, headers=headers)
    assert reused_cancel.status_code == 409, reused_cancel.text
    assert reused_cancel.json()["error"]["type"] == "idempotency_error"
    assert (await http.post(url, json={"reason": "fraud"}, headers=headers)).status_code == 202
    await stack.wait_status(to_cancel, "canceled")
    assert stack.kinds(to_cancel) == ["authorization", "void"]


async def test_keys_are_remembered_across_continue_as_new(
    buttons: tuple[Stack, httpx.AsyncClient],
) -> None:
    stack, http = buttons
    payment_id = await create(http, amount=5000, capture_method="manual")
    await stack.wait_status(payment_id, "requires_capture")
    assert (await capture(http, payment_id, {"amount": 4000}, key="cap-1")).status_code == 200
    first = await refund(http, payment_id, {"amount": 100}, key="re-1")
    assert first.status_code == 200, first.text
    handle = stack.client.get_workflow_handle(payment_id)
    first_run = (await handle.describe()).run_id
    # Enough refunds for Temporal to suggest continuing as new.
    while (await handle.describe()).run_id == first_run:
        assert (await refund(http, payment_id, {"amount": 10})).status_code == 200

    # The new run knows both keys: the same requests are answered as they stand...
    again = await capture(http, payment_id, {"amount": 4000}, key="cap-1")
    assert again.status_code == 200 and again.json()["amount_captured"] == 4000, again.text
    same = await refund(http, payment_id, {"amount": 100}, key="re-1")
    assert (same.status_code, same.json()["id"]) == (200, first.json()["id"])
    # ...and other requests under them are refused.
    for reused in (
        await capture(http, payment_id, {"amount": 3000}, key="cap-1"),
        await refund(http, payment_id, {"amount": 300}, key="re-1"),
    ):
        assert reused.status_code == 409, reused.text
        assert reused.json()["error"]["type"] == "idempotency_error"
    assert amounts(stack, payment_id, "capture") == [4000]
    assert amounts(stack, payment_id, "refund").count(100) == 1
