"""The saga's clocks, on the time-skipping test server: the authorization
window of a manual payment and the refund window of a captured one."""

from __future__ import annotations

from datetime import timedelta

import pytest
from support import event_types, running_stack, skip_time
from temporalio.testing import WorkflowEnvironment

from gateway.simulator.core import Faults
from payments.models import CapturePayment, PaymentState, Refund, RefundCommand
from payments.refusals import Refused


async def test_uncaptured_authorization_expires_after_seven_days(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        await skip_time(time_env, timedelta(days=6))
        assert (await stack.get(created.id)).status == "requires_capture"
        await skip_time(time_env, timedelta(days=1, hours=1))
        expired = await stack.wait_status(created.id, "canceled")
        assert expired.amount_capturable == 0
        assert stack.kinds(created.id) == ["authorization", "void"]
        assert event_types(await stack.events(created.id))[-3:] == [
            "payment.expired",
            "payment.voided",
            "payment.canceled",
        ]


async def test_refund_window_closes_the_workflow(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        await stack.update(
            created.id, "refund", RefundCommand(refund_id="re_1", amount=100), Refund
        )
        await stack.wait_status(created.id, "partially_refunded")
        handle = time_env.client.get_workflow_handle(created.id, result_type=PaymentState)
        await skip_time(time_env, timedelta(days=181))
        final = await handle.result()
        assert final.amount_refunded == 100
        with pytest.raises(Refused) as closed:
            await stack.update(created.id, "refund", RefundCommand(refund_id="re_2"), Refund)
        assert closed.value.code == "payment_closed"
        # A closed payment still reads as it ended.
        assert (await stack.get(created.id)).status == "partially_refunded"


async def test_a_capture_that_never_got_an_answer_is_looked_up(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        # Every capture reply is lost after the gateway committed it, for longer
        # than the capture step keeps trying (a day).
        stack.gateway.ledger.faults = Faults(drop_reply_rate=1.0)
        await stack.update(created.id, "capture", CapturePayment(), PaymentState)
        await skip_time(time_env, timedelta(days=1, hours=1))
        done = await stack.wait_status(created.id, "succeeded", "failed")
        stack.gateway.ledger.faults = Faults()
        # Not "failed and voided": the lookup found the capture that did happen.
        assert done.status == "succeeded" and done.amount_captured == 1999
        assert stack.kinds(created.id) == ["authorization", "capture"]
        assert "payment.capture_failed" not in event_types(await stack.events(created.id))


async def test_no_capture_after_the_authorization_expired(
    time_env: WorkflowEnvironment, task_queue: str
) -> None:
    async with running_stack(time_env.client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        # The void after expiry is slow: a capture arriving meanwhile must be refused.
        stack.gateway.ledger.faults = Faults(latency_ms=3000)
        await skip_time(time_env, timedelta(days=7, minutes=1))
        with pytest.raises(Refused) as refused:
            await stack.update(created.id, "capture", CapturePayment(), PaymentState)
        assert refused.value.code in ("payment_not_capturable", "payment_closed")
        stack.gateway.ledger.faults = Faults()
        await stack.wait_status(created.id, "canceled")
        assert stack.kinds(created.id) == ["authorization", "void"]
