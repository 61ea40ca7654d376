"""The real ``payments`` command (.venv/bin/payments, the console script)
against the running stack: what it prints, its exit codes, and ``listen``
receiving a payment's webhooks, checking their signatures and forwarding
them to a receiver on loopback."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from support import Receiver, serving

from devstack import Stack

pytestmark = pytest.mark.e2e

COMMAND = Path(sys.executable).parent / "payments"


def _env(stack: Stack) -> dict[str, str]:
    return {**os.environ, "PAYMENTS_API_URL": stack.api_url, "PAYMENTS_API_KEY": stack.api_key}


async def payments(stack: Stack, *args: str) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        *args,
        env=_env(stack),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(process.communicate(), 90)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def as_json(stack: Stack, *args: str) -> Any:
    code, out, err = await payments(stack, *args, "--json")
    assert code == 0, err
    return json.loads(out)


async def test_pay_and_wait_prints_the_outcome(stack: Stack) -> None:
    code, out, _ = await payments(stack, "pay", "--amount", "1999", "--wait")
    assert code == 0
    assert "succeeded" in out and "19.99 USD" in out
    paid = await as_json(stack, "pay", "--amount", "1999", "--wait")
    assert (paid["status"], paid["amount"], paid["amount_captured"]) == ("succeeded", 1999, 1999)
    shown = await as_json(stack, "show", paid["id"])
    assert shown["id"] == paid["id"]
    events = await as_json(stack, "events", paid["id"])
    assert [e["type"] for e in events["data"]] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]
    listed = await as_json(stack, "list", "--limit", "5")
    assert paid["id"] in [p["id"] for p in listed["data"]]
    code, out, _ = await payments(stack, "tail", paid["id"])
    assert code == 0
    assert [line.split()[1] for line in out.splitlines()] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]


async def test_pay_with_a_receipt_by_email(stack: Stack) -> None:
    code, out, _ = await payments(
        stack, "pay", "--amount", "1999", "--receipt-email", "cli.user@example.com", "--wait"
    )
    assert code == 0, out
    assert "succeeded" in out and "cli.user@example.com" in out
    [payment_id] = [line.split()[1] for line in out.splitlines() if line.startswith("id ")]
    for _ in range(100):
        events = await as_json(stack, "events", payment_id)
        if "receipt.sent" in [e["type"] for e in events["data"]]:
            break
        await asyncio.sleep(0.1)
    else:
        raise AssertionError(f"no receipt.sent for {payment_id}")
    assert list((stack.data_dir / "mail").glob(f"*{payment_id}*.eml"))
    code, out, _ = await payments(stack, "pay", "--amount", "1999", "--receipt-email", "nope")
    assert code == 1 and "receipt_email" in out + _


async def test_pay_with_3d_secure_prints_where_the_customer_confirms(stack: Stack) -> None:
    code, out, _ = await payments(
        stack, "pay", "--amount", "2500", "--method", "pm_card_threeDSecure2Required", "--wait"
    )
    assert code == 0
    assert "requires_action" in out
    assert f"customer confirms at {stack.simulator_url}/authenticate/authn_" in out


async def test_capture_refund_and_a_refused_cancel(stack: Stack) -> None:
    authorized = await as_json(stack, "pay", "--amount", "5000", "--manual", "--wait")
    assert authorized["status"] == "requires_capture"
    captured = await as_json(stack, "capture", authorized["id"], "--amount", "4000")
    assert (captured["status"], captured["amount_captured"]) == ("succeeded", 4000)
    refund = await as_json(stack, "refund", authorized["id"], "--amount", "500")
    assert (refund["status"], refund["amount"]) == ("succeeded", 500)
    code, out, err = await payments(stack, "cancel", authorized["id"])
    assert code == 1
    assert "409" in err and "payment_not_cancelable" in err
    assert out == ""


async def test_errors_exit_1_and_usage_errors_exit_2(stack: Stack) -> None:
    code, _, err = await payments(stack, "show", "pay_nobody")
    assert code == 1
    assert "no such payment" in err
    assert "Traceback" not in err
    code, _, err = await payments(stack, "pay", "--amount", "lots")
    assert code == 2
    code, _, _ = await payments(stack, "pay")
    assert code == 2
    process = await asyncio.create_subprocess_exec(
        str(COMMAND),
        "list",
        env={**_env(stack), "PAYMENTS_API_URL": "http://127.0.0.1:9"},
        stderr=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    _, unreachable = await process.communicate()
    assert process.returncode == 1
    assert b"cannot reach the API" in unreachable and b"Traceback" not in unreachable


async def test_reconcile_prints_its_report(stack: Stack) -> None:
    report = await as_json(stack, "reconcile", "--lookback", "10m")
    assert report["status"] == "completed"
    assert report["mismatches"] == []


async def test_webhook_endpoints_from_the_command(stack: Stack) -> None:
    made = await as_json(
        stack, "webhooks", "create", "--url", "http://127.0.0.1:9/x", "--events", "payment.captured"
    )
    assert made["secret"].startswith("whsec_")
    listed = await as_json(stack, "webhooks", "list")
    assert made["id"] in [e["id"] for e in listed["data"]]
    rotated = await as_json(stack, "webhooks", "rotate", made["id"])
    assert rotated["secret"] != made["secret"]
    deliveries = await as_json(stack, "webhooks", "deliveries", made["id"])
    assert deliveries["data"] == []
    code, out, _ = await payments(stack, "webhooks", "delete", made["id"])
    assert code == 0 and "deleted" in out
    code, _, err = await payments(stack, "webhooks", "show", made["id"])
    assert code == 1 and "no such webhook endpoint" in err


async def _lines_until(stream: asyncio.StreamReader, want: str, within: float = 30) -> list[str]:
    lines: list[str] = []
    async with asyncio.timeout(within):
        while not lines or want not in lines[-1]:
            line = await stream.readline()
            if not line:
                raise AssertionError(f"the command ended; it said {lines}")
            lines.append(line.decode())
    return lines


async def test_listen_verifies_prints_and_forwards_then_cleans_up(stack: Stack) -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        process = await asyncio.create_subprocess_exec(
            str(COMMAND),
            "listen",
            "--forward-to",
            f"{url}/webhooks",
            env={**_env(stack), "PYTHONUNBUFFERED": "1", "COLUMNS": "200"},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert process.stdout is not None
        try:
            ready = await _lines_until(process.stdout, "Ready")
            endpoint_id = ready[-1].split("(endpoint ")[1].split(")")[0]
            async with httpx.AsyncClient(
                base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.api_key}"}
            ) as http:
                endpoint = (await http.get(f"/v1/webhook_endpoints/{endpoint_id}")).json()
                # Leased: a listen killed outright is removed when the lease lapses.
                assert endpoint["expires_at"] is not None
                payment_id = (await as_json(stack, "pay", "--amount", "1999", "--wait"))["id"]
                seen = await _lines_until(process.stdout, "payment.captured")
                await receiver.wait_for(lambda r: len(r) >= 3)
                process.send_signal(signal.SIGINT)
                rest, _ = await asyncio.wait_for(process.communicate(), 30)
                gone = await http.get(f"/v1/webhook_endpoints/{endpoint_id}")
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
    assert process.returncode == 0
    said = [line for line in seen if payment_id in line]
    assert len(said) == 3 and all("signature ok" in line and "-> 200" in line for line in said)
    forwarded = [r.json() for r in receiver.received if r.json()["payment_id"] == payment_id]
    assert [body["type"] for body in forwarded] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
    ]
    assert all(r.headers["webhook-signature"].startswith("v1,") for r in receiver.received)
    assert f"Removed endpoint {endpoint_id}" in rest.decode()
    assert gone.status_code == 404
