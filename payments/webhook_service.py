"""The webhook endpoints' use cases (CONTRACT §12), for the API: register,
read, change, remove an endpoint, rotate its secret, list its deliveries,
deliver an event again. Domain errors only (:class:`payments.refusals.Refused`);
``api/`` turns them into answers.

An endpoint belongs to its merchant's endpoints workflow; another merchant's
endpoint id answers as one that does not exist. A URL is checked when it is
registered (``payments.outbound``: scheme, and in production a public
address), and again by every delivery against the address it connects to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.service import RPCError, RPCStatusCode

from payments import names
from payments.listing import quote
from payments.outbound import UnsafeUrl, check_destination
from payments.refusals import (
    NO_SUCH_ENDPOINT,
    NO_SUCH_PAYMENT,
    URL_INVALID,
    URL_NOT_ALLOWED,
    Refusal,
    Refused,
    refusal_of,
)
from payments.settings import Settings
from payments.webhooks import (
    ENDPOINTS_CACHE_SECONDS,
    AddEndpoint,
    Announcement,
    ChangeEndpoint,
    CreateEndpoint,
    DeliveriesInput,
    Delivery,
    DispatchInput,
    Endpoint,
    EndpointRef,
    EndpointsInput,
    EndpointStatus,
    EndpointWithSecret,
    Redeliver,
    RedeliveryAccepted,
    RotateSecret,
    StoredEndpoint,
    UpdateEndpoint,
    deliveries_workflow_id,
    dispatch_workflow_id,
    endpoints_workflow_id,
    new_endpoint_id,
    new_secret,
    parse_event_id,
)

log = logging.getLogger(__name__)

# The deliveries list reads at most this many delivery workflows (a payment
# each), the most recently active first.
DELIVERIES_SCAN = 1000


async def first_attempts(client: Client, merchant_id: str) -> list[Delivery]:
    """The newest first attempts the merchant's dispatch workflow delivered (at
    most RECENT_DELIVERIES per endpoint); none when it has none or does not
    answer (no worker: a list then shows what visibility holds)."""
    handle = client.get_workflow_handle(dispatch_workflow_id(merchant_id))
    try:
        recorded: list[Delivery] = await handle.query(
            names.DELIVERIES_QUERY, result_type=list[Delivery]
        )
    except RPCError as err:
        if err.status != RPCStatusCode.NOT_FOUND:
            log.warning("first attempts of %s not read: %s", merchant_id, err)
        return []  # no endpoint ever wanted one of its events
    return recorded


class EndpointDirectory:
    """A merchant's endpoints, read from its endpoints workflow (a query) and
    kept for ``ttl`` seconds; one read at a time per merchant.

    What it hands out was always read less than ``ttl`` ago, so a change the
    API answered ``ttl`` after applying it is never missed. A look after
    ``refresh_after`` seconds still gets what is kept, and reads again in the
    background: a merchant that pays more often than that never waits for the
    query (a payment's start asks first: once a second, every start under way
    waited for it before its ``202``); one that pays less often waits for it
    as before. At most one read per
    ``refresh_after`` per merchant, and only while the merchant is looked up.
    """

    def __init__(
        self,
        client: Client,
        ttl: float = ENDPOINTS_CACHE_SECONDS,
        clock: Callable[[], float] = time.monotonic,
        refresh_after: float | None = None,
    ) -> None:
        self._client = client
        self._ttl = ttl
        self._refresh_after = ttl / 2 if refresh_after is None else refresh_after
        self._clock = clock
        self._known: dict[str, tuple[float, list[StoredEndpoint]]] = {}
        self._reading: dict[str, asyncio.Future[list[StoredEndpoint]]] = {}

    async def of(self, merchant_id: str) -> list[StoredEndpoint]:
        known = self._known.get(merchant_id)
        if known is not None:
            age = self._clock() - known[0]
            if age < self._ttl:
                if age >= self._refresh_after:
                    self._reading_of(merchant_id)
                return known[1]
        return await asyncio.shield(self._reading_of(merchant_id))

    def _reading_of(self, merchant_id: str) -> asyncio.Future[list[StoredEndpoint]]:
        """The merchant's read under way, or a new one."""
        reading = self._reading.get(merchant_id)
        if reading is None:
            reading = asyncio.ensure_future(self._read(merchant_id))
            self._reading[merchant_id] = reading
            reading.add_done_callback(lambda done: self._read_done(merchant_id, done))
        return reading

    def _read_done(self, merchant_id: str, done: asyncio.Future[list[StoredEndpoint]]) -> None:
        self._reading.pop(merchant_id, None)
        # A background read nobody awaits fails quietly: the kept endpoints
        # age past ttl, and the next look reads in the foreground and raises.
        if not done.cancelled() and done.exception() is not None:
            log.debug("endpoints of %s not read: %s", merchant_id, done.exception())

    async def fresh(self, merchant_id: str) -> list[StoredEndpoint]:
        """Read now, whatever the cache holds (a delivery checks what it signs with)."""
        return await self._read(merchant_id)

    async def _read(self, merchant_id: str) -> list[StoredEndpoint]:
        started = self._clock()
        handle = self._client.get_workflow_handle(endpoints_workflow_id(merchant_id))
        try:
            stored: list[StoredEndpoint] = await handle.query(
                names.EndpointQueries.STORED, result_type=list[StoredEndpoint]
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            stored = []  # a merchant that never registered an endpoint
        self._known[merchant_id] = (started, stored)
        return stored

    async def any_enabled(self, merchant_id: str) -> bool:
        """Whether the merchant has an enabled endpoint (a payment it starts
        then announces its events)."""
        endpoints = await self.of(merchant_id)
        return any(s.endpoint.status is EndpointStatus.ENABLED for s in endpoints)


# At most this many announcements go in one signal (a few hundred bytes each).
ANNOUNCEMENTS_PER_SIGNAL = 100


class Announcer:
    """The payments' announcements to their merchant's dispatch workflow,
    group-committed: per merchant one signal-with-start in flight at a time,
    and the announcements that come while it is go out together in the next
    one. A quiet merchant's announcement leaves at once; under load one
    request and one history event serve many payments (the dev server spends
    about 6 ms on a signal-with-start to one busy workflow, and a sixteenth of
    that on each of sixteen announcements in one). ``announce`` returns once
    its announcement is in the dispatch workflow's history, and raises what
    the request raised, for the caller's retry."""

    def __init__(self, client: Client, most: int = ANNOUNCEMENTS_PER_SIGNAL) -> None:
        self._client = client
        self._most = most
        self._waiting: dict[tuple[str, str], list[tuple[Announcement, asyncio.Future[None]]]] = {}
        self._sending: dict[tuple[str, str], asyncio.Task[None]] = {}

    async def announce(self, announcement: Announcement, task_queue: str) -> None:
        key = (announcement.merchant_id, task_queue)
        sent = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append((announcement, sent))
        if key not in self._sending:
            self._sending[key] = asyncio.ensure_future(self._send_all(key))
        await sent

    async def _send_all(self, key: tuple[str, str]) -> None:
        try:
            while batch := self._next_batch(key):
                try:
                    await self._signal(key, [announcement for announcement, _ in batch])
                except Exception as err:
                    for _, sent in batch:
                        if not sent.done():
                            sent.set_exception(err)
                except BaseException:
                    for _, sent in batch:
                        sent.cancel()
                    raise
                else:
                    for _, sent in batch:
                        if not sent.done():
                            sent.set_result(None)
        finally:
            del self._sending[key]

    def _next_batch(self, key: tuple[str, str]) -> list[tuple[Announcement, asyncio.Future[None]]]:
        """The oldest waiting announcements, those whose caller gave up left out."""
        waiting = [(a, sent) for a, sent in self._waiting.pop(key, []) if not sent.done()]
        if len(waiting) > self._most:
            self._waiting[key] = waiting[self._most :]
        return waiting[: self._most]

    async def _signal(self, key: tuple[str, str], announcements: list[Announcement]) -> None:
        merchant_id, task_queue = key
        await self._client.start_workflow(
            names.WEBHOOK_DISPATCH_WORKFLOW_TYPE,
            DispatchInput(merchant_id=merchant_id),
            id=dispatch_workflow_id(merchant_id),
            task_queue=task_queue,
            start_signal=names.DeliverySignals.ANNOUNCE_ALL,
            start_signal_args=[announcements],
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.MERCHANT, merchant_id)]
            ),
            static_summary=f"webhooks of merchant {merchant_id}: first attempts",
        )


