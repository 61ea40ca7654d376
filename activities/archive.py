"""The archiver's pass, and the one workflow that runs it (CONTRACT §10).

Why an archiver of its own and not the payment workflow archiving itself on
its way out: a workflow cannot run code once an operator terminates it, and
it cannot see its own close event, so the "whole history" would be missing
its last event on every path and the whole record on some; and a change to
``PaymentWorkflow`` would have to replay every recorded history. The archiver
(``ArchiveWorkflow``, id ``payments-archiver``, see :mod:`workflows.archive`)
makes a pass every ``PAYMENTS_ARCHIVE_INTERVAL`` (20 s by default), whatever
way payments closed; the worker starts it when it is not running.

A pass lists the payment runs that closed since the archive's cursor
(``CloseTime``, in visibility), less an overlap that covers visibility's lag.
A run that continued as new is archived at once, on its own: retention counts
from when *it* closed, and its payment may stay open for months (the refund
window). A payment whose last run closed is archived whole: every run's
history (from Temporal, or from the archive for runs Temporal has already
forgotten), its final memo and its request fingerprint, payloads as stored.
A payment listed as closed whose workflow has a newer open run (an operator
reset it) is left for when that run closes.

One payment that cannot be archived (an error of the store, a run nobody
kept) never stops the others: the pass notes it in the cursor, and every
later pass tries it first until it is through. Only after the whole list was
worked through does the cursor move, to where this pass began: a worker that
was down for a day is caught up by the next pass, which starts from the same
cursor. A payment (or a run of it) that Temporal deleted before any pass
archived it is reported ``lost``, counted and logged as an error; there is
nothing left to try.

The cursor also keeps when a pass last left nothing unarchived. Each pass
sets the worker's gauges (``payments_archive_unarchived``, and from the
cursor ``payments_archive_complete_pass_timestamp_seconds``, so whichever
worker ran the latest pass, the alert ``PaymentsArchiveBehind`` reads the
same time) and counts ``payments_archive_lost_total``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from temporalio import activity
from temporalio.api.enums.v1 import WorkflowExecutionStatus as ExecutionStatus
from temporalio.client import Client, WorkflowExecution, WorkflowExecutionStatus
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.service import RPCError, RPCStatusCode

from payments import events, memo, metrics, names
from payments.archive import (
    DELETED_BEFORE_ARCHIVED,
    Archive,
    ArchiveCursor,
    ArchivedPayment,
    ArchivedRun,
    ArchiveError,
    ArchiveReport,
    ArchiveRun,
    Unarchived,
)
from payments.ids import is_payment_id

# What a pass did with one run it listed: the report's count it adds to.
Outcome = Literal["archived", "runs_archived", "already_archived", "reopened", "skipped"]
# Runs a pass copies at once.
CONCURRENCY = 8
# How far before the cursor a pass looks again: a payment that closed just
# before the last pass began may have reached visibility only after it listed.
VISIBILITY_OVERLAP = timedelta(minutes=1)


def closed_payments_query(since: datetime | None) -> str:
    clauses = [
        f"WorkflowType = '{names.WORKFLOW_TYPE}'",
        "ExecutionStatus != 'Running'",
    ]
    if since is not None:
        bound = (since - VISIBILITY_OVERLAP).astimezone(UTC)
        clauses.append(f"CloseTime >= '{bound:%Y-%m-%dT%H:%M:%SZ}'")
    return " AND ".join(clauses)


class ArchiveActivities:
    def __init__(
        self, client: Client, archive: Archive, clock: Callable[[], datetime] | None = None
    ) -> None:
        self._client = client
        self._archive = archive
        self._clock = clock or (lambda: datetime.now(UTC))

    @activity.defn(name=names.ARCHIVE_ACTIVITY)
    async def archive_closed_payments(self, run: ArchiveRun) -> ArchiveReport:
        began = self._clock()
        cursor = await self._archive.cursor()
        since = cursor.at if cursor is not None else None
        report = ArchiveReport(closed_since=since, cursor=began)
        # What earlier passes could not archive comes first.
        for left in cursor.retry if cursor is not None else []:
            await self._attempt(left.payment_id, left.run_id, report)
            _heartbeat(report)
        batch: list[WorkflowExecution] = []
        async for execution in self._client.list_workflows(closed_payments_query(since)):
            batch.append(execution)
            if len(batch) == CONCURRENCY:
                await self._archive_batch(batch, report)
                batch = []
        await self._archive_batch(batch, report)
        # Once each, however often it failed (retried, then listed again).
        report.failed = _once_each(report.failed)
        report.lost = _once_each(report.lost)
        complete_at = cursor.complete_at if cursor is not None else None
        if not report.failed:
            complete_at = self._clock()
        await self._archive.set_cursor(
            ArchiveCursor(at=began, retry=report.failed, complete_at=complete_at)
        )
        _export(report, complete_at)
        if report.archived or report.runs_archived:
            activity.logger.info(
                "archived %d closed payments, %d earlier runs",
                report.archived,
                report.runs_archived,
            )
        for gone in report.lost:
            activity.logger.error(
                "the record of %s (run %s) is lost: %s (is the namespace's retention "
                "shorter than PAYMENTS_RETENTION_DAYS?)",
                gone.payment_id,
                gone.run_id or "final",
                gone.error,
            )
        for left in report.failed:
            activity.logger.warning(
                "could not archive %s (run %s), trying again next pass: %s",
                left.payment_id,
                left.run_id or "final",
                left.error,
            )
        return report

    async def _archive_batch(self, batch: list[WorkflowExecution], report: ArchiveReport) -> None:
        """A few runs at once: payments may close faster than one at a time
        could copy them (each is a describe and a history read or more)."""
        await asyncio.gather(
            *(
                self._attempt(
                    execution.id,
                    execution.run_id
                    if execution.status == WorkflowExecutionStatus.CONTINUED_AS_NEW
                    else None,
                    report,
                    listed_run=execution.run_id,
                )
                for execution in batch
            )
        )
        _heartbeat(report)

    async def _attempt(
        self,
        payment_id: str,
        run_id: str | None,
        report: ArchiveReport,
        listed_run: str | None = None,
    ) -> None:
        """Archive one run (``run_id``) or one payment's record, counting the
        outcome; a failure is noted for the next pass and a lost record in the
        report, never raised."""
        try:
            outcome = await self._archive_one(payment_id, run_id, listed_run)
        except RecordLost as err:  # nothing left to try
            report.lost.append(Unarchived(payment_id=payment_id, run_id=run_id, error=str(err)))
            return
        except Exception as err:  # of the store, of Temporal: this one waits for the next pass
            report.failed.append(
                Unarchived(
                    payment_id=payment_id, run_id=run_id, error=f"{type(err).__name__}: {err}"
                )
            )
            return
        setattr(report, outcome, getattr(report, outcome) + 1)

    async def _archive_one(
        self, payment_id: str, run_id: str | None, listed_run: str | None
    ) -> Outcome:
        if not is_payment_id(payment_id):
            return "skipped"  # a workflow of that type this service did not make
        if run_id is not None:
            if await self._archive.has_run(payment_id, run_id):
                return "already_archived"
            await self.archive_run(payment_id, run_id)
            return "runs_archived"
        done = await self._archive.archived(payment_id)
        if done is not None and listed_run is not None and done[1] == listed_run:
            return "already_archived"
        return await self.archive_payment(payment_id, archived_before=done is not None)

    async def archive_run(self, payment_id: str, run_id: str) -> None:
        """Archive one closed run of a payment that continued as new."""
        handle = self._client.get_workflow_handle(payment_id, run_id=run_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            raise RecordLost("Temporal deleted the run before it was archived") from None
        if description.close_time is None:
            raise ArchiveError(f"run {run_id} of {payment_id} is still open")
        history = await handle.fetch_history()
        await self._archive.put_run(
            ArchivedRun.of(
                payment_id=payment_id,
                run_id=run_id,
                closed_at=description.close_time,
                history=history,
            )
        )

    async def archive_payment(
        self, payment_id: str, *, archived_before: bool = False
    ) -> Literal["archived", "reopened", "already_archived"]:
        """Archive the payment if its workflow is closed ("reopened" if it is
        open again). If Temporal has deleted it since it was listed, the record
        a pass wrote before stands (``archived_before``); else, or if an
        earlier run of it is in neither Temporal nor the archive, it is lost."""
        handle = self._client.get_workflow_handle(payment_id)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            if archived_before:
                return "already_archived"
            raise RecordLost(DELETED_BEFORE_ARCHIVED) from None
        info = description.raw_description.workflow_execution_info
        if description.close_time is None:
            return "reopened"
        try:
            chain = await events.fetch_run_chain(
                self._client, payment_id, description.run_id, archive=self._archive
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            # Its last run's history going too is Temporal deleting it (the
            # next pass finds it gone); else an earlier run is nowhere.
            await self._client.get_workflow_handle(
                payment_id, run_id=description.run_id
            ).fetch_history()
            raise RecordLost(
                "an earlier run was deleted from Temporal before it was archived"
            ) from None
        # Every id is known: the chain started from the one just described.
        runs = [(run_id, history) for run_id, history in chain if run_id is not None]
        fingerprint = await memo.fingerprint_of(description)
        record = ArchivedPayment.of(
            payment_id=payment_id,
            archived_at=self._clock(),
            closed_at=description.close_time,
            execution_status=_status_name(info.status),
            runs=runs,
            payment=memo.sealed_payment(info.memo.fields),
            request_fingerprint=fingerprint,
        )
        await self._archive.put(record)
        return "archived"

    def all(self) -> list[Callable[..., Any]]:
        return [self.archive_closed_payments]


class RecordLost(Exception):
    """What a payment's record needs is gone from Temporal and was never archived."""


