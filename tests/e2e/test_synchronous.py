"""The synchronous option (``Prefer: wait=N``) and polling done right, over
HTTP against the running stack: one call returns the settled payment, a slow
gateway gets a 202 instead, and pollers get ETags and 304s."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support import simulator_ledger

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
WAIT = {"Prefer": "wait=10"}


@pytest.mark.parametrize(
    ("body", "status", "decline_code"),
    [
        (VISA, "succeeded", None),
        ({**VISA, "payment_method": "pm_card_chargeDeclined"}, "failed", "generic_decline"),
        ({**VISA, "capture_method": "manual"}, "requires_capture", None),
    ],
)
async def test_prefer_wait_returns_the_settled_payment(
    http: httpx.AsyncClient, body: dict[str, object], status: str, decline_code: str | None
) -> None:
    response = await http.post("/v1/payments", json=body, headers=WAIT)
    assert response.status_code == 200, response.text
    assert response.headers["preference-applied"] == "wait=10"
    payment = response.json()
    assert payment["status"] == status
    if decline_code:
        assert payment["failure"]["decline_code"] == decline_code


async def test_a_slow_gateway_answers_202_then_settles(
    http: httpx.AsyncClient, slow_gateway: None
) -> None:
    response = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=1"})
    assert response.status_code == 202
    assert response.json()["status"] == "processing"
    assert response.headers["retry-after"] == "1"
    payment_id = response.json()["id"]
    settled = await http.get(f"/v1/payments/{payment_id}", headers={"Prefer": "wait=15"})
    assert settled.status_code == 200 and settled.json()["status"] == "succeeded"


async def test_repeats_with_one_key_wait_on_one_payment(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    headers = {**WAIT, "Idempotency-Key": "sync-order-9"}
    answers = await asyncio.gather(
        *(http.post("/v1/payments", json=VISA, headers=headers) for _ in range(5))
    )
    assert {a.status_code for a in answers} == {200}
    assert len({a.json()["id"] for a in answers}) == 1
    assert {a.json()["status"] for a in answers} == {"succeeded"}
    assert sum(a.headers.get("idempotent-replayed") == "true" for a in answers) == 4
    payment_id = answers[0].json()["id"]
    kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment_id)]
    assert kinds == ["authorization", "capture"]
    conflict = await http.post("/v1/payments", json={**VISA, "amount": 5}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_error"


async def test_capture_refund_and_cancel_can_wait(http: httpx.AsyncClient) -> None:
    manual = {**VISA, "capture_method": "manual"}
    payment = (await http.post("/v1/payments", json=manual, headers=WAIT)).json()
    captured = await http.post(f"/v1/payments/{payment['id']}/capture", headers=WAIT)
    assert captured.status_code == 200 and captured.json()["status"] == "succeeded"
    refund = await http.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 100}, headers=WAIT
    )
    assert refund.status_code == 200 and refund.json()["status"] == "succeeded"

    other = (await http.post("/v1/payments", json=manual, headers=WAIT)).json()
    canceled = await http.post(f"/v1/payments/{other['id']}/cancel", headers=WAIT)
    assert canceled.status_code == 200 and canceled.json()["status"] == "canceled"


async def test_etag_and_not_modified(http: httpx.AsyncClient) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers=WAIT)).json()
    first = await http.get(f"/v1/payments/{payment['id']}")
    etag = first.headers["etag"]
    unchanged = await http.get(f"/v1/payments/{payment['id']}", headers={"If-None-Match": etag})
    assert unchanged.status_code == 304 and unchanged.content == b""
    await http.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 5}, headers=WAIT)
    changed = await http.get(f"/v1/payments/{payment['id']}", headers={"If-None-Match": etag})
    assert changed.status_code == 200 and changed.headers["etag"] != etag


# The last: a superscript two, a "digit" to str.isdigit but not to int().
@pytest.mark.parametrize("prefer", ["wait=soon", "wait=-1", "wait=1.5", b"wait=\xb2"])
async def test_a_malformed_prefer_is_refused(http: httpx.AsyncClient, prefer: str | bytes) -> None:
    response = await http.post("/v1/payments", json=VISA, headers={"Prefer": prefer})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_prefer_header"


async def test_wait_is_capped_at_sixty_seconds(http: httpx.AsyncClient) -> None:
    response = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=600"})
    assert response.headers["preference-applied"] == "wait=60"