class WebhookService:
    def __init__(self, client: Client, settings: Settings) -> None:
        self.client = client
        self.settings = settings

    async def create(self, merchant_id: str, request: CreateEndpoint) -> EndpointWithSecret:
        await self._check_url(request.url)
        secret = new_secret()
        add = AddEndpoint(endpoint_id=new_endpoint_id(), secret=secret, request=request)
        # Started here if the merchant has none yet; a running one is used as it is.
        # (Not update-with-start: the time-skipping test server lacks it.)
        await self.client.start_workflow(
            names.WEBHOOK_ENDPOINTS_WORKFLOW_TYPE,
            EndpointsInput(merchant_id=merchant_id),
            id=endpoints_workflow_id(merchant_id),
            task_queue=self.settings.task_queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.MERCHANT, merchant_id)]
            ),
            static_summary=f"webhook endpoints of {merchant_id}",
        )
        endpoint = await self._send(merchant_id, names.EndpointUpdates.ADD, add, Endpoint)
        return EndpointWithSecret(endpoint=endpoint, secret=secret)

    async def list_endpoints(
        self, merchant_id: str, *, limit: int = 10, starting_after: str | None = None
    ) -> tuple[list[Endpoint], bool]:
        """A page of the merchant's endpoints, newest first."""
        endpoints = sorted(
            await self._endpoints(merchant_id), key=lambda e: (e.created_at, e.id), reverse=True
        )
        if starting_after is not None:
            ids = [e.id for e in endpoints]
            if starting_after not in ids:
                raise Refused(
                    Refusal(NO_SUCH_ENDPOINT.code, "no such webhook endpoint", "starting_after")
                )
            endpoints = endpoints[ids.index(starting_after) + 1 :]
        return endpoints[:limit], len(endpoints) > limit

    async def get(self, merchant_id: str, endpoint_id: str) -> Endpoint:
        for endpoint in await self._endpoints(merchant_id):
            if endpoint.id == endpoint_id:
                return endpoint
        raise Refused(NO_SUCH_ENDPOINT)

    async def update(self, merchant_id: str, endpoint_id: str, request: UpdateEndpoint) -> Endpoint:
        if request.url is not None:
            await self._check_url(request.url)
        change = ChangeEndpoint(endpoint_id=endpoint_id, request=request)
        return await self._send(merchant_id, names.EndpointUpdates.CHANGE, change, Endpoint)

    async def delete(self, merchant_id: str, endpoint_id: str) -> Endpoint:
        ref = EndpointRef(endpoint_id=endpoint_id)
        return await self._send(merchant_id, names.EndpointUpdates.DELETE, ref, Endpoint)

    async def rotate(self, merchant_id: str, endpoint_id: str) -> EndpointWithSecret:
        secret = new_secret()
        rotate = RotateSecret(endpoint_id=endpoint_id, secret=secret)
        endpoint = await self._send(merchant_id, names.EndpointUpdates.ROTATE, rotate, Endpoint)
        return EndpointWithSecret(endpoint=endpoint, secret=secret)

    async def deliveries(
        self,
        merchant_id: str,
        endpoint_id: str,
        *,
        limit: int = 10,
        starting_after: str | None = None,
    ) -> tuple[list[Delivery], bool]:
        """A page of the endpoint's deliveries, newest event first (then by seq)."""
        await self.get(merchant_id, endpoint_id)
        query = " AND ".join(
            [
                f"WorkflowType = {quote(names.WEBHOOK_DELIVERY_WORKFLOW_TYPE)}",
                f"MerchantId = {quote(merchant_id)}",
                f"WebhookEndpointIds = {quote(endpoint_id)}",
            ]
        )
        found: dict[str, Delivery] = {}
        async for execution in self.client.list_workflows(query, limit=DELIVERIES_SCAN):
            recorded: list[Delivery] = await execution.memo_value(
                names.DELIVERIES_MEMO, [], type_hint=list[Delivery]
            )
            for delivery in recorded:
                # A later run of the same payment's deliveries knows better.
                if delivery.endpoint_id == endpoint_id and delivery.event_id not in found:
                    found[delivery.event_id] = delivery
        # First attempts that needed no retry are only the dispatch workflow's.
        for delivery in await first_attempts(self.client, merchant_id):
            if delivery.endpoint_id == endpoint_id and delivery.event_id not in found:
                found[delivery.event_id] = delivery
        newest = sorted(found.values(), key=lambda d: (d.created_at, d.seq), reverse=True)
        if starting_after is not None:
            ids = [d.event_id for d in newest]
            if starting_after not in ids:
                raise Refused(Refusal(NO_SUCH_ENDPOINT.code, "no such delivery", "starting_after"))
            newest = newest[ids.index(starting_after) + 1 :]
        return newest[:limit], len(newest) > limit

    async def redeliver(self, merchant_id: str, endpoint_id: str, event: str) -> RedeliveryAccepted:
        """Deliver the event to the endpoint again, now (and first of its queue)."""
        await self.get(merchant_id, endpoint_id)
        parsed = parse_event_id(event)
        if parsed is None:
            raise Refused(Refusal(NO_SUCH_ENDPOINT.code, "no such event", "event_id"))
        payment_id, seq = parsed
        await self._own_payment(merchant_id, payment_id)
        await self.client.start_workflow(
            names.WEBHOOK_DELIVERY_WORKFLOW_TYPE,
            DeliveriesInput(payment_id=payment_id, merchant_id=merchant_id),
            id=deliveries_workflow_id(payment_id),
            task_queue=self.settings.task_queue,
            start_signal=names.DeliverySignals.REDELIVER,
            start_signal_args=[Redeliver(endpoint_id=endpoint_id, seq=seq)],
            search_attributes=TypedSearchAttributes(
                [SearchAttributePair(names.MERCHANT, merchant_id)]
            ),
            static_summary=f"webhooks of {payment_id}",
        )
        return RedeliveryAccepted(
            endpoint_id=endpoint_id, event_id=event, payment_id=payment_id, seq=seq
        )

    async def payment_deliveries(self, merchant_id: str, payment_id: str) -> list[Delivery]:
        """The deliveries of one of the merchant's payments, by ``seq`` (none
        when the merchant has no endpoint that wanted them): its delivery
        workflow's, and the first attempts that needed no more."""
        found: dict[tuple[str, str], Delivery] = {}
        handle = self.client.get_workflow_handle(deliveries_workflow_id(payment_id))
        try:
            description = await handle.describe()
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
        else:
            if description.typed_search_attributes.get(names.MERCHANT) == merchant_id:
                recorded: list[Delivery] = await description.memo_value(
                    names.DELIVERIES_MEMO, [], type_hint=list[Delivery]
                )
                found = {(d.endpoint_id, d.event_id): d for d in recorded}
        for delivery in await first_attempts(self.client, merchant_id):
            if delivery.payment_id == payment_id:
                found.setdefault((delivery.endpoint_id, delivery.event_id), delivery)
        return sorted(found.values(), key=lambda d: (d.seq, d.endpoint_id))

    async def ensure_endpoint(
        self, merchant_id: str, url: str, description: str
    ) -> EndpointWithSecret:
        """An endpoint of the merchant's at ``url``, with a secret the caller
        now knows: registered, or, if it is there already, its secret rotated."""
        for endpoint in await self._endpoints(merchant_id):
            if endpoint.url == url:
                return await self.rotate(merchant_id, endpoint.id)
        request = CreateEndpoint(url=url, enabled_events=["*"], description=description)
        return await self.create(merchant_id, request)

    async def _own_payment(self, merchant_id: str, payment_id: str) -> None:
        try:
            description = await self.client.get_workflow_handle(payment_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                raise Refused(NO_SUCH_PAYMENT) from None
            raise
        if description.typed_search_attributes.get(names.MERCHANT) != merchant_id:
            raise Refused(NO_SUCH_PAYMENT)

    async def _check_url(self, url: str) -> None:
        try:
            await check_destination(
                url, allow_private=self.settings.webhook_allow_private_addresses
            )
        except UnsafeUrl as err:
            code = URL_NOT_ALLOWED if err.code == "address_not_allowed" else URL_INVALID
            raise Refused(Refusal(code, str(err), "url")) from None

    async def _endpoints(self, merchant_id: str) -> list[Endpoint]:
        handle = self.client.get_workflow_handle(endpoints_workflow_id(merchant_id))
        try:
            endpoints: list[Endpoint] = await handle.query(
                names.EndpointQueries.ENDPOINTS, result_type=list[Endpoint]
            )
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            return []
        return endpoints

    async def _send(
        self, merchant_id: str, update: str, argument: Any, result_type: type[Endpoint]
    ) -> Endpoint:
        handle = self.client.get_workflow_handle(endpoints_workflow_id(merchant_id))
        try:
            result: Endpoint = await handle.execute_update(
                update, argument, result_type=result_type
            )
        except WorkflowUpdateFailedError as err:
            raise _refused(err) from None
        except RPCError as err:
            if err.status != RPCStatusCode.NOT_FOUND:
                raise
            raise Refused(NO_SUCH_ENDPOINT) from None
        # Every worker reads a merchant's endpoints afresh within this long
        # (EndpointDirectory): from the answer on, every attempt knows of the
        # change, so no event misses a new endpoint, none goes to a deleted or
        # disabled one, and every signature has a rotated secret.
        await asyncio.sleep(ENDPOINTS_CACHE_SECONDS)
        return result


def _refused(err: WorkflowUpdateFailedError) -> Exception:
    if isinstance(err.cause, ApplicationError):
        return Refused(refusal_of(err.cause))
    return err
