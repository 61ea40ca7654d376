"""Webhooks to merchants (CONTRACT §12): a merchant's endpoints, and the
deliveries of a payment's events to them. Why each is a workflow of its own
is payments/webhooks.py's docstring.

``WebhookEndpointsWorkflow`` (one per merchant) holds the endpoints and their
secrets; the API changes them with updates whose validators refuse what does
not exist or does not fit, and reads them with a query. A leased endpoint
(``payments listen``) is removed by a durable timer when its lease lapses.

``WebhookDispatchWorkflow`` (one per merchant with endpoints) hears from the
payment workflows which events they recorded, and makes the first attempt
of each delivery, a batch of payments at a time in one local activity. What
it did not deliver it hands to the payment's delivery workflow: a child it
starts, or a signal if that one runs already.

``WebhookDeliveryWorkflow`` (one per payment that has something to retry, or
a redelivery) sends each event to every endpoint that receives it: per
endpoint one event at a time, in ``seq`` order, each until a 2xx or the end
of its retry schedule. Once it carries a payment, the payment's later events
go to it too. Its memo is the deliveries' log. Once nothing is left to send
and no event came for a while, it ends; the next hand-off starts it again.
"""

from __future__ import annotations

import asyncio
import contextlib
from datetime import datetime, timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy, SearchAttributePair, TypedSearchAttributes
from temporalio.exceptions import ActivityError, WorkflowAlreadyStartedError

from workflows import metrics as counters

with workflow.unsafe.imports_passed_through():
    from payments import metrics
    from payments.names import (
        DELIVERIES_MEMO,
        DELIVERIES_QUERY,
        MERCHANT,
        WEBHOOK_DELIVERY_WORKFLOW_TYPE,
        WEBHOOK_DISPATCH_WORKFLOW_TYPE,
        WEBHOOK_ENDPOINT_IDS,
        WEBHOOK_ENDPOINTS_WORKFLOW_TYPE,
        DeliverySignals,
        EndpointQueries,
        EndpointUpdates,
        WebhookActivities,
    )
    from payments.refusals import (
        ENDPOINT_LIMIT_REACHED,
        NO_SUCH_ENDPOINT,
        Refusal,
        rejection,
    )
    from payments.webhooks import (
        MAX_ENDPOINTS,
        RECENT_DELIVERIES,
        ROTATION_OVERLAP,
        SLOW_ENDPOINT_PAUSE,
        AddEndpoint,
        Announcement,
        ChangeEndpoint,
        DeliveriesInput,
        Delivery,
        DeliveryOutcome,
        DeliveryRequest,
        DeliveryStatus,
        DispatchInput,
        Endpoint,
        EndpointRef,
        EndpointsInput,
        EndpointStatus,
        FirstAttempts,
        FirstAttemptsDone,
        HandOff,
        NewDeliveries,
        Redeliver,
        RedeliveryLookup,
        RotateSecret,
        SigningSecret,
        StoredEndpoint,
        TellPayments,
        WebhookEvent,
        deliveries_workflow_id,
        next_attempt_delay,
    )

# Visibility shows a payment started a moment ago within this, even on
# Elasticsearch (refreshed every second).
TELL_AGAIN_AFTER = timedelta(seconds=5)
# Continue as new well before Temporal would suggest it: the state is small.
ENDPOINTS_HISTORY_LIMIT = 2000


