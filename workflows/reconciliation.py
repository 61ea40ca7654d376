"""``ReconciliationWorkflow``: one reconciliation run over a time window.

Run hourly by a Temporal Schedule (see :mod:`activities.reconciliation`) or
on demand from the API. The comparison happens in an activity; the workflow
fixes the window, records the report as its result, and mirrors the number of
mismatches into the ``ReconciliationMismatches`` search attribute so an
operator can filter runs that found something.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributeKey

with workflow.unsafe.imports_passed_through():
    from payments.names import RECONCILIATION_MISMATCHES
    from payments.reconciliation import ReconciliationReport, ReconciliationRequest, Window

SCHEDULED_START = SearchAttributeKey.for_datetime("TemporalScheduledStartTime")
# Payments whose last change is this recent may still be moving: a window ends
# this long before the run starts, unless the caller says otherwise.
SETTLE_GRACE = timedelta(seconds=30)


@workflow.defn(name="ReconciliationWorkflow")
class ReconciliationWorkflow:
    @workflow.run
    async def run(self, request: ReconciliationRequest) -> ReconciliationReport:
        # A scheduled run checks the window it was scheduled for, even when it
        # starts late or catches up, so consecutive runs leave no gap.
        scheduled = workflow.info().typed_search_attributes.get(SCHEDULED_START)
        end = request.end or (scheduled or workflow.now()) - SETTLE_GRACE
        start = request.start or end - timedelta(seconds=request.lookback_seconds)
        window = Window(start=start, end=end)
        report = await workflow.execute_activity(
            "reconcile",
            window,
            result_type=ReconciliationReport,
            start_to_close_timeout=timedelta(minutes=10),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5),
            summary=f"reconcile {start:%Y-%m-%d %H:%M} to {end:%H:%M} UTC",
        )
        named: ReconciliationReport = report.model_copy(update={"id": workflow.info().workflow_id})
        workflow.upsert_search_attributes(
            [RECONCILIATION_MISMATCHES.value_set(len(named.mismatches))]
        )
        return named
