"""Hostile input, refused before anything runs: oversized and deep bodies,
API keys configured as hashes, a merchant over its rate limit, and query
parameters a route does not take."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi.routing import APIRoute
from temporalio.service import RPCError, RPCStatusCode

from api import routes, streaming
from api.app import create_app
from api.deps import _query_names
from api.errors import RateLimited
from api.limits import MAX_BODY_BYTES, RateLimiter, json_depth
from payments.settings import Settings

KEY = "sk_live_hashed_example"
SETTINGS = Settings(api_keys={"sha256:" + hashlib.sha256(KEY.encode()).hexdigest(): "acme"})


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    # No Temporal behind it: every request here must be refused before it is needed.
    app = create_app(SETTINGS)
    app.state.temporal_client = None  # any use of it would fail the test loudly
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


AUTH = {"Authorization": f"Bearer {KEY}"}


async def test_an_oversized_body_is_413(http: httpx.AsyncClient) -> None:
    big = b'{"description": "' + b"x" * MAX_BODY_BYTES + b'"}'
    response = await http.post("/v1/payments", content=big, headers=AUTH)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"


async def test_an_oversized_streamed_body_is_413(http: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(20):
            yield b" " * 8192  # no Content-Length: the limit counts as it reads

    response = await http.post("/v1/payments", content=chunks(), headers=AUTH)
    assert response.status_code == 413


@pytest.mark.parametrize("depth", [17, 100_000])
async def test_deep_json_is_refused(http: httpx.AsyncClient, depth: int) -> None:
    body = b'{"metadata": ' + b"[" * depth + b"]" * depth + b"}"
    if len(body) > MAX_BODY_BYTES:
        body = b"[" * (MAX_BODY_BYTES // 2 - 1) + b"]" * (MAX_BODY_BYTES // 2 - 1)
    response = await http.post("/v1/payments", content=body, headers=AUTH)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "json_too_deep"


def test_json_depth() -> None:
    assert json_depth({"a": 1}) == 1
    assert json_depth({"a": {"b": [1]}}) == 3
    assert json_depth([[[[[]]]]], limit=2) == 3  # stops counting past the limit


async def test_hashed_api_keys(http: httpx.AsyncClient) -> None:
    # The hash itself is not a key; the key whose hash is configured is.
    digest = "sha256:" + hashlib.sha256(KEY.encode()).hexdigest()
    refused = await http.get("/v1/payments/pay_x", headers={"Authorization": f"Bearer {digest}"})
    assert refused.status_code == 401
    # Past authentication, the request needs Temporal, which this test has none of:
    # a bad body is refused first, proving the key was accepted.
    accepted = await http.post("/v1/payments", content=b"[", headers=AUTH)
    assert accepted.status_code == 400


async def test_a_merchant_over_its_rate_limit_gets_429_and_others_do_not() -> None:
    settings = Settings(
        api_keys={"sk_test_flood": "flood", "sk_test_calm": "calm"},
        rate_limit_per_second=0.5,
        rate_limit_burst=3,
    )
    app = create_app(settings)
    app.state.temporal_client = None  # refused before Temporal, or the test fails loudly
    transport = httpx.ASGITransport(app=app)
    bad = {"amount": 0, "currency": "usd", "payment_method": "pm_card_visa"}
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        flood = {"Authorization": "Bearer sk_test_flood"}
        answers = [(await http.post("/v1/payments", json=bad, headers=flood)) for _ in range(5)]
        calm = await http.post(
            "/v1/payments", json=bad, headers={"Authorization": "Bearer sk_test_calm"}
        )
    assert [a.status_code for a in answers] == [422, 422, 422, 429, 429]
    limited = answers[3]
    assert limited.headers["retry-after"] == "2"
    assert limited.json()["error"] == {
        "type": "rate_limit_error",
        "code": "rate_limited",
        "message": "too many requests for this merchant; retry in 2 s",
        "param": None,
    }
    assert calm.status_code == 422


def test_the_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    limiter = RateLimiter(rate=2.0, burst=2, clock=lambda: now[0])
    limiter.take("m")
    limiter.take("m")
    with pytest.raises(RateLimited) as refused:
        limiter.take("m")
    assert refused.value.retry_after == 1
    now[0] = 0.5  # one token back
    limiter.take("m")
    with pytest.raises(RateLimited):
        limiter.take("m")
    now[0] = 100.0  # a long quiet spell refills to the burst, no further
    limiter.take("m")
    limiter.take("m")
    with pytest.raises(RateLimited):
        limiter.take("m")


@pytest.mark.parametrize(
    ("status", "code", "http_status"),
    [
        (RPCStatusCode.RESOURCE_EXHAUSTED, "temporal_busy", 503),
        (RPCStatusCode.UNAVAILABLE, "temporal_unavailable", 503),
        (RPCStatusCode.INTERNAL, "internal_error", 500),
    ],
)
async def test_temporal_refusals_become_the_contracts_errors(
    status: RPCStatusCode, code: str, http_status: int
) -> None:
    class Refusing:
        namespace = "default"

        def get_workflow_handle(self, payment_id: str) -> Refusing:
            return self

        async def describe(self) -> None:
            raise RPCError("refused", status, b"")

    app = create_app(Settings(api_keys={KEY: "acme"}))
    app.state.temporal_client = Refusing()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        response = await http.get("/v1/payments/pay_abcdefghijklmnopqrstuvwx", headers=AUTH)
    assert response.status_code == http_status
    assert response.json()["error"]["code"] == code
    assert ("retry-after" in response.headers) == (code == "temporal_busy")


@pytest.mark.parametrize(
    ("method", "url", "unknown"),
    [
        ("GET", "/v1/payments?stauts=failed", "stauts"),
        ("GET", "/v1/payments?status=failed&=false", ""),
        ("POST", "/v1/payments?amount=1999", "amount"),
        ("GET", "/v1/payments/pay_abc/stream?last_event_id=3&resume=1", "resume"),
        ("POST", "/v1/payments/pay_abc/refunds?4242424242424242=1", "[card number]"),
    ],
)
async def test_an_unknown_query_parameter_is_refused(
    http: httpx.AsyncClient, method: str, url: str, unknown: str
) -> None:
    # Refused, not ignored: a typo must not quietly widen a list or change a write.
    response = await http.request(method, url, headers=AUTH, json={} if method == "POST" else None)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert (error["code"], error["param"]) == ("parameter_unknown", unknown)
    assert "4242424242424242" not in response.text


@pytest.mark.parametrize(
    ("method", "path", "taken"),
    [
        ("GET", "/v1/payments", {"status", "customer_id", "limit", "starting_after"}),
        # client_secret comes from the reader dependency, not the route itself.
        ("GET", "/v1/payments/{payment_id}/stream", {"follow", "last_event_id", "client_secret"}),
        ("POST", "/v1/payments/{payment_id}/refunds", set()),
    ],
)
def test_the_parameters_a_route_takes_are_found_in_its_dependencies(
    method: str, path: str, taken: set[str]
) -> None:
    [route] = [
        route
        for route in [*routes.router.routes, *streaming.router.routes]
        if isinstance(route, APIRoute) and route.path == path and method in route.methods
    ]
    assert _query_names(route) == taken
