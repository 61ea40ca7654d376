"""The API's calls into Temporal: start a payment, send it updates, read it.

Reads never replay a workflow: a payment is read from its memo (``describe``),
lists from visibility, events from the history; a caller who asks to wait
waits on the workflow's ``wait_settled`` update. Writes are updates the
workflow validates before anything touches the history.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateRPCTimeoutOrCancelledError,
    WorkflowUpdateStage,
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
from api.errors import ApiError, IdempotencyConflict, InvalidRequest, not_found
from payments import events, names
from payments.currencies import format_amount
from payments.models import CreatePayment, Event, PaymentInput, PaymentState, WaitSettled
from payments.settings import Settings

T = TypeVar("T")
_PAYMENT_ID = re.compile(r"^pay_[a-z0-9]{1,64}$")


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
    wait: float | None = None,
) -> tuple[PaymentState, bool]:
    """Start the payment's workflow; (payment, created). A replay returns the original.

    With ``wait``, the start carries a ``wait_settled`` update (update-with-start,
    one request to Temporal) and the payment is returned as it settled, or as it
    stands when ``wait`` seconds ran out.
    """
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
        if wait is None:
            await client.start_workflow(
                names.WORKFLOW_TYPE,
                workflow_input,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                **options,
            )
            return state, True
        operation: WithStartWorkflowOperation[Any, Any] = WithStartWorkflowOperation(
            names.WORKFLOW_TYPE,
            workflow_input,
            # A duplicate joins the running payment and waits on it too; the
            # validator refuses it if its body differs.
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            **options,
        )
        handle = await client.start_update_with_start_workflow(
            "wait_settled",
            WaitSettled(request_fingerprint=fingerprint),
            start_workflow_operation=operation,
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
            result_type=PaymentState,
        )
        settled = await _within(wait, handle.result())
        current = settled or await get_payment(client, payment_id, merchant_id)
        # created_at is chosen here, so the original request's differs.
        return current, current.created_at == now
    except WorkflowAlreadyStartedError:
        # Closed (a final status, or past its refund window): read what it was.
        description = await _describe(client, payment_id)
        original = await description.memo_value(names.REQUEST_FINGERPRINT_MEMO_KEY, None)
        if original != fingerprint:
            raise _key_reused() from None
        return await _payment_from(description, merchant_id), False
    except WorkflowUpdateFailedError as err:
        raise _update_refused(err) from None


async def _within(seconds: float, result: Awaitable[T]) -> T | None:
    """``result``, or None when it takes longer than ``seconds``."""
    deadline = asyncio.timeout(seconds)
    try:
        async with deadline:
            return await result
    except (TimeoutError, WorkflowUpdateRPCTimeoutOrCancelledError):
        # The SDK turns the cancellation into its own error; only ours is a timeout.
        if deadline.expired():
            return None
        raise


def _key_reused() -> IdempotencyConflict:
    return IdempotencyConflict(
        "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request",
    )


def _update_refused(err: WorkflowUpdateFailedError) -> ApiError:
    """The workflow's validator said no: its error type is our error code."""
    cause = err.cause
    if not isinstance(cause, ApplicationError):
        return ApiError("internal_error", "an internal error occurred")
    code = cause.type or "request_conflict"
    if code == "idempotency_key_reused":
        return IdempotencyConflict(code, cause.message)
    if code == "resource_missing":
        return InvalidRequest(404, code, cause.message)
    return InvalidRequest(409, code, cause.message)


async def _describe(client: Client, payment_id: str) -> WorkflowExecutionDescription:
    if not _PAYMENT_ID.match(payment_id):
        raise not_found()
    try:
        return await client.get_workflow_handle(payment_id).describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found() from None
        raise


async def _payment_from(
    description: WorkflowExecutionDescription, merchant_id: str | None
) -> PaymentState:
    state: PaymentState | None = await description.memo_value(
        names.PAYMENT_MEMO_KEY, None, type_hint=PaymentState
    )
    if state is None or (merchant_id is not None and state.merchant_id != merchant_id):
        # Another merchant's payment answers exactly like one that does not exist.
        raise not_found()
    return state


@dataclass(frozen=True)
class Described:
    """A payment and its workflow's description (run ids, history length)."""

    payment: PaymentState
    raw: WorkflowExecutionDescription


async def describe_payment(client: Client, payment_id: str, merchant_id: str | None) -> Described:
    description = await _describe(client, payment_id)
    return Described(await _payment_from(description, merchant_id), description)


async def get_payment(client: Client, payment_id: str, merchant_id: str | None) -> PaymentState:
    return await _payment_from(await _describe(client, payment_id), merchant_id)


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
        return await listing.newest_first(client, query, limit=limit, after=None)
    # 404 if the cursor is not one of this merchant's payments.
    cursor = await describe_payment(client, starting_after, merchant_id)
    stamped = cursor.raw.typed_search_attributes.get(names.CREATED_AT) is not None
    return await listing.newest_first(
        client, query, limit=limit, after=cursor.payment, after_stamped=stamped
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
) -> T:
    """Send an update; its validators refuse a bad request before it touches history."""
    await get_payment(client, payment_id, merchant_id)
    handle = client.get_workflow_handle(payment_id)
    try:
        result: T = await handle.execute_update(
            update, argument, id=update_id, result_type=result_type
        )
        return result
    except WorkflowUpdateFailedError as err:
        raise _update_refused(err) from None
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            # The workflow closed: a final status, or the refund window ended.
            raise InvalidRequest(
                409, "payment_closed", "this payment is closed and accepts no more changes"
            ) from None
        raise


async def wait_settled(
    client: Client,
    payment_id: str,
    merchant_id: str | None,
    seconds: float,
    done: Callable[[PaymentState], bool],
    *,
    refund_id: str | None = None,
) -> PaymentState:
    """The payment once ``done`` holds for it, or as it stands after ``seconds``.

    Answered from the memo when it already holds; otherwise the workflow's
    ``wait_settled`` update says when what was asked of it is done.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    state = await get_payment(client, payment_id, merchant_id)
    # More than one round only when the payment moved to its next run meanwhile.
    while not done(state) and loop.time() < deadline:
        handle = client.get_workflow_handle(payment_id)
        try:
            update = await handle.start_update(
                "wait_settled",
                WaitSettled(refund_id=refund_id),
                wait_for_stage=WorkflowUpdateStage.ACCEPTED,
                result_type=PaymentState,
            )
            settled = await _within(deadline - loop.time(), update.result())
        except WorkflowUpdateFailedError as err:
            raise _update_refused(err) from None
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            settled = None  # closed meanwhile: read how it ended
        state = settled or await get_payment(client, payment_id, merchant_id)
        if settled is None:
            break
    return state


async def run_histories(client: Client, payment_id: str) -> list[WorkflowHistory]:
    """The histories of every run of the payment, oldest run first."""
    runs: list[WorkflowHistory] = []
    run_id: str | None = None
    while True:
        history = await client.get_workflow_handle(payment_id, run_id=run_id).fetch_history()
        runs.append(history)
        run_id = events.previous_run_id(history)
        if run_id is None:
            return runs[::-1]


async def payment_events(client: Client, payment_id: str, merchant_id: str | None) -> list[Event]:
    await get_payment(client, payment_id, merchant_id)
    runs = await run_histories(client, payment_id)
    return await events.project(payment_id, runs, client.data_converter)


async def healthy(client: Client) -> bool:
    try:
        return await client.service_client.check_health(timeout=timedelta(seconds=2))
    except Exception:  # unreachable, refused, timed out: all mean "not healthy"
        return False
