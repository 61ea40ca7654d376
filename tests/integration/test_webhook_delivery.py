"""Webhooks to merchants (CONTRACT §12) on a real dev server, delivered over
real sockets to a receiver listening on loopback: what arrives, signed how,
in which order, to whom; retries, redelivery, rotation, disabling, removal.
Signatures are checked with the ``standardwebhooks`` library, as a merchant
would check them."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from standardwebhooks import Webhook, WebhookVerificationError
from support import Received, Receiver, Stack, running_stack, serving
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory

from payments.models import CapturePayment, CreatePayment, RefundPayment
from payments.refusals import Refused
from payments.webhooks import (
    CreateEndpoint,
    EndpointStatus,
    UpdateEndpoint,
    deliveries_workflow_id,
    dispatch_workflow_id,
    event_id,
)


@pytest.fixture
async def stack(dev_client: Client, task_queue: str) -> AsyncIterator[Stack]:
    async with running_stack(dev_client, task_queue) as running:
        yield running


# Each test its own merchant: endpoints belong to a merchant, and the dev server is shared.
def _merchant() -> str:
    return f"m-{uuid.uuid4().hex[:12]}"


async def _endpoint(stack: Stack, merchant: str, url: str, events: list[str] | None = None) -> Any:
    return await stack.webhooks.create(
        merchant, CreateEndpoint(url=url, enabled_events=events or ["*"])
    )


async def _pay(stack: Stack, merchant: str, **fields: Any) -> str:
    request = CreatePayment.model_validate(
        {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", **fields}
    )
    started = await stack.service.start(merchant, request)
    return started.payment.id


def _types(received: list[Received]) -> list[str]:
    return [r.json()["type"] for r in received]


def _has(*types: str) -> Any:
    return lambda received: all(t in _types(received) for t in types)


async def test_a_payments_events_arrive_signed_in_order_with_the_payment(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url)
        payment_id = await _pay(stack, merchant)
        received = await receiver.wait_for(_has("payment.captured"))

    assert _types(received) == ["payment.requested", "payment.authorized", "payment.captured"]
    history = await stack.service.payment_events(payment_id, merchant)
    assert [r.json()["seq"] for r in received] == [e.seq for e in history]
    for request in received:
        # The merchant's check, with the library: raises unless signed with the secret.
        body = Webhook(made.secret).verify(request.body, request.headers)
        assert request.headers["webhook-id"] == body["id"] == event_id(payment_id, body["seq"])
        assert body["object"] == "event"
        assert body["payment_id"] == payment_id
        assert request.headers["content-type"] == "application/json"
    captured = received[-1].json()
    assert captured["data"]["object"]["status"] == "succeeded"
    assert captured["data"]["object"]["amount_captured"] == 1999
    assert captured["data"]["event"]["amount"] == 1999
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 44).verify(received[0].body, received[0].headers)


async def test_an_endpoint_gets_only_the_events_it_asked_for(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        await _endpoint(stack, merchant, url, ["payment.captured", "refund.succeeded"])
        payment_id = await _pay(stack, merchant, capture_method="manual")
        await stack.wait_status(payment_id, "requires_capture", merchant=merchant)
        await stack.service.capture(payment_id, merchant, CapturePayment())
        await receiver.wait_for(_has("payment.captured"))
        await stack.service.refund(payment_id, merchant, RefundPayment(amount=500))
        received = await receiver.wait_for(_has("refund.succeeded"))
    assert _types(received) == ["payment.captured", "refund.succeeded"]


async def test_merchants_see_and_receive_only_their_own(stack: Stack) -> None:
    ours, theirs = _merchant(), _merchant()
    our_receiver, their_receiver = Receiver(), Receiver()
    async with serving(our_receiver) as our_url, serving(their_receiver) as their_url:
        mine = await _endpoint(stack, ours, our_url)
        await _endpoint(stack, theirs, their_url)
        payment_id = await _pay(stack, ours)
        await our_receiver.wait_for(_has("payment.captured"))
        # The other merchant's endpoint never hears of it; its list holds only its own.
        assert their_receiver.received == []
        listed, _ = await stack.webhooks.list_endpoints(theirs)
        assert mine.endpoint.id not in [e.id for e in listed]
        with pytest.raises(Refused) as refused:
            await stack.webhooks.get(theirs, mine.endpoint.id)
        assert refused.value.code == "resource_missing"
        with pytest.raises(Refused):
            await stack.webhooks.delete(theirs, mine.endpoint.id)
        with pytest.raises(Refused):
            await stack.webhooks.redeliver(theirs, mine.endpoint.id, event_id(payment_id, 1))
    assert {r.json()["payment_id"] for r in our_receiver.received} == {payment_id}


async def test_a_failed_delivery_is_retried_and_later_events_wait_their_turn(stack: Stack) -> None:
    merchant = _merchant()
    # The first request fails: the schedule's first retry is 5 s later.
    receiver = Receiver(lambda count: 500 if count == 0 else 200)
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url)
        payment_id = await _pay(stack, merchant)
        received = await receiver.wait_for(_has("payment.captured"), within=30)
        # The list reads visibility, a moment behind the deliveries themselves.
        deliveries, _ = await _wait_deliveries(
            stack,
            merchant,
            made.endpoint.id,
            lambda found: sum(d.attempts for d in found) == 4,
        )

    assert [(r.json()["type"], r.answered) for r in received] == [
        ("payment.requested", 500),
        ("payment.requested", 200),
        ("payment.authorized", 200),
        ("payment.captured", 200),
    ]
    assert received[0].headers["webhook-id"] == received[1].headers["webhook-id"]
    by_type = {d.type: d for d in deliveries}
    assert by_type["payment.requested"].attempts == 2
    assert by_type["payment.requested"].status == "succeeded"
    assert by_type["payment.captured"].attempts == 1
    assert by_type["payment.captured"].last_status_code == 200
    # Newest first.
    assert [d.seq for d in deliveries] == sorted((d.seq for d in deliveries), reverse=True)
    assert {d.payment_id for d in deliveries} == {payment_id}


async def test_a_receiver_that_is_down_for_a_while_gets_everything_once_it_is_back(
    stack: Stack,
) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as first:
        port = int(first.rsplit(":", 1)[1])
    # Nothing listens on the port now: connections are refused.
    made = await _endpoint(stack, merchant, f"http://127.0.0.1:{port}/hooks")
    payment_id = await _pay(stack, merchant)
    await stack.wait_status(payment_id, "succeeded", merchant=merchant)
    deliveries, _ = await _wait_deliveries(
        stack, merchant, made.endpoint.id, lambda d: any(x.attempts for x in d)
    )
    # The first event failed once and waits for its retry, 5 s on; the others wait behind it.
    first = next(d for d in deliveries if d.type == "payment.requested")
    assert (first.status, first.attempts, first.last_error) == ("pending", 1, "connection_failed")
    assert first.next_attempt_at is not None
    assert all(d.attempts == 0 for d in deliveries if d is not first)
    async with serving(receiver, port=port):
        received = await receiver.wait_for(_has("payment.captured"), within=30)
    assert _types(received) == ["payment.requested", "payment.authorized", "payment.captured"]


async def test_a_redelivery_sends_the_same_event_again_now(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url)
        payment_id = await _pay(stack, merchant)
        received = await receiver.wait_for(_has("payment.captured"))
        authorized = next(r for r in received if r.json()["type"] == "payment.authorized")
        again = await stack.webhooks.redeliver(
            merchant, made.endpoint.id, authorized.headers["webhook-id"]
        )
        assert again.status == "pending"
        received = await receiver.wait_for(lambda r: len(r) == 4)
        deliveries, _ = await _wait_deliveries(
            stack,
            merchant,
            made.endpoint.id,
            lambda d: any(x.type == "payment.authorized" and x.attempts == 2 for x in d),
        )
    assert received[-1].body == authorized.body
    assert received[-1].headers["webhook-id"] == authorized.headers["webhook-id"]
    Webhook(made.secret).verify(received[-1].body, received[-1].headers)
    assert {d.status for d in deliveries} == {"succeeded"}
    assert {d.payment_id for d in deliveries} == {payment_id}


async def test_after_a_rotation_both_secrets_sign(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url, ["payment.captured"])
        rotated = await stack.webhooks.rotate(merchant, made.endpoint.id)
        assert rotated.secret != made.secret
        await _pay(stack, merchant)
        [received] = await receiver.wait_for(lambda r: len(r) == 1)
    signatures = received.headers["webhook-signature"].split(" ")
    assert len(signatures) == 2
    for secret in (made.secret, rotated.secret):
        Webhook(secret).verify(received.body, received.headers)
    for signature in signatures:
        # Each on its own verifies with exactly one of the two.
        alone = {**received.headers, "webhook-signature": signature}
        verified = []
        for secret in (made.secret, rotated.secret):
            try:
                Webhook(secret).verify(received.body, alone)
                verified.append(secret)
            except WebhookVerificationError:
                pass
        assert len(verified) == 1


async def test_a_disabled_endpoint_receives_nothing_until_enabled_again(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url, ["payment.captured"])
        changed = await stack.webhooks.update(
            merchant, made.endpoint.id, UpdateEndpoint(status=EndpointStatus.DISABLED)
        )
        assert changed.status == "disabled"
        quiet = await _pay(stack, merchant)
        await stack.wait_status(quiet, "succeeded", merchant=merchant)
        await stack.webhooks.update(
            merchant, made.endpoint.id, UpdateEndpoint(status=EndpointStatus.ENABLED)
        )
        await _settle_caches()
        heard = await _pay(stack, merchant)
        [received] = await receiver.wait_for(lambda r: len(r) == 1)
        # The running payments are told of the merchant's endpoint again
        # (TELL_AGAIN_AFTER, 5 s after it was made): the quiet one still
        # sends nothing it recorded while the endpoint was disabled.
        await _settle_caches(seconds=4)
    assert received.json()["payment_id"] == heard
    assert len(receiver.received) == 1


async def test_deleting_an_endpoint_stops_its_pending_deliveries(stack: Stack) -> None:
    merchant = _merchant()
    receiver = Receiver(lambda _: 503)
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url, ["payment.captured"])
        await _pay(stack, merchant)
        await receiver.wait_for(lambda r: len(r) == 1)
        removed = await stack.webhooks.delete(merchant, made.endpoint.id)
        assert removed.id == made.endpoint.id
        with pytest.raises(Refused):
            await stack.webhooks.get(merchant, made.endpoint.id)
        # The retry 5 s later finds the endpoint gone and sends nothing.
        await _settle_caches(seconds=7)
    assert len(receiver.received) == 1


async def _settle_caches(seconds: float = 1.1) -> None:
    """Let the workers' look at the merchant's endpoints go stale (a second)."""
    await asyncio.sleep(seconds)


async def _wait_deliveries(
    stack: Stack,
    merchant: str,
    endpoint_id: str,
    predicate: Any,
    within: float = 20.0,
    limit: int = 10,
) -> Any:
    deadline = asyncio.get_running_loop().time() + within
    while True:
        page = await stack.webhooks.deliveries(merchant, endpoint_id, limit=limit)
        if predicate(page[0]):
            return page
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out; deliveries {page[0]}")
        await asyncio.sleep(0.2)


async def test_a_payment_started_before_the_first_endpoint_sends_what_happens_after(
    stack: Stack,
) -> None:
    """The merchant's first endpoint tells its running payments (``webhooks_on``):
    a payment authorized before it existed delivers its capture, and only that."""
    merchant = _merchant()
    receiver = Receiver()
    payment_id = await _pay(stack, merchant, capture_method="manual")
    await stack.wait_status(payment_id, "requires_capture", merchant=merchant)
    async with serving(receiver) as url:
        await _endpoint(stack, merchant, url)
        await asyncio.sleep(1)  # the payment hears of it (a batch signal)
        await stack.service.capture(payment_id, merchant, CapturePayment())
        received = await receiver.wait_for(_has("payment.captured"))
    assert _types(received) == ["payment.capture_requested", "payment.captured"]


async def test_a_merchant_without_endpoints_pays_nothing_for_webhooks(stack: Stack) -> None:
    """No announcement, no delivery workflow: the payment's history is as it
    was before webhooks existed."""
    merchant = _merchant()
    payment_id = await _pay(stack, merchant)
    await stack.wait_status(payment_id, "succeeded", merchant=merchant)
    history = await stack.client.get_workflow_handle(payment_id).fetch_history()
    activities = [
        json.loads(event.marker_recorded_event_attributes.details["data"].payloads[0].data)[
            "activity_type"
        ]
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    assert activities == ["authorize", "capture"]
    assert await stack.webhooks.payment_deliveries(merchant, payment_id) == []


async def test_a_fast_payment_announces_its_events_once(stack: Stack) -> None:
    """Authorized and captured in one workflow task: one announcement for the
    three events, so one delivery workflow task, not one per event."""
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        await _endpoint(stack, merchant, url)
        payment_id = await _pay(stack, merchant)
        await receiver.wait_for(_has("payment.captured"))
    history = await stack.client.get_workflow_handle(payment_id).fetch_history()
    assert len(_local_activity_markers(history, "announce_events")) == 1


async def test_an_endpoint_for_captures_only_gets_a_fast_payments_capture(
    stack: Stack,
) -> None:
    """A fast payment records its request, authorization and capture in one
    workflow task; an endpoint that wants only the capture gets it, and only
    it (the task's announcement is filtered by all the types it recorded)."""
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        await _endpoint(stack, merchant, url, ["payment.captured"])
        payment_id = await _pay(stack, merchant)
        received = await receiver.wait_for(_has("payment.captured"))
    assert _types(received) == ["payment.captured"]
    assert received[0].json()["payment_id"] == payment_id


def _local_activity_markers(history: WorkflowHistory, activity: str) -> list[HistoryEvent]:
    """The markers of a history's local activities of type ``activity``."""
    return [
        event
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_local_activity"
        and activity.encode()
        in event.marker_recorded_event_attributes.details["data"].payloads[0].data
    ]


async def test_first_attempts_that_deliver_start_no_workflow_per_payment(stack: Stack) -> None:
    """The merchant's dispatch workflow sends a batch of payments' events in
    one local activity; a payment whose events all went out at once has no
    delivery workflow of its own, and the list still shows its deliveries."""
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        made = await _endpoint(stack, merchant, url)
        paid = await asyncio.gather(*(_pay(stack, merchant) for _ in range(4)))
        await receiver.wait_for(lambda r: len(r) == 12)
        deliveries, _ = await _wait_deliveries(
            stack, merchant, made.endpoint.id, lambda d: len(d) == 12, limit=100
        )
    assert sorted((r.json()["payment_id"], r.json()["seq"]) for r in receiver.received) == sorted(
        (d.payment_id, d.seq) for d in deliveries
    )
    assert {(d.status, d.attempts) for d in deliveries} == {("succeeded", 1)}
    for payment_id in paid:
        seqs = [r.json()["seq"] for r in receiver.received if r.json()["payment_id"] == payment_id]
        assert seqs == sorted(seqs) and len(seqs) == 3
        shown = await stack.webhooks.payment_deliveries(merchant, payment_id)
        assert [(d.seq, d.status) for d in shown] == [(s, "succeeded") for s in seqs]
    per_payment = stack.client.list_workflows(
        f"WorkflowType = 'WebhookDeliveryWorkflow' AND MerchantId = '{merchant}'"
    )
    assert [execution.id async for execution in per_payment] == []
    dispatch = await stack.client.get_workflow_handle(dispatch_workflow_id(merchant)).describe()
    assert dispatch.status == WorkflowExecutionStatus.RUNNING


async def test_payments_that_come_while_a_batch_runs_share_the_next(stack: Stack) -> None:
    """Announcements that arrive while a batch of first attempts runs wait on
    the server and come to the next batch together: ten payments started
    40 ms apart take a few batches (a workflow task and a marker each), not
    one each, and every event still arrives once, in order."""
    merchant = _merchant()
    receiver = Receiver()
    async with serving(receiver) as url:
        await _endpoint(stack, merchant, url)
        await _pay(stack, merchant)  # starts the merchant's dispatch workflow
        await receiver.wait_for(lambda r: len(r) == 3)
        paid = []
        for _ in range(10):
            paid.append(await _pay(stack, merchant))
            await asyncio.sleep(0.04)
        await receiver.wait_for(lambda r: len(r) == 33)
    history = await stack.client.get_workflow_handle(dispatch_workflow_id(merchant)).fetch_history()
    batches = _local_activity_markers(history, "deliver_first_attempts")
    assert 2 <= len(batches) <= 1 + 5
    for payment_id in paid:
        seqs = [r.json()["seq"] for r in receiver.received if r.json()["payment_id"] == payment_id]
        assert len(seqs) == 3 and seqs == sorted(set(seqs))


async def test_an_endpoint_that_times_out_does_not_hold_up_the_others(stack: Stack) -> None:
    """One endpoint accepts the connection and never answers: its first
    attempt times out (10 s) while the other endpoint gets every event at
    once; from then on its deliveries go through the payments' delivery
    workflows, and the other endpoint's first attempts no longer wait."""
    merchant = _merchant()
    receiver = Receiver()
    silent = await asyncio.start_server(_never_answer, "127.0.0.1", 0)
    silent_url = f"http://127.0.0.1:{silent.sockets[0].getsockname()[1]}/hooks"
    try:
        async with serving(receiver) as url:
            await _endpoint(stack, merchant, url)
            stuck = await _endpoint(stack, merchant, silent_url)
            first = await _pay(stack, merchant)
            await receiver.wait_for(lambda r: len(r) == 3, within=5)
            # The batch ends once the silent endpoint's attempt has timed out.
            await _wait_deliveries(
                stack,
                merchant,
                stuck.endpoint.id,
                lambda d: any(x.last_error == "timeout" for x in d),
                within=20,
            )
            second = await _pay(stack, merchant)
            await receiver.wait_for(lambda r: len(r) == 6, within=5)
            # Had the second payment's batch tried the silent endpoint, the
            # third payment's first attempts would wait out its 10 s.
            began = asyncio.get_running_loop().time()
            third = await _pay(stack, merchant)
            await receiver.wait_for(lambda r: len(r) == 9, within=15)
            took = asyncio.get_running_loop().time() - began
            handed = stack.client.list_workflows(
                f"WorkflowType = 'WebhookDeliveryWorkflow' AND MerchantId = '{merchant}'"
            )
            await asyncio.sleep(1)  # visibility
            carried = sorted([execution.id async for execution in handed])
    finally:
        silent.close()
    assert took < 5
    assert [r.json()["payment_id"] for r in receiver.received[3:]] == [second] * 3 + [third] * 3
    assert carried == sorted(deliveries_workflow_id(p) for p in (first, second, third))


async def _never_answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError):
        await reader.read(65536)
        await asyncio.sleep(30)
    writer.close()
