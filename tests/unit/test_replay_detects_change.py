"""The replay corpus has teeth: a workflow with the same type name but other
commands (it captures before it authorizes) does not replay a recorded
success, so such a change cannot reach main unnoticed."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer

SUCCESS = Path(__file__).parent.parent / "histories" / "success.json"


@workflow.defn(name="PaymentWorkflow", sandboxed=False)
class ReorderedPaymentWorkflow:
    @workflow.run
    async def run(self, input: Any) -> None:
        await workflow.execute_activity(
            "capture", input, start_to_close_timeout=timedelta(seconds=30)
        )


async def test_a_nondeterministic_change_fails_the_replay() -> None:
    history = WorkflowHistory.from_json("replay-success", json.loads(SUCCESS.read_text()))
    replayer = Replayer(
        workflows=[ReorderedPaymentWorkflow], data_converter=pydantic_data_converter
    )
    result = await replayer.replay_workflow(history, raise_on_replay_failure=False)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()
