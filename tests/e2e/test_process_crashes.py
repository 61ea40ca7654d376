"""Processes killed (SIGKILL) at bad moments, on a stack of its own, with
`make run`'s supervisor restarting them: the Temporal dev server with
payments in flight (same SQLite file: nothing lost, one authorization and one
capture each), and the API under open event streams (clients resume with
Last-Event-ID and miss nothing, see nothing twice); and each of the worker,
the API and Temporal with webhook deliveries pending (all of them arrive)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
from standardwebhooks import Webhook
from support import Received, Receiver, serving, simulator_ledger, status_of

from devstack import Stack, StackConfig

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("crash-stack"))
    with Stack(config, output=lambda line: None) as stack:
        yield stack


async def test_temporal_killed_with_payments_in_flight(own_stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {own_stack.api_key}"}
    async with (
        httpx.AsyncClient(base_url=own_stack.api_url, headers=headers, timeout=30) as http,
        httpx.AsyncClient(base_url=own_stack.simulator_url) as simulator,
    ):
        before = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
        assert before["status"] == "succeeded"
        await simulator.put("/_faults", json={"latency_ms": 1000})
        in_flight = [(await http.post("/v1/payments", json=VISA)).json()["id"] for _ in range(3)]
        await asyncio.sleep(0.5)
        await asyncio.to_thread(own_stack.kill, "temporal")
        await asyncio.to_thread(own_stack.wait_ready, "temporal", 90)
        await simulator.delete("/_faults")

        assert await status_of(http, before["id"], "succeeded") == "succeeded"
        for payment_id in in_flight:
            assert await status_of(http, payment_id, "succeeded") == "succeeded"
            kinds = [e["kind"] for e in await simulator_ledger(own_stack.simulator_url, payment_id)]
            assert kinds == ["authorization", "capture"], (payment_id, kinds)
        after = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
        assert after.json()["status"] == "succeeded"


async def test_api_killed_under_open_streams(own_stack: Stack) -> None:
    headers = {"Authorization": f"Bearer {own_stack.api_key}"}
    async with httpx.AsyncClient(base_url=own_stack.api_url, headers=headers, timeout=30) as http:
        manual = {**VISA, "capture_method": "manual"}
        payment = (
            await http.post("/v1/payments", json=manual, headers={"Prefer": "wait=10"})
        ).json()
        path = f"/v1/payments/{payment['id']}/stream"
        seen: list[int] = []
        streaming = asyncio.Event()

        async def read(last: int | None) -> None:
            extra = {"Last-Event-ID": str(last)} if last is not None else {}
            async with http.stream(
                "GET", path, params={"follow": "true"}, headers=extra, timeout=60
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("id: "):
                        seen.append(int(line[4:]))
                        streaming.set()

        first = asyncio.create_task(read(None))
        await asyncio.wait_for(streaming.wait(), 30)
        await asyncio.to_thread(own_stack.kill, "api")
        with pytest.raises(httpx.HTTPError):
            await first  # the connection died with the API
        await asyncio.to_thread(own_stack.wait_ready, "api", 60)
        # Things happen while the client is away, and after it is back.
        await http.post(f"/v1/payments/{payment['id']}/capture", headers={"Prefer": "wait=10"})
        second = asyncio.create_task(read(seen[-1]))
        await http.post(
            f"/v1/payments/{payment['id']}/refunds", json={}, headers={"Prefer": "wait=10"}
        )
        await asyncio.wait_for(second, 60)  # fully refunded: the workflow closes, the stream ends
        logged = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
        assert seen == [event["seq"] for event in logged]  # nothing missed, nothing twice


# -- webhooks: each process killed with deliveries pending ---------------------------


async def _deliveries_survive(own_stack: Stack, process: str, ready_within: float) -> None:
    """A receiver that is down (503) while ``process`` is killed and comes back:
    every event of every payment arrives, in ``seq`` order per payment, signed."""
    receiver = Receiver(lambda _: 503)
    headers = {"Authorization": f"Bearer {own_stack.api_key}"}
    async with (
        serving(receiver) as url,
        httpx.AsyncClient(base_url=own_stack.api_url, headers=headers, timeout=30) as http,
    ):
        made = await http.post("/v1/webhook_endpoints", json={"url": url, "enabled_events": ["*"]})
        assert made.status_code == 201, made.text
        endpoint = made.json()
        paid = [(await http.post("/v1/payments", json=VISA)).json()["id"] for _ in range(3)]
        for payment_id in paid:
            assert await status_of(http, payment_id, "succeeded") == "succeeded"
        await receiver.wait_for(lambda r: len(r) >= 3)  # first attempts refused
        await asyncio.to_thread(own_stack.kill, process)
        receiver.answer = lambda _: 200
        await asyncio.to_thread(own_stack.wait_ready, process, ready_within)

        def all_in(received: list[Received]) -> bool:
            types = {(r.json()["payment_id"], r.json()["type"]) for r in receiver.delivered()}
            return all((p, "payment.captured") in types for p in paid)

        await receiver.wait_for(all_in, within=90)
        await http.delete(f"/v1/webhook_endpoints/{endpoint['id']}")
    for payment_id in paid:
        delivered = [r.json() for r in receiver.delivered() if r.json()["payment_id"] == payment_id]
        seqs = [body["seq"] for body in delivered]
        assert seqs == sorted(set(seqs)), (payment_id, seqs)  # in order, each once delivered
        assert [body["type"] for body in delivered] == [
            "payment.requested",
            "payment.authorized",
            "payment.captured",
        ]
    for request in receiver.delivered():
        Webhook(endpoint["secret"]).verify(request.body, request.headers)


async def test_webhook_deliveries_survive_the_worker_killed(own_stack: Stack) -> None:
    await _deliveries_survive(own_stack, "worker", 60)


async def test_webhook_deliveries_survive_temporal_killed(own_stack: Stack) -> None:
    await _deliveries_survive(own_stack, "temporal", 90)


async def test_webhook_deliveries_survive_the_api_killed(own_stack: Stack) -> None:
    await _deliveries_survive(own_stack, "api", 60)