@workflow.defn(name=WEBHOOK_ENDPOINTS_WORKFLOW_TYPE)
class WebhookEndpointsWorkflow:
    @workflow.init
    def __init__(self, input: EndpointsInput) -> None:
        self._merchant_id = input.merchant_id
        self._endpoints = {stored.endpoint.id: stored for stored in input.endpoints}
        self._changed = False
        # The merchant's first enabled endpoint appeared then: its running
        # payments are to be told (they announce their events from then on).
        self._tell_since = input.tell_since

    @workflow.run
    async def run(self, input: EndpointsInput) -> None:
        telling: asyncio.Task[None] | None = None
        while not self._time_to_hand_over():
            self._drop_lapsed()
            if self._tell_since is not None and (telling is None or telling.done()):
                telling = asyncio.ensure_future(self._tell_payments(self._tell_since))
                self._tell_since = None
            self._changed = False
            with contextlib.suppress(TimeoutError):  # a lease lapsed
                await workflow.wait_condition(
                    lambda: self._changed or self._time_to_hand_over(),
                    timeout=self._until_next_lapse(),
                    timeout_summary="the next lease to lapse",
                )
        await workflow.wait_condition(
            lambda: workflow.all_handlers_finished() and (telling is None or telling.done())
        )
        workflow.continue_as_new(
            EndpointsInput(
                merchant_id=self._merchant_id,
                endpoints=list(self._endpoints.values()),
                tell_since=self._tell_since,
            )
        )

    async def _tell_payments(self, since: datetime) -> None:
        """``webhooks_on`` to every running payment of the merchant, twice: now,
        and once visibility has caught up with payments started a moment ago
        (a payment told twice ignores the second)."""
        for pause in (TELL_AGAIN_AFTER, None):
            try:
                await workflow.execute_activity(
                    WebhookActivities.TELL_PAYMENTS,
                    TellPayments(merchant_id=self._merchant_id, since=since),
                    start_to_close_timeout=timedelta(minutes=1),
                    # What it waits for is Temporal itself; past this, the
                    # endpoint still gets every payment started since.
                    schedule_to_close_timeout=timedelta(hours=1),
                    summary="tell the merchant's running payments to announce their events",
                )
            except ActivityError as err:
                workflow.logger.warning("running payments not told of webhooks: %s", err.cause)
                return
            if pause is not None:
                await workflow.sleep(pause, summary="visibility to catch up")

    def _any_enabled(self) -> bool:
        return any(s.endpoint.status is EndpointStatus.ENABLED for s in self._endpoints.values())

    def _turned_on(self, was_on: bool) -> None:
        self._changed = True
        if not was_on and self._any_enabled():
            self._tell_since = workflow.now()

    def _time_to_hand_over(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > ENDPOINTS_HISTORY_LIMIT
        )

    def _drop_lapsed(self) -> None:
        now = workflow.now()
        for endpoint_id, stored in list(self._endpoints.items()):
            expires_at = stored.endpoint.expires_at
            if expires_at is not None and expires_at <= now:
                del self._endpoints[endpoint_id]
                workflow.logger.info("webhook endpoint %s removed: its lease lapsed", endpoint_id)

    def _until_next_lapse(self) -> timedelta | None:
        lapses = [s.endpoint.expires_at for s in self._endpoints.values() if s.endpoint.expires_at]
        if not lapses:
            return None
        return max(min(lapses) - workflow.now(), timedelta(seconds=1))

    def _existing(self, endpoint_id: str) -> StoredEndpoint:
        stored = self._endpoints.get(endpoint_id)
        if stored is None:
            raise rejection(NO_SUCH_ENDPOINT)
        return stored

    def _lease_ends(self, lease_seconds: int | None) -> datetime | None:
        return None if lease_seconds is None else workflow.now() + timedelta(seconds=lease_seconds)

    @workflow.update(name=EndpointUpdates.ADD)
    def add_endpoint(self, add: AddEndpoint) -> Endpoint:
        request = add.request
        endpoint = Endpoint(
            id=add.endpoint_id,
            url=request.url,
            enabled_events=request.enabled_events,
            description=request.description,
            created_at=workflow.now(),
            expires_at=self._lease_ends(request.lease_seconds),
        )
        was_on = self._any_enabled()
        self._endpoints[endpoint.id] = StoredEndpoint(
            endpoint=endpoint,
            secrets=[SigningSecret(secret=add.secret)],
            lease_seconds=request.lease_seconds,
        )
        self._turned_on(was_on)
        return endpoint

    @add_endpoint.validator
    def _validate_add(self, add: AddEndpoint) -> None:
        if len(self._endpoints) >= MAX_ENDPOINTS:
            raise rejection(
                Refusal(
                    ENDPOINT_LIMIT_REACHED,
                    f"a merchant has at most {MAX_ENDPOINTS} webhook endpoints",
                )
            )

    @workflow.update(name=EndpointUpdates.CHANGE)
    def change_endpoint(self, change: ChangeEndpoint) -> Endpoint:
        stored = self._existing(change.endpoint_id)
        was_on = self._any_enabled()
        request = change.request
        # None is "unchanged": what the API did not send arrives as null.
        fields = request.model_dump(exclude_none=True, exclude={"lease_seconds"})
        if request.lease_seconds is not None:
            stored.lease_seconds = request.lease_seconds
            fields["expires_at"] = self._lease_ends(request.lease_seconds)
        enabled_again = (
            stored.endpoint.status is EndpointStatus.DISABLED
            and request.status is EndpointStatus.ENABLED
        )
        stored.endpoint = stored.endpoint.model_copy(update=fields)
        if enabled_again:
            stored.enabled_at = workflow.now()
        self._turned_on(was_on)
        return stored.endpoint

    @change_endpoint.validator
    def _validate_change(self, change: ChangeEndpoint) -> None:
        self._existing(change.endpoint_id)

    @workflow.update(name=EndpointUpdates.DELETE)
    def delete_endpoint(self, ref: EndpointRef) -> Endpoint:
        stored = self._endpoints.pop(ref.endpoint_id)
        self._changed = True
        return stored.endpoint

    @delete_endpoint.validator
    def _validate_delete(self, ref: EndpointRef) -> None:
        self._existing(ref.endpoint_id)

    @workflow.update(name=EndpointUpdates.ROTATE)
    def rotate_secret(self, rotate: RotateSecret) -> Endpoint:
        stored = self._existing(rotate.endpoint_id)
        now = workflow.now()
        kept = [
            SigningSecret(secret=old.secret, expires_at=old.expires_at or now + ROTATION_OVERLAP)
            for old in stored.secrets
            if old.expires_at is None or old.expires_at > now
        ]
        stored.secrets = [SigningSecret(secret=rotate.secret), *kept]
        self._changed = True
        return stored.endpoint

    @rotate_secret.validator
    def _validate_rotate(self, rotate: RotateSecret) -> None:
        self._existing(rotate.endpoint_id)

    @workflow.query(name=EndpointQueries.ENDPOINTS)
    def endpoints(self) -> list[Endpoint]:
        return [stored.endpoint for stored in self._endpoints.values()]

    @workflow.query(name=EndpointQueries.STORED)
    def stored_endpoints(self) -> list[StoredEndpoint]:
        return list(self._endpoints.values())


