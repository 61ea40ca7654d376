"""What the worker's log shows for a payment: a business outcome (a decline, a
capture the issuer refuses) is one INFO line naming the payment, the step and
the gateway's code, with no traceback; a bug in an activity still logs its
traceback. Logged at INFO, the worker's level unless PAYMENTS_LOG_LEVEL says
otherwise; at DEBUG the SDK adds its own record of every failed attempt."""

from __future__ import annotations

import asyncio
import logging

import pytest
from support import event_types, running_stack
from temporalio.client import Client

from gateway.memory import InMemoryGateway
from payments.gateway import GatewayOperation
from payments.models import CapturePayment, PaymentState
from payments.refusals import Refused


def _about(caplog: pytest.LogCaptureFixture, payment_id: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if payment_id in record.getMessage()]


def _tracebacks(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.exc_info or record.exc_text]


async def test_a_decline_logs_one_line_and_no_traceback(
    dev_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_chargeDeclinedInsufficientFunds")
        failed = await stack.wait_status(created.id, "failed")
    # The workflow reads the failure as before: code, decline code, events.
    assert failed.failure is not None
    assert (failed.failure.code, failed.failure.decline_code) == (
        "card_declined",
        "insufficient_funds",
    )
    assert event_types(await stack.events(created.id)) == [
        "payment.requested",
        "payment.declined",
        "payment.failed",
    ]
    [line] = _about(caplog, created.id)
    assert line.levelno == logging.INFO
    refused = "authorize refused by the gateway: card_declined (insufficient_funds)"
    assert line.getMessage().startswith(f"payment {created.id}: {refused}")
    assert _tracebacks(caplog) == []
    assert "Traceback" not in caplog.text


async def test_a_refused_capture_logs_one_line_and_no_traceback(
    dev_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_captureFails")
        failed = await stack.wait_status(created.id, "failed")
    assert failed.failure is not None
    assert stack.kinds(created.id) == ["authorization", "void"]
    [line] = _about(caplog, created.id)
    assert line.levelno == logging.INFO
    assert f"payment {created.id}: capture refused by the gateway: capture_refused" in (
        line.getMessage()
    )
    assert _tracebacks(caplog) == []
    assert "Traceback" not in caplog.text


async def test_a_refused_update_logs_no_traceback(
    dev_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        with pytest.raises(Refused) as too_much:
            await stack.update(created.id, "capture", CapturePayment(amount=5000), PaymentState)
    assert too_much.value.code == "amount_too_large"
    assert _tracebacks(caplog) == []
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


class _BrokenGateway(InMemoryGateway):
    """A gateway adapter with a bug: authorize raises what no adapter should."""

    async def authorize(self, **_: object) -> GatewayOperation:
        raise RuntimeError("a bug in the adapter")


class _Traceback(logging.Handler):
    """Wakes the test when a record with a traceback arrives."""

    def __init__(self) -> None:
        super().__init__()
        self.seen = asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.set()


async def test_an_unexpected_error_in_an_activity_still_logs_its_traceback(
    dev_client: Client, task_queue: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    watcher = _Traceback()
    logging.getLogger().addHandler(watcher)
    try:
        async with running_stack(dev_client, task_queue, gateway=_BrokenGateway()) as stack:
            created = await stack.create()
            try:
                # A hang guard, not a timing claim: the first attempt fails at once.
                await asyncio.wait_for(watcher.seen.wait(), timeout=60)
            finally:
                # It would be retried for minutes; nobody else runs this queue.
                await dev_client.get_workflow_handle(created.id).terminate("test over")
    finally:
        logging.getLogger().removeHandler(watcher)
    [failed] = _tracebacks(caplog)[:1]
    assert failed.levelno == logging.WARNING
    assert failed.exc_info is not None and isinstance(failed.exc_info[1], RuntimeError)
    assert "RuntimeError: a bug in the adapter" in caplog.text
    assert "Traceback (most recent call last)" in caplog.text
    assert not any("refused by the gateway" in r.getMessage() for r in caplog.records)
