"""Every path of the saga on a real dev server, with the in-memory simulator
as the gateway: what a user sees (status, amounts, events) and what the
gateway's ledger holds."""

from __future__ import annotations

import asyncio

import pytest
from support import MERCHANT, event_types, running_stack
from temporalio.client import Client

from gateway.simulator.core import Faults
from payments.models import CancelPayment, CapturePayment, PaymentState, Refund, RefundCommand
from payments.refusals import Refused
from payments.status import FINAL


async def test_automatic_capture_succeeds_with_one_authorization_and_one_capture(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(customer_id="cus_42", metadata={"order_id": "1001"})
        assert created.status == "processing"
        done = await stack.wait_status(created.id, "succeeded")
        assert (done.amount_captured, done.amount_capturable, done.amount_refunded) == (1999, 0, 0)
        assert stack.kinds(created.id) == ["authorization", "capture"]
        events = await stack.events(created.id)
        assert event_types(events) == [
            "payment.requested",
            "payment.authorized",
            "payment.captured",
        ]
        seqs = [e.seq for e in events]
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
        assert events[0].data["metadata"] == {"order_id": "1001"}
        # The memo the API reads and the workflow's own query agree.
        assert await stack.query(created.id) == done


@pytest.mark.parametrize(
    ("method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_declined_card_fails_without_capture(
    dev_client: Client, task_queue: str, method: str, code: str, decline_code: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method=method)
        failed = await stack.wait_status(created.id, "failed")
        assert failed.failure is not None
        assert (failed.failure.type, failed.failure.code) == ("card_error", code)
        assert failed.failure.decline_code == decline_code
        assert failed.amount_captured == 0
        assert "capture" not in stack.kinds(created.id)
        types = event_types(await stack.events(created.id))
        assert types == ["payment.requested", "payment.declined", "payment.failed"]


async def test_refused_capture_voids_the_authorization(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(payment_method="pm_card_captureFails")
        failed = await stack.wait_status(created.id, "failed")
        assert failed.failure is not None and failed.failure.type == "api_error"
        assert stack.kinds(created.id) == ["authorization", "void"]
        assert event_types(await stack.events(created.id)) == [
            "payment.requested",
            "payment.authorized",
            "payment.capture_failed",
            "payment.voided",
            "payment.failed",
        ]


async def test_manual_capture_partial(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        authorized = await stack.wait_status(created.id, "requires_capture")
        assert authorized.amount_capturable == 1999
        with pytest.raises(Refused) as too_much:
            await stack.update(created.id, "capture", CapturePayment(amount=5000), PaymentState)
        assert too_much.value.code == "amount_too_large"
        await stack.update(created.id, "capture", CapturePayment(amount=1500), PaymentState)
        done = await stack.wait_status(created.id, "succeeded")
        assert (done.amount_captured, done.amount_capturable) == (1500, 0)
        captures = [op for op in stack.ledger(created.id) if op.kind == "capture"]
        assert [op.amount for op in captures] == [1500]
        # A second capture is refused: the payment is no longer capturable.
        with pytest.raises(Refused) as again:
            await stack.update(created.id, "capture", CapturePayment(), PaymentState)
        assert again.value.code == "payment_not_capturable"


async def test_cancel_before_capture_voids(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        await stack.update(created.id, "cancel", CancelPayment(reason="duplicate"), PaymentState)
        canceled = await stack.wait_status(created.id, "canceled")
        assert canceled.amount_capturable == 0
        assert stack.kinds(created.id) == ["authorization", "void"]
        types = event_types(await stack.events(created.id))
        assert types[-3:] == ["payment.cancel_requested", "payment.voided", "payment.canceled"]


async def test_cancel_during_authorize_is_honoured_when_it_returns(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        stack.gateway.ledger.faults = Faults(latency_ms=1500)
        created = await stack.create()
        await asyncio.sleep(0.3)  # authorize is now in flight at the gateway
        await stack.update(created.id, "cancel", CancelPayment(), PaymentState)
        canceled = await stack.wait_status(created.id, "canceled")
        assert canceled.amount_captured == 0
        assert stack.kinds(created.id) == ["authorization", "void"]


async def test_cancel_after_capture_is_refused(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        with pytest.raises(Refused) as refused:
            await stack.update(created.id, "cancel", CancelPayment(), PaymentState)
        assert refused.value.code == "payment_not_cancelable"


async def test_refunds_partial_then_full_and_over_refund_refused(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        first = await stack.update(
            created.id, "refund", RefundCommand(refund_id="re_a", amount=500), Refund
        )
        assert (first.status, first.amount) == ("pending", 500)
        with pytest.raises(Refused) as over:
            await stack.update(
                created.id, "refund", RefundCommand(refund_id="re_b", amount=1500), Refund
            )
        assert over.value.code == "amount_too_large"  # 500 is pending: 1499 remain
        partial = await stack.wait_status(created.id, "partially_refunded")
        assert partial.amount_refunded == 500
        rest = await stack.update(created.id, "refund", RefundCommand(refund_id="re_c"), Refund)
        assert rest.amount == 1499
        refunded = await stack.wait_status(created.id, "refunded")
        assert refunded.amount_refunded == 1999
        assert [r.status for r in refunded.refunds] == ["succeeded", "succeeded"]
        refunds = [op.amount for op in stack.ledger(created.id) if op.kind == "refund"]
        assert refunds == [500, 1499]
        types = event_types(await stack.events(created.id))
        assert types.count("refund.requested") == 2 and types.count("refund.succeeded") == 2


async def test_repeated_refund_id_is_one_refund(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        command = RefundCommand(refund_id="re_same", amount=700)
        await asyncio.gather(
            *(stack.update(created.id, "refund", command, Refund) for _ in range(5))
        )
        with pytest.raises(Refused, match="already used with a different request"):
            await stack.update(
                created.id, "refund", RefundCommand(refund_id="re_same", amount=800), Refund
            )
        done = await stack.wait_for(created.id, lambda s: s.amount_refunded == 700)
        assert len(done.refunds) == 1
        assert [op.amount for op in stack.ledger(created.id) if op.kind == "refund"] == [700]


async def test_operator_signals_refund_and_bad_signals_become_events(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        handle = dev_client.get_workflow_handle(created.id)
        # What `temporal workflow signal --input '{...}'` sends: plain JSON.
        await handle.signal("refund", {"amount": 100000, "reason": "ops: too much"})
        await handle.signal("cancel", {"reason": "ops: too late"})
        await handle.signal("refund", {"amount": 300, "reason": "ops: goodwill"})
        done = await stack.wait_for(created.id, lambda s: s.amount_refunded == 300)
        assert done.status == "partially_refunded"
        events = await stack.events(created.id)
        failed = [e for e in events if e.type == "refund.failed"]
        assert len(failed) == 1 and failed[0].data["code"] == "amount_too_large"
        assert [e.data["code"] for e in events if e.type == "payment.cancel_failed"] == [
            "payment_not_cancelable"
        ]
        assert [op.amount for op in stack.ledger(created.id) if op.kind == "refund"] == [300]


async def test_operator_cancel_signal(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        await dev_client.get_workflow_handle(created.id).signal("cancel", {"reason": "fraud"})
        canceled = await stack.wait_status(created.id, "canceled")
        assert stack.kinds(created.id) == ["authorization", "void"]
        events = await stack.events(created.id)
        assert events[-1].data == {"reason": "fraud"}
        assert canceled.status in FINAL


async def test_concurrent_duplicates_start_one_payment(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        results = await asyncio.gather(
            *(stack.create(idempotency_key="order-77") for _ in range(20))
        )
        assert len({r.id for r in results}) == 1
        await stack.wait_status(results[0].id, "succeeded")
        assert stack.kinds(results[0].id) == ["authorization", "capture"]
        with pytest.raises(Refused, match="already used with a different request"):
            await stack.create(idempotency_key="order-77", amount=2500)


async def test_unknown_payment_and_other_merchant_are_not_found(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        for merchant in ("someone-else",):
            with pytest.raises(Refused) as missing:
                await stack.service.get(created.id, merchant)
            assert missing.value.code == "resource_missing"
        with pytest.raises(Refused) as missing:
            await stack.service.get("pay_doesnotexist", MERCHANT)
        assert missing.value.code == "resource_missing"


async def test_continue_as_new_carries_state_and_events_keep_counting(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(amount=100_000)
        await stack.wait_status(created.id, "succeeded")
        for index in range(12):
            await stack.update(
                created.id, "refund", RefundCommand(refund_id=f"re_{index}", amount=10), Refund
            )
            await stack.wait_for(created.id, lambda s, n=index: s.amount_refunded == 10 * (n + 1))
        # Temporal suggested continue-as-new along the way: the chain has several runs.
        description = await dev_client.get_workflow_handle(created.id).describe()
        info = description.raw_description.workflow_execution_info
        assert info.first_run_id and info.first_run_id != description.run_id
        state = await stack.get(created.id)
        assert state.amount_refunded == 120 and len(state.refunds) == 12
        events = await stack.events(created.id)
        assert [e.seq for e in events] == sorted({e.seq for e in events})
        assert event_types(events).count("refund.succeeded") == 12
        assert event_types(events)[0] == "payment.requested"


async def test_every_task_replays_with_no_cache(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue, max_cached_workflows=0) as stack:
        created = await stack.create(capture_method="manual")
        await stack.wait_status(created.id, "requires_capture")
        await stack.update(created.id, "capture", CapturePayment(), PaymentState)
        await stack.wait_status(created.id, "succeeded")
        await stack.update(created.id, "refund", RefundCommand(refund_id="re_1", amount=99), Refund)
        done = await stack.wait_status(created.id, "partially_refunded")
        assert done.amount_refunded == 99
        assert stack.kinds(created.id) == ["authorization", "capture", "refund"]


async def test_cancel_racing_capture_has_one_winner(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        for _ in range(5):
            created = await stack.create(capture_method="manual")
            await stack.wait_status(created.id, "requires_capture")
            results = await asyncio.gather(
                stack.update(created.id, "cancel", CancelPayment(), PaymentState),
                stack.update(created.id, "capture", CapturePayment(), PaymentState),
                return_exceptions=True,
            )
            accepted = [r for r in results if not isinstance(r, BaseException)]
            refused = [r for r in results if isinstance(r, Refused)]
            assert len(accepted) == 1 and len(refused) == 1, results
            final = await stack.wait_status(created.id, "canceled", "succeeded")
            kinds = stack.kinds(created.id)
            if final.status == "canceled":
                assert kinds == ["authorization", "void"]
            else:
                assert kinds == ["authorization", "capture"]


async def test_malformed_operator_signals_become_events(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create()
        await stack.wait_status(created.id, "succeeded")
        handle = dev_client.get_workflow_handle(created.id)
        await handle.signal("refund", {"amount": 0})
        await handle.signal("refund", {"amount": "a lot"})
        await handle.signal("cancel", {"reason": 42, "extra": True})
        await handle.signal("refund", {"amount": 10, "reason": "fine"})
        await stack.wait_for(created.id, lambda s: s.amount_refunded == 10)
        events = await stack.events(created.id)
        refused = [(e.type, e.data["code"]) for e in events if e.type.endswith("failed")]
        assert refused == [
            ("refund.failed", "invalid_signal"),
            ("refund.failed", "invalid_signal"),
            ("payment.cancel_failed", "invalid_signal"),
        ]


async def test_a_long_wait_for_capture_continues_as_new(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(
            idempotency_key="can-while-authorized", capture_method="manual"
        )
        await stack.wait_status(created.id, "requires_capture")
        handle = dev_client.get_workflow_handle(created.id)
        # Refund signals on an uncaptured payment are refused as events: enough of
        # them and Temporal suggests continuing as new while capture is awaited.
        for _ in range(60):
            await handle.signal("refund", {"amount": 1})
        for _ in range(200):
            info = (await handle.describe()).raw_description.workflow_execution_info
            if info.first_run_id != (await handle.describe()).run_id:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the workflow never continued as new")
        assert (await stack.get(created.id)).status == "requires_capture"
        # The same request again is the same payment, not an idempotency conflict.
        again = await stack.create(idempotency_key="can-while-authorized", capture_method="manual")
        assert again.id == created.id
        await stack.update(created.id, "capture", CapturePayment(amount=1000), PaymentState)
        done = await stack.wait_status(created.id, "succeeded")
        assert done.amount_captured == 1000
        assert stack.kinds(created.id) == ["authorization", "capture"]
        types = event_types(await stack.events(created.id))
        assert types[:2] == ["payment.requested", "payment.authorized"]
        assert types[-2:] == ["payment.capture_requested", "payment.captured"]


async def test_signals_without_input_or_with_too_much_never_wedge(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        paid = await stack.create()
        await stack.wait_status(paid.id, "succeeded")
        handle = dev_client.get_workflow_handle(paid.id)
        await handle.signal("refund")  # `temporal workflow signal --name refund`, no --input
        await handle.signal("refund", args=[{"amount": 5}, {"amount": 6}])
        await handle.signal("refund", {"amount": 7})
        done = await stack.wait_for(paid.id, lambda s: s.amount_refunded == 7)
        # The workflow kept answering; the input-less refund was refused as an event.
        assert await stack.query(paid.id) == done
        refused = [e.data["code"] for e in await stack.events(paid.id) if e.type == "refund.failed"]
        assert "invalid_signal" in refused

        authorized = await stack.create(capture_method="manual")
        await stack.wait_status(authorized.id, "requires_capture")
        await dev_client.get_workflow_handle(authorized.id).signal("cancel")
        await stack.wait_status(authorized.id, "canceled")
