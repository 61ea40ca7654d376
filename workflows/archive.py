"""``ArchiveWorkflow``: one pass of the archiver (see :mod:`activities.archive`),
started by the ``payments-archive`` Schedule. Its result is the pass's report."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from payments.archive import ArchiveReport, ArchiveRun
    from payments.names import ARCHIVE_ACTIVITY, ARCHIVE_WORKFLOW_TYPE


@workflow.defn(name=ARCHIVE_WORKFLOW_TYPE)
class ArchiveWorkflow:
    @workflow.run
    async def run(self, run: ArchiveRun) -> ArchiveReport:
        report: ArchiveReport = await workflow.execute_activity(
            ARCHIVE_ACTIVITY,
            run,
            result_type=ArchiveReport,
            # A first pass over a long-lived namespace may take a while; it
            # heartbeats after every payment.
            start_to_close_timeout=timedelta(hours=2),
            heartbeat_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1), maximum_attempts=5),
            summary="archive the payments that closed",
        )
        return report
