"""What waits and streams may hold (CONTRACT §11), on the API served in this
process against the dev server, each test with settings of its own: a client
that leaves ends its wait; the per-payment and per-merchant stream caps, and
slots given back; WebSockets spend the rate limit; streams end after
``PAYMENTS_STREAM_MAX_SECONDS`` and resume.

No worker polls these tests' task queues, so a payment stays ``processing``
for as long as a test needs: a wait on it lasts its whole deadline, and a
stream on it (``follow`` or not) stays open until one side ends it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import websockets
from fastapi import FastAPI
from support import serving, updates_in_history
from temporalio.client import Client
from websockets.asyncio.client import ClientConnection, connect

from api.app import create_app
from api.limits import StreamSlots
from payments.settings import Settings

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
KEY = {"Authorization": "Bearer sk_test_waits"}
OTHER_KEY = {"Authorization": "Bearer sk_test_waits_other"}
# Guards against a hang, not timings: what must end by itself gets this long
# (streams here end after a second, refusals at once).
HANG = 20


@pytest.fixture
async def api(dev_client: Client, task_queue: str) -> AsyncIterator[Callable[..., Any]]:
    """``await api(**settings)``: the app's URL, served until the test ends. Its
    merchants are this test's own; its payments are terminated afterwards."""
    merchants = {"sk_test_waits": f"waits-{uuid.uuid4().hex[:8]}", "sk_test_waits_other": "other"}
    async with contextlib.AsyncExitStack() as served:

        async def start(**overrides: Any) -> tuple[str, FastAPI]:
            settings = Settings(task_queue=task_queue, api_keys=merchants, **overrides)
            app = create_app(settings, client=dev_client)
            url = await served.enter_async_context(serving(app))
            return url, app

        try:
            yield start
        finally:
            query = f"TaskQueue = '{task_queue}' AND ExecutionStatus = 'Running'"
            async for execution in dev_client.list_workflows(query):
                await dev_client.get_workflow_handle(execution.id).terminate("test over")


async def create(url: str, headers: dict[str, str] = KEY) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=url, headers=headers) as http:
        answer = await http.post("/v1/payments", json=VISA)
    assert answer.status_code == 202, answer.text
    payment: dict[str, Any] = answer.json()
    return payment


@contextlib.asynccontextmanager
async def sse(
    url: str, payment: dict[str, Any], *, secret: bool = False, **params: Any
) -> AsyncIterator[httpx.Response]:
    """One event stream on its own connection, as its response (any status)."""
    headers = _key(secret)
    if secret:
        params["client_secret"] = payment["client_secret"]
    async with (
        httpx.AsyncClient(base_url=url, headers=headers, timeout=15) as one,
        one.stream("GET", f"/v1/payments/{payment['id']}/stream", params=params) as response,
    ):
        yield response


def _key(secret: bool) -> dict[str, str]:
    return {} if secret else KEY


def ws_url(url: str, payment: dict[str, Any], *, secret: bool = False, **params: str) -> str:
    if secret:
        params["client_secret"] = payment["client_secret"]
    query = "&".join(f"{name}={value}" for name, value in params.items())
    return url.replace("http://", "ws://") + f"/v1/payments/{payment['id']}/ws?{query}"


async def ws_open(url: str, payment: dict[str, Any], *, secret: bool = False) -> ClientConnection:
    """A WebSocket that holds its slot: the server takes it before the first event."""
    socket = await connect(ws_url(url, payment, secret=secret), additional_headers=_key(secret))
    first = json.loads(await asyncio.wait_for(socket.recv(), HANG))
    assert first["type"] == "payment.requested", first
    return socket


async def close_all(sockets: list[ClientConnection]) -> None:
    for socket in sockets:
        await socket.close()


async def ws_refused(url: str, payment: dict[str, Any], *, secret: bool = False) -> tuple[Any, int]:
    """The error body a refused WebSocket gets, and its close code."""
    address = ws_url(url, payment, secret=secret)
    async with connect(address, additional_headers=_key(secret)) as socket:
        error = json.loads(await asyncio.wait_for(socket.recv(), HANG))
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), HANG)
    assert closed.value.rcvd is not None
    return error, closed.value.rcvd.code


async def eventually(condition: Callable[[], Any], within: float = 10.0) -> None:
    """Until ``condition()`` (maybe awaitable) holds: the server notices a
    client gone on its next read, not at once."""
    deadline = asyncio.get_running_loop().time() + within
    while True:
        held = condition()
        if asyncio.iscoroutine(held):
            held = await held
        if held:
            return
        assert asyncio.get_running_loop().time() < deadline, "never held"
        await asyncio.sleep(0.05)


def slots(app: FastAPI) -> StreamSlots:
    found: StreamSlots = app.state.stream_slots
    return found


def _followers() -> int:
    """This process's tasks that follow a payment's history for a wait."""
    return sum(
        getattr(task.get_coro(), "__qualname__", "").endswith("wait_until.<locals>.follow")
        for task in asyncio.all_tasks()
    )


async def test_a_client_that_leaves_ends_its_wait(api: Any, dev_client: Client) -> None:
    url, _ = await api()
    payment = await create(url)
    path = f"/v1/payments/{payment['id']}"

    async def wait_long() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=60) as one:
            await one.get(
                path,
                params={"client_secret": payment["client_secret"]},
                headers={"Prefer": "wait=30"},
            )

    waiting = [asyncio.create_task(wait_long()) for _ in range(5)]
    await eventually(lambda: _followers() == 5)
    for task in waiting:
        task.cancel()  # the client hangs up
    await asyncio.gather(*waiting, return_exceptions=True)
    # Well before the 30 s are up, nothing of those waits is left here ...
    await eventually(lambda: _followers() == 0)
    # ... nor in the workflow, which never heard of them.
    assert await updates_in_history(dev_client, payment["id"]) == ([], 0)


