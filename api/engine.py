"""The API's calls into Temporal: start a payment, send it updates, read it.

Reads never replay a workflow: a payment is read from its memo (``describe``),
lists from visibility, events from the history; a caller who asks to wait
follows the history (Temporal's long poll) and reads the payment from each
memo upsert, so waiting sends the workflow nothing. Writes are updates the
workflow validates before anything touches the history.

Once Temporal has forgotten a closed payment (its namespace's retention), the
payment and its events are read from the archive instead (CONTRACT §10), and a
create with its ``Idempotency-Key`` replays it from there: no second workflow.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar, overload

from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowHistory,
    WorkflowUpdateFailedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api import listing
from api.errors import ApiError, not_found, refused
from payments import events, names
from payments.archive import Archive, ArchivedPayment, archived_at
from payments.currencies import format_amount
from payments.ids import instance_id, is_payment_id
from payments.models import CreatePayment, Event, Keyed, PaymentInput, PaymentState
from payments.refusals import KEY_REUSED, PAYMENT_CLOSED, Refusal
from payments.settings import Settings

T = TypeVar("T")


def summary(request: CreatePayment) -> str:
    """What the Temporal UI shows for the workflow: "19.99 USD · pm_card_visa · cus_42"."""
    parts = [format_amount(request.amount, request.currency), request.payment_method]
    if request.customer_id:
        parts.append(request.customer_id)
    return " · ".join(parts)


async def start_payment(
    client: Client,
    settings: Settings,
    *,
    payment_id: str,
    merchant_id: str,
    request: CreatePayment,
    fingerprint: str,
    archive: Archive | None = None,
) -> tuple[PaymentState, bool]:
    """Start the payment's workflow; (payment, created). A replay returns the original.

    A payment the archive holds is never started again: its id comes from the
    same merchant and key, and the payment is the replay, read from Temporal
    while it holds it (an operator may have reopened it), else from the archive.
    """
    if archive is not None and await archive.archived(payment_id) is not None:
        return await _replay(client, payment_id, merchant_id, fingerprint, archive)
    now = datetime.now(UTC)
    state = PaymentState.requested(payment_id, merchant_id, request, now)
    attributes: list[SearchAttributePair[Any]] = [
        SearchAttributePair(names.STATUS, state.status.value),
        SearchAttributePair(names.MERCHANT, merchant_id),
        SearchAttributePair(names.AMOUNT, request.amount),
        SearchAttributePair(names.CURRENCY, request.currency),
        listing.created_at_attribute(now),
    ]
    if request.customer_id:
        attributes.append(SearchAttributePair(names.CUSTOMER, request.customer_id))
    workflow_input = PaymentInput(
        payment_id=payment_id,
        merchant_id=merchant_id,
        request=request,
        request_fingerprint=fingerprint,
        created_at=now,
        authorization_window_seconds=settings.authorization_window.total_seconds(),
        refund_window_seconds=settings.refund_window.total_seconds(),
        instance=instance_id(),
    )
    options: dict[str, Any] = {
        "id": payment_id,
        "task_queue": settings.task_queue,
        # One id, one payment, forever: a reused key never starts a second charge.
        "id_reuse_policy": WorkflowIDReusePolicy.REJECT_DUPLICATE,
        "search_attributes": TypedSearchAttributes(attributes),
        "memo": {
            names.PAYMENT_MEMO_KEY: state,
            names.REQUEST_FINGERPRINT_MEMO_KEY: fingerprint,
        },
        "static_summary": summary(request),
        "static_details": request.description,
    }
    try:
        await client.start_workflow(
            names.WORKFLOW_TYPE,
            workflow_input,
            id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
            **options,
        )
        return state, True
    except WorkflowAlreadyStartedError:
        # Running or closed: read what the first request made of it.
        return await _replay(client, payment_id, merchant_id, fingerprint, archive)


async def _replay(
    client: Client,
    payment_id: str,
    merchant_id: str,
    fingerprint: str,
    archive: Archive | None,
) -> tuple[PaymentState, bool]:
    """The payment an earlier request with this key made, if this request is
    the same one; 409 if the key came with another request."""
    description = await _describe(client, payment_id)
    if description is None:
        # Only the archive holds it (deleted, perhaps a moment ago).
        record = await _archived(archive, payment_id)
        if record.request_fingerprint != fingerprint:
            raise _key_reused()
        return await _archived_state(client, record, merchant_id), False
    original = await description.memo_value(names.REQUEST_FINGERPRINT_MEMO_KEY, None)
    if original != fingerprint:
        raise _key_reused()
    return await _payment_from(description, merchant_id, archive), False


def _key_reused() -> ApiError:
    return refused(KEY_REUSED)


def _update_refused(err: WorkflowUpdateFailedError) -> ApiError:
    """The workflow's validator said no: its error type is the refusal's code."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return ApiError("internal_error", "an internal error occurred")
    return refused(Refusal(cause.type or "request_conflict", cause.message))


