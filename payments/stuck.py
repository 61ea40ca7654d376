"""Stuck payments (CONTRACT §15): running payments still in ``processing`` or
``requires_capture`` longer than ``STUCK_AGES``, counted from visibility by
their ``PaymentCreatedAt``; :class:`StuckCounter` counts and sets the
``payments_stuck`` gauge, and ensures the Schedule that runs it."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from pydantic import BaseModel
from temporalio.client import (
    Client,
    ScheduleActionStartWorkflow,
)
from temporalio.common import MetricMeter

from payments import metrics, names
from payments.listing import quote
from payments.temporal import ensure_interval_schedule

# Every five minutes: the alerts wait ten, and each run stays in the UI until
# retention ends (12 a hour, not 60).
EVERY = timedelta(minutes=5)


class StuckCount(BaseModel):
    status: str
    older_than: str
    count: int


class StuckCounts(BaseModel):
    at: datetime
    counts: list[StuckCount]


def query(status: str, before: datetime) -> str:
    return " AND ".join(
        [
            f"WorkflowType = {quote(names.WORKFLOW_TYPE)}",
            "ExecutionStatus = 'Running'",
            f"{names.STATUS.name} = {quote(status)}",
            f"{names.CREATED_AT.name} < '{before.astimezone(UTC):%Y-%m-%dT%H:%M:%S}Z'",
        ]
    )


class StuckCounter:
    def __init__(self, client: Client, task_queue: str) -> None:
        self._client = client
        self._task_queue = task_queue

    async def count(self, at: datetime, meter: MetricMeter | None) -> StuckCounts:
        counts = []
        for status in metrics.STUCK_STATUSES:
            for label, age in metrics.STUCK_AGES.items():
                found = await self._client.count_workflows(query(status, at - age))
                counts.append(StuckCount(status=status, older_than=label, count=found.count))
        if meter is not None:
            gauge = meter.create_gauge(metrics.STUCK, metrics.DESCRIPTIONS[metrics.STUCK])
            for c in counts:
                gauge.set(c.count, {"status": c.status, "older_than": c.older_than})
        return StuckCounts(at=at, counts=counts)

    async def ensure_schedule(self) -> bool:
        """Create the Schedule unless it exists; True if created."""
        return await ensure_interval_schedule(
            self._client,
            names.STUCK_SCHEDULE_ID,
            ScheduleActionStartWorkflow(
                names.STUCK_WORKFLOW_TYPE, id="stuck-payments", task_queue=self._task_queue
            ),
            EVERY,
        )
