"""The archiver and the reads behind it, on a real dev server: every closed
payment reaches the archive whole, and each run that continued as new when it
closes; a payment that cannot be archived holds up no other and is tried again
first by the next pass; a payment an operator reopened (reset) is
left for when it closes again; once Temporal forgets a payment its id can come
back only as the archived payment, and even a payment started again under that
id (no archive in the way) never replays the old one's gateway operations."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from support import (
    MERCHANT,
    Stack,
    gone_from_temporal,
    metric_value,
    run_closed,
    running_stack,
    scrape_metrics,
)
from temporalio.api.common.v1 import WorkflowExecution
from temporalio.api.enums.v1 import ResetReapplyType
from temporalio.api.workflowservice.v1 import (
    DeleteWorkflowExecutionRequest,
    ResetWorkflowExecutionRequest,
)
from temporalio.client import Client, WorkflowHandle
from temporalio.common import MetricMeter
from temporalio.testing import ActivityEnvironment
from temporalio.worker import Worker

from activities.archive import ArchiveActivities
from archive.filesystem import FilesystemArchive
from devstack import free_ports
from gateway.simulator.core import Faults
from payments import events, metrics
from payments.archive import ArchivedPayment, ArchiveError, ArchiveReport, ArchiveRun
from payments.models import CancelPayment, CapturePayment, CreatePayment, PaymentState
from payments.service import PaymentService
from payments.settings import Settings
from worker import telemetry_runtime, warn_about_retention
from workflows.archive import ArchiveWorkflow

MANUAL = {"capture_method": "manual"}
REQUEST = CreatePayment.model_validate(
    {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", **MANUAL}
)


async def archive_pass(
    client: Client, archive: FilesystemArchive, meter: MetricMeter | None = None
) -> ArchiveReport:
    """One pass, as the archiver's activity; its metrics on ``meter`` if given."""
    env = ActivityEnvironment()
    if meter is not None:
        env.metric_meter = meter
    report: ArchiveReport = await env.run(
        ArchiveActivities(client, archive).archive_closed_payments,
        ArchiveRun(interval_seconds=20),
    )
    return report


async def archived_until(
    client: Client, archive: FilesystemArchive, payment_id: str, run_id: str | None = None
) -> ArchivedPayment:
    """Passes until the payment's record is there (visibility lags its close a little)."""
    for _ in range(100):
        await archive_pass(client, archive)
        record = await archive.get(payment_id)
        if record is not None and (run_id is None or record.last_run_id == run_id):
            return record
        await asyncio.sleep(0.1)
    raise AssertionError(f"{payment_id} was never archived")


async def create_again(
    stack: Stack, key: str, archive: FilesystemArchive
) -> tuple[PaymentState, bool]:
    """The API's create of REQUEST again, under ``key``."""
    started = await PaymentService(stack.client, stack.settings, archive).start(
        MERCHANT, REQUEST, key
    )
    return started.payment, started.created


async def forget(client: Client, payment_id: str) -> None:
    """What retention does, now: the workflow and its history are deleted."""
    await client.workflow_service.delete_workflow_execution(
        DeleteWorkflowExecutionRequest(
            namespace=client.namespace,
            workflow_execution=WorkflowExecution(workflow_id=payment_id),
        )
    )
    await gone_from_temporal(client, payment_id)


