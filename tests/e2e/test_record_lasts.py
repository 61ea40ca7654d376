"""The record lasts (CONTRACT §10), on the stack as `make run` starts it: the
namespace keeps closed payments 30 days, every closed payment is archived, and
once `temporal workflow delete` has removed it from Temporal the API answers
from the archive exactly as before; its Idempotency-Key replays it, never a
second workflow or charge; reconciliation still sees it."""

from __future__ import annotations

import asyncio
import base64
import json
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets
from support import TEMPORAL_CLI, gone_from_temporal, simulator_ledger, without_core_bookkeeping
from temporalio.client import Client

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
DECLINED = {**VISA, "payment_method": "pm_card_chargeDeclined", "customer_id": "cus_archive"}
OPERATOR = {"Authorization": "Bearer sk_test_operator"}


def cli(stack: Stack, *args: str) -> str:
    done = subprocess.run(
        [
            str(TEMPORAL_CLI),
            *args,
            "--address",
            stack.temporal_address,
            "--namespace",
            stack.namespace,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout


async def archived(http: httpx.AsyncClient, payment_id: str) -> dict[str, Any]:
    """The payment once the archiver has written its record: a few seconds on
    this stack, or half a minute more when an earlier test (test_crashes)
    killed the worker in the middle of a pass, which is then retried once its
    heartbeat times out (workflows/archive.py)."""
    for _ in range(900):
        body: dict[str, Any] = (await http.get(f"/v1/payments/{payment_id}")).json()
        if body.get("archived_at"):
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{payment_id} was not archived: {body}")


async def deleted(stack: Stack, temporal: Client, payment_id: str) -> None:
    """`temporal workflow delete`, as an operator (or retention) would, and wait it out."""
    cli(stack, "workflow", "delete", "--workflow-id", payment_id, "--yes")
    await gone_from_temporal(temporal, payment_id)


def payload_encodings(value: Any) -> set[str]:
    """The encodings of every payload (``{"metadata": {"encoding": ...}, "data": ...}``)
    anywhere in a JSON document, Temporal's proto JSON (base64) decoded; but for
    search attributes, which the server indexes and so are plain by design.
    (Core's own bookkeeping in markers is left out first: see
    ``support.without_core_bookkeeping``.)"""
    found: set[str] = set()
    if isinstance(value, dict):
        metadata = value.get("metadata")
        if isinstance(metadata, dict) and "encoding" in metadata:
            found.add(base64.b64decode(metadata["encoding"]).decode())
        for key, item in value.items():
            if key != "searchAttributes":
                found |= payload_encodings(item)
    elif isinstance(value, list):
        for item in value:
            found |= payload_encodings(item)
    return found


def record_file(stack: Stack, payment_id: str) -> Path:
    return stack.archive_dir / "payments" / payment_id[4:6] / f"{payment_id}.json"


def test_make_run_keeps_closed_payments_thirty_days(stack: Stack) -> None:
    described = json.loads(cli(stack, "operator", "namespace", "describe", "--output", "json"))
    assert described["config"]["workflowExecutionRetentionTtl"] == f"{30 * 86400}s"


@dataclass
class Forgotten:
    """Payments that closed, were archived, and then deleted from Temporal."""

    key: dict[str, str]
    declined: dict[str, Any]  # as GET answered before the deletion
    declined_events: dict[str, Any]
    declined_ledger: list[dict[str, Any]]
    refunded: dict[str, Any]
    older: dict[str, Any]  # made just before the declined one
    window: dict[str, str]


@pytest.fixture(scope="module")
async def forgotten(stack: Stack) -> AsyncIterator[Forgotten]:
    """Deleting a closed workflow takes the dev server about half a minute, so
    the payments of this module are made and deleted together, once."""
    start = datetime.now(UTC) - timedelta(seconds=1)
    key = {"Idempotency-Key": f"archive-{datetime.now(UTC).timestamp()}"}
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        # Listed after the declined one, which is newer: its cursor must lead here.
        older = (await http.post("/v1/payments", json=VISA)).json()
        created = await http.post(
            "/v1/payments", json=DECLINED, headers={**key, "Prefer": "wait=10"}
        )
        assert created.status_code == 200, created.text
        assert created.json()["status"] == "failed" and created.json()["archived_at"] is None
        paid = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
        # Refunded in full, a payment's workflow closes at once.
        refund = await http.post(
            f"/v1/payments/{paid['id']}/refunds", headers={"Prefer": "wait=10"}
        )
        assert refund.json()["status"] == "succeeded", refund.text
        declined = await archived(http, created.json()["id"])
        refunded = await archived(http, paid["id"])
        assert refunded["status"] == "refunded"
        events = (await http.get(f"/v1/payments/{declined['id']}/events")).json()
    ledger = await simulator_ledger(stack.simulator_url, declined["id"])
    temporal = await stack.client()
    await asyncio.gather(*(deleted(stack, temporal, p["id"]) for p in (declined, refunded)))
    end = datetime.now(UTC) + timedelta(seconds=1)
    yield Forgotten(
        key=key,
        declined=declined,
        declined_events=events,
        declined_ledger=ledger,
        refunded=refunded,
        older=older,
        window={"start": start.isoformat(), "end": end.isoformat()},
    )


def test_the_record_holds_every_history_still_sealed(stack: Stack, forgotten: Forgotten) -> None:
    path = record_file(stack, forgotten.declined["id"])
    assert path.stat().st_mode & 0o777 == 0o600
    text = path.read_text()
    record = json.loads(text)
    assert record["run_ids"] and len(record["histories"]) == len(record["run_ids"])
    encodings = payload_encodings(without_core_bookkeeping(record))
    assert encodings == {"binary/encrypted"}, encodings
    assert "pm_card_chargeDeclined" not in text and "cus_archive" not in text


async def test_a_deleted_payment_reads_as_before(
    stack: Stack, http: httpx.AsyncClient, forgotten: Forgotten
) -> None:
    payment_id = forgotten.declined["id"]
    after = await http.get(f"/v1/payments/{payment_id}")
    assert after.status_code == 200 and after.json() == forgotten.declined
    events = await http.get(f"/v1/payments/{payment_id}/events")
    assert events.status_code == 200 and events.json() == forgotten.declined_events
    assert [e["type"] for e in events.json()["data"]] == [
        "payment.requested",
        "payment.declined",
        "payment.failed",
    ]
    # Its client secret still opens it; another merchant still cannot see it.
    secret = forgotten.declined["client_secret"]
    async with httpx.AsyncClient(base_url=stack.api_url) as browser:
        read = await browser.get(f"/v1/payments/{payment_id}", params={"client_secret": secret})
    # As the merchant reads it, less what only the merchant sees.
    merchant_only = {"receipt_email"}
    for_the_browser = {k: v for k, v in forgotten.declined.items() if k not in merchant_only}
    assert read.status_code == 200 and read.json() == for_the_browser
    other = await http.get(
        f"/v1/payments/{payment_id}", headers={"Authorization": "Bearer sk_test_other"}
    )
    assert other.status_code == 404


async def test_its_idempotency_key_replays_it(
    stack: Stack, http: httpx.AsyncClient, temporal: Client, forgotten: Forgotten
) -> None:
    payment_id = forgotten.declined["id"]
    replayed = await http.post("/v1/payments", json=DECLINED, headers=forgotten.key)
    assert replayed.status_code == 202, replayed.text
    assert replayed.headers["Idempotent-Replayed"] == "true"
    assert replayed.json() == forgotten.declined
    reused = await http.post(
        "/v1/payments", json={**DECLINED, "amount": 2500}, headers=forgotten.key
    )
    assert reused.status_code == 409 and reused.json()["error"]["type"] == "idempotency_error"
    # No second workflow, nothing more at the gateway.
    assert (await temporal.count_workflows(f"WorkflowId = '{payment_id}'")).count == 0
    assert await simulator_ledger(stack.simulator_url, payment_id) == forgotten.declined_ledger


async def test_it_cannot_be_changed(http: httpx.AsyncClient, forgotten: Forgotten) -> None:
    refund = await http.post(f"/v1/payments/{forgotten.refunded['id']}/refunds", json={})
    assert refund.status_code == 409, refund.text
    assert refund.json()["error"]["code"] == "payment_closed"


async def test_reconciliation_still_sees_it(
    anonymous: httpx.AsyncClient, forgotten: Forgotten
) -> None:
    response = await anonymous.post(
        "/v1/reconciliation/runs", json=forgotten.window, headers=OPERATOR
    )
    assert response.status_code == 200, response.text
    report = response.json()
    # Without the archive, the gateway's capture and refund would belong to
    # "a payment we do not know".
    paid = forgotten.refunded["id"]
    assert [m for m in report["mismatches"] if m["payment_id"] == paid] == []
    assert report["checked"] >= 1


async def test_its_stream_and_socket_send_its_past_and_end(
    stack: Stack, http: httpx.AsyncClient, forgotten: Forgotten
) -> None:
    payment_id = forgotten.declined["id"]
    past = forgotten.declined_events["data"]
    stream = await http.get(f"/v1/payments/{payment_id}/stream")
    assert stream.status_code == 200, stream.text
    sent = [
        json.loads(line.removeprefix("data: "))
        for line in stream.text.splitlines()
        if line.startswith("data: ")
    ]
    assert sent == past
    # Seen it all already: nothing left, and an EventSource stops reconnecting.
    done = await http.get(
        f"/v1/payments/{payment_id}/stream", headers={"Last-Event-ID": str(past[-1]["seq"])}
    )
    assert done.status_code == 204
    url = stack.api_url.replace("http", "ws", 1) + f"/v1/payments/{payment_id}/ws"
    secret = forgotten.declined["client_secret"]
    async with websockets.connect(f"{url}?client_secret={secret}&last_event_id=1") as socket:
        frames = [json.loads(frame) async for frame in socket]
    assert frames == past[1:]
    # Waiting on it answers at once: it is settled for good.
    waited = await http.get(f"/v1/payments/{payment_id}", headers={"Prefer": "wait=30"})
    assert waited.status_code == 200 and waited.json() == forgotten.declined


async def test_lists_show_archived_at_and_page_past_a_forgotten_payment(
    http: httpx.AsyncClient, forgotten: Forgotten
) -> None:
    closed = (await http.post("/v1/payments", json=DECLINED, headers={"Prefer": "wait=10"})).json()
    archived_payment = await archived(http, closed["id"])
    for _ in range(100):  # visibility has it a moment after its workflow
        listed = (await http.get("/v1/payments", params={"limit": 100})).json()["data"]
        if any(p["id"] == closed["id"] for p in listed):
            break
        await asyncio.sleep(0.1)
    [as_listed] = [p for p in listed if p["id"] == closed["id"]]
    assert as_listed["archived_at"] == archived_payment["archived_at"] is not None
    # A cursor that Temporal has forgotten still says where the page goes on.
    older = await http.get(
        "/v1/payments", params={"limit": 100, "starting_after": forgotten.declined["id"]}
    )
    assert older.status_code == 200, older.text
    page = older.json()["data"]
    # The payment made just before the forgotten one comes first, and nothing newer.
    assert page and page[0]["id"] == forgotten.older["id"]
    assert all(p["created_at"] <= forgotten.declined["created_at"] for p in page)
