"""The operator's reconciliation use cases, in the domain's terms: run one now,
read a run, and keep the Schedule that runs them (``payments/service.py`` is
the merchant's side; ``workflows/reconciliation.py`` and
``activities/reconciliation.py`` do the run itself).

A run nobody knows is refused as :class:`payments.refusals.Refused`
(``resource_missing``); a run that failed raises :class:`RunFailed`.
``api/errors.py`` turns each into an HTTP answer.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
    WorkflowFailureError,
    WorkflowHandle,
)
from temporalio.service import RPCError, RPCStatusCode

from payments import names
from payments.reconciliation import ReconciliationReport, ReconciliationRequest
from payments.refusals import RESOURCE_MISSING, Refusal, Refused
from payments.temporal import ensure_interval_schedule

NO_SUCH_RUN = Refusal(RESOURCE_MISSING, "no such reconciliation run", "id")


class RunFailed(Exception):
    """The run's workflow failed: it has no report."""

    def __init__(self, run_id: str) -> None:
        super().__init__("the reconciliation run failed")
        self.run_id = run_id


@dataclass(frozen=True)
class Run:
    id: str
    # None while the run is still going.
    report: ReconciliationReport | None


class ReconciliationService:
    def __init__(self, client: Client, task_queue: str):
        self.client = client
        self._task_queue = task_queue

    async def run(self, request: ReconciliationRequest | None, wait_seconds: float) -> Run:
        """Start a run on demand and wait up to ``wait_seconds`` for its report."""
        run_id = f"reconciliation-{uuid.uuid4().hex[:16]}"
        handle = await self.client.start_workflow(
            names.RECONCILIATION_WORKFLOW_TYPE,
            request,
            id=run_id,
            task_queue=self._task_queue,
            result_type=ReconciliationReport,
            static_summary="reconciliation run (on demand)",
        )
        try:
            async with asyncio.timeout(wait_seconds):
                return Run(run_id, await _report(handle))
        except TimeoutError:
            return Run(run_id, None)

    async def read(self, run_id: str) -> Run:
        """A run started on demand or by the Schedule; only reconciliation runs."""
        handle = self.client.get_workflow_handle(run_id, result_type=ReconciliationReport)
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise Refused(NO_SUCH_RUN) from None
            raise
        if description.workflow_type != names.RECONCILIATION_WORKFLOW_TYPE:
            raise Refused(NO_SUCH_RUN)
        if description.close_time is None:
            return Run(run_id, None)
        return Run(run_id, await _report(handle))

    async def ensure_schedule(self, every: timedelta) -> bool:
        """Create the reconciliation Schedule unless it exists; True if created."""
        return await ensure_interval_schedule(
            self.client,
            names.RECONCILIATION_SCHEDULE_ID,
            ScheduleActionStartWorkflow(
                names.RECONCILIATION_WORKFLOW_TYPE,
                ReconciliationRequest(lookback_seconds=every.total_seconds()),
                id="reconciliation",
                task_queue=self._task_queue,
            ),
            every,
        )


async def _report(handle: WorkflowHandle[Any, ReconciliationReport]) -> ReconciliationReport:
    try:
        return await handle.result()
    except WorkflowFailureError:
        raise RunFailed(handle.id) from None
