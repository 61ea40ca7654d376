"""The stuck-payment count's activity (see :mod:`payments.stuck`)."""

from __future__ import annotations

from datetime import datetime

from temporalio import activity

from payments.names import STUCK_ACTIVITY
from payments.stuck import StuckCounter, StuckCounts


class StuckActivities:
    def __init__(self, counter: StuckCounter) -> None:
        self._counter = counter

    @activity.defn(name=STUCK_ACTIVITY)
    async def count_stuck_payments(self, at: datetime) -> StuckCounts:
        return await self._counter.count(at, activity.metric_meter())
