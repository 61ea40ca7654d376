"""Push: the payment's events as Server-Sent Events and over a WebSocket.

Both read the workflow history with Temporal's long poll
(:func:`payments.events.follow_history`), so an event reaches the client as soon
as the history has it, with no polling loop of our own. A stream sends the
past events (after ``Last-Event-ID``), then live ones; it ends once the
payment has settled, or with ``follow`` when the workflow closes; it follows
continue-as-new into the next run. A client that goes away cancels the
history poll it held.

What a stream may hold (CONTRACT §11): each takes a slot
(``PAYMENTS_STREAMS_PER_PAYMENT``, ``PAYMENTS_STREAMS_PER_MERCHANT``) that it
gives back however it ends, and every stream ends after
``PAYMENTS_STREAM_MAX_SECONDS``. A WebSocket spends a request of the caller's
rate limit, as a GET does. Over a cap or the limit, SSE answers ``429``; a
WebSocket gets the same error body as a text frame, then close code 1013.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from api.deps import ReaderDep, ServiceDep, SettingsDep, get_service, reader_of, spend
from api.errors import ApiError, answer
from api.limits import StreamSlot, StreamSlots
from api.openapi import PAYMENT_ERRORS, SSE_EVENT, errors
from payments import events
from payments.models import Event
from payments.refusals import Refused
from payments.service import Described, PaymentService
from payments.status import PaymentStatus, is_settled

router = APIRouter()
T = TypeVar("T")


class StreamExpired(Exception):
    """The stream was open for ``PAYMENTS_STREAM_MAX_SECONDS``: the client reconnects."""


async def _ticking(
    source: AsyncIterator[T], every: float, until: float
) -> AsyncGenerator[T | None, None]:
    """``source``'s items, and None whenever ``every`` seconds pass without one;
    :class:`StreamExpired` once the loop's clock reaches ``until``.

    The pending read is never cancelled by a tick, only when the consumer stops.
    """
    loop = asyncio.get_running_loop()
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            left = until - loop.time()
            done, _ = await asyncio.wait({pending}, timeout=max(0.0, min(every, left)))
            if not done:
                if left <= every:
                    raise StreamExpired
                yield None
                continue
            future, pending = pending, None
            try:
                item = future.result()
            except StopAsyncIteration:
                return
            yield item
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending


async def payment_stream(
    service: PaymentService,
    description: Described,
    *,
    after_seq: int = 0,
    follow: bool = False,
    keepalive: float = 15.0,
    max_seconds: float = 3600.0,
) -> AsyncIterator[Event | None]:
    """Events with ``seq`` above ``after_seq``, past then live; None for a
    keep-alive; :class:`StreamExpired` after ``max_seconds``."""
    payment_id = description.payment.id
    status: PaymentStatus = description.payment.status
    info = description.raw.raw_description.workflow_execution_info
    current_run, past_events = description.raw.run_id, info.history_length
    first_run = info.first_run_id or current_run
    until = asyncio.get_running_loop().time() + max_seconds
    caught_up = False
    history = service.follow(payment_id, first_run)
    converter = service.client.data_converter
    # Closed in this order, the ticker's pending read first, whichever way the stream ends.
    async with (
        contextlib.aclosing(history),
        contextlib.aclosing(_ticking(history, keepalive, until)) as ticks,
    ):
        async for step in ticks:
            if step is None:
                yield None
                continue
            raw = step.event
            event = await events.project_event(payment_id, raw, converter, offset=step.offset)
            if event is not None and event.seq > after_seq:
                yield event
            status = await events.status_after(raw, converter) or status
            # Once past what the history held when the stream began (the
            # current run's last event, at the latest) the rest is live.
            if step.run_id == current_run and raw.event_id >= past_events:
                caught_up = True
            if caught_up and not follow and is_settled(status):
                return


def _last_event_id(header: str | None, query: int | None) -> int:
    # A browser's reconnect sends the header; it wins over the URL it reuses.
    if header and re.fullmatch(r"[0-9]{1,18}", header.strip()):
        return int(header.strip())
    return query or 0


async def _nothing_left(
    service: PaymentService, description: Described, after: int, follow: bool
) -> bool:
    """True when the stream would end at once without sending an event: the
    payment settled (or its workflow closed) and the client has seen it all."""
    closed = description.raw.close_time is not None
    if not closed and (follow or not is_settled(description.payment.status)):
        return False
    runs = await service.run_histories(description.payment.id)
    found = await events.project(description.payment.id, runs, service.client.data_converter)
    return all(event.seq <= after for event in found)


def _sse(event: Event | None) -> str:
    if event is None:
        return ": keep-alive\n\n"
    return f"id: {event.seq}\nevent: {event.type}\ndata: {event.model_dump_json()}\n\n"


@router.get(
    "/v1/payments/{payment_id}/stream",
    tags=["payments"],
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "the payment's events as Server-Sent Events, past then live",
            "content": {"text/event-stream": {"schema": SSE_EVENT}},
        },
        204: {"description": "after `Last-Event-ID` there is nothing left to send"},
        **errors(*PAYMENT_ERRORS),
    },
)
async def stream_events(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    service: ServiceDep,
    reader: ReaderDep,
    follow: bool = False,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20)
    ] = None,
) -> Response:
    after = _last_event_id(last_event_id_header, last_event_id)
    # An unknown or foreign payment is a plain 404, before the stream starts.
    description = await service.describe(payment_id, reader.merchant_id, forgotten_ok=True)
    if description is None:
        # Only the archive holds it (or nobody: 404): closed, so its past is the whole stream.
        past = await service.payment_events(payment_id, reader.merchant_id)
        left = [event for event in past if event.seq > after]
        if not left:
            return Response(status_code=204)
        sent = "retry: 2000\n\n" + "".join(_sse(event) for event in left)
        return Response(sent, media_type="text/event-stream", headers={"Cache-Control": "no-cache"})
    if after and await _nothing_left(service, description, after, follow):
        # 204 tells an EventSource not to reconnect: there is nothing more to see.
        return Response(status_code=204)
    slot = _slots(request.app.state).take(payment_id, description.payment.merchant_id)

    async def body() -> AsyncIterator[str]:
        try:
            yield "retry: 2000\n\n"
            async for event in payment_stream(
                service,
                description,
                after_seq=after,
                follow=follow,
                keepalive=settings.stream_keepalive_seconds,
                max_seconds=settings.stream_max_seconds,
            ):
                yield _sse(event)
        except StreamExpired:
            # An EventSource reconnects by itself, with Last-Event-ID.
            yield ": open too long; reconnect with Last-Event-ID\n\n"

    return _HeldStream(
        body(),
        slot,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


class _HeldStream(StreamingResponse):
    """An event stream that gives its slot back however the response ends,
    also when the client left before its body was ever started."""

    def __init__(self, content: AsyncIterator[str], slot: StreamSlot, **options: Any) -> None:
        super().__init__(content, **options)
        self.slot = slot

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.slot.release()


def _slots(state: Any) -> StreamSlots:
    slots: StreamSlots = state.stream_slots
    return slots


# Close codes: 1008 policy (no such payment, not yours), 1013 try again later
# (rate limit, stream caps), 1011 anything else; after a stream: 1000 when it
# is over, 1001 when it was open too long (reconnect with last_event_id).
def _close_code(err: ApiError) -> int:
    if err.status_code in (401, 404):
        return 1008
    return 1013 if err.status_code == 429 else 1011


@router.websocket("/v1/payments/{payment_id}/ws")
async def websocket_events(
    websocket: WebSocket,
    payment_id: str,
    follow: bool = False,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
    client_secret: Annotated[str | None, Query(max_length=200)] = None,
) -> None:
    service = await get_service(websocket)
    settings = service.settings
    await websocket.accept()
    try:
        reader = reader_of(websocket, settings, payment_id, client_secret)
        # The bucket a GET of this payment by the same reader spends from.
        spend(websocket, reader.bucket(payment_id))
        description = await service.describe(payment_id, reader.merchant_id, forgotten_ok=True)
        if description is None:
            # Only the archive holds it: send its past and close, as a closed payment's stream does.
            past = await service.payment_events(payment_id, reader.merchant_id)
            for event in past:
                if event.seq > (last_event_id or 0):
                    await websocket.send_text(event.model_dump_json())
            await websocket.close(code=1000)
            return
        slot = _slots(websocket.app.state).take(payment_id, description.payment.merchant_id)
    except (ApiError, Refused) as err:
        error = answer(err)
        assert error is not None
        await websocket.send_text(json.dumps(error.body()))
        await websocket.close(code=_close_code(error))
        return
    try:
        await _pump(websocket, service, description, last_event_id or 0, follow)
    finally:
        slot.release()


async def _pump(
    websocket: WebSocket,
    service: PaymentService,
    description: Described,
    after: int,
    follow: bool,
) -> None:
    """Send the events until the stream ends or the client leaves."""

    async def send() -> None:
        async for event in payment_stream(
            service,
            description,
            after_seq=after,
            follow=follow,
            max_seconds=service.settings.stream_max_seconds,
        ):
            if event is not None:
                await websocket.send_text(event.model_dump_json())

    async def until_gone() -> None:
        # The client sends nothing we need; reading is how we learn it left.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    sender, watcher = asyncio.create_task(send()), asyncio.create_task(until_gone())
    try:
        done, _ = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        for task in (sender, watcher):
            with contextlib.suppress(BaseException):
                await task
    if sender not in done:
        return  # the client left
    failed = sender.exception()
    if failed is None or isinstance(failed, StreamExpired):
        with contextlib.suppress(Exception):
            await websocket.close(code=1000 if failed is None else 1001)
