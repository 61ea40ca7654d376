"""Every recorded history in tests/histories/ replays against today's
workflow code: a change that breaks determinism fails here, in CI.
Re-record with `make histories` when a change is meant to be incompatible
(and guard it with ``workflow.patched`` so running payments keep replaying)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

from workflows.archive import ArchiveWorkflow
from workflows.payment import PaymentWorkflow

HISTORIES = sorted((Path(__file__).parent.parent / "histories").glob("*.json"))
EXPECTED_PATHS = {
    "success",
    "declined",
    "capture_failed",
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
}


def load(path: Path) -> WorkflowHistory:
    data = json.loads(path.read_text())
    return WorkflowHistory.from_json(f"replay-{path.stem}", data)


def test_the_corpus_covers_every_path() -> None:
    assert {path.stem for path in HISTORIES} == EXPECTED_PATHS


@pytest.mark.parametrize("path", HISTORIES, ids=[p.stem for p in HISTORIES])
async def test_history_replays(path: Path) -> None:
    replayer = Replayer(
        workflows=[PaymentWorkflow, ArchiveWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(load(path), raise_on_replay_failure=False)
    assert result.replay_failure is None, f"{path.name}: {result.replay_failure}"