# A delivery workflow with nothing to send waits this long for the payment's
# next event before it ends (a refund right after capture finds it open).
LINGER = timedelta(minutes=1)
# Reading the payment's history: the events announced are there within moments
# (the announcement leaves in the workflow task that records them).
READ_TIMEOUT = timedelta(seconds=30)
READ_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1), maximum_interval=timedelta(seconds=10)
)
# One POST: the outbound client gives up after 10 s; this covers the signing
# and the endpoint's lookup around it. A failing activity (not a failing
# receiver: that is an outcome) is tried a few times, then counts as a failed
# attempt of the schedule.
SEND_TIMEOUT = timedelta(seconds=20)
SEND_RETRY = RetryPolicy(maximum_attempts=3)


@workflow.defn(name=WEBHOOK_DELIVERY_WORKFLOW_TYPE)
class WebhookDeliveryWorkflow:
    @workflow.init
    def __init__(self, input: DeliveriesInput) -> None:
        self._input = input
        self._inbox: list[Announcement | Redeliver | HandOff] = []
        if input.handoff is not None:
            self._inbox.append(input.handoff)
        if input.announcement is not None:
            self._inbox.append(input.announcement)
        self._events: dict[int, WebhookEvent] = {}
        # Per endpoint, in the order they are sent: by seq, redeliveries first.
        self._queues: dict[str, list[Delivery]] = {}
        self._senders: dict[str, asyncio.Task[None]] = {}
        # Endpoints whose wait for the next attempt is cut short (a redelivery).
        self._woken: set[str] = set()
        # Handed-on deliveries whose next attempt is due later: (endpoint, event) → when.
        self._due: dict[tuple[str, str], datetime] = {}

    @workflow.run
    async def run(self, input: DeliveriesInput) -> None:
        while True:
            if not self._inbox:
                if self._sending():
                    await workflow.wait_condition(lambda: bool(self._inbox) or not self._sending())
                    continue
                try:
                    await workflow.wait_condition(
                        lambda: bool(self._inbox),
                        timeout=LINGER,
                        timeout_summary="the payment's next event",
                    )
                except TimeoutError:
                    break
            item = self._inbox.pop(0)
            if isinstance(item, HandOff):
                self._take(item)
                continue
            if isinstance(item, Announcement):
                found = await self._read(WebhookActivities.NEW_DELIVERIES, item)
            else:
                found = await self._read(WebhookActivities.REDELIVERY, item)
            self._add(found, again=isinstance(item, Redeliver))
        await workflow.wait_condition(workflow.all_handlers_finished)

    async def _read(self, activity: str, item: Announcement | Redeliver) -> NewDeliveries:
        found: NewDeliveries = await workflow.execute_local_activity(
            activity,
            item if isinstance(item, Announcement) else _redelivery(self._input, item),
            result_type=NewDeliveries,
            start_to_close_timeout=READ_TIMEOUT,
            retry_policy=READ_RETRY,
            summary="read the payment's events",
        )
        return found

    def _sending(self) -> bool:
        return any(not task.done() for task in self._senders.values())

    def _add(self, found: NewDeliveries, *, again: bool) -> None:
        now = workflow.now()
        for event in found.events:
            self._events[event.seq] = event
            for endpoint_id in found.endpoints.get(event.seq, []):
                queue = self._queues.setdefault(endpoint_id, [])
                known = next((d for d in queue if d.event_id == event.id), None)
                if known is not None and not again:
                    continue  # announced twice (a retried workflow task): once is enough
                if known is not None:
                    queue.remove(known)
                elif again:
                    # First attempted by the dispatch workflow: count on from there.
                    known = next((d for d in found.earlier if d.endpoint_id == endpoint_id), None)
                if known is not None:
                    delivery = known.model_copy(
                        update={"status": DeliveryStatus.PENDING, "next_attempt_at": now}
                    )
                else:
                    delivery = Delivery.of(event, endpoint_id, now)
                if again:
                    queue.insert(0, delivery)
                    self._woken.add(endpoint_id)
                else:
                    queue.append(delivery)
                sender = self._senders.get(endpoint_id)
                if sender is None or sender.done():
                    self._senders[endpoint_id] = asyncio.ensure_future(self._send(endpoint_id))
        self._publish()

    def _take(self, handoff: HandOff) -> None:
        """What the dispatch workflow's first attempts left: queued as they are,
        each attempted one due at its next attempt."""
        for event in handoff.events:
            self._events[event.seq] = event
        for delivery in handoff.deliveries:
            queue = self._queues.setdefault(delivery.endpoint_id, [])
            if any(d.event_id == delivery.event_id for d in queue):
                continue  # handed on twice: once is enough
            queue.append(delivery)
            if delivery.attempts and delivery.next_attempt_at is not None:
                self._due[(delivery.endpoint_id, delivery.event_id)] = delivery.next_attempt_at
            sender = self._senders.get(delivery.endpoint_id)
            if sender is None or sender.done():
                self._senders[delivery.endpoint_id] = asyncio.ensure_future(
                    self._send(delivery.endpoint_id)
                )
        self._publish()

    async def _send(self, endpoint_id: str) -> None:
        """Send the endpoint's deliveries one at a time: the next only once the
        one before it has succeeded or failed for good."""
        queue = self._queues[endpoint_id]
        while delivery := next((d for d in queue if d.status is DeliveryStatus.PENDING), None):
            self._woken.discard(endpoint_id)
            due = self._due.pop((endpoint_id, delivery.event_id), None)
            if due is not None and due > workflow.now():
                with contextlib.suppress(TimeoutError):  # time for the next attempt
                    await workflow.wait_condition(
                        lambda: endpoint_id in self._woken,
                        timeout=due - workflow.now(),
                        timeout_summary=f"retry {delivery.type} (seq {delivery.seq}) "
                        f"to {endpoint_id}",
                    )
                continue
            outcome = await self._attempt(delivery)
            now = workflow.now()
            delivery.attempts += 1
            delivery.first_attempt_at = delivery.first_attempt_at or now
            delivery.last_status_code = outcome.status_code
            delivery.last_error = outcome.error
            delivery.next_attempt_at = None
            if outcome.delivered:
                delivery.status = DeliveryStatus.SUCCEEDED
            elif outcome.endpoint_gone:
                for pending in queue:
                    if pending.status is DeliveryStatus.PENDING:
                        pending.status = DeliveryStatus.FAILED
                        pending.last_error = outcome.error
                        pending.next_attempt_at = None
            else:
                delay = next_attempt_delay(delivery.attempts, delivery.first_attempt_at, now)
                if delay is None:
                    delivery.status = DeliveryStatus.FAILED
                else:
                    delivery.next_attempt_at = now + delay
            counters.add(
                metrics.WEBHOOK_DELIVERIES,
                {"outcome": "dropped" if outcome.endpoint_gone else _outcome(delivery)},
            )
            self._publish()
            if delivery.next_attempt_at is not None:
                with contextlib.suppress(TimeoutError):  # time for the next attempt
                    await workflow.wait_condition(
                        lambda: endpoint_id in self._woken,
                        timeout=delivery.next_attempt_at - now,
                        timeout_summary=f"retry {delivery.type} (seq {delivery.seq}) "
                        f"to {endpoint_id}",
                    )

    async def _attempt(self, delivery: Delivery) -> DeliveryOutcome:
        request = DeliveryRequest(
            merchant_id=self._input.merchant_id,
            endpoint_id=delivery.endpoint_id,
            event=self._events[delivery.seq],
            attempt=delivery.attempts + 1,
        )
        try:
            outcome: DeliveryOutcome = await workflow.execute_local_activity(
                WebhookActivities.DELIVER,
                request,
                result_type=DeliveryOutcome,
                start_to_close_timeout=SEND_TIMEOUT,
                retry_policy=SEND_RETRY,
                summary=f"POST {delivery.type} (seq {delivery.seq}) to {delivery.endpoint_id}",
            )
        except ActivityError:
            return DeliveryOutcome(delivered=False, error="delivery_error")
        return outcome

    def _publish(self) -> None:
        """The deliveries' log, for the API's list and the UI's memo tab."""
        deliveries = [d for queue in self._queues.values() for d in queue]
        workflow.upsert_memo({DELIVERIES_MEMO: [d.model_dump(mode="json") for d in deliveries]})
        endpoint_ids = sorted(self._queues)
        if workflow.info().typed_search_attributes.get(WEBHOOK_ENDPOINT_IDS) != endpoint_ids:
            workflow.upsert_search_attributes([WEBHOOK_ENDPOINT_IDS.value_set(endpoint_ids)])
        workflow.set_current_details(_details(deliveries))

    @workflow.signal(name=DeliverySignals.ANNOUNCE)
    def announce(self, announcement: Announcement) -> None:
        self._inbox.append(announcement)

    @workflow.signal(name=DeliverySignals.REDELIVER)
    def redeliver(self, redeliver: Redeliver) -> None:
        self._inbox.append(redeliver)

    @workflow.signal(name=DeliverySignals.HAND_OFF)
    def hand_off(self, handoff: HandOff) -> None:
        self._inbox.append(handoff)

    @workflow.query(name=DELIVERIES_QUERY)
    def deliveries(self) -> list[Delivery]:
        return [d for queue in self._queues.values() for d in queue]


