"""What a new user does after `make run`, over HTTP against the real
processes: pay, watch it succeed, find it in the Temporal UI, capture, cancel
and refund from the API and as operator signals, with the gateway's ledger
agreeing every time."""

from __future__ import annotations

import asyncio
import subprocess
import time
from typing import Any

import httpx
import pytest
from support import found_in_visibility, simulator_ledger
from temporalio.client import Client

from devstack import DB_FILENAME, Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


async def settle(http: httpx.AsyncClient, payment_id: str, *statuses: str) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for _ in range(300):
        body = (await http.get(f"/v1/payments/{payment_id}")).json()
        if body["status"] in statuses:
            return body
        await asyncio.sleep(0.1)
    raise AssertionError(f"{payment_id} stayed {body.get('status')}, wanted {statuses}")


async def ledger(stack: Stack, payment_id: str) -> list[tuple[str, int]]:
    entries = await simulator_ledger(stack.simulator_url, payment_id)
    return [(entry["kind"], entry["amount"]) for entry in entries]


def operator_signal(stack: Stack, payment_id: str, name: str, payload: str) -> None:
    """What an operator types: the Temporal CLI from the wheel."""
    subprocess.run(
        [
            stack.command("temporal")[0],
            "workflow",
            "signal",
            "--address",
            stack.temporal_address,
            "--workflow-id",
            payment_id,
            "--name",
            name,
            "--input",
            payload,
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )


async def test_card_payment_succeeds_and_is_visible_in_temporal(
    stack: Stack, http: httpx.AsyncClient, temporal: Client
) -> None:
    created = await http.post("/v1/payments", json={**VISA, "customer_id": "cus_42"})
    assert created.status_code == 202
    payment = created.json()
    done = await settle(http, payment["id"], "succeeded")
    assert done["amount_captured"] == 1999
    assert await ledger(stack, payment["id"]) == [("authorization", 1999), ("capture", 1999)]
    events = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    assert [e["type"] for e in events] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]

    ui_link = done["links"]["temporal_ui"]
    assert ui_link == f"{stack.temporal_ui_url}/namespaces/default/workflows/{payment['id']}"
    async with httpx.AsyncClient() as browser:
        assert (await browser.get(ui_link)).status_code == 200
    description = await temporal.get_workflow_handle(payment["id"]).describe()
    assert await description.static_summary() == "19.99 USD · pm_card_visa · cus_42"
    # The UI's timeline names each gateway call with its amount: on the fast
    # path, the local activity's marker (a regular activity's scheduled event
    # when the step falls back).
    history = await temporal.get_workflow_handle(payment["id"]).fetch_history()
    sealed = [
        event.user_metadata.summary
        for event in history.events
        if event.HasField("user_metadata")
        and (
            event.HasField("activity_task_scheduled_event_attributes")
            or event.HasField("marker_recorded_event_attributes")
        )
    ]
    # Sealed in history like every payload; the stack's keys open them.
    assert {payload.metadata["encoding"] for payload in sealed} == {b"binary/encrypted"}
    summaries = await temporal.data_converter.decode(sealed, [str, str])
    assert summaries == ["authorize 19.99 USD", "capture 19.99 USD"]
    query = f'WorkflowId = "{payment["id"]}" AND PaymentStatus = "succeeded"'
    assert await found_in_visibility(temporal, query)


async def test_declined_card_fails_with_its_decline_code(http: httpx.AsyncClient) -> None:
    payment = (
        await http.post(
            "/v1/payments",
            json={**VISA, "payment_method": "pm_card_chargeDeclinedInsufficientFunds"},
        )
    ).json()
    failed = await settle(http, payment["id"], "failed")
    assert failed["failure"] == {
        "type": "card_error",
        "code": "card_declined",
        "decline_code": "insufficient_funds",
        "message": failed["failure"]["message"],
    }


