"""3-D Secure on the running stack, as a merchant and its customer use it
(CONTRACT §14): the create answers ``202`` with ``requires_action`` and the
page to send the customer to; the customer approves or fails on the
simulator's challenge page; the simulator's signed webhook wakes the payment,
whose stream carries the outcome; the ledger holds exactly what was decided."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
from support import simulator_ledger, stripe_signature

from devstack import Stack

pytestmark = pytest.mark.e2e

THREE_D_SECURE = {
    "amount": 2500,
    "currency": "eur",
    "payment_method": "pm_card_threeDSecure2Required",
    "return_url": "https://shop.example/orders/1001",
}
FORM = {"content-type": "application/x-www-form-urlencoded"}


async def _requires_action(http: httpx.AsyncClient, **changes: Any) -> dict[str, Any]:
    response = await http.post(
        "/v1/payments", json={**THREE_D_SECURE, **changes}, headers={"Prefer": "wait=60"}
    )
    # Not settled, but all the server can do alone: answered once the customer
    # must act (not when the wait is over), so that they can.
    assert response.status_code == 202, response.text
    assert response.headers["preference-applied"] == "wait=60"
    assert response.elapsed.total_seconds() < 30, response.elapsed
    payment: dict[str, Any] = response.json()
    assert payment["status"] == "requires_action"
    return payment


async def _stream(http: httpx.AsyncClient, payment: dict[str, Any]) -> list[dict[str, Any]]:
    """The payment's stream to its end (it ends once the payment settles)."""
    events = []
    async with http.stream("GET", f"/v1/payments/{payment['id']}/stream") as response:
        async for line in response.aiter_lines():
            if line.startswith("data: "):
                events.append(json.loads(line.removeprefix("data: ")))
    return events


def _said_about(stack: Stack, payment_id: str) -> str:
    """What the stack's processes logged about the payment (the simulator's
    webhook tries among them), for a failure's message."""
    lines = getattr(stack, "output_lines", [])
    return "\n".join(line for line in lines if payment_id in line) or "(nothing logged)"


async def test_approve_on_the_challenge_page_then_the_payment_succeeds(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    payment = await _requires_action(http)
    redirect = payment["next_action"]["redirect_to_url"]
    assert payment["next_action"]["type"] == "redirect_to_url"
    assert redirect["return_url"] == THREE_D_SECURE["return_url"]
    assert redirect["url"].startswith(f"{stack.simulator_url}/authenticate/authn_")
    assert await simulator_ledger(stack.simulator_url, payment["id"]) == []

    async with httpx.AsyncClient(timeout=10) as customer:
        page = await customer.get(redirect["url"])
        assert page.status_code == 200 and "Approve" in page.text
        approved = await customer.post(redirect["url"], content="result=approve", headers=FORM)
        assert approved.status_code == 303
        assert approved.headers["location"] == THREE_D_SECURE["return_url"]

    events = await _stream(http, payment)
    types = [event["type"] for event in events]
    assert types[types.index("payment.action_required") :] == [
        "payment.action_required",
        # The simulator's webhook, verified by the API: what woke the payment.
        "payment.gateway_event",
        "payment.authenticated",
        "payment.authorized",
        "payment.captured",
    ], _said_about(stack, payment["id"])
    done = (await http.get(f"/v1/payments/{payment['id']}")).json()
    assert (done["status"], done["amount_captured"], done["next_action"]) == (
        "succeeded",
        2500,
        None,
    )
    ledger = await simulator_ledger(stack.simulator_url, payment["id"])
    assert [entry["kind"] for entry in ledger] == ["authorization", "capture"]


async def test_fail_on_the_challenge_page_fails_the_payment(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    payment = await _requires_action(http, capture_method="manual", return_url=None)
    url = payment["next_action"]["redirect_to_url"]["url"]
    async with httpx.AsyncClient(timeout=10) as customer:
        failed = await customer.post(url, content="result=fail", headers=FORM)
        assert failed.status_code == 200 and "Authentication failed" in failed.text
    events = await _stream(http, payment)
    assert [event["type"] for event in events][-2:] == [
        "payment.authentication_failed",
        "payment.failed",
    ]
    done = (await http.get(f"/v1/payments/{payment['id']}")).json()
    assert done["status"] == "failed" and done["next_action"] is None
    assert done["failure"]["code"] == "authentication_failed"
    assert await simulator_ledger(stack.simulator_url, payment["id"]) == []


async def test_cancel_while_the_customer_authenticates(
    http: httpx.AsyncClient, stack: Stack
) -> None:
    payment = await _requires_action(http)
    canceled = await http.post(
        f"/v1/payments/{payment['id']}/cancel",
        json={"reason": "abandoned checkout"},
        headers={"Prefer": "wait=10"},
    )
    assert canceled.status_code == 200, canceled.text
    assert canceled.json()["status"] == "canceled"
    url = payment["next_action"]["redirect_to_url"]["url"]
    async with httpx.AsyncClient(timeout=10) as customer:
        late = await customer.post(url, content="result=approve", headers=FORM)
    # Too late at the bank too: nothing is authorized for a canceled payment.
    assert late.status_code == 409
    assert await simulator_ledger(stack.simulator_url, payment["id"]) == []


async def test_a_forged_simulator_webhook_is_refused(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    payment = await _requires_action(http)
    body = json.dumps(
        {
            "id": "evt_forged",
            "type": "authentication.succeeded",
            "data": {"object": {"id": "authn_x", "metadata": {"payment_id": payment["id"]}}},
        }
    ).encode()
    response = await anonymous.post(
        "/v1/gateway/webhooks/simulator",
        content=body,
        headers=stripe_signature(body, secret="whsec_guess"),
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "signature_invalid"
    still = (await http.get(f"/v1/payments/{payment['id']}")).json()
    assert still["status"] == "requires_action"
