"""History at rest, on a real dev server: every payload the service writes is
sealed, a key rotation in the middle of a payment loses nothing, and an
operator's plain-JSON signal (as the CLI or UI sends it without the codec)
still reaches the workflow."""

from __future__ import annotations

import json
from collections.abc import Iterator

from google.protobuf.message import Message
from support import CORE_BOOKKEEPING, event_types, running_stack, with_keys
from temporalio.api.common.v1 import Payload, SearchAttributes
from temporalio.api.history.v1 import MarkerRecordedEventAttributes
from temporalio.client import Client

from gateway.memory import InMemoryGateway
from payments.codec import KEY_ID_METADATA, generate_key, is_sealed
from payments.models import CapturePayment, PaymentState

OLD = generate_key("2026-01")
NEW = generate_key("2026-06")


def payloads_in(message: Message) -> Iterator[Payload]:
    """Every payload anywhere in ``message``, search attributes aside (they are
    indexed by the server, so they stay readable by design), and core's own
    bookkeeping in markers."""
    if isinstance(message, SearchAttributes):
        return
    if isinstance(message, MarkerRecordedEventAttributes):
        skipped = CORE_BOOKKEEPING.get(message.marker_name)
        for key, payloads in message.details.items():
            if key != skipped:
                yield from payloads_in(payloads)
        if message.HasField("failure"):
            yield from payloads_in(message.failure)
        return
    if isinstance(message, Payload):
        yield message
        return
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            children = list(value.values())
        elif isinstance(value, Message):
            children = [value]
        else:
            children = list(value)  # a repeated message field
        for child in children:
            if isinstance(child, Message):
                yield from payloads_in(child)


async def test_history_is_sealed_and_a_key_rotation_loses_nothing(
    dev_client: Client, task_queue: str
) -> None:
    gateway = InMemoryGateway()
    async with running_stack(with_keys(dev_client, [OLD]), task_queue, gateway) as stack:
        created = await stack.create(
            capture_method="manual",
            customer_id="cus_rotation",
            description="order for Ada Lovelace",
            metadata={"shipping": "12 Marylebone Road"},
        )
        await stack.wait_status(created.id, "requires_capture")

    # Rotated: the new key seals from now on, the old one still opens what it sealed.
    async with running_stack(with_keys(dev_client, [NEW, OLD]), task_queue, gateway) as stack:
        await stack.update(created.id, "capture", CapturePayment(amount=1500), PaymentState)
        await stack.wait_status(created.id, "succeeded")
        # No codec on this client, as with `temporal workflow signal --input '{...}'`.
        handle = dev_client.get_workflow_handle(created.id)
        await handle.signal("refund", {"amount": 500, "reason": "ops: goodwill"})
        refunded = await stack.wait_for(created.id, lambda s: s.amount_refunded == 500)
        events = await stack.events(created.id)

    assert refunded.status == "partially_refunded"
    assert refunded.amount_captured == 1500
    assert event_types(events) == [
        "payment.requested",
        "payment.authorized",
        "payment.capture_requested",
        "payment.captured",
        "refund.requested",
        "refund.succeeded",
    ]
    assert [(op.kind, op.amount) for op in gateway.ledger.ledger(created.id)] == [
        ("authorization", 1999),
        ("capture", 1500),
        ("refund", 500),
    ]

    history = await handle.fetch_history()
    payloads = [p for event in history.events for p in payloads_in(event)]
    sealed_with = {p.metadata[KEY_ID_METADATA] for p in payloads if is_sealed(p)}
    # The fast path's gateway results sit in local activity markers: sealed too.
    markers = [
        event.marker_recorded_event_attributes
        for event in history.events
        if event.marker_recorded_event_attributes.marker_name == "core_local_activity"
    ]
    local_results = [p for marker in markers for p in marker.details["result"].payloads]
    # The marker's own bookkeeping (which activity, when) is the SDK's, in the clear.
    steps = [json.loads(m.details["data"].payloads[0].data)["activity_type"] for m in markers]
    gateway_steps = [step for step in steps if step != "announce_events"]
    assert gateway_steps == ["authorize", "capture", "refund"]
    assert all(is_sealed(p) for p in local_results)
    assert sealed_with == {b"2026-01", b"2026-06"}
    # The one payload in the clear is the one the operator typed.
    clear = [p.data for p in payloads if not is_sealed(p)]
    assert clear == [b'{"amount":500,"reason":"ops: goodwill"}']
    raw = history.to_json()
    for secret in ("Ada Lovelace", "Marylebone", "pm_card_visa", "order for"):
        assert secret not in raw