def _heartbeat(report: ArchiveReport) -> None:
    """The pass is alive (ArchiveWorkflow's heartbeat timeout); how far it is."""
    activity.heartbeat(report.archived + report.runs_archived + report.already_archived)


def _once_each(entries: list[Unarchived]) -> list[Unarchived]:
    """However often a pass met one (retried first, then listed again)."""
    return list({(e.payment_id, e.run_id): e for e in entries}.values())


def _export(report: ArchiveReport, complete_at: datetime | None) -> None:
    """The pass's metrics, on the worker's (payments/metrics.py)."""
    meter = activity.metric_meter()
    metrics.archive_lost_counter(meter).add(len(report.lost))
    meter.create_gauge(
        metrics.ARCHIVE_UNARCHIVED, metrics.DESCRIPTIONS[metrics.ARCHIVE_UNARCHIVED]
    ).set(len(report.failed))
    metrics.complete_pass_gauge(meter).set(
        complete_at.timestamp() if complete_at is not None else 0.0
    )


def _status_name(status: int) -> str:
    # WORKFLOW_EXECUTION_STATUS_TERMINATED -> "Terminated", as the UI and queries spell it.
    name = ExecutionStatus.Name(status).removeprefix("WORKFLOW_EXECUTION_STATUS_")  # type: ignore[arg-type]
    return name.replace("_", " ").title().replace(" ", "")


async def ensure_archiver(client: Client, task_queue: str, every: timedelta) -> bool:
    """Start the archiver unless it runs, else bring its interval up to date;
    True if this started it."""
    settings = ArchiveRun(interval_seconds=every.total_seconds())
    handle = client.get_workflow_handle(names.ARCHIVE_WORKFLOW_ID)
    try:
        running = (await handle.describe()).status == WorkflowExecutionStatus.RUNNING
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
        running = False
    if running:
        await handle.signal("reconfigure", settings)
        return False
    # Two workers starting at once: the second joins the first one's run.
    await client.start_workflow(
        names.ARCHIVE_WORKFLOW_TYPE,
        settings,
        id=names.ARCHIVE_WORKFLOW_ID,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        static_summary="archives every payment that closed",
    )
    return True
