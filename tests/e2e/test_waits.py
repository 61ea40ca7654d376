"""``Prefer: wait`` leaves no work behind (CONTRACT §11), over HTTP against the
running stack: waits that time out, and waits whose client gives up, hold
nothing in the workflow, so the merchant's cancel is accepted however many a
browser sent; and a wait never shows up in the payment's history as an update."""

from __future__ import annotations

import asyncio
import uuid

import httpx
import pytest
from support import simulator_ledger, updates_in_history
from temporalio.client import Client

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
MANUAL = {**VISA, "capture_method": "manual"}


async def test_a_dozen_timed_out_waits_leave_the_cancel_free(
    stack: Stack,
    http: httpx.AsyncClient,
    anonymous: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
    temporal: Client,
) -> None:
    # Slower than the worker's 2 s gateway timeout: authorize is retried, and
    # the payment stays processing until the fault is cleared.
    await simulator.put("/_faults", json={"latency_ms": 5000})
    payment = (await http.post("/v1/payments", json=MANUAL)).json()
    path = f"/v1/payments/{payment['id']}"
    secret = {"client_secret": payment["client_secret"]}
    waited = await asyncio.gather(
        *(anonymous.get(path, params=secret, headers={"Prefer": "wait=1"}) for _ in range(12))
    )
    assert [answer.status_code for answer in waited] == [200] * 12, waited[-1].text
    assert {answer.json()["status"] for answer in waited} == {"processing"}
    assert {answer.headers["retry-after"] for answer in waited} == {"1"}
    # And browsers that give up long before their wait would end.
    for _ in range(4):
        with pytest.raises(httpx.ReadTimeout):
            await anonymous.get(path, params=secret, headers={"Prefer": "wait=30"}, timeout=0.5)

    canceled = await http.post(f"{path}/cancel")
    assert canceled.status_code == 202, canceled.text
    accepted, in_flight = await updates_in_history(temporal, payment["id"])
    assert accepted == ["cancel"] and in_flight == 0

    await simulator.delete("/_faults")
    final = await http.get(path, headers={"Prefer": "wait=30"})
    assert final.status_code == 200 and final.json()["status"] == "canceled"
    kinds = [entry["kind"] for entry in await simulator_ledger(stack.simulator_url, payment["id"])]
    assert "capture" not in kinds and kinds[-1] == "void"


async def test_create_with_wait_answers_as_before_and_sends_no_update(
    http: httpx.AsyncClient, slow_gateway: None, temporal: Client
) -> None:
    headers = {"Prefer": "wait=1", "Idempotency-Key": f"wait-{uuid.uuid4().hex}"}
    first = await http.post("/v1/payments", json=VISA, headers=headers)
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "processing" and first.headers["retry-after"] == "1"
    assert first.headers["preference-applied"] == "wait=1"
    assert "idempotent-replayed" not in first.headers
    payment_id = first.json()["id"]
    # While it runs: another body under the key is refused, the same one waits on it.
    conflict = await http.post("/v1/payments", json={**VISA, "amount": 5}, headers=headers)
    assert conflict.status_code == 409
    assert conflict.json()["error"]["type"] == "idempotency_error"
    again = await http.post("/v1/payments", json=VISA, headers={**headers, "Prefer": "wait=15"})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == payment_id and again.json()["status"] == "succeeded"
    assert again.headers["idempotent-replayed"] == "true"
    assert "retry-after" not in again.headers

    assert await updates_in_history(temporal, payment_id) == ([], 0)


async def test_capture_and_refund_waits_send_only_the_capture_and_the_refund(
    http: httpx.AsyncClient, slow_gateway: None, temporal: Client
) -> None:
    payment = (await http.post("/v1/payments", json=MANUAL, headers={"Prefer": "wait=15"})).json()
    assert payment["status"] == "requires_capture"
    path = f"/v1/payments/{payment['id']}"
    # The gateway takes 1.2 s: this wait runs out first; the retry (same key)
    # is the same capture, and waits for its outcome.
    key = {"Idempotency-Key": f"capture-{uuid.uuid4().hex}"}
    capture = await http.post(f"{path}/capture", headers={**key, "Prefer": "wait=1"})
    assert capture.status_code == 202 and capture.json()["status"] == "requires_capture"
    again = await http.post(f"{path}/capture", headers={**key, "Prefer": "wait=15"})
    assert again.status_code == 200 and again.json()["status"] == "succeeded"
    refund = await http.post(f"{path}/refunds", json={"amount": 500}, headers={"Prefer": "wait=15"})
    assert refund.status_code == 200, refund.text
    assert refund.json()["status"] == "succeeded" and refund.json()["amount"] == 500

    assert await updates_in_history(temporal, payment["id"]) == (["capture", "refund"], 0)
