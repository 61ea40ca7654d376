"""How a payment reads in the Temporal UI (issue 19): its current details say
its status, amounts and what the run waits for, rewritten with every event;
a failed payment's run ends failed with the payment's failure as the reason,
a succeeded or canceled one's completes."""

from __future__ import annotations

from support import current_details, run_closed, running_stack
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.exceptions import ApplicationError

from payments.models import CancelPayment, CapturePayment, PaymentState, Refund, RefundCommand
from payments.names import STATUS


async def test_a_declined_payment_s_run_fails_with_the_decline(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_chargeDeclinedInsufficientFunds")
        assert await run_closed(dev_client, created.id) == WorkflowExecutionStatus.FAILED
        try:
            await dev_client.get_workflow_handle(created.id).result()
        except WorkflowFailureError as err:
            cause = err.cause
        assert isinstance(cause, ApplicationError)
        assert cause.type == "card_declined"
        assert cause.message == (
            "payment failed: card_declined (insufficient_funds): Your card has insufficient funds."
        )
        details = await current_details(dev_client, created.id)
        assert details.splitlines()[0] == "**failed** · 19.99 USD · automatic capture  "
        assert "failure: card_declined (insufficient_funds)" in details
        assert details.endswith("waiting for: nothing: the payment is closed")
        # The record is the payment's, not the run's: the API reads it as before.
        assert (await stack.get(created.id)).status == "failed"


async def test_a_refused_capture_fails_the_run_after_the_void(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_captureFails")
        assert await run_closed(dev_client, created.id) == WorkflowExecutionStatus.FAILED
        assert stack.kinds(created.id) == ["authorization", "void"]


async def test_a_canceled_payment_s_run_completes(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        waiting = await current_details(dev_client, created.id)
        assert "capturable 19.99 USD" in waiting
        assert "waiting for: capture or cancel, until " in waiting
        await stack.update(created.id, "cancel", CancelPayment(reason="test"), PaymentState)
        assert await run_closed(dev_client, created.id) == WorkflowExecutionStatus.COMPLETED
        assert (await current_details(dev_client, created.id)).startswith("**canceled**")


async def test_a_payment_waiting_on_its_customer_says_so(
    dev_client: Client, task_queue: str
) -> None:
    """3-D Secure: the list's PaymentStatus and the details say who the run waits for."""
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_threeDSecure2Required")
        waiting = await stack.wait_status(created.id, "requires_action")
        assert waiting.next_action is not None
        details = await current_details(dev_client, created.id)
        assert details.startswith("**requires_action** · 19.99 USD")
        assert f"customer authenticates at: {waiting.next_action.redirect_to_url.url}" in details
        assert "waiting for: the customer to authenticate (3-D Secure), until " in details
        description = await dev_client.get_workflow_handle(created.id).describe()
        assert description.typed_search_attributes.get(STATUS) == "requires_action"
        await stack.update(created.id, "cancel", CancelPayment(reason="test"), PaymentState)
        assert await run_closed(dev_client, created.id) == WorkflowExecutionStatus.COMPLETED


async def test_the_details_follow_capture_and_refunds(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        await stack.update(created.id, "capture", CapturePayment(amount=1500), PaymentState)
        await stack.wait_status(created.id, "succeeded")
        captured = await current_details(dev_client, created.id)
        assert captured.splitlines()[:2] == [
            "**succeeded** · 19.99 USD · manual capture  ",
            "captured 15.00 USD  ",
        ]
        assert "waiting for: refunds, until " in captured
        await stack.update(
            created.id, "refund", RefundCommand(refund_id="re_1", amount=500), Refund
        )
        await stack.wait_status(created.id, "partially_refunded")
        refunded = await current_details(dev_client, created.id)
        assert "captured 15.00 USD · refunded 5.00 USD" in refunded
        assert "waiting for: refunds, until " in refunded
