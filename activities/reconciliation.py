"""The reconciliation activity (its Schedule: ``payments/reconciliation_service.py``).

``reconcile`` reads both sides for a window: what the gateway committed
(its list endpoint) and what our payments say (their memos, from Temporal, or
from the archive once Temporal has forgotten them), then compares them with
:func:`payments.reconciliation.compare`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

from payments import memo, names
from payments.archive import Archive
from payments.gateway import Gateway, GatewayOperation
from payments.models import PaymentState
from payments.reconciliation import (
    ReconciliationReport,
    Window,
    compare,
    in_flight,
)


class ReconciliationActivities:
    def __init__(self, gateway: Gateway, client: Client, archive: Archive | None = None) -> None:
        self._gateway = gateway
        self._client = client
        self._archive = archive

    @activity.defn(name="reconcile")
    async def reconcile(self, window: Window) -> ReconciliationReport:
        operations = await self._gateway.list_operations(since=window.start, until=window.end)
        references = {op.reference for op in operations}
        # Payments started in the window, so one that claims a capture the
        # gateway never made is found even when the gateway has nothing.
        query = (
            f"WorkflowType = '{names.WORKFLOW_TYPE}' AND StartTime >= "
            f"'{window.start.isoformat()}' AND StartTime < '{window.end.isoformat()}'"
        )
        async for execution in self._client.list_workflows(query):
            references.add(execution.id)
        checked = 0
        mismatches = []
        in_flight_ids = []
        for reference in sorted(references):
            payment, running = await self._payment(reference)
            if payment is not None and in_flight(payment, running=running):
                in_flight_ids.append(reference)
                continue
            # All of the payment's operations, not only the window's: a refund
            # made later belongs to the same payment. What we know of it keeps
            # the gateway's search small.
            theirs: list[GatewayOperation] = await self._gateway.find_by_reference(
                reference,
                since=payment.created_at if payment else None,
                authorization_id=payment.authorization_id if payment else None,
            )
            mismatches.extend(compare(reference, payment, theirs, running=running))
            checked += 1
            activity.heartbeat(checked)
        return ReconciliationReport(
            window=window, checked=checked, mismatches=mismatches, in_flight=in_flight_ids
        )

    async def _payment(self, payment_id: str) -> tuple[PaymentState | None, bool]:
        """The payment as its current run (never an earlier one, which a reset
        or continue-as-new replaced) says, and whether that run is running."""
        try:
            description = await self._client.get_workflow_handle(payment_id).describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            # Temporal forgot it (retention): its record is in the archive.
            record = await self._archive.get(payment_id) if self._archive else None
            return (await record.state(self._client.data_converter) if record else None), False
        state = await memo.payment_of(description)
        return state, description.status == WorkflowExecutionStatus.RUNNING

    def all(self) -> list[Callable[..., Any]]:
        return [self.reconcile]
