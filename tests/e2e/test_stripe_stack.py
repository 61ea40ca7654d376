"""The whole stack on the Stripe adapter against localstripe, as
`PAYMENTS_GATEWAY=stripe PAYMENTS_STRIPE_API_BASE=… make run` runs it:
payments, captures, cancels and refunds, each with exactly one PaymentIntent
on the Stripe side."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from devstack import Stack, StackConfig

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
WAIT = {"Prefer": "wait=20"}
STRIPE_KEY = "sk_test_stack"


@pytest.fixture(scope="module")
def stripe_stack(localstripe: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PAYMENTS_GATEWAY": "stripe",
        "PAYMENTS_STRIPE_API_BASE": localstripe,
        "PAYMENTS_STRIPE_API_KEY": STRIPE_KEY,
    }
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("stripe-stack"))
    with Stack(config, env=env, output=lambda line: None) as stack:
        yield stack


@pytest.fixture
async def api(stripe_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stripe_stack.api_key}"}
    async with httpx.AsyncClient(
        base_url=stripe_stack.api_url, headers=headers, timeout=60
    ) as client:
        yield client


async def payment_intents(localstripe: str, payment_id: str) -> list[dict[str, Any]]:
    """The PaymentIntents localstripe holds for one of our payments."""
    async with httpx.AsyncClient(
        base_url=localstripe, headers={"Authorization": f"Bearer {STRIPE_KEY}"}
    ) as stripe:
        listed = (await stripe.get("/v1/payment_intents", params={"limit": 100})).json()
    return [
        intent
        for intent in listed["data"]
        if (intent.get("metadata") or {}).get("payment_id") == payment_id
    ]


async def test_pay_capture_refund_and_cancel_on_stripe(
    api: httpx.AsyncClient, localstripe: str
) -> None:
    paid = (await api.post("/v1/payments", json=VISA, headers=WAIT)).json()
    assert paid["status"] == "succeeded", paid
    refund = await api.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 500}, headers=WAIT
    )
    assert refund.json()["status"] == "succeeded"

    manual = {**VISA, "capture_method": "manual"}
    to_capture = (await api.post("/v1/payments", json=manual, headers=WAIT)).json()
    assert to_capture["status"] == "requires_capture"
    captured = await api.post(
        f"/v1/payments/{to_capture['id']}/capture", json={"amount": 1500}, headers=WAIT
    )
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_captured"] == 1500

    to_cancel = (await api.post("/v1/payments", json=manual, headers=WAIT)).json()
    canceled = await api.post(f"/v1/payments/{to_cancel['id']}/cancel", headers=WAIT)
    assert canceled.json()["status"] == "canceled"

    expected = {paid["id"]: "succeeded", to_capture["id"]: "succeeded", to_cancel["id"]: "canceled"}
    for payment_id, status in expected.items():
        intents = await payment_intents(localstripe, payment_id)
        assert len(intents) == 1, (payment_id, intents)
        assert intents[0]["status"] == status


async def test_decline_on_stripe(api: httpx.AsyncClient, localstripe: str) -> None:
    # localstripe declines only this payment method (see the conformance suite).
    body = {**VISA, "payment_method": "pm_card_chargeCustomerFail"}
    failed = (await api.post("/v1/payments", json=body, headers=WAIT)).json()
    assert failed["status"] == "failed"
    assert failed["failure"]["type"] == "card_error"
    assert len(await payment_intents(localstripe, failed["id"])) == 1


async def test_reconciliation_on_stripe_finds_nothing_wrong(
    api: httpx.AsyncClient, stripe_stack: Stack
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    paid = (await api.post("/v1/payments", json=VISA, headers=WAIT)).json()
    await api.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 100}, headers=WAIT)
    operator = {"Authorization": "Bearer sk_test_operator"}
    window = {
        "start": start.isoformat(),
        "end": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }
    run = await api.post("/v1/reconciliation/runs", json=window, headers=operator)
    assert run.status_code == 200, run.text
    report = run.json()
    assert report["checked"] >= 1
    assert report["mismatches"] == []
