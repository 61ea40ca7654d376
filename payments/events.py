"""The event log (CONTRACT §6), projected from the workflow's Temporal history.

There is no second event store. The workflow records each domain event as a
memo upsert (``WorkflowPropertiesModified``, memo key ``event``); the run's
``WorkflowExecutionStarted`` is ``payment.requested``. This module turns a
chain of run histories into the API's events, and follows a payment's
history live (:func:`follow_history`). ``seq`` is the history event id,
offset by the length of earlier runs so it keeps increasing across
continue-as-new: :func:`seq_of` and :func:`next_offset` are that rule, for a
read of past runs and a live follow alike.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any

from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import Client, WorkflowHistory
from temporalio.converter import DataConverter
from temporalio.service import RPCError, RPCStatusCode

from payments import memo
from payments.archive import Archive
from payments.models import MERCHANT_ONLY_FIELDS, Event, PaymentInput, PaymentState
from payments.status import PaymentStatus

TYPES = (
    "payment.requested",
    "payment.action_required",
    "payment.authenticated",
    "payment.authentication_failed",
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
    "receipt.sent",
    "receipt.failed",
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
        for raw in history.events:
            event = await project_event(payment_id, raw, converter, offset=offset)
            if event is not None:
                events.append(event)
        if history.events:
            offset = next_offset(offset, history.events[-1])
    return events


def seq_of(offset: int, raw: HistoryEvent) -> int:
    """An event's ``seq``: its id in its run, after the ``offset`` of the runs before."""
    return offset + raw.event_id


def next_offset(offset: int, last: HistoryEvent) -> int:
    """The offset of the run after the one ``last`` ends: each run counts its
    whole length, so ``seq`` keeps increasing across continue-as-new."""
    return seq_of(offset, last)


async def project_event(
    payment_id: str, raw: HistoryEvent, converter: DataConverter, *, offset: int = 0
) -> Event | None:
    """The domain event one history event records, if any; ``offset`` is the
    length of the runs before this one."""
    at = raw.event_time.ToDatetime(tzinfo=UTC)
    seq = seq_of(offset, raw)
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
            data=started.request.model_dump(mode="json", exclude=set(MERCHANT_ONLY_FIELDS)),
        )
    if raw.event_type == EventType.EVENT_TYPE_WORKFLOW_PROPERTIES_MODIFIED:
        fields = raw.workflow_properties_modified_event_attributes.upserted_memo.fields
        recorded = await memo.event_in(fields, converter)
        if recorded is None:
            return None
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
    return await memo.payment_in(fields, converter)


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


@dataclass(frozen=True)
class Followed:
    """One history event of a payment, as :func:`follow_history` reads it."""

    # None: the run that was current when following began, by no id of its own.
    run_id: str | None
    # The length of the runs followed before this one (see :func:`seq_of`).
    offset: int
    event: HistoryEvent


CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    }
)


async def follow_history(
    client: Client, payment_id: str, run_id: str | None, *, archive: Archive | None = None
) -> AsyncGenerator[Followed, None]:
    """The history of run ``run_id`` (None: the current run) and of the runs it
    continues as, past then live, until the workflow closes. An earlier run that
    Temporal has already forgotten (retention counts from when each run closed)
    comes from the archive.

    Live events come from Temporal's long poll (``wait_new_event``): a reader
    holds a request to the server, never anything in the workflow, and a
    caller that stops iterating (or is cancelled) leaves nothing behind.
    """
    offset = 0
    run = run_id
    while True:
        following: str | None = None
        async for raw in _run_events(client, payment_id, run, archive):
            yield Followed(run, offset, raw)
            following = continued_as(raw)
            if following is not None:
                offset = next_offset(offset, raw)
                break
            if raw.event_type in CLOSED:
                return
        if following is None:
            return
        run = following


async def _run_events(
    client: Client, payment_id: str, run_id: str | None, archive: Archive | None
) -> AsyncGenerator[HistoryEvent, None]:
    """One run's events, past then live; from the archive when Temporal no
    longer has the run (it is closed then, so its past is all there is)."""
    handle = client.get_workflow_handle(payment_id, run_id=run_id)
    sent = 0
    try:
        async for raw in handle.fetch_history_events(wait_new_event=True):
            sent = raw.event_id
            yield raw
        return
    except RPCError as err:
        archived = None
        if archive is not None and run_id is not None:
            archived = await archive.get_run(payment_id, run_id)
        if err.status != RPCStatusCode.NOT_FOUND or archived is None:
            raise
    # Deleted before or while it was read: the rest of it is in the archive.
    for raw in archived.workflow_history().events:
        if raw.event_id > sent:
            yield raw