async def test_a_closed_payment_is_archived_whole_and_reads_the_same(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    archive = FilesystemArchive(tmp_path)
    async with running_stack(dev_client, task_queue) as stack:
        key = f"whole-{uuid.uuid4()}"
        created = await stack.create(idempotency_key=key, **MANUAL)
        await stack.wait_status(created.id, "requires_capture")
        await stack.update(created.id, "cancel", CancelPayment(reason="test"), PaymentState)
        canceled = await stack.wait_status(created.id, "canceled")
        await run_closed(dev_client, created.id)
        record = await archived_until(dev_client, archive, created.id)

        runs = await events.fetch_runs(dev_client, created.id)
        assert record.run_ids == [run.run_id for run in runs]
        # Every event of every run, the close event included.
        assert [len(h["events"]) for h in record.histories] == [len(r.events) for r in runs]
        assert record.execution_status == "Completed"
        state = await record.state(dev_client.data_converter)
        assert state == canceled.model_copy(update={"archived_at": record.archived_at})
        projected = await events.project(created.id, record.runs(), dev_client.data_converter)
        assert projected == await stack.events(created.id)
        # Read through the service layer, before and after Temporal forgets it.
        reading = PaymentService(dev_client, stack.settings, archive)
        before = await reading.get(created.id, MERCHANT)
        assert before.archived_at == record.archived_at
        events_before = await reading.payment_events(created.id, MERCHANT)
        await forget(dev_client, created.id)
        after = await reading.get(created.id, MERCHANT)
        assert after == before
        assert await reading.payment_events(created.id, MERCHANT) == events_before
        with pytest.raises(Exception, match="no such payment"):
            await reading.get(created.id, "someone-else")
        # The same request under the same key replays the archived payment:
        # no second workflow under its id.
        replayed, started = await create_again(stack, key, archive)
        assert (replayed, started) == (after, False)
        assert (await dev_client.count_workflows(f"WorkflowId = '{created.id}'")).count == 0


class Refusing(FilesystemArchive):
    """An archive whose store refuses to write one payment's record, for now."""

    refused: str | None = None

    async def put(self, record: ArchivedPayment) -> None:
        if record.payment_id == self.refused:
            raise ArchiveError("the disk is full")
        await super().put(record)


def failed_of(report: ArchiveReport, *payments: PaymentState) -> list[tuple[str, str | None]]:
    """What the pass could not archive, of these payments. A pass lists every
    closed payment on the dev server, those of earlier tests too; one that
    Temporal is deleting at that moment fails (or is lost) for a pass or two."""
    mine = {payment.id for payment in payments}
    return [(f.payment_id, f.run_id) for f in report.failed if f.payment_id in mine]


async def test_a_payment_that_cannot_be_archived_holds_up_no_other(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    """And the worker's metrics say so: how many the last pass left, and when
    a pass last archived everything (the alert PaymentsArchiveBehind)."""
    archive = Refusing(tmp_path)
    (port,) = free_ports(1)
    runtime = telemetry_runtime(f"127.0.0.1:{port}")  # serves while it lives
    meter = runtime.metric_meter

    async def gauges() -> tuple[float, float]:
        text = await scrape_metrics(f"http://127.0.0.1:{port}/metrics")
        return (
            metric_value(text, metrics.ARCHIVE_UNARCHIVED),
            metric_value(text, metrics.ARCHIVE_COMPLETE_PASS),
        )

    async with running_stack(dev_client, task_queue) as stack:
        first = await stack.create(payment_method="pm_card_chargeDeclined")
        await run_closed(dev_client, first.id)
        await archived_until(dev_client, archive, first.id)  # a first pass sets a cursor
        before = await archive.cursor()
        assert before is not None
        stuck, fine = [await stack.create(payment_method="pm_card_chargeDeclined") for _ in "ab"]
        archive.refused = stuck.id
        for payment in (stuck, fine):
            await run_closed(dev_client, payment.id)
        await asyncio.sleep(1)  # visibility has them closed
        report = await archive_pass(dev_client, archive, meter)
        assert await archive.get(fine.id) is not None and await archive.get(stuck.id) is None
        assert failed_of(report, stuck, fine) == [(stuck.id, None)]
        assert "the disk is full" in next(
            f.error for f in report.failed if f.payment_id == stuck.id
        )
        cursor = await archive.cursor()
        assert cursor is not None and cursor.at > before.at
        assert stuck.id in [left.payment_id for left in cursor.retry]
        # Incomplete: the last complete pass is still the one before (if any).
        assert cursor.complete_at == before.complete_at
        complete = before.complete_at.timestamp() if before.complete_at is not None else 0.0
        assert await gauges() == (len(report.failed), pytest.approx(complete, abs=1e-3))
        # The store heals: the next pass tries the stuck one first, though the
        # cursor has moved past it.
        archive.refused = None
        report = await archive_pass(dev_client, archive, meter)
        assert failed_of(report, stuck) == [] and await archive.get(stuck.id) is not None
        for _ in range(50):  # until no other test's payment is being deleted
            if not report.failed:
                break
            await asyncio.sleep(0.2)
            report = await archive_pass(dev_client, archive, meter)
        healed = await archive.cursor()
        assert healed is not None and healed.retry == []
        assert healed.complete_at is not None and healed.complete_at != cursor.complete_at
        assert await gauges() == (0, pytest.approx(healed.complete_at.timestamp(), abs=1e-3))


async def test_a_payment_deleted_before_it_was_archived_is_reported_lost(
    dev_client: Client, task_queue: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The store refused it, and Temporal deleted it (retention) before the
    store came back: its record is gone, and the pass says so, loudly, once."""
    archive = Refusing(tmp_path)
    (port,) = free_ports(1)
    runtime = telemetry_runtime(f"127.0.0.1:{port}")  # serves while it lives
    async with running_stack(dev_client, task_queue) as stack:
        doomed = await stack.create(payment_method="pm_card_chargeDeclined")
        archive.refused = doomed.id
        await run_closed(dev_client, doomed.id)
        for _ in range(100):  # until visibility lists it closed
            report = await archive_pass(dev_client, archive)
            if failed_of(report, doomed):
                break
            await asyncio.sleep(0.1)
        assert failed_of(report, doomed) == [(doomed.id, None)]
        await forget(dev_client, doomed.id)
        archive.refused = None
        with caplog.at_level(logging.ERROR):
            report = await archive_pass(dev_client, archive, runtime.metric_meter)
        assert (doomed.id, None) in [(g.payment_id, g.run_id) for g in report.lost]
        assert failed_of(report, doomed) == []
        assert f"the record of {doomed.id} (run final) is lost" in caplog.text
        text = await scrape_metrics(f"http://127.0.0.1:{port}/metrics")
        assert metric_value(text, metrics.ARCHIVE_LOST) == len(report.lost) >= 1
        assert await archive.get(doomed.id) is None
        # Not tried again and again: nothing is left to try.
        cursor = await archive.cursor()
        assert cursor is not None and doomed.id not in [left.payment_id for left in cursor.retry]


async def test_a_run_that_continued_as_new_is_archived_when_it_closes(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    """Retention counts from each run's close: a payment that continued as new
    (held for capture, then in its refund window for months) must not lose its
    first run, in reads while it is open nor in its record when it closes."""
    archive = FilesystemArchive(tmp_path)
    async with running_stack(dev_client, task_queue) as stack:
        created = await stack.create(**MANUAL)
        reading = PaymentService(dev_client, stack.settings, archive)
        await stack.wait_status(created.id, "requires_capture")
        handle = dev_client.get_workflow_handle(created.id)
        for _ in range(60):  # refused refund signals grow the history to continue-as-new
            await handle.signal("refund", {"amount": 1})
        for _ in range(200):
            info = (await handle.describe()).raw_description.workflow_execution_info
            if info.first_run_id != (await handle.describe()).run_id:
                break
            await asyncio.sleep(0.05)
        first_run = info.first_run_id
        for _ in range(200):  # every signal refused, in one run or the next
            events_before = await stack.events(created.id)
            if [e.type for e in events_before].count("refund.failed") == 60:
                break
            await asyncio.sleep(0.05)
        for _ in range(100):
            await archive_pass(dev_client, archive)
            if await archive.has_run(created.id, first_run):
                break
            await asyncio.sleep(0.1)
        assert await archive.has_run(created.id, first_run)
        # Retention deletes the first run while the payment goes on.
        await dev_client.workflow_service.delete_workflow_execution(
            DeleteWorkflowExecutionRequest(
                namespace=dev_client.namespace,
                workflow_execution=WorkflowExecution(workflow_id=created.id, run_id=first_run),
            )
        )
        await gone_from_temporal(dev_client, created.id, run_id=first_run)
        assert await reading.payment_events(created.id, MERCHANT) == events_before
        followed = reading.follow(created.id, first_run)
        async with contextlib.aclosing(followed) as history:
            async for step in history:
                if step.run_id != first_run:
                    break  # into the live run: the archived one was read whole
        await stack.update(created.id, "cancel", CancelPayment(), PaymentState)
        await stack.wait_status(created.id, "canceled")
        record = await archived_until(dev_client, archive, created.id)
        assert record.run_ids[0] == first_run and len(record.run_ids) >= 2
        projected = await events.project(created.id, record.runs(), dev_client.data_converter)
        assert projected[: len(events_before)] == events_before
        assert projected[-1].type == "payment.canceled"
        # An archive that never had the first run cannot make the record whole:
        # lost, said once, and not tried again at every pass.
        elsewhere = FilesystemArchive(tmp_path / "elsewhere")
        report = await archive_pass(dev_client, elsewhere)
        lost = [(g.run_id, g.error) for g in report.lost if g.payment_id == created.id]
        # (Visibility may still list the deleted run too, lost as well.)
        assert (None, "an earlier run was deleted from Temporal before it was archived") in lost
        assert failed_of(report, created) == [] and await elsewhere.get(created.id) is None
        cursor = await elsewhere.cursor()
        assert cursor is not None and created.id not in [r.payment_id for r in cursor.retry]


async def test_a_reopened_payment_is_archived_when_it_closes_again(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    archive = FilesystemArchive(tmp_path)
    async with running_stack(dev_client, task_queue) as stack:
        key = f"reopened-{uuid.uuid4()}"
        created = await stack.create(idempotency_key=key, **MANUAL)
        reading = PaymentService(dev_client, stack.settings, archive)
        await stack.wait_status(created.id, "requires_capture")
        await stack.update(created.id, "cancel", CancelPayment(), PaymentState)
        await stack.wait_status(created.id, "canceled")
        first = await archived_until(dev_client, archive, created.id)
        # An operator resets the closed payment to its first workflow task
        # (without replaying the cancel into the new run); a slow gateway keeps
        # the new run open for a while.
        stack.gateway.ledger.faults = Faults(latency_ms=3000)
        reset = await dev_client.workflow_service.reset_workflow_execution(
            ResetWorkflowExecutionRequest(
                namespace=dev_client.namespace,
                workflow_execution=WorkflowExecution(
                    workflow_id=created.id, run_id=first.last_run_id
                ),
                reason="test",
                workflow_task_finish_event_id=4,
                request_id=str(uuid.uuid4()),
                reset_reapply_type=ResetReapplyType.RESET_REAPPLY_TYPE_NONE,
            )
        )
        await archive_pass(dev_client, archive)
        # Open again: the old record stands until the new run closes...
        assert (await archive.get(created.id)) == first
        # ...but the payment is the open one: reads and a replayed key say so.
        live = await reading.get(created.id, MERCHANT)
        assert (live.status, live.archived_at) == ("processing", None)
        replayed, started = await create_again(stack, key, archive)
        assert (replayed, started) == (live, False)
        # The new run learns from the gateway that the authorization was voided.
        stack.gateway.ledger.faults = Faults()
        await stack.wait_status(created.id, "canceled")
        voided = [e.data for e in await stack.events(created.id) if e.type == "payment.voided"]
        assert [d.get("source") for d in voided] == ["gateway"]
        second = await archived_until(dev_client, archive, created.id, run_id=reset.run_id)
        assert second.run_ids == [reset.run_id]
        assert second.archived_at > first.archived_at


async def test_a_payment_id_that_comes_back_never_replays_the_old_operations(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue) as stack:
        key = f"comes-back-{uuid.uuid4()}"
        first = await stack.create(idempotency_key=key, **MANUAL)
        authorized = await stack.wait_status(first.id, "requires_capture")
        await stack.update(first.id, "cancel", CancelPayment(), PaymentState)
        await stack.wait_status(first.id, "canceled")
        await forget(dev_client, first.id)
        # Started again under the same id, with nothing (no archive) to stop it:
        # the worst that retention could do before this service archived.
        again = await stack.create(idempotency_key=key, **MANUAL)
        assert again.id == first.id
        reauthorized = await stack.wait_status(again.id, "requires_capture")
        assert reauthorized.authorization_id != authorized.authorization_id
        await stack.update(again.id, "capture", CapturePayment(), PaymentState)
        assert (await stack.wait_status(again.id, "succeeded")).amount_captured == 1999
        ledger = stack.ledger(first.id)
        assert [op.kind for op in ledger] == ["authorization", "void", "authorization", "capture"]
        assert len({op.idempotency_key for op in ledger}) == 4


async def test_the_worker_warns_when_the_namespace_forgets_too_soon(
    dev_client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    # The test dev server keeps the dev server's default: one day.
    with caplog.at_level(logging.WARNING, logger="worker"):
        await warn_about_retention(dev_client, Settings(retention_days=30))
    assert "PAYMENTS_RETENTION_DAYS=30" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="worker"):
        await warn_about_retention(dev_client, Settings(retention_days=1))
    assert caplog.text == ""


async def waiting(handle: WorkflowHandle[Any, Any], interval: timedelta) -> None:
    """Until the archiver's latest timer (its wait for the next pass, as the UI
    shows it) is ``interval`` long."""
    for _ in range(300):
        timers = [
            event.timer_started_event_attributes.start_to_fire_timeout.ToTimedelta()
            async for event in handle.fetch_history_events()
            if event.HasField("timer_started_event_attributes")
        ]
        if timers and timers[-1] == interval:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"the archiver never waited {interval}")


async def next_pass(handle: WorkflowHandle[Any, Any], seen: ArchiveReport | None) -> ArchiveReport:
    """The archiver's report of the first pass to end after ``seen`` (a record
    shows up while its pass still works through the rest of the list)."""
    for _ in range(300):
        last: ArchiveReport | None = await handle.query(ArchiveWorkflow.last_pass)
        if last is not None and (seen is None or last.cursor != seen.cursor):
            return last
        await asyncio.sleep(0.1)
    raise AssertionError("the archiver made no pass")


async def test_the_archiver_passes_again_and_again(
    dev_client: Client, task_queue: str, tmp_path: Path
) -> None:
    """The archiver's own workflow, on a worker that replays every task."""
    archive = FilesystemArchive(tmp_path)
    async with running_stack(dev_client, task_queue) as stack:
        first = await stack.create(payment_method="pm_card_chargeDeclined")
        await run_closed(dev_client, first.id)
        archiver_id = f"archiver-{uuid.uuid4()}"
        async with Worker(
            dev_client,
            task_queue=task_queue + "-archive",
            workflows=[ArchiveWorkflow],
            activities=ArchiveActivities(dev_client, archive).all(),
            max_cached_workflows=0,
        ):
            handle = await dev_client.start_workflow(
                ArchiveWorkflow.run,
                ArchiveRun(interval_seconds=0.5),
                id=archiver_id,
                task_queue=task_queue + "-archive",
            )
            try:
                for _ in range(200):
                    if await archive.archived(first.id):
                        break
                    await asyncio.sleep(0.1)
                assert await archive.archived(first.id)
                # A long interval now: once a pass has ended since, the
                # archiver waits an hour, and a payment that closes meanwhile
                # is archived on request.
                await handle.signal(ArchiveWorkflow.reconfigure, ArchiveRun(interval_seconds=3600))
                await waiting(handle, timedelta(hours=1))
                settled = await handle.query(ArchiveWorkflow.last_pass)
                second = await stack.create(payment_method="pm_card_chargeDeclined")
                await run_closed(dev_client, second.id)
                await asyncio.sleep(1)  # visibility has it closed
                assert await handle.query(ArchiveWorkflow.last_pass) == settled  # no pass since
                await handle.signal(ArchiveWorkflow.archive_now)
                last = await next_pass(handle, settled)
                assert last.closed_since is not None  # from an earlier pass's cursor
                assert await archive.archived(second.id)
            finally:
                await handle.terminate("test over")
