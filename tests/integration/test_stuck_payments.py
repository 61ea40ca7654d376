"""The stuck-payment signal (CONTRACT §15): running payments in ``processing``
or ``requires_capture`` past an age, counted from visibility by the scheduled
``StuckPaymentsWorkflow`` and set on the worker's ``payments_stuck`` gauge."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

from support import running_stack
from temporalio.client import Client
from temporalio.worker import Worker

from activities.stuck import StuckActivities
from payments.names import STUCK_SCHEDULE_ID
from payments.stuck import StuckCounter, StuckCounts
from workflows.stuck import StuckPaymentsWorkflow


def _by_key(counts: StuckCounts) -> dict[tuple[str, str], int]:
    return {(c.status, c.older_than): c.count for c in counts.counts}


async def test_a_payment_waiting_for_capture_counts_once_it_is_old_enough(
    dev_client: Client, task_queue: str
) -> None:
    counter = StuckCounter(dev_client, task_queue)
    # Seen from two hours on, a payment authorized now is over 15 minutes and
    # over an hour old, and not yet a day.
    later = datetime.now(UTC) + timedelta(hours=2)
    before = _by_key(await counter.count(later, meter=None))
    async with running_stack(dev_client, task_queue) as stack:
        payment = await stack.create(capture_method="manual")
        await stack.wait_status(payment.id, "requires_capture")
        for _ in range(50):  # visibility follows the status change
            after = _by_key(await counter.count(later, meter=None))
            if after[("requires_capture", "1h")] > before[("requires_capture", "1h")]:
                break
            await asyncio.sleep(0.2)
        async with Worker(
            dev_client,
            task_queue=task_queue + "-stuck",
            workflows=[StuckPaymentsWorkflow],
            activities=[StuckActivities(counter).count_stuck_payments],
        ):
            run = await dev_client.execute_workflow(
                StuckPaymentsWorkflow.run,
                id=f"stuck-{task_queue}",
                task_queue=task_queue + "-stuck",
                result_type=StuckCounts,
            )

    moved = {key: after[key] - before[key] for key in after}
    assert moved == {
        ("requires_capture", "15m"): 1,
        ("requires_capture", "1h"): 1,
        ("requires_capture", "24h"): 0,
        ("processing", "15m"): 0,
        ("processing", "1h"): 0,
        ("processing", "24h"): 0,
    }
    assert {(c.status, c.older_than) for c in run.counts} == set(after)


async def test_the_schedule_is_made_once(dev_client: Client, task_queue: str) -> None:
    counter = StuckCounter(dev_client, task_queue)
    try:
        first = await counter.ensure_schedule()
        again = await counter.ensure_schedule()
        assert (first, again) == (True, False)
    finally:
        await dev_client.get_schedule_handle(STUCK_SCHEDULE_ID).delete()