async def test_manual_capture_and_refunds_by_api_and_signal(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json={**VISA, "capture_method": "manual"})).json()
    await settle(http, payment["id"], "requires_capture")
    assert (await http.post(f"/v1/payments/{payment['id']}/capture", json={})).status_code == 202
    await settle(http, payment["id"], "succeeded")
    refund = await http.post(f"/v1/payments/{payment['id']}/refunds", json={"amount": 500})
    assert refund.status_code == 202
    await settle(http, payment["id"], "partially_refunded")
    operator_signal(stack, payment["id"], "refund", '{"amount": 100000, "reason": "too much"}')
    operator_signal(stack, payment["id"], "refund", '{"amount": 1499, "reason": "goodwill"}')
    done = await settle(http, payment["id"], "refunded")
    assert done["amount_refunded"] == 1999
    assert await ledger(stack, payment["id"]) == [
        ("authorization", 1999),
        ("capture", 1999),
        ("refund", 500),
        ("refund", 1499),
    ]
    events = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
    assert [e["data"]["code"] for e in events if e["type"] == "refund.failed"] == [
        "amount_too_large"
    ]


async def test_cancel_by_api_and_by_signal(stack: Stack, http: httpx.AsyncClient) -> None:
    manual = {**VISA, "capture_method": "manual"}
    by_api = (await http.post("/v1/payments", json=manual)).json()
    by_signal = (await http.post("/v1/payments", json=manual)).json()
    await settle(http, by_api["id"], "requires_capture")
    await settle(http, by_signal["id"], "requires_capture")
    assert (await http.post(f"/v1/payments/{by_api['id']}/cancel")).status_code == 202
    operator_signal(stack, by_signal["id"], "cancel", '{"reason": "fraud"}')
    for payment in (by_api, by_signal):
        await settle(http, payment["id"], "canceled")
        assert await ledger(stack, payment["id"]) == [("authorization", 1999), ("void", 1999)]


async def test_bad_input_is_refused_and_starts_nothing(
    http: httpx.AsyncClient, temporal: Client
) -> None:
    before = (await temporal.count_workflows()).count
    refused = await http.post("/v1/payments", json={**VISA, "payment_method": "4242424242424242"})
    assert refused.status_code == 422
    assert refused.json()["error"]["code"] == "card_number_refused"
    assert "4242424242424242" not in refused.text
    unknown = await http.post("/v1/payments", json={**VISA, "currency": "xxx"})
    assert unknown.status_code == 422 and unknown.json()["error"]["param"] == "currency"
    await asyncio.sleep(1.0)
    assert (await temporal.count_workflows()).count == before


async def test_a_killed_worker_is_restarted_and_payments_go_on(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    old_pid = stack.pid("worker")
    stack.kill("worker")
    stack.wait_ready("worker", timeout=60)
    assert stack.pid("worker") != old_pid
    payment = (await http.post("/v1/payments", json=VISA)).json()
    await settle(http, payment["id"], "succeeded")
    lines = getattr(stack, "output_lines", [])
    assert any("restart" in line and "worker" in line for line in lines)


async def test_the_dev_server_keeps_its_database_in_wal_mode(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA)).json()
    await settle(http, payment["id"], "succeeded")
    database = stack.data_dir / DB_FILENAME
    # Bytes 18 and 19 of an SQLite file are its write and read format: 2 is WAL.
    with database.open("rb") as header:
        assert header.read(20)[18:20] == b"\x02\x02"
    wal = database.with_name(database.name + "-wal")
    assert wal.exists() and payment["id"].encode() in wal.read_bytes() + database.read_bytes()


def test_the_banner_names_the_simulator_as_the_gateway(stack: Stack) -> None:
    assert stack.process_names == ("temporal", "simulator", "mail", "worker", "api")
    assert f"  Gateway      simulator  {stack.simulator_url}" in stack.banner()
    assert "localstripe" not in stack.banner()


def test_payments_survive_a_restart_of_the_stack(stack: Stack) -> None:
    # Last in this module: it restarts the shared stack on the same data dir.
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as http:
        payment = http.post("/v1/payments", json=VISA).json()
        for _ in range(100):
            if http.get(f"/v1/payments/{payment['id']}").json()["status"] == "succeeded":
                break
            time.sleep(0.1)
    stack.stop()
    stack.start()
    with httpx.Client(base_url=stack.api_url, headers=headers, timeout=30) as http:
        again = http.get(f"/v1/payments/{payment['id']}")
        assert again.status_code == 200 and again.json()["status"] == "succeeded"
