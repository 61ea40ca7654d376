"""Every recorded history in tests/histories/ replays against today's
workflow code: a change that breaks determinism fails here, in CI.
Re-record with `make histories` when a change is meant to be incompatible
(and guard it with ``workflow.patched`` so running payments keep replaying)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

from payments.sandbox import workflow_runner
from workflows.archive import ArchiveWorkflow
from workflows.payment import PaymentWorkflow
from workflows.stuck import StuckPaymentsWorkflow
from workflows.webhooks import (
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    WebhookEndpointsWorkflow,
)

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))
EXPECTED_PATHS = {
    "success",
    "declined",
    "capture_failed",
    # Recorded since a failed payment fails its run (workflow.patched).
    "declined_run_fails",
    "capture_failed_run_fails",
    "manual_partial_capture",
    "cancel_manual",
    "cancel_during_authorize",
    "refunds",
    "operator_signals",
    "gateway_events",
    "continue_as_new_run1",
    "continue_as_new_run2",
    "capture_after_continue_as_new_run1",
    "capture_after_continue_as_new_run2",
    "expiry",
    "refund_window_end",
    "archiver",
    # The stuck-payment count (issue 15).
    "stuck_count",
    "canceled_in_temporal",
    "canceled_in_temporal_after_capture",
    "keyed_updates",
    "reset_after_refund",
    # Recorded since gateway steps try a local activity first (workflow.patched).
    "fast_path",
    "fast_path_declined",
    "fast_path_fallback",
    # Recorded since runs announce their events to webhooks (workflow.patched),
    # and the webhooks' own workflows.
    "webhook_payment",
    "webhook_deliveries",
    "webhook_endpoints",
    # First attempts in batches (the dispatch workflow), the rest handed on.
    "webhook_dispatch",
    # The same, recorded before the worker grouped announcements (one per signal).
    "webhook_dispatch_one_announcement",
    "webhook_handoff",
    # Customer action (3-D Secure): approved, failed, canceled while waiting,
    # out of time, and approved with no webhook (found by the payment's look).
    "action_approved",
    "action_failed",
    "action_canceled",
    "action_timeout",
    "action_lookup",
    # Receipts by e-mail: for the payment and a refund, sent; and refused.
    "receipts",
    "receipt_refused",
}


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return as_its_worker_knows_it(WorkflowHistory.from_json(f"replay-{path.stem}", data))


def as_its_worker_knows_it(history: WorkflowHistory) -> WorkflowHistory:
    """The replayer names a run by its first event's ``original_execution_run_id``,
    which a reset run copies from the run it was reset from; a worker knows the
    run by its own id, which the reset's failed workflow task names. The
    workflow tells a later run from the first by its id, so replay it as that."""
    for event in history.events:
        failed = event.workflow_task_failed_event_attributes
        if (
            event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
            and failed.cause == WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_RESET_WORKFLOW
        ):
            started = history.events[0].workflow_execution_started_event_attributes
            started.original_execution_run_id = failed.new_run_id
    return history


def test_the_corpus_covers_every_path() -> None:
    assert {path.stem for path in HISTORIES} == EXPECTED_PATHS


REPLAYED = [
    PaymentWorkflow,
    ArchiveWorkflow,
    WebhookEndpointsWorkflow,
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    StuckPaymentsWorkflow,
]
# The SDK's sandbox as it comes, and as the worker runs it (payments/sandbox.py).
RUNNERS = {
    "sdk_sandbox": lambda: SandboxedWorkflowRunner(),
    "worker_sandbox": lambda: workflow_runner(REPLAYED, pydantic_data_converter),
}


@pytest.mark.parametrize("runner", RUNNERS)
@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path, runner: str) -> None:
    replayer = Replayer(
        workflows=REPLAYED,
        data_converter=pydantic_data_converter,
        workflow_runner=RUNNERS[runner](),
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
