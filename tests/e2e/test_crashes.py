"""Crashes at the worst moment, on the running stack: the worker killed while
the gateway is working on an authorization or a capture, or asked to stop.
Every payment in flight still ends succeeded with one authorization and one
capture in the gateway's ledger."""

from __future__ import annotations

import asyncio
import signal

import httpx
import pytest
from support import simulator_ledger

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


async def charged_once(stack: Stack, http: httpx.AsyncClient, payment_ids: list[str]) -> None:
    for payment_id in payment_ids:
        status = ""
        for _ in range(600):  # up to a minute: retries wait out a heartbeat timeout
            status = (await http.get(f"/v1/payments/{payment_id}")).json()["status"]
            if status == "succeeded":
                break
            await asyncio.sleep(0.1)
        assert status == "succeeded", (payment_id, status)
        ledger = await simulator_ledger(stack.simulator_url, payment_id)
        assert [e["kind"] for e in ledger] == ["authorization", "capture"], ledger


async def kill_worker(stack: Stack, sig: int = signal.SIGKILL) -> None:
    old = stack.pid("worker")
    await asyncio.to_thread(stack.kill, "worker", sig)
    await asyncio.to_thread(stack.wait_ready, "worker", 60)
    assert stack.pid("worker") != old


async def test_worker_killed_during_authorize(
    stack: Stack, http: httpx.AsyncClient, slow_gateway: None
) -> None:
    created = await asyncio.gather(*(http.post("/v1/payments", json=VISA) for _ in range(5)))
    await asyncio.sleep(0.6)  # the authorizations are at the gateway now
    await kill_worker(stack)
    await charged_once(stack, http, [c.json()["id"] for c in created])


async def test_worker_killed_during_capture(
    stack: Stack, http: httpx.AsyncClient, slow_gateway: None
) -> None:
    manual = {**VISA, "capture_method": "manual"}
    created = await asyncio.gather(
        *(http.post("/v1/payments", json=manual, headers={"Prefer": "wait=10"}) for _ in range(5))
    )
    ids = [c.json()["id"] for c in created]
    assert {c.json()["status"] for c in created} == {"requires_capture"}
    await asyncio.gather(*(http.post(f"/v1/payments/{i}/capture") for i in ids))
    await asyncio.sleep(0.6)  # the captures are at the gateway now
    await kill_worker(stack)
    await charged_once(stack, http, ids)


async def test_worker_stopped_gracefully(
    stack: Stack, http: httpx.AsyncClient, slow_gateway: None
) -> None:
    created = await asyncio.gather(*(http.post("/v1/payments", json=VISA) for _ in range(5)))
    await asyncio.sleep(0.6)
    await kill_worker(stack, signal.SIGTERM)
    await charged_once(stack, http, [c.json()["id"] for c in created])
    output = getattr(stack, "output_lines", [])
    assert any("finishing in-flight activities" in line for line in output)
