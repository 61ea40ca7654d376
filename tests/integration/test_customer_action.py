"""Customer action (3-D Secure, CONTRACT §14) through the payment workflow, on
real Temporal servers with the simulator's ledger: the payment waits for its
customer, durably, and ends as the gateway says the customer decided, or as
its action window and its cancel say. The gateway's ledger is the check: an
authorization only once the customer approved, and never one left open."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from support import TEST_SERVER, event_types, register_search_attributes, running_stack, skip_time
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from gateway.memory import InMemoryGateway
from payments.gateway import (
    Authentication,
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    TransientGatewayError,
)
from payments.models import CancelCommand, CapturePayment, PaymentState


async def test_approved_authentication_goes_on_to_capture(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(dev_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer(
            return_url="https://shop.example/orders/1001"
        )
        assert waiting.next_action is not None
        redirect = waiting.next_action.redirect_to_url
        assert redirect.url == f"simulator:/authenticate/{authentication_id}"
        assert redirect.return_url == "https://shop.example/orders/1001"
        # Nothing is held on the card while the customer has not authenticated.
        assert stack.kinds(waiting.id) == []

        stack.gateway.ledger.decide(authentication_id, approve=True)
        await stack.ring(waiting.id)
        # The webhook wakes the payment: sooner than its own first look (10 s on).
        done = await stack.wait_status(waiting.id, "succeeded", "failed", within=8)

        assert done.status == "succeeded" and done.amount_captured == 1999
        assert done.next_action is None
        assert stack.kinds(waiting.id) == ["authorization", "capture"]
        types = event_types(await stack.events(waiting.id))
        assert types[types.index("payment.action_required") :] == [
            "payment.action_required",
            "payment.gateway_event",
            "payment.authenticated",
            "payment.authorized",
            "payment.captured",
        ]


async def test_approved_manual_payment_waits_for_capture(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(dev_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer(capture_method="manual")
        stack.gateway.ledger.decide(authentication_id, approve=True)
        await stack.ring(waiting.id)
        authorized = await stack.wait_status(waiting.id, "requires_capture")
        assert authorized.amount_capturable == 1999
        await stack.update(waiting.id, "capture", CapturePayment(amount=1500), PaymentState)
        captured = await stack.wait_status(waiting.id, "succeeded")
        assert captured.amount_captured == 1500
        assert stack.kinds(waiting.id) == ["authorization", "capture"]


async def test_failed_authentication_fails_the_payment(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(dev_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer()
        stack.gateway.ledger.decide(authentication_id, approve=False)
        await stack.ring(waiting.id)
        failed = await stack.wait_status(waiting.id, "failed", "succeeded")

        assert failed.status == "failed"
        assert failed.failure is not None
        assert (failed.failure.type, failed.failure.code) == ("card_error", "authentication_failed")
        assert failed.next_action is None
        assert stack.kinds(waiting.id) == []
        types = event_types(await stack.events(waiting.id))
        assert types[-2:] == ["payment.authentication_failed", "payment.failed"]


async def test_cancel_while_the_customer_authenticates(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(dev_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer()
        await stack.update(
            waiting.id, "cancel", CancelCommand(reason="changed my mind"), PaymentState
        )
        canceled = await stack.wait_status(waiting.id, "canceled", "failed")

        assert canceled.status == "canceled" and canceled.next_action is None
        # Ended at the gateway: the customer can no longer authorize it.
        assert stack.gateway.ledger.authentication(authentication_id).status == "canceled"
        with pytest.raises(InvalidGatewayRequest) as refused:
            stack.gateway.ledger.decide(authentication_id, approve=True)
        assert refused.value.code == "authentication_closed"
        assert stack.kinds(waiting.id) == []
        types = event_types(await stack.events(waiting.id))
        assert types[-2:] == ["payment.cancel_requested", "payment.canceled"]


async def test_a_lost_webhook_is_recovered_by_the_lookup(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer()
        stack.gateway.ledger.decide(authentication_id, approve=True)
        # No webhook ever comes: the payment's own look, a few seconds on, finds it.
        await skip_time(time_env, timedelta(seconds=15))
        done = await stack.wait_status(waiting.id, "succeeded", "failed")
        assert done.status == "succeeded"
        assert stack.kinds(waiting.id) == ["authorization", "capture"]
        assert "payment.gateway_event" not in event_types(await stack.events(waiting.id))
        # Nothing left open on the shared time-skipping server: its refund
        # window's timer would fire in a later test's skip, with no worker.
        await time_env.client.get_workflow_handle(waiting.id).terminate("test over")


async def test_no_authentication_within_the_window_fails_the_payment(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        waiting, authentication_id = await stack.waiting_on_customer()
        await skip_time(time_env, timedelta(minutes=59))
        assert (await stack.get(waiting.id)).status == "requires_action"
        await skip_time(time_env, timedelta(minutes=2))
        failed = await stack.wait_status(waiting.id, "failed", "succeeded")

        assert failed.failure is not None
        assert failed.failure.code == "authentication_timeout"
        assert stack.gateway.ledger.authentication(authentication_id).status == "canceled"
        assert stack.kinds(waiting.id) == []
        types = event_types(await stack.events(waiting.id))
        assert types[-2:] == ["payment.authentication_failed", "payment.failed"]


class DeclinesOnceAuthenticated(InMemoryGateway):
    """An issuer that declines the card after the customer authenticated (as
    Stripe's 3-D Secure test cards that then decline do)."""

    async def authentication(self, authentication_id: str) -> Authentication:
        found = await super().authentication(authentication_id)
        if found.status == "succeeded":
            raise CardDeclined("card_declined", "insufficient_funds", "Insufficient funds.")
        return found


async def test_declined_after_authenticating_fails_with_the_decline(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(dev_env.client, task_queue, DeclinesOnceAuthenticated()) as stack:
        waiting, authentication_id = await stack.waiting_on_customer()
        stack.gateway.ledger.decide(authentication_id, approve=True)
        await stack.ring(waiting.id)
        failed = await stack.wait_status(waiting.id, "failed", "succeeded", within=8)

        assert failed.failure is not None
        assert (failed.failure.code, failed.failure.decline_code) == (
            "card_declined",
            "insufficient_funds",
        )
        assert failed.next_action is None
        types = event_types(await stack.events(waiting.id))
        assert types[-3:] == ["payment.authenticated", "payment.declined", "payment.failed"]


class Unreachable(InMemoryGateway):
    """A gateway that stops answering ends and lookups by reference while ``down``."""

    down = False

    async def cancel_authentication(
        self, authentication_id: str, *, idempotency_key: str
    ) -> Authentication:
        if self.down:
            raise TransientGatewayError("no answer")
        return await super().cancel_authentication(
            authentication_id, idempotency_key=idempotency_key
        )

    async def find_by_reference(self, reference: str, **hints: Any) -> list[GatewayOperation]:
        if self.down:
            raise TransientGatewayError("no answer")
        return await super().find_by_reference(reference, **hints)


async def test_a_cancel_the_gateway_never_answers_still_cancels(task_queue: str) -> None:
    """Neither the end of the authentication nor the void by reference gets an
    answer for a day each: the payment says where it stands all along (what
    the API reads is what the workflow holds), then ends canceled."""
    # A server of its own: days skipped here would move the shared one's clock
    # ahead of the wall clock the API stamps payments with.
    time_env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter, test_server_existing_path=str(TEST_SERVER)
    )
    try:
        await register_search_attributes(time_env.client)
        await _never_answered(time_env, task_queue)
    finally:
        await time_env.shutdown()


async def _never_answered(time_env: WorkflowEnvironment, task_queue: str) -> None:
    gateway = Unreachable()
    async with running_stack(time_env.client, task_queue, gateway) as stack:
        waiting, _ = await stack.waiting_on_customer()
        gateway.down = True
        await stack.update(waiting.id, "cancel", CancelCommand(reason="gone"), PaymentState)
        for _ in range(3):
            await skip_time(time_env, timedelta(hours=16))
            read, told = await stack.get(waiting.id), await stack.query(waiting.id)
            assert read.model_dump() == told.model_dump()
            assert (told.next_action is not None) == (told.status == "requires_action")
        gateway.down = False
        done = await stack.wait_status(waiting.id, "canceled", "failed")
        assert done.status == "canceled" and done.next_action is None
        types = event_types(await stack.events(waiting.id))
        assert types[-2:] == ["payment.void_failed", "payment.canceled"]
