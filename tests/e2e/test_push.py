"""Push over the running stack: the events as Server-Sent Events and over a
WebSocket, past then live, resumable, authorized by key or client secret."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import websockets
from websockets.asyncio.client import connect

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
WAIT = {"Prefer": "wait=10"}


async def read_sse(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """Each SSE message as {"id", "event", "data"} or {"comment"}."""
    message: dict[str, Any] = {}
    async for line in response.aiter_lines():
        if line == "":
            if message:
                yield message
            message = {}
        elif line.startswith(":"):
            yield {"comment": line[1:].strip()}
        else:
            field, _, value = line.partition(": ")
            message[field] = json.loads(value) if field == "data" else value


async def collect(
    http: httpx.AsyncClient, path: str, **kwargs: Any
) -> tuple[list[dict[str, Any]], list[str]]:
    """Every event of a stream that ends by itself, and its comments."""
    found: list[dict[str, Any]] = []
    comments: list[str] = []
    async with http.stream("GET", path, timeout=60, **kwargs) as response:
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        async for message in read_sse(response):
            if "comment" in message:
                comments.append(message["comment"])
            elif "event" in message:
                found.append(message)
    return found, comments


async def test_stream_sends_past_events_in_order_and_ends(http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    streamed, _ = await collect(http, f"/v1/payments/{payment['id']}/stream")
    logged = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    assert [m["event"] for m in streamed] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]
    assert [int(m["id"]) for m in streamed] == [e["seq"] for e in logged]
    assert [m["data"] for m in streamed] == logged


async def test_a_reconnect_after_the_end_gets_204(http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    logged = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    again = await http.get(
        f"/v1/payments/{payment['id']}/stream", headers={"Last-Event-ID": str(logged[-1]["seq"])}
    )
    # What tells a browser's EventSource to stop reconnecting.
    assert again.status_code == 204


async def test_last_event_id_resumes_after_it(http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    logged = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    resumed, _ = await collect(
        http,
        f"/v1/payments/{payment['id']}/stream",
        headers={"Last-Event-ID": str(logged[0]["seq"])},
    )
    assert [m["data"] for m in resumed] == logged[1:]


async def test_stream_stays_open_while_the_gateway_works(
    http: httpx.AsyncClient, slow_gateway: None
) -> None:
    payment = (await http.post("/v1/payments", json=VISA)).json()
    assert payment["status"] == "processing"
    streamed, comments = await collect(http, f"/v1/payments/{payment['id']}/stream")
    assert [m["event"] for m in streamed] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]
    assert "keep-alive" in comments  # idle while the gateway took its time


async def test_follow_sees_later_refunds_and_cancels(http: httpx.AsyncClient) -> None:
    manual = {**VISA, "capture_method": "manual"}
    to_cancel = (await http.post("/v1/payments", json=manual, headers=WAIT)).json()
    to_refund = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()

    async def later() -> None:
        await asyncio.sleep(1.0)
        await http.post(f"/v1/payments/{to_cancel['id']}/cancel")
        await http.post(f"/v1/payments/{to_refund['id']}/refunds", json={}, headers=WAIT)

    background = asyncio.create_task(later())
    # Both workflows close (canceled; fully refunded), which ends a followed stream.
    (canceled, _), (refunded, _) = await asyncio.gather(
        collect(http, f"/v1/payments/{to_cancel['id']}/stream", params={"follow": "true"}),
        collect(http, f"/v1/payments/{to_refund['id']}/stream", params={"follow": "true"}),
    )
    await background
    assert [m["event"] for m in canceled][-3:] == [
        "payment.cancel_requested",
        "payment.voided",
        "payment.canceled",
    ]
    assert [m["event"] for m in refunded][-2:] == ["refund.requested", "refund.succeeded"]


async def test_client_secret_opens_the_stream_and_nothing_else(
    stack: Stack, http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    path = f"/v1/payments/{payment['id']}/stream"
    streamed, _ = await collect(anonymous, path, params={"client_secret": payment["client_secret"]})
    assert streamed[-1]["event"] == "payment.captured"
    # The secret never reaches the access log.
    output = getattr(stack, "output_lines", [])
    assert not any(payment["client_secret"] in line for line in output)
    assert any("client_secret=[redacted]" in line for line in output)
    wrong = await anonymous.get(path, params={"client_secret": payment["client_secret"] + "0"})
    assert wrong.status_code == 401
    assert wrong.json()["error"]["code"] == "invalid_client_secret"
    assert (await anonymous.get(path)).status_code == 401
    other = await anonymous.get(path, headers={"Authorization": "Bearer sk_test_other"})
    assert other.status_code == 404


async def test_websocket_sends_the_same_events(stack: Stack, http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    logged = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    ws_url = stack.api_url.replace("http://", "ws://") + f"/v1/payments/{payment['id']}/ws"
    received = []
    async with connect(f"{ws_url}?client_secret={payment['client_secret']}") as socket:
        async for message in socket:
            received.append(json.loads(message))
    assert received == logged
    # By merchant key, resuming after the first event.
    resume_url = f"{ws_url}?last_event_id={logged[0]['seq']}"
    headers = {"Authorization": "Bearer sk_test_demo"}
    async with connect(resume_url, additional_headers=headers) as socket:
        resumed = [json.loads(m) async for m in socket]
    assert resumed == logged[1:]


async def test_websocket_refuses_a_wrong_secret(stack: Stack, http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA)).json()
    ws_url = stack.api_url.replace("http://", "ws://") + f"/v1/payments/{payment['id']}/ws"
    async with connect(f"{ws_url}?client_secret=nope") as socket:
        error = json.loads(await socket.recv())
        with pytest.raises(websockets.ConnectionClosed) as closed:
            await socket.recv()
    assert error["error"]["code"] == "invalid_client_secret"
    assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008


async def test_demo_endpoints_act_only_with_the_payments_demo_token(
    anonymous: httpx.AsyncClient, http: httpx.AsyncClient
) -> None:
    manual = {**VISA, "capture_method": "manual"}
    demo = (await anonymous.post("/demo/payments", json=manual)).json()
    assert demo["status"] == "processing" and demo["client_secret"].startswith(demo["id"])
    refused = await anonymous.post(
        f"/demo/payments/{demo['id']}/capture", params={"demo_token": "pay_x_demo_y"}
    )
    assert refused.status_code == 401
    # Its own client secret does not act either: a client secret only reads.
    read_only = await anonymous.post(
        f"/demo/payments/{demo['id']}/cancel", params={"demo_token": demo["client_secret"]}
    )
    assert read_only.status_code == 401
    assert read_only.json()["error"]["code"] == "invalid_demo_token"
    # Another merchant's payment, even with its own secret, is not the demo's to touch.
    theirs = (
        await anonymous.post(
            "/v1/payments", json=manual, headers={"Authorization": "Bearer sk_test_other"}
        )
    ).json()
    foreign = await anonymous.post(
        f"/demo/payments/{theirs['id']}/cancel", params={"demo_token": theirs["client_secret"]}
    )
    assert foreign.status_code == 401
    # The demo token acts, and only on the payment it was made for.
    other_demo = (await anonymous.post("/demo/payments", json=manual)).json()
    crossed = await anonymous.post(
        f"/demo/payments/{other_demo['id']}/cancel", params={"demo_token": demo["demo_token"]}
    )
    assert crossed.status_code == 401
    canceled = await anonymous.post(
        f"/demo/payments/{demo['id']}/cancel", params={"demo_token": demo["demo_token"]}
    )
    assert canceled.status_code == 202, canceled.text
    bad = await anonymous.post(
        "/demo/payments", json={**VISA, "payment_method": "4242424242424242"}
    )
    assert bad.status_code == 422 and "4242424242424242" not in bad.text
