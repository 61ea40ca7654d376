"""Push: the payment's events as Server-Sent Events and over a WebSocket.

Both read the workflow history with Temporal's long poll
(``wait_new_event``), so an event reaches the client as soon as the history
has it, with no polling loop of our own. A stream sends the past events
(after ``Last-Event-ID``), then live ones; it ends once the payment has
settled, or with ``follow`` when the workflow closes; it follows
continue-as-new into the next run. A client that goes away cancels the
history poll it held.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from typing import Annotated, TypeVar

from fastapi import APIRouter, Header, Query, WebSocket, WebSocketDisconnect
from fastapi.responses import Response, StreamingResponse
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from api import engine
from api.deps import ClientDep, ReaderDep, SettingsDep, reader_of
from api.errors import ApiError
from api.openapi import PAYMENT_ERRORS, SSE_EVENT, errors
from payments import events
from payments.models import Event
from payments.settings import Settings
from payments.status import PaymentStatus, is_settled

router = APIRouter()
T = TypeVar("T")


_CLOSED = frozenset(
    {
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_FAILED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TIMED_OUT,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_TERMINATED,
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CANCELED,
    }
)


async def _ticking(source: AsyncIterator[T], every: float) -> AsyncIterator[T | None]:
    """``source``'s items, and None whenever ``every`` seconds pass without one.

    The pending read is never cancelled by a tick, only when the consumer stops.
    """
    pending: asyncio.Future[T] | None = None
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(anext(source))
            done, _ = await asyncio.wait({pending}, timeout=every)
            if not done:
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
    client: Client,
    description: engine.Described,
    *,
    after_seq: int = 0,
    follow: bool = False,
    keepalive: float = 15.0,
) -> AsyncIterator[Event | None]:
    """Events with ``seq`` above ``after_seq``, past then live; None for a keep-alive."""
    payment_id = description.payment.id
    status: PaymentStatus = description.payment.status
    info = description.raw.raw_description.workflow_execution_info
    current_run, past_events = description.raw.run_id, info.history_length
    run_id: str | None = info.first_run_id or current_run
    offset = 0
    caught_up = False
    while run_id is not None:
        handle = client.get_workflow_handle(payment_id, run_id=run_id)
        history = handle.fetch_history_events(wait_new_event=True)
        next_run: str | None = None
        async for raw in _ticking(history, keepalive):
            if raw is None:
                yield None
                continue
            event = await events.project_event(
                payment_id, raw, client.data_converter, offset=offset
            )
            if event is not None and event.seq > after_seq:
                yield event
            status = await events.status_after(raw, client.data_converter) or status
            if run_id == current_run and raw.event_id >= past_events:
                caught_up = True
            if caught_up and not follow and is_settled(status):
                return
            next_run = events.continued_as(raw)
            if next_run is not None:
                offset += raw.event_id
                caught_up = caught_up or run_id == current_run
                break
            if raw.event_type in _CLOSED:
                return
        run_id = next_run


def _last_event_id(header: str | None, query: int | None) -> int:
    # A browser's reconnect sends the header; it wins over the URL it reuses.
    if header and re.fullmatch(r"[0-9]{1,18}", header.strip()):
        return int(header.strip())
    return query or 0


async def _nothing_left(
    client: Client, description: engine.Described, after: int, follow: bool
) -> bool:
    """True when the stream would end at once without sending an event: the
    payment settled (or its workflow closed) and the client has seen it all."""
    closed = description.raw.close_time is not None
    if not closed and (follow or not is_settled(description.payment.status)):
        return False
    runs = await engine.run_histories(client, description.payment.id)
    found = await events.project(description.payment.id, runs, client.data_converter)
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
    settings: SettingsDep,
    client: ClientDep,
    reader: ReaderDep,
    follow: bool = False,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
    last_event_id_header: Annotated[
        str | None, Header(alias="Last-Event-ID", max_length=20)
    ] = None,
) -> Response:
    after = _last_event_id(last_event_id_header, last_event_id)
    # An unknown or foreign payment is a plain 404, before the stream starts.
    description = await engine.describe_payment(client, payment_id, reader.merchant_id)
    if after and await _nothing_left(client, description, after, follow):
        # 204 tells an EventSource not to reconnect: there is nothing more to see.
        return Response(status_code=204)

    async def body() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for event in payment_stream(
            client,
            description,
            after_seq=after,
            follow=follow,
            keepalive=settings.stream_keepalive_seconds,
        ):
            yield _sse(event)

    return StreamingResponse(
        body(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.websocket("/v1/payments/{payment_id}/ws")
async def websocket_events(
    websocket: WebSocket,
    payment_id: str,
    follow: bool = False,
    last_event_id: Annotated[int | None, Query(ge=0)] = None,
    client_secret: Annotated[str | None, Query(max_length=200)] = None,
) -> None:
    settings: Settings = websocket.app.state.settings
    client: Client = websocket.app.state.temporal_client
    await websocket.accept()
    try:
        reader = reader_of(websocket, settings, payment_id, client_secret)
        description = await engine.describe_payment(client, payment_id, reader.merchant_id)
    except ApiError as err:
        await websocket.send_text(json.dumps(err.body()))
        await websocket.close(code=1008 if err.status_code in (401, 404) else 1011)
        return

    async def pump() -> None:
        async for event in payment_stream(
            client, description, after_seq=last_event_id or 0, follow=follow
        ):
            if event is not None:
                await websocket.send_text(event.model_dump_json())

    async def until_gone() -> None:
        # The client sends nothing we need; reading is how we learn it left.
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()

    sender, watcher = asyncio.create_task(pump()), asyncio.create_task(until_gone())
    try:
        done, _ = await asyncio.wait({sender, watcher}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (sender, watcher):
            task.cancel()
        for task in (sender, watcher):
            with contextlib.suppress(BaseException):
                await task
    if sender in done and sender.exception() is None:
        with contextlib.suppress(Exception):
            await websocket.close(code=1000)