# The dispatch workflow sends the first attempts of at most this many
# announcements in one local activity.
BATCH = 50
# The activity stops attempting well before this (FIRST_ATTEMPTS_BUDGET in
# activities/webhooks.py) and says what it left; past it, or on any other
# failure, the whole batch is handed on, never tried twice from here.
FIRST_ATTEMPTS_TIMEOUT = timedelta(minutes=2)
FIRST_ATTEMPTS_RETRY = RetryPolicy(maximum_attempts=1)
# A hand-off that Temporal refuses is tried again after this, doubling.
HAND_ON_RETRY_FIRST = timedelta(seconds=1)
HAND_ON_RETRY_MAX = timedelta(minutes=1)
DISPATCH_HISTORY_LIMIT = 4000


@workflow.defn(name=WEBHOOK_DISPATCH_WORKFLOW_TYPE)
class WebhookDispatchWorkflow:
    @workflow.init
    def __init__(self, input: DispatchInput) -> None:
        self._merchant_id = input.merchant_id
        self._inbox: list[Announcement] = list(input.inbox)
        # Per endpoint, oldest first, at most RECENT_DELIVERIES.
        self._recent: dict[str, list[Delivery]] = {}
        self._log(input.recent)
        self._slow_until = dict(input.slow_until)
        self._batches = 0
        self._handed_on = 0

    @workflow.run
    async def run(self, input: DispatchInput) -> None:
        while True:
            await workflow.wait_condition(lambda: bool(self._inbox) or self._time_to_hand_over())
            if self._time_to_hand_over():
                break
            batch, self._inbox = self._inbox[:BATCH], self._inbox[BATCH:]
            await self._dispatch(batch)
        await workflow.wait_condition(workflow.all_handlers_finished)
        workflow.continue_as_new(
            DispatchInput(
                merchant_id=self._merchant_id,
                recent=[d for log in self._recent.values() for d in log],
                slow_until=self._slow_until,
                inbox=self._inbox,
            )
        )

    async def _dispatch(self, batch: list[Announcement]) -> None:
        now = workflow.now()
        self._forget(now)
        forward: list[Announcement] = []
        done = FirstAttemptsDone()
        try:
            done = await workflow.execute_local_activity(
                WebhookActivities.FIRST_ATTEMPTS,
                FirstAttempts(
                    merchant_id=self._merchant_id,
                    announcements=batch,
                    skip_endpoints=sorted(self._slow_until),
                ),
                result_type=FirstAttemptsDone,
                start_to_close_timeout=FIRST_ATTEMPTS_TIMEOUT,
                retry_policy=FIRST_ATTEMPTS_RETRY,
                summary=f"first attempts: {len(batch)} announcement(s)",
            )
        except ActivityError as err:
            workflow.logger.warning("first attempts failed, handed on whole: %s", err.cause)
            forward = batch
        _on_workflow_clock(done.deliveries, workflow.now())
        for delivery in done.deliveries:
            if delivery.attempts:
                counters.add(metrics.WEBHOOK_DELIVERIES, {"outcome": _outcome(delivery)})
        # What was handed on, its delivery workflow logs.
        self._log([d for d in done.deliveries if d.status is DeliveryStatus.SUCCEEDED])
        for endpoint_id in done.slow:
            self._slow_until[endpoint_id] = now + SLOW_ENDPOINT_PAUSE
        handoffs = _handoffs(done)
        forwarded: dict[str, list[Announcement]] = {}
        for announcement in [*forward, *done.forward]:
            forwarded.setdefault(announcement.payment_id, []).append(announcement)
        payments = list(dict.fromkeys([*handoffs, *forwarded]))
        self._handed_on += len(payments)
        await asyncio.gather(
            *(
                self._hand_on(payment_id, handoffs.get(payment_id), forwarded.get(payment_id, []))
                for payment_id in payments
            )
        )
        self._batches += 1
        self._show()

    async def _hand_on(
        self, payment_id: str, handoff: HandOff | None, announcements: list[Announcement]
    ) -> None:
        """To the payment's delivery workflow, in order: what the first attempts
        left, then the announcements it is to read itself."""
        items: list[HandOff | Announcement] = [*([handoff] if handoff else []), *announcements]
        for item in items:
            await self._send_to_deliveries(payment_id, item)

    async def _send_to_deliveries(self, payment_id: str, item: HandOff | Announcement) -> None:
        """Start the payment's delivery workflow with ``item``, or, if it runs,
        signal it (a closed one in between is started again)."""
        workflow_id = deliveries_workflow_id(payment_id)
        is_handoff = isinstance(item, HandOff)
        pause = HAND_ON_RETRY_FIRST
        while True:
            try:
                await workflow.start_child_workflow(
                    WEBHOOK_DELIVERY_WORKFLOW_TYPE,
                    DeliveriesInput(
                        payment_id=payment_id,
                        merchant_id=self._merchant_id,
                        handoff=item if is_handoff else None,
                        announcement=None if is_handoff else item,
                    ),
                    id=workflow_id,
                    parent_close_policy=workflow.ParentClosePolicy.ABANDON,
                    search_attributes=TypedSearchAttributes(
                        [SearchAttributePair(MERCHANT, self._merchant_id)]
                    ),
                    static_summary=f"webhooks of {payment_id}",
                )
                return
            except WorkflowAlreadyStartedError:
                pass
            try:
                await workflow.get_external_workflow_handle(workflow_id).signal(
                    DeliverySignals.HAND_OFF if is_handoff else DeliverySignals.ANNOUNCE, item
                )
                return
            except Exception as err:  # it ended in between: start it again, after a pause
                workflow.logger.info("delivery workflow %s not signalled: %s", workflow_id, err)
            await workflow.sleep(pause, summary=f"hand on to {workflow_id} again")
            pause = min(pause * 2, HAND_ON_RETRY_MAX)

    def _log(self, deliveries: list[Delivery]) -> None:
        for delivery in deliveries:
            log = self._recent.setdefault(delivery.endpoint_id, [])
            log.append(delivery)
            del log[:-RECENT_DELIVERIES]

    def _forget(self, now: datetime) -> None:
        for endpoint_id, until in list(self._slow_until.items()):
            if until <= now:
                del self._slow_until[endpoint_id]

    def _time_to_hand_over(self) -> bool:
        info = workflow.info()
        return (
            info.is_continue_as_new_suggested()
            or info.get_current_history_length() > DISPATCH_HISTORY_LIMIT
        )

    def _show(self) -> None:
        recent = [d for log in self._recent.values() for d in log]
        delivered = sum(d.status is DeliveryStatus.SUCCEEDED for d in recent)
        lines = [
            "**Webhook first attempts**",
            "",
            f"- {self._batches} batch(es) in this run; of the last {len(recent)} deliveries, "
            f"{delivered} delivered at the first attempt",
            f"- handed on to a payment's delivery workflow: {self._handed_on} payment(s)",
        ]
        if self._slow_until:
            lines.append(f"- paused for timing out: {', '.join(sorted(self._slow_until))}")
        workflow.set_current_details("\n".join(lines))

    @workflow.signal(name=DeliverySignals.ANNOUNCE)
    def announce(self, announcement: Announcement) -> None:
        """One payment's announcement (a worker before announcements were grouped)."""
        self._inbox.append(announcement)

    @workflow.signal(name=DeliverySignals.ANNOUNCE_ALL)
    def announce_all(self, announcements: list[Announcement]) -> None:
        self._inbox.extend(announcements)

    @workflow.query(name=DELIVERIES_QUERY)
    def deliveries(self) -> list[Delivery]:
        """The newest first attempts, per endpoint, oldest first."""
        return [d for log in self._recent.values() for d in log]


