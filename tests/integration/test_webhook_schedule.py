"""The webhook retry schedule over its whole three days, and an endpoint's
lease, on the time-skipping server: a receiver that never says yes is tried
at 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then every 12 h, and the
delivery ends ``failed`` (CONTRACT §12)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from datetime import timedelta
from typing import Any

from support import Receiver, running_stack, serving, skip_time
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from payments.models import CreatePayment
from payments.names import DELIVERIES_MEMO
from payments.webhooks import CreateEndpoint, Delivery, deliveries_workflow_id
from workflows.webhooks import LINGER

HOUR = timedelta(hours=1)
PUBLISHED = [
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    2 * HOUR,
    5 * HOUR,
    10 * HOUR,
    10 * HOUR,
    12 * HOUR,
    12 * HOUR,
    12 * HOUR,
]


async def test_a_delivery_nobody_accepts_follows_the_schedule_for_three_days_then_fails(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    merchant = f"m-{uuid.uuid4().hex[:12]}"
    receiver = Receiver(lambda _: 500)
    client = time_env.client
    async with running_stack(client, task_queue) as stack, serving(receiver) as url:
        await stack.webhooks.create(
            merchant, CreateEndpoint(url=url, enabled_events=["payment.captured"])
        )
        request = CreatePayment(amount=1999, currency="usd", payment_method="pm_card_visa")
        payment_id = (await stack.service.start(merchant, request)).payment.id
        await stack.wait_status(payment_id, "succeeded", merchant=merchant)
        handle = client.get_workflow_handle(deliveries_workflow_id(payment_id))
        # The first attempt is the dispatch workflow's; skip time only once the
        # payment's delivery workflow carries the retry (its first timer).
        await receiver.wait_for(lambda r: len(r) == 1)
        await _first_timer(handle)
        for _ in range(20):  # time skips through the schedule, six hours at a time
            await skip_time(time_env, timedelta(hours=6))
            if (await handle.describe()).status == WorkflowExecutionStatus.COMPLETED:
                break
        history = await handle.fetch_history()
        description = await handle.describe()

    timers = [
        event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
        for event in history.events
        if event.event_type == EventType.EVENT_TYPE_TIMER_STARTED
    ]
    # The first attempt was the dispatch workflow's: the delivery workflow
    # waits what is left of the first 5 s, then the schedule as published.
    assert timedelta(seconds=4) < timers[0] <= PUBLISHED[0]
    assert timers[1:] == [*PUBLISHED[1:], LINGER]
    assert len(receiver.received) == len(PUBLISHED) + 1
    assert {r.headers["webhook-id"] for r in receiver.received} == {
        receiver.received[0].headers["webhook-id"]
    }
    [delivery] = await description.memo_value(DELIVERIES_MEMO, type_hint=list[Delivery])
    assert delivery.status == "failed"
    assert delivery.attempts == len(PUBLISHED) + 1
    assert delivery.last_status_code == 500
    assert delivery.next_attempt_at is None


async def test_a_leased_endpoint_is_removed_when_its_lease_lapses(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    merchant = f"m-{uuid.uuid4().hex[:12]}"
    async with running_stack(time_env.client, task_queue) as stack:
        leased = await stack.webhooks.create(
            merchant,
            CreateEndpoint(url="http://127.0.0.1:9/", enabled_events=["*"], lease_seconds=60),
        )
        kept = await stack.webhooks.create(
            merchant, CreateEndpoint(url="http://127.0.0.1:9/", enabled_events=["*"])
        )
        assert leased.endpoint.expires_at is not None
        assert kept.endpoint.expires_at is None
        await skip_time(time_env, timedelta(seconds=61))
        listed, _ = await stack.webhooks.list_endpoints(merchant)
    assert [e.id for e in listed] == [kept.endpoint.id]


async def _first_timer(handle: WorkflowHandle[Any, Any]) -> None:
    for _ in range(200):
        with contextlib.suppress(RPCError):
            history = await handle.fetch_history()
            if any(e.event_type == EventType.EVENT_TYPE_TIMER_STARTED for e in history.events):
                return
        await asyncio.sleep(0.05)
    raise AssertionError("the delivery workflow never waited for its first retry")
