"""Unknown outcomes against the real simulator: dropped replies (committed,
then the connection reset), 503 storms, and answers slower than our gateway
timeout. Whatever the mix, every payment ends with exactly one authorization
and one capture in the gateway's ledger, and its events say how many
attempts each step took."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import httpx
import pytest
from support import simulator_ledger

from devstack import Stack

pytestmark = pytest.mark.e2e

# How long half the replies are lost: long enough for several in a row.
DROPPING_FOR = 10.0

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


async def settled(http: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    # Unlucky runs of faults back off for a while (0.5 s, 1 s, 2 s, ...): allow minutes.
    body: dict[str, Any] = {}
    for _ in range(3):
        response = await http.get(
            f"/v1/payments/{payment_id}", headers={"Prefer": "wait=60"}, timeout=90
        )
        body = response.json()
        if body["status"] != "processing":
            break
    return body


async def pay_many(http: httpx.AsyncClient, count: int) -> list[str]:
    created = await asyncio.gather(*(http.post("/v1/payments", json=VISA) for _ in range(count)))
    return [response.json()["id"] for response in created]


async def assert_charged_once(stack: Stack, http: httpx.AsyncClient, payment_id: str) -> None:
    payment = await settled(http, payment_id)
    assert payment["status"] == "succeeded", payment
    kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment_id)]
    assert kinds == ["authorization", "capture"], (payment_id, kinds)


async def attempts(http: httpx.AsyncClient, payment_id: str) -> list[int]:
    events = (await http.get(f"/v1/payments/{payment_id}/events")).json()["data"]
    return [e["data"]["attempt"] for e in events if "attempt" in e["data"]]


async def test_half_the_replies_dropped(
    stack: Stack, http: httpx.AsyncClient, simulator: httpx.AsyncClient
) -> None:
    await simulator.put("/_faults", json={"drop_reply_rate": 0.5})
    payment_ids = await pay_many(http, 12)
    # Replies lost for a while, then none (as an outage ends): without the end,
    # one call's run of lost replies (8 in a row, 1 in 10 runs) backs off for
    # two minutes, and the suite waits for it.
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(settled(http, p) for p in payment_ids)), DROPPING_FOR
        )
    await simulator.delete("/_faults")
    for payment_id in payment_ids:
        await assert_charged_once(stack, http, payment_id)
    retried = [max(await attempts(http, p)) for p in payment_ids]
    assert max(retried) > 1  # some replies were lost, and the events say so


async def test_a_503_storm_then_recovery(
    stack: Stack, http: httpx.AsyncClient, simulator: httpx.AsyncClient
) -> None:
    await simulator.put("/_faults", json={"error_rate": 1.0})
    payment_ids = await pay_many(http, 5)
    await asyncio.sleep(3)
    for payment_id in payment_ids:
        assert (await http.get(f"/v1/payments/{payment_id}")).json()["status"] == "processing"
        assert await simulator_ledger(stack.simulator_url, payment_id) == []
    await simulator.delete("/_faults")
    for payment_id in payment_ids:
        await assert_charged_once(stack, http, payment_id)
        assert (await attempts(http, payment_id))[0] > 1


async def test_answers_slower_than_our_timeout(
    stack: Stack, http: httpx.AsyncClient, simulator: httpx.AsyncClient
) -> None:
    # The simulator commits, then takes longer than the 2 s the worker waits.
    await simulator.put("/_faults", json={"latency_ms": 2500})
    payment_ids = await pay_many(http, 3)
    await asyncio.sleep(4)
    await simulator.delete("/_faults")
    for payment_id in payment_ids:
        await assert_charged_once(stack, http, payment_id)


async def test_every_fault_at_once(
    stack: Stack, http: httpx.AsyncClient, simulator: httpx.AsyncClient
) -> None:
    await simulator.put(
        "/_faults", json={"error_rate": 0.2, "drop_reply_rate": 0.3, "latency_ms": 50}
    )
    payment_ids = await pay_many(http, 12)
    for payment_id in payment_ids:
        await assert_charged_once(stack, http, payment_id)