def _on_workflow_clock(deliveries: list[Delivery], now: datetime) -> None:
    """The attempts' times as this workflow's clock has them: the delivery
    workflows compare them with theirs (a worker's clock may be off, and the
    time-skipping server's is its own), and the 3 days count from them."""
    for delivery in deliveries:
        if not delivery.attempts:
            delivery.next_attempt_at = now
            continue
        delivery.first_attempt_at = now
        if delivery.status is DeliveryStatus.PENDING:
            delay = next_attempt_delay(1, now, now)
            delivery.next_attempt_at = None if delay is None else now + delay


def _handoffs(done: FirstAttemptsDone) -> dict[str, HandOff]:
    """Per payment, its pending deliveries and their events."""
    handoffs: dict[str, HandOff] = {}
    for delivery in done.deliveries:
        if delivery.status is DeliveryStatus.PENDING:
            handoffs.setdefault(
                delivery.payment_id,
                HandOff(payment_id=delivery.payment_id, deliveries=[], events=[]),
            ).deliveries.append(delivery)
    for event in done.pending_events:
        handoffs[event.payment_id].events.append(event)
    return handoffs


def _outcome(delivery: Delivery) -> str:
    """An attempt's ``outcome`` label: delivered, retrying, or failed (given up)."""
    if delivery.status is DeliveryStatus.SUCCEEDED:
        return "delivered"
    return "failed" if delivery.status is DeliveryStatus.FAILED else "retrying"


def _redelivery(input: DeliveriesInput, redeliver: Redeliver) -> RedeliveryLookup:
    return RedeliveryLookup(
        payment_id=input.payment_id,
        merchant_id=input.merchant_id,
        endpoint_id=redeliver.endpoint_id,
        seq=redeliver.seq,
    )


def _details(deliveries: list[Delivery]) -> str:
    lines = ["**Webhook deliveries**", ""]
    for d in deliveries:
        code = f", last answer {d.last_status_code}" if d.last_status_code else ""
        error = f", last error {d.last_error}" if d.last_error else ""
        lines.append(
            f"- seq {d.seq} `{d.type}` → `{d.endpoint_id}`: **{d.status.value}** "
            f"after {d.attempts} attempt(s){code}{error}"
        )
    return "\n".join(lines)
