"""Callers the API refuses ``401`` are rate-limited too: bad and missing
merchant keys, operator keys and client secrets, over HTTP, the codec and the
WebSocket, each spend from their address's bucket before they are answered.
A merchant's good key from the same address spends from the merchant's own
bucket, so a stranger's flood cannot lock it out."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest
import websockets
from support import serving
from websockets.asyncio.client import connect

from api.app import create_app
from api.errors import RateLimited
from api.limits import RateLimiter
from payments.settings import Settings

SETTINGS = Settings(
    api_keys={"sk_test_good": "good"},
    operator_api_keys=["sk_test_back_office"],
    rate_limit_per_second=0.5,
    rate_limit_burst=3,
)
GOOD = {"Authorization": "Bearer sk_test_good"}
# Past authentication the good key needs Temporal, which these tests have none
# of: a bad body is answered first, proving the key was let through.
BAD_BODY = {"amount": 0, "currency": "usd", "payment_method": "pm_card_visa"}
LIMITED = {
    "type": "rate_limit_error",
    "code": "rate_limited",
    "message": "too many refused requests from this address; retry in 2 s",
    "param": None,
}


@pytest.fixture
def app() -> object:
    app = create_app(SETTINGS)
    app.state.temporal_client = None  # any use of it would fail the test loudly
    return app


@pytest.fixture
async def http(app: object) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


def strangers(http: httpx.AsyncClient) -> list[tuple[str, httpx.Request]]:
    """One of each kind of refused request."""
    return [
        ("no key", http.build_request("GET", "/v1/payments")),
        (
            "bad merchant key",
            http.build_request("GET", "/v1/payments", headers={"Authorization": "Bearer sk_x"}),
        ),
        (
            "bad operator key",
            http.build_request(
                "GET",
                "/v1/reconciliation/runs/r1",
                headers={"Authorization": "Bearer sk_test_good"},
            ),
        ),
        (
            "bad client secret",
            http.build_request("GET", "/v1/payments/pay_1", params={"client_secret": "nope"}),
        ),
        (
            "codec without an operator key",
            http.build_request("POST", "/codec/decode", json={"payloads": []}),
        ),
    ]


async def test_refusals_get_401_until_their_bucket_is_empty_then_429(
    http: httpx.AsyncClient,
) -> None:
    kinds = strangers(http)
    answers = [(what, await http.send(request)) for what, request in kinds]
    # A burst of three, then every kind is limited alike.
    assert [(what, a.status_code) for what, a in answers] == [
        ("no key", 401),
        ("bad merchant key", 401),
        ("bad operator key", 401),
        ("bad client secret", 429),
        ("codec without an operator key", 429),
    ]
    for what, request in kinds:
        limited = await http.send(request)
        assert limited.status_code == 429, what
        assert limited.headers["retry-after"] == "2", what
        assert limited.json() == {"error": LIMITED}, what


async def test_a_good_key_from_the_same_address_is_not_starved(
    http: httpx.AsyncClient, app: object
) -> None:
    for _ in range(10):
        await http.get("/v1/payments", headers={"Authorization": "Bearer sk_wrong"})
    assert (await http.get("/v1/payments")).status_code == 429
    accepted = await http.post("/v1/payments", json=BAD_BODY, headers=GOOD)
    assert accepted.status_code == 422
    # And another address has a bucket of its own.
    elsewhere = httpx.ASGITransport(app=app, client=("198.51.100.9", 40000))  # type: ignore[arg-type]
    async with httpx.AsyncClient(transport=elsewhere, base_url="http://api") as other:
        assert (await other.get("/v1/payments")).status_code == 401


async def test_websocket_refusals_spend_from_the_same_bucket(app: object) -> None:
    answers = []
    async with serving(app, lifespan="off") as url:
        ws = url.replace("http://", "ws://") + "/v1/payments/pay_1/ws?client_secret=nope"
        for _ in range(4):
            async with connect(ws) as socket:
                answers.append(json.loads(await socket.recv())["error"])
                with pytest.raises(websockets.ConnectionClosed):
                    await socket.recv()
    assert [error["code"] for error in answers] == [
        "invalid_client_secret",
        "invalid_client_secret",
        "invalid_client_secret",
        "rate_limited",
    ]
    assert answers[-1]["message"] == LIMITED["message"]


def test_buckets_that_filled_up_again_are_forgotten() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=1.0, burst=1, clock=lambda: now[0], forget_after=2)
    limiter.take("unauthenticated:a")
    limiter.take("unauthenticated:b")
    now[0] = 0.5  # at the limit, but none has filled up yet: all kept, still limited
    limiter.take("unauthenticated:c")
    assert len(limiter) == 3
    with pytest.raises(RateLimited):
        limiter.take("unauthenticated:a")
    now[0] = 100.0
    limiter.take("unauthenticated:d")
    limiter.take("unauthenticated:e")
    # a, b and c filled up again: the same as no bucket, so gone; d was just spent.
    assert len(limiter) == 2
    with pytest.raises(RateLimited):
        limiter.take("unauthenticated:d")
    limiter.take("unauthenticated:a")  # a forgotten caller starts full
