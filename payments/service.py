"""The service layer: the payment's use cases, spoken in the domain's terms.

Create a payment, capture, cancel or refund it, read it, list a merchant's
payments, follow its changes, read its events, hand it a gateway's event.
Each use case is one method of :class:`PaymentService`; the HTTP routes
(``api/``), the demo page, the tests and the tools call these and nothing
below them (an operator's reconciliation runs:
``payments/reconciliation_service.py``). A refusal is raised as
:class:`payments.refusals.Refused` with a code from the one table
(``payments/refusals.py``), an amount the gateway cannot hold as
:class:`payments.currencies.NotRepresentable`; ``api/errors.py`` turns each
into an HTTP answer.

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

from payments import currencies, events, listing, memo, names
from payments.archive import Archive, ArchivedPayment, archived_at
from payments.ids import (
    command_key_for,
    fingerprint,
    instance_id,
    is_payment_id,
    payment_id_for,
    refund_id_for,
    update_id_for,
)
from payments.models import (
    CancelCommand,
    CancelPayment,
    CaptureCommand,
    CapturePayment,
    CreatePayment,
    Event,
    GatewayEvent,
    Keyed,
    PaymentInput,
    PaymentState,
    Refund,
    RefundCommand,
    RefundPayment,
)
from payments.refusals import CLOSED, KEY_REUSED, NO_SUCH_PAYMENT, Refused, refusal_of
from payments.settings import Settings
from payments.status import cancel_settled, capture_settled
from payments.tracing import tag_payment
from payments.webhook_service import EndpointDirectory

T = TypeVar("T")


def summary(request: CreatePayment) -> str:
    """What the Temporal UI shows for the workflow: "19.99 USD · pm_card_visa · cus_42"."""
    parts = [currencies.format_amount(request.amount, request.currency), request.payment_method]
    if request.customer_id:
        parts.append(request.customer_id)
    return " · ".join(parts)


@dataclass(frozen=True)
class Started:
    """A create's outcome: the payment, and whether this request started it
    (False: an earlier request with the same key did, and this is its replay)."""

    payment: PaymentState
    created: bool


@dataclass(frozen=True)
class Described:
    """A payment and its workflow's description (run ids, history length)."""

    payment: PaymentState
    raw: WorkflowExecutionDescription


@dataclass(frozen=True)
class Sent:
    """A capture, cancel or refund the payment accepted, and the condition a
    caller who waits for its outcome waits on."""

    payment: PaymentState | None
    refund: Refund | None
    settled: Callable[[PaymentState], bool]