async def _describe(client: Client, payment_id: str) -> WorkflowExecutionDescription | None:
    """The payment's workflow as Temporal holds it; None once Temporal has
    forgotten it (or never knew it). A malformed id is a plain 404."""
    if not is_payment_id(payment_id):
        raise not_found()
    try:
        return await client.get_workflow_handle(payment_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            return None
        raise


def _owned(state: PaymentState | None, merchant_id: str | None) -> PaymentState:
    if state is None or (merchant_id is not None and state.merchant_id != merchant_id):
        # Another merchant's payment answers exactly like one that does not exist.
        raise not_found()
    return state


async def _payment_from(
    description: WorkflowExecutionDescription, merchant_id: str | None, archive: Archive | None
) -> PaymentState:
    state: PaymentState | None = await description.memo_value(
        names.PAYMENT_MEMO_KEY, None, type_hint=PaymentState
    )
    state = _owned(state, merchant_id)
    if description.close_time is not None:
        # Closed and still in Temporal: archived already, perhaps.
        state.archived_at = await archived_at(archive, state.id, description.run_id)
    return state


async def _archived(archive: Archive | None, payment_id: str) -> ArchivedPayment:
    """The archive's record of a payment Temporal no longer holds, or 404."""
    record = await archive.get(payment_id) if archive is not None else None
    if record is None:
        raise not_found()
    return record


async def _archived_state(
    client: Client, record: ArchivedPayment, merchant_id: str | None
) -> PaymentState:
    return _owned(await record.state(client.data_converter), merchant_id)


@dataclass(frozen=True)
class Described:
    """A payment and its workflow's description (run ids, history length)."""

    payment: PaymentState
    raw: WorkflowExecutionDescription


@overload
async def describe_payment(
    client: Client, payment_id: str, merchant_id: str | None
) -> Described: ...


@overload
async def describe_payment(
    client: Client, payment_id: str, merchant_id: str | None, *, forgotten_ok: Literal[True]
) -> Described | None: ...


async def describe_payment(
    client: Client, payment_id: str, merchant_id: str | None, *, forgotten_ok: bool = False
) -> Described | None:
    """The payment with its workflow's description. Once Temporal has forgotten
    it: None with ``forgotten_ok`` (the caller reads the archive, which answers
    404 for a payment it lacks or that is not this reader's), else 404."""
    description = await _describe(client, payment_id)
    if description is None:
        if not forgotten_ok:
            raise not_found()
        return None
    return Described(await _payment_from(description, merchant_id, None), description)


async def get_payment(
    client: Client, payment_id: str, merchant_id: str | None, *, archive: Archive | None = None
) -> PaymentState:
    """The payment from its workflow's memo, or from the archive once Temporal forgot it."""
    description = await _describe(client, payment_id)
    if description is None:
        return await _archived_state(client, await _archived(archive, payment_id), merchant_id)
    return await _payment_from(description, merchant_id, archive)


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


async def list_payments(
    client: Client,
    merchant_id: str,
    *,
    status: str | None,
    customer_id: str | None,
    limit: int,
    starting_after: str | None,
    archive: Archive | None = None,
) -> tuple[list[PaymentState], bool]:
    clauses = [
        f"WorkflowType = {_quote(names.WORKFLOW_TYPE)}",
        f"MerchantId = {_quote(merchant_id)}",
        # A payment that continued as new is listed once, by its current run.
        "ExecutionStatus != 'ContinuedAsNew'",
    ]
    if status:
        clauses.append(f"PaymentStatus = {_quote(status)}")
    if customer_id:
        clauses.append(f"CustomerId = {_quote(customer_id)}")
    query = " AND ".join(clauses)
    if not starting_after:
        return await listing.newest_first(client, query, limit=limit, after=None, archive=archive)
    # 404 if the cursor is not one of this merchant's payments.
    description = await _describe(client, starting_after)
    if description is None:
        # Temporal forgot the cursor's payment: its place in the list is in its record.
        record = await _archived(archive, starting_after)
        after = await _archived_state(client, record, merchant_id)
        stamped = record.started_with(names.CREATED_AT.name)
    else:
        after = await _payment_from(description, merchant_id, None)
        stamped = description.typed_search_attributes.get(names.CREATED_AT) is not None
    return await listing.newest_first(
        client, query, limit=limit, after=after, after_stamped=stamped, archive=archive
    )


async def update_payment(
    client: Client,
    payment_id: str,
    merchant_id: str,
    update: str,
    argument: Any,
    *,
    result_type: type[T],
    update_id: str | None = None,
    archive: Archive | None = None,
    keyed: Keyed | None = None,
    replayed: Callable[[PaymentState], T] | None = None,
) -> T:
    """Send an update; its validators refuse a bad request before it touches history.

    ``keyed``: the request came with an Idempotency-Key. Once the workflow has
    closed, its final memo still knows the keys it took: the same request is
    answered with ``replayed(payment)``, another one under the key with 409,
    as the workflow itself answers while it runs.
    """
    await get_payment(client, payment_id, merchant_id, archive=archive)
    handle = client.get_workflow_handle(payment_id)
    try:
        result: T = await handle.execute_update(
            update, argument, id=update_id, result_type=result_type
        )
        return result
    except WorkflowUpdateFailedError as err:
        raise _update_refused(err) from None
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            raise
    # The workflow closed: a final status, or the refund window ended.
    closed = await get_payment(client, payment_id, merchant_id, archive=archive)
    first = closed.request_fingerprints.get(keyed.key) if keyed is not None else None
    if keyed is not None and first is not None and replayed is not None:
        if first != keyed.fingerprint:
            raise _key_reused()
        return replayed(closed)
    raise refused(Refusal(PAYMENT_CLOSED, "this payment is closed and accepts no more changes"))


@dataclass(frozen=True)
class Followed:
    """One history event of a payment, as :func:`follow_history` reads it."""

    # None: the run that was current when following began, by no id of its own.
    run_id: str | None
    # The length of the runs followed before this one: ``offset + event_id``
    # keeps increasing across continue-as-new (the events' ``seq``).
    offset: int
    event: HistoryEvent


_CLOSED = frozenset(
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
            following = events.continued_as(raw)
            if following is not None:
                offset += raw.event_id
                break
            if raw.event_type in _CLOSED:
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


async def payment_changes(
    client: Client,
    payment_id: str,
    merchant_id: str | None,
    *,
    archive: Archive | None = None,
    started: PaymentState | None = None,
) -> AsyncGenerator[PaymentState, None]:
    """The payment as it stands, then again each time it changes, until its
    workflow closes. The first read answers 404 for a payment not the reader's;
    one only the archive holds is read from there, closed. ``started``: the
    payment as this request has just started it, so there is nothing to read
    first and every event of its history is news.

    A wait reads this and nothing else: it sends the workflow no update, so
    one that times out or whose caller leaves holds nothing there.
    """
    if started is not None:
        yield started
        async with contextlib.aclosing(follow_history(client, payment_id, None)) as history:
            async for step in history:
                changed = await events.payment_after(step.event, client.data_converter)
                if changed is not None:
                    yield changed
        return
    found = await _describe(client, payment_id)
    if found is None:
        yield await _archived_state(client, await _archived(archive, payment_id), merchant_id)
        return
    description = Described(await _payment_from(found, merchant_id, archive), found)
    yield description.payment
    if description.raw.close_time is not None:
        return
    # What the history holds up to here is the payment just read: only what
    # comes after it is news. A later run's events are all news.
    current_run = description.raw.run_id
    seen = description.raw.raw_description.workflow_execution_info.history_length
    async with contextlib.aclosing(follow_history(client, payment_id, current_run)) as history:
        async for step in history:
            if step.run_id == current_run and step.event.event_id <= seen:
                continue
            changed = await events.payment_after(step.event, client.data_converter)
            if changed is not None:
                yield changed


async def run_histories(
    client: Client, payment_id: str, *, archive: Archive | None = None
) -> list[WorkflowHistory]:
    """The histories of every run of the payment, oldest run first; the runs
    Temporal has forgotten from the archive."""
    return await events.fetch_runs(client, payment_id, archive=archive)


async def payment_events(
    client: Client, payment_id: str, merchant_id: str | None, *, archive: Archive | None = None
) -> list[Event]:
    """The payment's events from its history in Temporal, or in the archive."""
    description = await _describe(client, payment_id)
    runs: list[WorkflowHistory] | None = None
    if description is not None:
        await _payment_from(description, merchant_id, None)
        try:
            runs = await run_histories(client, payment_id, archive=archive)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            # Deleted between the two reads: the archive has it by now.
    if runs is None:
        record = await _archived(archive, payment_id)
        await _archived_state(client, record, merchant_id)
        runs = record.runs()
    return await events.project(payment_id, runs, client.data_converter)


async def healthy(client: Client) -> bool:
    try:
        return await client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception:  # unreachable, refused, timed out: all mean "not healthy"
        return False
