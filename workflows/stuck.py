"""``StuckPaymentsWorkflow``: how many running payments have stayed in
``processing`` or ``requires_capture`` longer than expected, by age.

A Temporal Schedule starts it every five minutes (``payments-stuck-count``); its
activity counts from visibility and sets the worker's ``payments_stuck``
gauge; the counts are the run's result, so the UI shows each one too.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from payments.names import STUCK_ACTIVITY, STUCK_WORKFLOW_TYPE
    from payments.stuck import StuckCount, StuckCounts


@workflow.defn(name=STUCK_WORKFLOW_TYPE)
class StuckPaymentsWorkflow:
    @workflow.run
    async def run(self) -> StuckCounts:
        counts: StuckCounts = await workflow.execute_activity(
            STUCK_ACTIVITY,
            workflow.now(),
            result_type=StuckCounts,
            start_to_close_timeout=timedelta(seconds=50),
            retry_policy=RetryPolicy(maximum_attempts=3),
            summary="count stuck payments",
        )
        stuck = [c for c in counts.counts if c.count]
        workflow.set_current_details(_details(stuck))
        return counts


def _details(stuck: list[StuckCount]) -> str:
    if not stuck:
        return "No payment is stuck."
    return "\n".join(f"- {c.count} in `{c.status}` for more than {c.older_than}" for c in stuck)
