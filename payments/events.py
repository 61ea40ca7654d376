"""The event log (CONTRACT §6), projected from the workflow's Temporal history.

There is no second event store. The workflow records each domain event as a
memo upsert (``WorkflowPropertiesModified``, memo key ``event``); the run's
``WorkflowExecutionStarted`` is ``payment.requested``. This module turns a
chain of run histories into the API's events: ``seq`` is the history event id,
offset by the length of earlier runs so it keeps increasing across
continue-as-new.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from payments.archive import Archive
from payments.models import DomainEvent, Event, PaymentInput, PaymentState
from payments.names import EVENT_MEMO_KEY, PAYMENT_MEMO_KEY
from payments.status import PaymentStatus

TYPES = (
    "payment.requested",
    "payment.authorized",
    "payment.declined",
    "payment.capture_requested",
    "payment.captured",
    "payment.capture_failed",
    "payment.voided",
    "payment.void_failed",
    "payment.failed",
    "payment.cancel_requested",
    "payment.cancel_failed",
    "payment.canceled",
    "payment.expired",
    "refund.requested",
    "refund.succeeded",
    "refund.failed",
    "payment.gateway_event",
    "payment.lookup_failed",
)


async def _decode(converter: DataConverter, payload: Payload, type_hint: type[Any]) -> Any:
    [value] = await converter.decode([payload], [type_hint])
    return value


async def project(
    payment_id: str, runs: Sequence[WorkflowHistory], converter: DataConverter
) -> list[Event]:
    """The events of ``runs`` (oldest run first), oldest event first."""
    events: list[Event] = []
    offset = 0
    for history in runs:
        last_id = 0
        for raw in history.events:
            last_id = raw.event_id
            event = await project_event(payment_id, raw, converter, offset=offset)
            if event is not None:
                events.append(event)
        offset += last_id
    return events


async def project_event(
    payment_id: str, raw: HistoryEvent, converter: DataConverter, *, offset: int = 0
) -> Event | None:
    """The domain event one history event records, if any; ``offset`` is the
    length of the runs before this one."""
    at = raw.event_time.ToDatetime(tzinfo=UTC)
    seq = offset + raw.event_id
    if raw.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        started_attributes = raw.workflow_execution_started_event_attributes
        payloads = started_attributes.input.payloads
        # A run started by continue-as-new carries on; it is not a new request.
        if started_attributes.continued_execution_run_id or not payloads:
            return None
        started: PaymentInput = await _decode(converter, payloads[0], PaymentInput)
        return Event(
            seq=seq,
            type="payment.requested",
            at=at,
            payment_id=payment_id,
            data=started.request.model_dump(mode="json"),
        )
    if raw.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
        fields = raw.workflow_properties_modified_event_attributes.upserted_memo.fields
        if EVENT_MEMO_KEY not in fields:
            return None
        recorded: DomainEvent = await _decode(converter, fields[EVENT_MEMO_KEY], DomainEvent)
        return Event(
            seq=seq,
            type=recorded.type,
            at=at,
            payment_id=payment_id,
            data=recorded.data,
        )
    return None


async def payment_after(raw: HistoryEvent, converter: DataConverter) -> PaymentState | None:
    """The payment as a domain event left it, if ``raw`` records one."""
    if raw.event_type != EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
        return None
    fields = raw.workflow_properties_modified_event_attributes.upserted_memo.fields
    if PAYMENT_MEMO_KEY not in fields:
        return None
    state: PaymentState = await _decode(converter, fields[PAYMENT_MEMO_KEY], PaymentState)
    return state


async def status_after(raw: HistoryEvent, converter: DataConverter) -> PaymentStatus | None:
    """The payment's status as a domain event left it, if ``raw`` records one."""
    state = await payment_after(raw, converter)
    return state.status if state else None


def continued_as(raw: HistoryEvent) -> str | None:
    """The next run's id, if ``raw`` ends its run by continuing as new."""
    if raw.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW:
        return None
    return raw.workflow_execution_continued_as_new_event_attributes.new_execution_run_id


def previous_run_id(history: WorkflowHistory) -> str | None:
    """The run this one continued from, if it was started by continue-as-new."""
    first = history.events[0] if history.events else None
    if first is None or first.event_type != EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        return None
    return first.workflow_execution_started_event_attributes.continued_execution_run_id or None


async def fetch_runs(
    client: Client, payment_id: str, *, archive: Archive | None = None
) -> list[WorkflowHistory]:
    """The histories of every run of the payment, oldest run first."""
    chain = await fetch_run_chain(client, payment_id, archive=archive)
    return [history for _, history in chain]


async def fetch_run_chain(
    client: Client,
    payment_id: str,
    latest_run_id: str | None = None,
    *,
    archive: Archive | None = None,
) -> list[tuple[str | None, WorkflowHistory]]:
    """(run id, history) of every run up to ``latest_run_id`` (default: the
    current run, whose id is then None), oldest run first. An earlier run that
    Temporal has forgotten (retention counts from when each run closed) is
    read from the archive.

    The ids come from the chain, not from the histories: a history's own
    ``run_id`` is its *original* run's, which a reset run does not share.
    """
    runs: list[tuple[str | None, WorkflowHistory]] = []
    run_id = latest_run_id
    while True:
        history = await _run_history(client, payment_id, run_id, archive)
        runs.append((run_id, history))
        run_id = previous_run_id(history)
        if run_id is None:
            return runs[::-1]


async def _run_history(
    client: Client, payment_id: str, run_id: str | None, archive: Archive | None
) -> WorkflowHistory:
    try:
        return await client.get_workflow_handle(payment_id, run_id=run_id).fetch_history()
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND or run_id is None or archive is None:
            raise
        archived = await archive.get_run(payment_id, run_id)
        if archived is None:
            raise
        return archived.workflow_history()
