"""The webhook activities (CONTRACT §12), all run as local activities:

- ``announce_events``, from the payment workflow: if the merchant has an
  endpoint that wants one of the events just recorded, tell the merchant's
  dispatch workflow (a signal-with-start, shared with the payments that
  announce meanwhile: :class:`Announcer`). A merchant without endpoints costs
  a look in a cache (:class:`EndpointDirectory`).
- ``deliver_first_attempts``, from the dispatch workflow: for a batch of
  payments, read their announced events and send each to every endpoint
  that receives it, in ``seq`` order per payment and endpoint, stopping at
  the first that fails; say what is left for the delivery workflows.
- ``new_deliveries`` and ``redelivery``, from the delivery workflow: read the
  events from the payment's history (with their ``seq`` and the payment as
  each left it) and say which endpoints receive each.
- ``deliver_webhook``: one signed POST (Standard Webhooks, with every secret
  still signing), through the safe outbound client. A receiver's answer, or
  its silence, is the outcome, never an error: the delivery workflow owns
  the retry schedule.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from temporalio import activity
from temporalio.api.batch.v1 import BatchOperationSignal
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import StartBatchOperationRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.service import RPCError, RPCStatusCode

from payments import events, memo
from payments.listing import quote
from payments.models import Event, PaymentState
from payments.names import (
    WORKFLOW_TYPE,
    Signals,
)
from payments.names import WebhookActivities as Names
from payments.outbound import Outbound
from payments.rendering import render
from payments.settings import Settings
from payments.webhook_service import Announcer, EndpointDirectory, first_attempts
from payments.webhooks import (
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    Announcement,
    Delivery,
    DeliveryOutcome,
    DeliveryRequest,
    DeliveryStatus,
    EndpointStatus,
    FirstAttempts,
    FirstAttemptsDone,
    NewDeliveries,
    RedeliveryLookup,
    StoredEndpoint,
    TellPayments,
    WebhookEvent,
    WebhooksOn,
    deliveries_workflow_id,
    event_id,
)

USER_AGENT = "payments-webhooks/1"
# A batch of first attempts makes none after this many seconds (the dispatch
# workflow's timeout for it is 2 minutes): what is left is handed on untried.
FIRST_ATTEMPTS_BUDGET = 60.0
# Reading one payment's announced events, within the budget.
READ_BUDGET = 20.0
# A batch of first attempts lasts at least this long. While it runs, its
# dispatch workflow's task is open, so the announcements that arrive meanwhile
# wait on the server and come to the next batch in one task: under load a
# task, a marker and a read of the endpoints serve several payments, not one
# each. A quiet merchant's first attempts go out as soon as they arrive; what
# they did not deliver is handed on this much later.
BATCH_WINDOW = 0.2
# POSTs in flight at once to one endpoint in one batch of first attempts:
# more buys no speed from a receiver that answers at once, and costs the
# client's connection pool, which looks at every open connection on each
# request.
AT_ONCE_PER_ENDPOINT = 4
# The outbound client's word for an endpoint that did not answer in time.
TIMED_OUT = "timeout"


def signature_header(secrets: Sequence[str], message_id: str, at: datetime, body: str) -> str:
    """``webhook-signature``: one ``v1,<base64>`` per secret, space-separated."""
    return " ".join(Webhook(secret).sign(message_id, at, body) for secret in secrets)


class WebhookActivities:
    def __init__(
        self,
        client: Client,
        settings: Settings,
        outbound: Outbound,
        directory: EndpointDirectory | None = None,
    ) -> None:
        self._client = client
        self._settings = settings
        self._outbound = outbound
        self._directory = directory or EndpointDirectory(client)
        self._announcer = Announcer(client)

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.announce_events,
            self.deliver_first_attempts,
            self.new_deliveries,
            self.redelivery,
            self.deliver_webhook,
            self.tell_payments_of_webhooks,
        ]

    @activity.defn(name=Names.ANNOUNCE)
    async def announce_events(self, announcement: Announcement) -> bool:
        """Whether the events went to the merchant's dispatch workflow."""
        endpoints = await self._directory.of(announcement.merchant_id)
        if not any(
            stored.endpoint.status is EndpointStatus.ENABLED
            and any(stored.endpoint.wants(kind) for kind in announcement.types)
            for stored in endpoints
        ):
            return False
        await self._announcer.announce(announcement, activity.info().task_queue)
        return True

    @activity.defn(name=Names.FIRST_ATTEMPTS)
    async def deliver_first_attempts(self, batch: FirstAttempts) -> FirstAttemptsDone:
        """The first attempt of every delivery the announcements make, payments
        side by side; per payment and endpoint in ``seq`` order, and after the
        first that fails, the rest wait for the payment's delivery workflow.
        Nothing raises out of it for one payment or one endpoint: a payment
        whose events cannot be read is handed on whole, an endpoint that times
        out is not tried again in the batch, and what the batch's budget does
        not reach is handed on untried."""
        ends = asyncio.get_running_loop().time() + BATCH_WINDOW
        # At most a second old: the API answers a change of the endpoints only
        # once that long has passed (payments/webhook_service.py).
        endpoints = await self._directory.of(batch.merchant_id)
        by_payment: dict[str, list[Announcement]] = {}
        for announcement in batch.announcements:
            by_payment.setdefault(announcement.payment_id, []).append(announcement)
        attempts = _Attempts(
            endpoints=endpoints,
            left_alone=set(batch.skip_endpoints),
            deadline=asyncio.get_running_loop().time() + FIRST_ATTEMPTS_BUDGET,
        )
        done = FirstAttemptsDone()
        for payment_done in await asyncio.gather(
            *(self._first_attempts_of(found, attempts) for found in by_payment.values())
        ):
            done.deliveries.extend(payment_done.deliveries)
            done.pending_events.extend(payment_done.pending_events)
            done.forward.extend(payment_done.forward)
        done.slow = sorted(attempts.timed_out)
        await asyncio.sleep(ends - asyncio.get_running_loop().time())
        return done

    async def _first_attempts_of(
        self, announcements: list[Announcement], attempts: _Attempts
    ) -> FirstAttemptsDone:
        payment_id = announcements[0].payment_id
        try:
            async with asyncio.timeout(READ_BUDGET):
                later = announcements[0].first > 0 or announcements[0].continued
                if later and await self._carried(payment_id):
                    # Its delivery workflow may be retrying an earlier event.
                    return FirstAttemptsDone(forward=announcements)
                found = [event for a in announcements for event in await self._announced(a)]
        except Exception as err:
            activity.logger.warning("events of %s not read: %s", payment_id, err)
            return FirstAttemptsDone(forward=announcements)
        chains = [
            self._chain(stored, found, attempts)
            for stored in attempts.endpoints
            if any(stored.receives(e.type, e.created_at) for e in found)
        ]
        deliveries = [d for chain in await asyncio.gather(*chains) for d in chain]
        pending = {d.seq for d in deliveries if d.status is DeliveryStatus.PENDING}
        return FirstAttemptsDone(
            deliveries=deliveries, pending_events=[e for e in found if e.seq in pending]
        )

    async def _chain(
        self, stored: StoredEndpoint, found: list[WebhookEvent], attempts: _Attempts
    ) -> list[Delivery]:
        """One endpoint's deliveries of one payment's events, in ``seq`` order:
        each sent until one fails; that one and those after it pending."""
        endpoint_id = stored.endpoint.id
        deliveries: list[Delivery] = []
        stopped = False
        for event in found:
            if not stored.receives(event.type, event.created_at):
                continue
            delivery = Delivery.of(event, endpoint_id, None)
            deliveries.append(delivery)
            stopped = stopped or not attempts.may_try(endpoint_id)
            if stopped:
                continue
            async with attempts.slot(endpoint_id):
                if not attempts.may_try(endpoint_id):  # while it waited its turn
                    stopped = True
                    continue
                try:
                    outcome = await self._post(stored, event, attempt=1)
                except Exception as err:  # never the batch's end: the retry is the workflow's
                    activity.logger.warning("webhook %s to %s: %s", event.id, endpoint_id, err)
                    outcome = DeliveryOutcome(delivered=False, error="delivery_error")
            delivery.attempts = 1
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            if outcome.delivered:
                delivery.status = DeliveryStatus.SUCCEEDED
                continue
            stopped = True
            if outcome.error == TIMED_OUT:
                attempts.timed_out.add(endpoint_id)
        return deliveries

    async def _carried(self, payment_id: str) -> bool:
        """Whether the payment's delivery workflow is running."""
        try:
            described = await self._client.get_workflow_handle(
                deliveries_workflow_id(payment_id)
            ).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return False
            raise
        return described.status == WorkflowExecutionStatus.RUNNING

    @activity.defn(name=Names.NEW_DELIVERIES)
    async def new_deliveries(self, announcement: Announcement) -> NewDeliveries:
        """The announced events, read from the run's history as it grows: the
        announcement leaves in the workflow task that records them, so the last
        of them may reach the history a moment after it."""
        found = await self._announced(announcement)
        endpoints = await self._directory.of(announcement.merchant_id)
        return NewDeliveries(
            events=found,
            endpoints={
                event.seq: [
                    stored.endpoint.id
                    for stored in endpoints
                    if stored.receives(event.type, event.created_at)
                ]
                for event in found
            },
        )

    @activity.defn(name=Names.REDELIVERY)
    async def redelivery(self, lookup: RedeliveryLookup) -> NewDeliveries:
        """The event of that ``seq``, to that endpoint, if both still exist."""
        endpoints = await self._directory.fresh(lookup.merchant_id)
        if not any(stored.endpoint.id == lookup.endpoint_id for stored in endpoints):
            return NewDeliveries(events=[])
        runs = await events.fetch_runs(self._client, lookup.payment_id)
        offset = 0
        for history in runs:
            for raw in history.events:
                if events.seq_of(offset, raw) == lookup.seq:
                    event = await self._webhook_event(lookup.payment_id, raw, offset)
                    if event is None:
                        return NewDeliveries(events=[])
                    return NewDeliveries(
                        events=[event],
                        endpoints={event.seq: [lookup.endpoint_id]},
                        earlier=[
                            d
                            for d in await first_attempts(self._client, lookup.merchant_id)
                            if d.endpoint_id == lookup.endpoint_id and d.event_id == event.id
                        ],
                    )
            if history.events:
                offset = events.next_offset(offset, history.events[-1])
        return NewDeliveries(events=[])

    @activity.defn(name=Names.DELIVER)
    async def deliver_webhook(self, request: DeliveryRequest) -> DeliveryOutcome:
        endpoints = await self._directory.fresh(request.merchant_id)
        stored = next((s for s in endpoints if s.endpoint.id == request.endpoint_id), None)
        if stored is None:
            return DeliveryOutcome(delivered=False, error=ENDPOINT_DELETED)
        if stored.endpoint.status is not EndpointStatus.ENABLED:
            return DeliveryOutcome(delivered=False, error=ENDPOINT_DISABLED)
        return await self._post(stored, request.event, request.attempt)

    async def _post(
        self, stored: StoredEndpoint, event: WebhookEvent, attempt: int
    ) -> DeliveryOutcome:
        """One signed POST of the event to the endpoint; its outcome."""
        now = datetime.now(UTC)
        body = json.dumps(event.body(), separators=(",", ":"))
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": event.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(stored.signing_secrets(now), event.id, now, body),
        }
        answer = await self._outbound.post(stored.endpoint.url, body.encode(), headers)
        if not answer.delivered:
            activity.logger.info(
                "webhook %s to %s: attempt %d got %s",
                event.id,
                stored.endpoint.id,
                attempt,
                answer.status_code or answer.error,
            )
        return DeliveryOutcome(
            delivered=answer.delivered, status_code=answer.status_code, error=answer.error
        )

    @activity.defn(name=Names.TELL_PAYMENTS)
    async def tell_payments_of_webhooks(self, tell: TellPayments) -> None:
        """``webhooks_on`` to the merchant's running payments, as one batch
        operation of Temporal's (it signals them at its own pace). Its job id
        is this attempt's activity, so a retry does not start a second one."""
        info = activity.info()
        [payload] = await self._client.data_converter.encode([WebhooksOn(since=tell.since)])
        query = " AND ".join(
            [
                f"WorkflowType = {quote(WORKFLOW_TYPE)}",
                f"MerchantId = {quote(tell.merchant_id)}",
                "ExecutionStatus = 'Running'",
            ]
        )
        try:
            await self._client.workflow_service.start_batch_operation(
                StartBatchOperationRequest(
                    namespace=self._client.namespace,
                    visibility_query=query,
                    job_id=f"webhooks-on-{info.workflow_run_id}-{info.activity_id}",
                    reason="the merchant registered a webhook endpoint",
                    signal_operation=BatchOperationSignal(
                        signal=Signals.WEBHOOKS_ON, input=Payloads(payloads=[payload])
                    ),
                )
            )
        except RPCError as err:
            if err.status != RPCStatusCode.ALREADY_EXISTS:
                raise

    async def _announced(self, announcement: Announcement) -> list[WebhookEvent]:
        """The announced events of the run. The announcement leaves in the
        workflow task that records them, so the last of them reach the history
        a moment later: read again, a little later each time, until they are
        there (the activity's timeout bounds it)."""
        pause = 0.02
        while True:
            found, complete = await self._read_run(announcement)
            if complete:
                return found
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    async def _read_run(self, announcement: Announcement) -> tuple[list[WebhookEvent], bool]:
        """The run's events ``first`` to ``end`` as its history holds them now,
        and whether they are all there (or the run has ended)."""
        handle = self._client.get_workflow_handle(
            announcement.payment_id, run_id=announcement.run_id
        )
        found: list[WebhookEvent] = []
        index = 0
        offset: int | None = None
        async for raw in handle.fetch_history_events():
            if events.continued_as(raw) or raw.event_type in events.CLOSED:
                return found, True  # the run recorded all it ever will
            if offset is None:
                offset = await self._offset_of(announcement.payment_id, raw)
            event = await self._webhook_event(announcement.payment_id, raw, offset)
            if event is None:
                continue
            if announcement.first <= index < announcement.end:
                found.append(event)
            index += 1
            if index >= announcement.end:
                return found, True
        return found, False

    async def _offset_of(self, payment_id: str, first: HistoryEvent) -> int:
        """The length of the runs before the one ``first`` starts (see events.seq_of)."""
        previous = first.workflow_execution_started_event_attributes.continued_execution_run_id
        if not previous:
            return 0
        chain = await events.fetch_run_chain(self._client, payment_id, previous)
        return _length_of([history for _, history in chain])

    async def _webhook_event(
        self, payment_id: str, raw: HistoryEvent, offset: int
    ) -> WebhookEvent | None:
        converter = self._client.data_converter
        event = await events.project_event(payment_id, raw, converter, offset=offset)
        if event is None:
            return None
        payment = await _payment_after(raw, converter)
        return _as_webhook_event(event, payment, self._settings, self._client.namespace)


