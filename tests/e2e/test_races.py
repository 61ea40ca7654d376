"""Races on the running stack: many identical creates at once, and refunds
that together ask for more than was captured."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from support import simulator_ledger

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


async def test_thirty_concurrent_creates_with_one_key(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "race-order-30"}
    answers = await asyncio.gather(
        *(http.post("/v1/payments", json=VISA, headers=headers) for _ in range(30))
    )
    assert all(a.status_code < 500 for a in answers), [a.status_code for a in answers]
    assert {a.status_code for a in answers} == {202}
    ids = {a.json()["id"] for a in answers}
    assert len(ids) == 1
    payment_id = ids.pop()
    await http.get(f"/v1/payments/{payment_id}", headers={"Prefer": "wait=10"})
    kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment_id)]
    assert kinds == ["authorization", "capture"]


async def test_concurrent_refunds_never_exceed_the_capture(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
    # Eight refunds of 500 against 1999 captured: at most three can be honoured.
    answers = await asyncio.gather(
        *(
            http.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 500})
            for _ in range(8)
        )
    )
    codes = sorted(a.status_code for a in answers)
    assert codes == [202, 202, 202, 409, 409, 409, 409, 409], codes
    losers = [a.json()["error"]["code"] for a in answers if a.status_code == 409]
    assert set(losers) == {"amount_too_large"}
    done = await http.get(f"/v1/payments/{payment['id']}", headers={"Prefer": "wait=10"})
    for _ in range(100):
        done = await http.get(f"/v1/payments/{payment['id']}")
        if done.json()["amount_refunded"] == 1500:
            break
        await asyncio.sleep(0.1)
    assert done.json()["amount_refunded"] == 1500
    ledger = await simulator_ledger(stack.simulator_url, payment["id"])
    assert sum(e["amount"] for e in ledger if e["kind"] == "refund") == 1500


async def test_a_retried_capture_with_its_key_gets_the_first_answer(
    stack: Stack, http: httpx.AsyncClient, slow_gateway: None
) -> None:
    manual = {**VISA, "capture_method": "manual"}
    payment = (await http.post("/v1/payments", json=manual, headers={"Prefer": "wait=10"})).json()
    assert payment["status"] == "requires_capture"
    path = f"/v1/payments/{payment['id']}/capture"
    key = {"Idempotency-Key": "capture-order-77"}
    # The client gave up waiting and asks again while the capture is in flight.
    first, retried = await asyncio.gather(
        http.post(path, headers=key), http.post(path, headers=key)
    )
    assert (first.status_code, retried.status_code) == (202, 202)
    assert retried.json()["id"] == payment["id"]
    # Without the key, a second capture is a second request: refused, not doubled.
    another = await http.post(path)
    assert another.status_code == 409
    assert another.json()["error"]["code"] == "payment_not_capturable"
    for _ in range(100):
        done = (await http.get(f"/v1/payments/{payment['id']}")).json()
        if done["status"] != "requires_capture":
            break
        await asyncio.sleep(0.1)
    assert done["status"] == "succeeded"
    kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment["id"])]
    assert kinds == ["authorization", "capture"]
