"""``ArchiveWorkflow``: the archiver, one long-lived workflow (``payments-archiver``)
that runs a pass (see :mod:`activities.archive`) every interval, for ever.

One workflow rather than a Schedule starting a run per pass: every 20 seconds
that would be three thousand runs a day in the namespace's workflow list, in
front of the payments an operator is looking for. Here each pass is an
activity in this workflow's history, its report the activity's result; the
workflow continues as new when Temporal suggests it. The ``archive_now``
signal starts a pass at once; ``reconfigure`` changes the interval (the
worker sends it at start when its settings say otherwise).
"""

from __future__ import annotations

import contextlib
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from payments.archive import ArchiveReport, ArchiveRun
    from payments.names import ARCHIVE_ACTIVITY, ARCHIVE_WORKFLOW_TYPE

# A workflow history this long still replays in moments; Temporal suggests
# continuing as new far later than this.
PASSES_PER_RUN = 500


@workflow.defn(name=ARCHIVE_WORKFLOW_TYPE)
class ArchiveWorkflow:
    @workflow.init
    def __init__(self, settings: ArchiveRun) -> None:
        self._now = False
        self._settings = settings
        self.last: ArchiveReport | None = None

    @workflow.run
    async def run(self, settings: ArchiveRun) -> None:
        for _ in range(PASSES_PER_RUN):
            self._now = False
            self.last = await workflow.execute_activity(
                ARCHIVE_ACTIVITY,
                self._settings,
                result_type=ArchiveReport,
                # A first pass over a long-lived namespace may take a while;
                # it heartbeats after every batch of payments and every one it
                # retries, so a pass whose worker died is retried within 30 s.
                start_to_close_timeout=timedelta(hours=2),
                heartbeat_timeout=timedelta(seconds=30),
                retry_policy=RetryPolicy(maximum_interval=timedelta(minutes=1)),
                summary="archive the payments that closed",
            )
            if workflow.info().is_continue_as_new_suggested():
                break
            with contextlib.suppress(TimeoutError):  # the interval is up: the next pass
                await workflow.wait_condition(
                    lambda: self._now,
                    timeout=timedelta(seconds=self._settings.interval_seconds),
                    timeout_summary="next pass",
                )
        workflow.continue_as_new(self._settings)

    @workflow.signal(name="archive_now")
    def archive_now(self) -> None:
        self._now = True

    @workflow.signal(name="reconfigure")
    def reconfigure(self, settings: ArchiveRun) -> None:
        self._settings = settings

    @workflow.query(name="last_pass")
    def last_pass(self) -> ArchiveReport | None:
        return self.last