def _length_of(runs: list[WorkflowHistory]) -> int:
    offset = 0
    for history in runs:
        if history.events:
            offset = events.next_offset(offset, history.events[-1])
    return offset


async def _payment_after(raw: HistoryEvent, converter: Any) -> PaymentState | None:
    if raw.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
        fields = raw.workflow_execution_started_event_attributes.memo.fields
        return await memo.payment_in(fields, converter)
    return await events.payment_after(raw, converter)


def _as_webhook_event(
    event: Event, payment: PaymentState | None, settings: Settings, namespace: str
) -> WebhookEvent:
    return WebhookEvent(
        id=event_id(event.payment_id, event.seq),
        type=event.type,
        created_at=event.at,
        payment_id=event.payment_id,
        seq=event.seq,
        data={
            "object": None if payment is None else render(payment, settings, namespace),
            "event": event.data,
        },
    )


@dataclass
class _Attempts:
    """One batch of first attempts: the merchant's endpoints, those not to try
    (paused by the dispatch workflow, or timed out in this batch), a few POSTs
    at once per endpoint, and the time past which none starts."""

    endpoints: list[StoredEndpoint]
    left_alone: set[str]
    deadline: float
    timed_out: set[str] = field(default_factory=set)
    _slots: dict[str, asyncio.Semaphore] = field(default_factory=dict)

    def may_try(self, endpoint_id: str) -> bool:
        return (
            endpoint_id not in self.left_alone
            and endpoint_id not in self.timed_out
            and asyncio.get_running_loop().time() < self.deadline
        )

    def slot(self, endpoint_id: str) -> asyncio.Semaphore:
        return self._slots.setdefault(endpoint_id, asyncio.Semaphore(AT_ONCE_PER_ENDPOINT))