class PaymentService:
    """The use cases over one Temporal client (and the archive, once there is one)."""

    def __init__(
        self,
        client: Client,
        settings: Settings,
        archive: Archive | None = None,
        endpoints: EndpointDirectory | None = None,
        eager_start: bool = False,
    ):
        self.client = client
        self.settings = settings
        self.archive = archive
        # A worker on this client polls the task queue: ask Temporal to hand it
        # each new payment's first workflow task with the start's answer.
        self.eager_start = eager_start
        # Whether a merchant has webhook endpoints, as this process last read
        # it (an API keeps one for all its requests; without, read each time).
        self.endpoints = endpoints or EndpointDirectory(client, ttl=0)

    # -- writes -------------------------------------------------------------

    async def start(
        self, merchant_id: str, request: CreatePayment, idempotency_key: str | None = None
    ) -> Started:
        """Start the payment's workflow. A replay (same merchant, same key, same
        request) returns the original; the same key with another request is
        refused.

        A payment the archive holds is never started again: its id comes from the
        same merchant and key, and the payment is the replay, read from Temporal
        while it holds it (an operator may have reopened it), else from the archive.
        Without a key the id is new: no earlier payment, archived or not, can hold it.
        """
        self._representable(request.amount, request.currency)
        payment_id = payment_id_for(merchant_id, idempotency_key)
        tag_payment(payment_id)
        request_fingerprint = fingerprint(request)
        archive = self.archive if idempotency_key is not None else None
        if archive is not None and await archive.archived(payment_id) is not None:
            return await self._replay(payment_id, merchant_id, request_fingerprint, archive)
        now = datetime.now(UTC)
        workflow_input = PaymentInput(
            payment_id=payment_id,
            merchant_id=merchant_id,
            request=request,
            request_fingerprint=request_fingerprint,
            created_at=now,
            authorization_window_seconds=self.settings.authorization_window.total_seconds(),
            refund_window_seconds=self.settings.refund_window.total_seconds(),
            action_window_seconds=self.settings.action_window_seconds,
            instance=instance_id(),
            webhooks=await self.endpoints.any_enabled(merchant_id),
        )
        state = workflow_input.first_state()
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(names.STATUS, state.status.value),
            SearchAttributePair(names.MERCHANT, merchant_id),
            SearchAttributePair(names.AMOUNT, request.amount),
            SearchAttributePair(names.CURRENCY, request.currency),
            listing.created_at_attribute(now),
        ]
        if request.customer_id:
            attributes.append(SearchAttributePair(names.CUSTOMER, request.customer_id))
        try:
            await self.client.start_workflow(
                names.WORKFLOW_TYPE,
                workflow_input,
                id=payment_id,
                task_queue=self.settings.task_queue,
                # One id, one payment, forever: a reused key never starts a second charge.
                id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
                id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
                search_attributes=TypedSearchAttributes(attributes),
                memo=memo.at_start(state, request_fingerprint),
                static_summary=summary(request),
                static_details=request.description,
                request_eager_start=self.eager_start,
            )
            return Started(state, True)
        except WorkflowAlreadyStartedError:
            # Running or closed: read what the first request made of it.
            return await self._replay(payment_id, merchant_id, request_fingerprint, archive)

    async def capture(
        self,
        payment_id: str,
        merchant_id: str,
        request: CapturePayment,
        idempotency_key: str | None = None,
    ) -> Sent:
        """Capture an authorized payment (all of it, or ``request.amount``)."""
        await self._representable_in(payment_id, merchant_id, request.amount)
        state = await self._decide(
            payment_id,
            merchant_id,
            names.Updates.CAPTURE,
            request,
            idempotency_key,
            lambda keyed: CaptureCommand(amount=request.amount, idempotency=keyed),
        )
        return Sent(state, None, lambda payment: capture_settled(payment.status))

    async def cancel(
        self,
        payment_id: str,
        merchant_id: str,
        request: CancelPayment,
        idempotency_key: str | None = None,
    ) -> Sent:
        """Cancel a payment not captured yet: its authorization is voided."""
        state = await self._decide(
            payment_id,
            merchant_id,
            names.Updates.CANCEL,
            request,
            idempotency_key,
            lambda keyed: CancelCommand(reason=request.reason, idempotency=keyed),
        )
        return Sent(state, None, lambda payment: cancel_settled(payment.status))

    async def refund(
        self,
        payment_id: str,
        merchant_id: str,
        request: RefundPayment,
        idempotency_key: str | None = None,
    ) -> Sent:
        """Refund some or all of what was captured. With a key the same request
        is the same refund; another request under the key reaches the workflow,
        which refuses it."""
        await self._representable_in(payment_id, merchant_id, request.amount)
        refund_id = refund_id_for(payment_id, idempotency_key)
        keyed = (
            Keyed(key=refund_id, fingerprint=fingerprint(request))
            if idempotency_key is not None
            else None
        )
        command = RefundCommand(
            refund_id=refund_id,
            amount=request.amount,
            reason=request.reason,
            fingerprint=keyed.fingerprint if keyed else None,
        )
        refund = await self.send(
            payment_id,
            merchant_id,
            names.Updates.REFUND,
            command,
            result_type=Refund,
            update_id=update_id_for(refund_id, keyed.fingerprint) if keyed else refund_id,
            keyed=keyed,
            replayed=lambda payment: next(r for r in payment.refunds if r.id == refund_id),
        )

        def settled(payment: PaymentState) -> bool:
            found = next((r for r in payment.refunds if r.id == refund_id), refund)
            return found.settled

        return Sent(None, refund, settled)

    # -- reads --------------------------------------------------------------

    async def get(self, payment_id: str, merchant_id: str | None) -> PaymentState:
        """The payment from its workflow's memo, or from the archive once Temporal
        forgot it; ``merchant_id`` None: any merchant's (an operator's read)."""
        description = await self._describe(payment_id)
        if description is None:
            return await self._archived_state(await self._archived(payment_id), merchant_id)
        return await self._payment_from(description, merchant_id, self.archive)

    @overload
    async def describe(self, payment_id: str, merchant_id: str | None) -> Described: ...

    @overload
    async def describe(
        self, payment_id: str, merchant_id: str | None, *, forgotten_ok: Literal[True]
    ) -> Described | None: ...

    async def describe(
        self, payment_id: str, merchant_id: str | None, *, forgotten_ok: bool = False
    ) -> Described | None:
        """The payment with its workflow's description. Once Temporal has forgotten
        it: None with ``forgotten_ok`` (the caller reads the archive, which refuses
        a payment it lacks or that is not this reader's), else refused."""
        description = await self._describe(payment_id)
        if description is None:
            if not forgotten_ok:
                raise Refused(NO_SUCH_PAYMENT)
            return None
        return Described(await self._payment_from(description, merchant_id, None), description)

    async def list_payments(
        self,
        merchant_id: str,
        *,
        status: str | None = None,
        customer_id: str | None = None,
        limit: int = 10,
        starting_after: str | None = None,
    ) -> tuple[list[PaymentState], bool]:
        """A page of the merchant's payments, newest first, and whether more follow."""
        clauses = [
            f"WorkflowType = {listing.quote(names.WORKFLOW_TYPE)}",
            f"MerchantId = {listing.quote(merchant_id)}",
            # A payment that continued as new is listed once, by its current run.
            "ExecutionStatus != 'ContinuedAsNew'",
        ]
        if status:
            clauses.append(f"PaymentStatus = {listing.quote(status)}")
        if customer_id:
            clauses.append(f"CustomerId = {listing.quote(customer_id)}")
        query = " AND ".join(clauses)
        client, archive = self.client, self.archive
        if not starting_after:
            return await listing.newest_first(
                client, query, limit=limit, after=None, archive=archive
            )
        # Refused if the cursor is not one of this merchant's payments.
        description = await self._describe(starting_after)
        if description is None:
            # Temporal forgot the cursor's payment: its place in the list is in its record.
            record = await self._archived(starting_after)
            after = await self._archived_state(record, merchant_id)
            stamped = record.started_with(names.CREATED_AT.name)
        else:
            after = await self._payment_from(description, merchant_id, None)
            stamped = description.typed_search_attributes.get(names.CREATED_AT) is not None
        return await listing.newest_first(
            client, query, limit=limit, after=after, after_stamped=stamped, archive=archive
        )

    async def changes(
        self, payment_id: str, merchant_id: str | None, *, started: PaymentState | None = None
    ) -> AsyncGenerator[PaymentState, None]:
        """The payment as it stands, then again each time it changes, until its
        workflow closes. The first read refuses a payment not the reader's; one
        only the archive holds is read from there, closed. ``started``: the
        payment as this request has just started it, so there is nothing to read
        first and every event of its history is news.

        A wait reads this and nothing else: it sends the workflow no update, so
        one that times out or whose caller leaves holds nothing there.
        """
        converter = self.client.data_converter
        if started is not None:
            yield started
            history = events.follow_history(self.client, payment_id, None)
            async with contextlib.aclosing(history) as steps:
                async for step in steps:
                    changed = await events.payment_after(step.event, converter)
                    if changed is not None:
                        yield changed
            return
        found = await self._describe(payment_id)
        if found is None:
            yield await self._archived_state(await self._archived(payment_id), merchant_id)
            return
        yield await self._payment_from(found, merchant_id, self.archive)
        if found.close_time is not None:
            return
        # What the history holds up to here is the payment just read: only what
        # comes after it is news. A later run's events are all news.
        current_run = found.run_id
        seen = found.raw_description.workflow_execution_info.history_length
        history = events.follow_history(self.client, payment_id, current_run)
        async with contextlib.aclosing(history) as steps:
            async for step in steps:
                if step.run_id == current_run and step.event.event_id <= seen:
                    continue
                changed = await events.payment_after(step.event, converter)
                if changed is not None:
                    yield changed

    def follow(self, payment_id: str, run_id: str | None) -> AsyncGenerator[events.Followed, None]:
        """The history of run ``run_id`` and the runs after it, past then live."""
        return events.follow_history(self.client, payment_id, run_id, archive=self.archive)

    async def run_histories(self, payment_id: str) -> list[WorkflowHistory]:
        """The histories of every run of the payment, oldest run first; the runs
        Temporal has forgotten from the archive."""
        return await events.fetch_runs(self.client, payment_id, archive=self.archive)

    async def payment_events(self, payment_id: str, merchant_id: str | None) -> list[Event]:
        """The payment's events from its history in Temporal, or in the archive."""
        description = await self._describe(payment_id)
        runs: list[WorkflowHistory] | None = None
        if description is not None:
            await self._payment_from(description, merchant_id, None)
            try:
                runs = await self.run_histories(payment_id)
            except RPCError as err:
                if err.status != RPCStatusCode.NOT_FOUND:
                    raise
                # Deleted between the two reads: the archive has it by now.
        if runs is None:
            record = await self._archived(payment_id)
            await self._archived_state(record, merchant_id)
            runs = record.runs()
        return await events.project(payment_id, runs, self.client.data_converter)

    async def deliver(self, event: GatewayEvent) -> bool:
        """Hand a believed gateway event to its payment; False when Temporal has
        no running payment of that id (not ours, or closed)."""
        if event.payment_id is None:
            return False
        handle = self.client.get_workflow_handle(event.payment_id)
        try:
            await handle.signal(names.Signals.GATEWAY_EVENT, event)
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return False
        return True

    async def healthy(self) -> bool:
        try:
            return await self.client.service_client.check_health(timeout=timedelta(seconds=2))
        except Exception:  # unreachable, refused, timed out: all mean "not healthy"
            return False

    # -- inside -------------------------------------------------------------

    def _representable(self, amount: int, currency: str) -> None:
        """Raises :class:`currencies.NotRepresentable` unless the configured gateway
        can hold ``amount`` exactly in its own units, so nothing starts with it."""
        if not currencies.counts_as_iso(self.settings.gateway):
            currencies.to_gateway_units(amount, currency, self.settings.gateway)

    async def _representable_in(
        self, payment_id: str, merchant_id: str, amount: int | None
    ) -> None:
        """:meth:`_representable` for an amount of this payment's currency, read
        only when the answer depends on it. No amount (a capture or refund of all
        there is) is representable: the amounts it derives from were."""
        if amount is None or currencies.counts_as_iso(self.settings.gateway):
            return
        self._representable(amount, (await self.get(payment_id, merchant_id)).currency)

    async def _decide(
        self,
        payment_id: str,
        merchant_id: str,
        update: str,
        request: CapturePayment | CancelPayment,
        idempotency_key: str | None,
        command: Callable[[Keyed | None], CaptureCommand | CancelCommand],
    ) -> PaymentState:
        """Capture or cancel. A retry with the same Idempotency-Key (say, after a
        timeout) gets the first answer again instead of "already under way"."""
        keyed = None
        if idempotency_key is not None:
            key = command_key_for(payment_id, update, idempotency_key)
            keyed = Keyed(key=key, fingerprint=fingerprint(request))
        return await self.send(
            payment_id,
            merchant_id,
            update,
            command(keyed),
            result_type=PaymentState,
            update_id=update_id_for(keyed.key, keyed.fingerprint) if keyed else None,
            keyed=keyed,
            replayed=lambda payment: payment,
        )

    async def send(
        self,
        payment_id: str,
        merchant_id: str,
        update: str,
        argument: Any,
        *,
        result_type: type[T],
        update_id: str | None = None,
        keyed: Keyed | None = None,
        replayed: Callable[[PaymentState], T] | None = None,
    ) -> T:
        """Send an update; its validators refuse a bad request before it touches history.

        ``keyed``: the request came with an Idempotency-Key. Once the workflow has
        closed, its final memo still knows the keys it took: the same request is
        answered with ``replayed(payment)``, another one under the key is refused,
        as the workflow itself answers while it runs.
        """
        await self.get(payment_id, merchant_id)
        handle = self.client.get_workflow_handle(payment_id)
        try:
            result: T = await handle.execute_update(
                update, argument, id=update_id, result_type=result_type
            )
            return result
        except WorkflowUpdateFailedError as err:
            if isinstance(err.cause, ApplicationError):
                raise Refused(refusal_of(err.cause)) from None
            raise
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        # The workflow closed: a final status, or the refund window ended.
        closed = await self.get(payment_id, merchant_id)
        first = closed.request_fingerprints.get(keyed.key) if keyed is not None else None
        if keyed is not None and first is not None and replayed is not None:
            if first != keyed.fingerprint:
                raise Refused(KEY_REUSED)
            return replayed(closed)
        raise Refused(CLOSED)

    async def _replay(
        self, payment_id: str, merchant_id: str, request_fingerprint: str, archive: Archive | None
    ) -> Started:
        """The payment an earlier request with this key made, if this request is
        the same one; refused if the key came with another request."""
        description = await self._describe(payment_id)
        if description is None:
            # Only the archive holds it (deleted, perhaps a moment ago).
            record = await self._archived(payment_id)
            if record.request_fingerprint != request_fingerprint:
                raise Refused(KEY_REUSED)
            return Started(await self._archived_state(record, merchant_id), False)
        if await memo.fingerprint_of(description) != request_fingerprint:
            raise Refused(KEY_REUSED)
        return Started(await self._payment_from(description, merchant_id, archive), False)

    async def _describe(self, payment_id: str) -> WorkflowExecutionDescription | None:
        """The payment's workflow as Temporal holds it; None once Temporal has
        forgotten it (or never knew it). A malformed id is plainly missing."""
        if not is_payment_id(payment_id):
            raise Refused(NO_SUCH_PAYMENT)
        try:
            return await self.client.get_workflow_handle(payment_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return None
            raise

    async def _payment_from(
        self,
        description: WorkflowExecutionDescription,
        merchant_id: str | None,
        archive: Archive | None,
    ) -> PaymentState:
        state = _owned(await memo.payment_of(description), merchant_id)
        if description.close_time is not None:
            # Closed and still in Temporal: archived already, perhaps.
            state.archived_at = await archived_at(archive, state.id, description.run_id)
        return state

    async def _archived(self, payment_id: str) -> ArchivedPayment:
        """The archive's record of a payment Temporal no longer holds, or refused."""
        record = await self.archive.get(payment_id) if self.archive is not None else None
        if record is None:
            raise Refused(NO_SUCH_PAYMENT)
        return record

    async def _archived_state(
        self, record: ArchivedPayment, merchant_id: str | None
    ) -> PaymentState:
        return _owned(await record.state(self.client.data_converter), merchant_id)


def _owned(state: PaymentState | None, merchant_id: str | None) -> PaymentState:
    if state is None or (merchant_id is not None and state.merchant_id != merchant_id):
        # Another merchant's payment answers exactly like one that does not exist.
        raise Refused(NO_SUCH_PAYMENT)
    return state
