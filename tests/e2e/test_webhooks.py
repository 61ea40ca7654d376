"""Inbound Stripe webhooks on the running stack: a signed event reaches the
payment's event log once, however often it is delivered; an unsigned, badly
signed or stale one is refused and changes nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from support import stripe_event, stripe_signature

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
PATH = "/v1/gateway/webhooks/stripe"


async def gateway_events(http: httpx.AsyncClient, payment_id: str) -> list[dict[str, Any]]:
    log = (await http.get(f"/v1/payments/{payment_id}/events")).json()["data"]
    return [e for e in log if e["type"] == "payment.gateway_event"]


async def recorded_within(
    http: httpx.AsyncClient, payment_id: str, seconds: float
) -> list[dict[str, Any]]:
    """The gateway events once any is recorded, and the signals still queued
    behind it have had their turn too."""
    deadline = time.monotonic() + seconds
    while not await gateway_events(http, payment_id):
        assert time.monotonic() < deadline, "no gateway event was recorded"
        await asyncio.sleep(0.1)
    await asyncio.sleep(1.0)
    return await gateway_events(http, payment_id)


async def test_a_signed_event_is_recorded_once(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
    body = stripe_event("evt_once", payment["id"])
    for _ in range(3):  # Stripe retries; a replay must not be a second event
        response = await anonymous.post(PATH, content=body, headers=stripe_signature(body))
        assert response.status_code == 200 and response.json()["delivered"] is True
    # Delivered is a signal sent: the workflow records it when its worker next runs.
    recorded = await recorded_within(http, payment["id"], seconds=15)
    assert [(e["data"]["event_id"], e["data"]["type"]) for e in recorded] == [
        ("evt_once", "payment_intent.succeeded")
    ]


async def test_bad_signatures_change_nothing(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
    body = stripe_event("evt_forged", payment["id"])
    attempts = [
        ({}, "signature_missing"),
        (stripe_signature(body, secret="whsec_guess"), "signature_invalid"),
        (stripe_signature(body, at=int(time.time()) - 3600), "signature_stale"),
        (stripe_signature(b"something else"), "signature_invalid"),
    ]
    for headers, code in attempts:
        response = await anonymous.post(PATH, content=body, headers=headers)
        assert response.status_code == 400
        assert response.json()["error"]["code"] == code
    assert await gateway_events(http, payment["id"]) == []


async def test_events_for_payments_we_do_not_know_are_acknowledged(
    anonymous: httpx.AsyncClient,
) -> None:
    body = stripe_event("evt_stray", "pay_nosuchpayment")
    response = await anonymous.post(PATH, content=body, headers=stripe_signature(body))
    assert response.status_code == 200 and response.json()["delivered"] is False
