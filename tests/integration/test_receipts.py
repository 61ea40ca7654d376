"""Receipts by e-mail (CONTRACT §16) on a real dev server, mailed to a real
SMTP server (the sink `make run` starts, served here on a port of its own):
the messages a customer keeps, for the payment and for a refund; a mail
server down for a while, which delays the receipt and never the payment; a
refusal, which becomes ``receipt.failed``; and the address kept out of
search attributes, raw history and every log line."""

from __future__ import annotations

import asyncio
import logging
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path

import pytest
from support import event_types, mail_sink, running_stack, with_keys
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.testing import WorkflowEnvironment

from devstack.config import free_ports
from payments.codec import generate_key
from payments.models import Refund, RefundCommand

CUSTOMER = "jane.doe@example.com"
KEY = generate_key("receipts")


def mails(directory: Path) -> list[EmailMessage]:
    found = []
    for path in sorted(directory.glob("*.eml")):
        message = message_from_bytes(path.read_bytes(), policy=default_policy)
        assert isinstance(message, EmailMessage)
        found.append(message)
    return found


def parts(message: EmailMessage) -> tuple[str, str]:
    """The text and the HTML of a receipt."""
    text = message.get_body(("plain",))
    html = message.get_body(("html",))
    assert text is not None and html is not None
    return str(text.get_content()), str(html.get_content())  # type: ignore[attr-defined]


@pytest.fixture
def client(dev_env: WorkflowEnvironment) -> Client:
    # As the worker runs: every payload sealed, so the raw history is ciphertext.
    return with_keys(dev_env.client, [KEY])


async def test_a_receipt_for_the_payment_and_for_each_refund(
    client: Client, task_queue: str, tmp_path: Path
) -> None:
    [port] = free_ports(1)
    async with (
        mail_sink(tmp_path, port),
        running_stack(client, task_queue, smtp_url=f"smtp://127.0.0.1:{port}") as stack,
    ):
        created = await stack.create(receipt_email=CUSTOMER, description="Order 1001")
        assert created.receipt_email == CUSTOMER
        await stack.wait_status(created.id, "succeeded")
        [sent] = await stack.receipt_events(created.id, 1)
        assert sent.type == "receipt.sent"
        assert sent.data == {
            "receipt": "payment",
            "message_id": f"<receipt.{created.id}@payments.example.com>",
        }
        [paid] = mails(tmp_path)
        assert paid["To"] == CUSTOMER
        assert paid["From"] == "Payments <receipts@payments.example.com>"
        assert paid["Message-ID"] == sent.data["message_id"]
        assert paid["Subject"] == "Receipt for your payment of $19.99 (acme)"
        for body in parts(paid):
            assert "$19.99" in body and created.id in body and "Order 1001" in body

        await stack.update(
            created.id, "refund", RefundCommand(refund_id="re_receipt1", amount=500), Refund
        )
        await stack.wait_status(created.id, "partially_refunded")
        _, refunded = await stack.receipt_events(created.id, 2)
        assert refunded.type == "receipt.sent"
        assert refunded.data["receipt"] == "refund"
        assert refunded.data["refund_id"] == "re_receipt1"
        [_, refund_mail] = mails(tmp_path)
        assert (
            refund_mail["Message-ID"] == f"<receipt.{created.id}.re_receipt1@payments.example.com>"
        )
        assert refund_mail["Subject"] == "Refund of $5.00 (acme)"
        for body in parts(refund_mail):
            assert "Amount refunded" in body and "$5.00" in body
            assert "Remaining after refunds" in body and "$14.99" in body
        # One charge and one refund, whatever the mail did.
        assert stack.kinds(created.id) == ["authorization", "capture", "refund"]


async def test_a_mail_server_down_for_a_while_delays_the_receipt_not_the_payment(
    client: Client, task_queue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    [port] = free_ports(1)  # nothing listens there yet
    async with running_stack(client, task_queue, smtp_url=f"smtp://127.0.0.1:{port}") as stack:
        created = await stack.create(receipt_email=CUSTOMER)
        # The payment settles, and a refund is paid, while no mail server answers.
        await stack.wait_status(created.id, "succeeded", within=10)
        await stack.update(created.id, "refund", RefundCommand(refund_id="re_down"), Refund)
        await stack.wait_status(created.id, "refunded", within=10)
        await asyncio.sleep(2.5)  # a few attempts at the receipts
        assert "receipt.sent" not in event_types(await stack.events(created.id))
        async with mail_sink(tmp_path, port):
            found = await stack.receipt_events(created.id, 2)
            assert [e.type for e in found] == ["receipt.sent", "receipt.sent"]
            assert len(mails(tmp_path)) == 2
        attempts = await receipt_attempts(client, created.id)
        assert min(attempts) > 1, attempts
    assert_not_logged(caplog, CUSTOMER)


async def test_a_refusal_is_receipt_failed_and_the_payment_stands(
    client: Client,
    dev_env: WorkflowEnvironment,
    task_queue: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    [port] = free_ports(1)
    async with (
        mail_sink(tmp_path, port, refuse=lambda address: True),
        running_stack(client, task_queue, smtp_url=f"smtp://127.0.0.1:{port}") as stack,
    ):
        created = await stack.create(receipt_email=CUSTOMER, customer_id="cus_42")
        [failed] = await stack.receipt_events(created.id, 1)
        assert failed.type == "receipt.failed"
        assert failed.data["code"] == "receipt_refused"
        assert "550" in failed.data["message"]
        assert CUSTOMER not in failed.data["message"]
        assert (await stack.get(created.id)).status == "succeeded"
        assert mails(tmp_path) == []
        # Refused once, not retried.
        assert await receipt_attempts(client, created.id) == [1]

        # Nowhere in the clear: not in the index, not in history, not in a log.
        described = await dev_env.client.get_workflow_handle(created.id).describe()
        assert described.search_attributes["CustomerId"] == ["cus_42"]
        assert CUSTOMER not in repr(described.search_attributes)
        history = await dev_env.client.get_workflow_handle(created.id).fetch_history()
        assert CUSTOMER.encode() not in history.to_json().encode()
        assert b"jane.doe" not in b"".join(e.SerializeToString() for e in history.events)
    assert_not_logged(caplog, CUSTOMER)


async def receipt_attempts(client: Client, payment_id: str) -> list[int]:
    """The attempt each receipt activity of the payment completed on."""
    history = await client.get_workflow_handle(payment_id).fetch_history()
    scheduled = {
        e.event_id
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
        and e.activity_task_scheduled_event_attributes.activity_type.name == "send_receipt"
    }
    return [
        e.activity_task_started_event_attributes.attempt
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED
        and e.activity_task_started_event_attributes.scheduled_event_id in scheduled
    ]


def assert_not_logged(caplog: pytest.LogCaptureFixture, text: str) -> None:
    """Nothing the service logged holds ``text`` (the mail server's own log,
    ``mail.log``, is the recipient's side: it must see the address)."""
    ours = [r for r in caplog.records if not r.name.startswith("mail.")]
    logged = [caplog.handler.format(r) for r in ours]
    leaks = [line for line in logged if text in line]
    assert logged and not leaks, leaks[:1]
