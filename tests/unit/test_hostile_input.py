"""Hostile input, refused before anything runs: oversized and deep bodies,
and API keys configured as hashes."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest

from api.app import create_app
from api.limits import MAX_BODY_BYTES, json_depth
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