async def test_the_21st_stream_on_a_payment_is_refused_until_one_closes(api: Any) -> None:
    url, app = await api()  # the defaults: 20 streams a payment
    payment = await create(url)
    async with contextlib.AsyncExitStack() as held:
        streams = [await held.enter_async_context(sse(url, payment)) for _ in range(14)]
        streams.append(await held.enter_async_context(sse(url, payment, secret=True)))
        assert {response.status_code for response in streams} == {200}
        sockets = [await ws_open(url, payment, secret=i % 2 == 0) for i in range(5)]
        held.push_async_callback(close_all, sockets)

        async with sse(url, payment, secret=True) as refused:
            assert refused.status_code == 429
            error = json.loads(await refused.aread())["error"]
            assert (error["type"], error["code"]) == ("rate_limit_error", "too_many_streams")
            assert "payment" in error["message"] and int(refused.headers["retry-after"]) > 0
        error, code = await ws_refused(url, payment)
        assert code == 1013 and error["error"]["code"] == "too_many_streams"

        # One WebSocket and one SSE client leave: two streams fit again.
        await sockets.pop().close()
        await streams[0].aclose()
        await eventually(lambda: slots(app).count(payment["id"]) == 18)
        async with sse(url, payment) as admitted:
            assert admitted.status_code == 200
            again = await ws_open(url, payment)
            await again.close()
    await eventually(lambda: slots(app).count() == 0)


async def test_the_merchant_cap_counts_its_payments_whoever_reads(api: Any) -> None:
    url, app = await api(streams_per_merchant=3)
    first, second, third, fourth = [await create(url) for _ in range(4)]
    theirs = await create(url, OTHER_KEY)
    async with contextlib.AsyncExitStack() as held:
        opened = [
            await held.enter_async_context(sse(url, first)),
            await held.enter_async_context(sse(url, second, secret=True)),
        ]
        socket = await ws_open(url, third, secret=True)
        held.push_async_callback(socket.close)
        assert [response.status_code for response in opened] == [200, 200]

        async with sse(url, fourth, secret=True) as refused:
            assert refused.status_code == 429
            error = json.loads(await refused.aread())["error"]
            assert error["code"] == "too_many_streams" and "merchant" in error["message"]
        error, code = await ws_refused(url, fourth, secret=True)
        assert code == 1013 and error["error"]["type"] == "rate_limit_error"
        # Another merchant's streams are its own.
        async with sse(url, theirs, secret=True) as other:
            assert other.status_code == 200

        await opened[1].aclose()
        await eventually(lambda: slots(app).count() == 2)
        async with sse(url, fourth, secret=True) as admitted:
            assert admitted.status_code == 200


async def test_websockets_spend_the_readers_rate_limit(api: Any) -> None:
    url, _ = await api(rate_limit_burst=3, rate_limit_per_second=0.001)
    payment = await create(url)  # the merchant's bucket; the browser's is the payment's
    for _ in range(3):
        await (await ws_open(url, payment, secret=True)).close()
    error, code = await ws_refused(url, payment, secret=True)
    assert code == 1013
    assert (error["error"]["type"], error["error"]["code"]) == ("rate_limit_error", "rate_limited")
    # The same bucket as a GET with the client secret: it is empty for both.
    async with httpx.AsyncClient(base_url=url) as anonymous:
        read = await anonymous.get(
            f"/v1/payments/{payment['id']}", params={"client_secret": payment["client_secret"]}
        )
    assert read.status_code == 429 and "retry-after" in read.headers
    # The merchant's own bucket still has one left (the create spent one).
    await (await ws_open(url, payment)).close()


async def read_sse(response: httpx.Response) -> tuple[list[str], list[str]]:
    """A stream read until the server ends it: its event ids and its comments."""
    ids: list[str] = []
    comments: list[str] = []
    async with asyncio.timeout(HANG):
        async for line in response.aiter_lines():
            if line.startswith("id: "):
                ids.append(line.removeprefix("id: "))
            elif line.startswith(":"):
                comments.append(line[1:].strip())
    return ids, comments


@pytest.mark.parametrize("follow", ["true", "false"])
async def test_streams_end_after_their_time_and_resume(api: Any, follow: str) -> None:
    url, app = await api(stream_max_seconds=1, stream_keepalive_seconds=0.2)
    payment = await create(url)
    async with sse(url, payment, follow=follow) as response:
        assert response.status_code == 200
        ids, comments = await read_sse(response)  # ends although the payment never settles
    assert len(ids) == 1 and "keep-alive" in comments
    assert comments[-1] == "open too long; reconnect with Last-Event-ID"
    # The reconnect, as an EventSource makes it, sends nothing twice.
    async with (
        httpx.AsyncClient(
            base_url=url, headers={**KEY, "Last-Event-ID": ids[0]}, timeout=15
        ) as one,
        one.stream(
            "GET", f"/v1/payments/{payment['id']}/stream", params={"follow": follow}
        ) as again,
    ):
        assert again.status_code == 200
        resumed, _ = await read_sse(again)
    assert resumed == []

    async with connect(ws_url(url, payment, follow=follow), additional_headers=KEY) as socket:
        first = json.loads(await asyncio.wait_for(socket.recv(), HANG))
        assert first["type"] == "payment.requested"
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await asyncio.wait_for(socket.recv(), HANG)
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1001
    await eventually(lambda: slots(app).count() == 0)
