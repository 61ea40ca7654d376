"""The webhook activities (CONTRACT §12), all run as local activities:

- ``announce_events``, from the payment workflow: if the merchant has an
  endpoint that wants one of the events just recorded, hand them to the
  payment's delivery workflow (signal-with-start). A merchant without
  endpoints costs a look in a cache (:class:`EndpointDirectory`).
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
from datetime import UTC, datetime
from typing import Any

from standardwebhooks import Webhook
from temporalio import activity
from temporalio.api.batch.v1 import BatchOperationSignal
from temporalio.api.common.v1 import Payloads
from temporalio.api.enums.v1 import EventType
from temporalio.api.history.v1 import HistoryEvent
from temporalio.api.workflowservice.v1 import StartBatchOperationRequest
from temporalio.client import Client, WorkflowHistory
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from payments import events, memo
from payments.listing import quote
from payments.models import Event, PaymentState
from payments.names import (
    MERCHANT,
    WEBHOOK_DELIVERY_WORKFLOW_TYPE,
    WORKFLOW_TYPE,
    DeliverySignals,
    Signals,
)
from payments.names import WebhookActivities as Names
from payments.outbound import Outbound
from payments.rendering import render
from payments.settings import Settings
from payments.webhook_service import EndpointDirectory
from payments.webhooks import (
    ENDPOINT_DELETED,
    ENDPOINT_DISABLED,
    Announcement,
    DeliveriesInput,
    DeliveryOutcome,
    DeliveryRequest,
    EndpointStatus,
    NewDeliveries,
    RedeliveryLookup,
    TellPayments,
    WebhookEvent,
    WebhooksOn,
    deliveries_workflow_id,
    event_id,
)

USER_AGENT = "payments-webhooks/1"


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

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.announce_events,
            self.new_deliveries,
            self.redelivery,
            self.deliver_webhook,
            self.tell_payments_of_webhooks,
        ]

    @activity.defn(name=Names.ANNOUNCE)
    async def announce_events(self, announcement: Announcement) -> bool:
        """Whether the events went to the payment's delivery workflow."""
        endpoints = await self._directory.of(announcement.merchant_id)
        if not any(
            stored.endpoint.status is EndpointStatus.ENABLED
            and any(stored.endpoint.wants(kind) for kind in announcement.types)
            for stored in endpoints
        ):
            return False
        await self._client.start_workflow(
            WEBHOOK_DELIVERY_WORKFLOW_TYPE,
            DeliveriesInput(
                payment_id=announcement.payment_id, merchant_id=announcement.merchant_id
            ),
            id=deliveries_workflow_id(announcement.payment_id),
            task_queue=activity.info().task_queue,
            start_signal=DeliverySignals.ANNOUNCE,
            start_signal_args=[announcement],
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(MERCHANT, announcement.merchant_id)]
            ),
            static_summary=f"webhooks of {announcement.payment_id}",
        )
        return True

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
                    if stored.endpoint.receives(event.type, event.created_at)
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
                        events=[event], endpoints={event.seq: [lookup.endpoint_id]}
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
        now = datetime.now(UTC)
        body = json.dumps(request.event.body(), separators=(",", ":"))
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "webhook-id": request.event.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signature_header(
                stored.signing_secrets(now), request.event.id, now, body
            ),
        }
        attempt = await self._outbound.post(stored.endpoint.url, body.encode(), headers)
        if not attempt.delivered:
            activity.logger.info(
                "webhook %s to %s: attempt %d got %s",
                request.event.id,
                request.endpoint_id,
                request.attempt,
                attempt.status_code or attempt.error,
            )
        return DeliveryOutcome(
            delivered=attempt.delivered, status_code=attempt.status_code, error=attempt.error
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
