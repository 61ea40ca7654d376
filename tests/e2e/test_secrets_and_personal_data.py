"""Secrets and personal data on the running stack (CONTRACT §11, §16): a
client secret never reaches a log line whatever spelling of its parameter
name a client uses; an e-mail address as a customer id is refused before
anything starts, so it never becomes a search attribute; and a receipt's
address reaches the customer's mail and the merchant, and nothing else."""

from __future__ import annotations

import asyncio
import json
import uuid

import httpx
import pytest
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from websockets.asyncio.client import connect

from devstack import Stack
from payments.ids import payment_id_for
from payments.names import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}

# Spellings the server decodes to ``client_secret`` (they open the payment), and
# spellings it does not (a stranger's 401), each still somebody's secret in a log.
SAME_PARAMETER = ["client%5Fsecret", "client_secre%74", "%63lient%5fsecret"]
OTHER_CASE = ["CLIENT_SECRET", "Client%5FSecret"]


async def logged(stack: Stack, needles: list[str]) -> list[str]:
    """The stack's output once every needle has appeared in a line of the API's."""
    lines: list[str] = getattr(stack, "output_lines", [])
    for _ in range(100):
        api = [line for line in lines if line.startswith("[api]")]
        if all(any(needle in line for line in api) for needle in needles):
            return list(lines)
        await asyncio.sleep(0.1)
    raise AssertionError(f"the API never logged {needles}")


async def test_a_client_secret_is_never_logged_under_any_spelling(
    stack: Stack, http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    payment = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
    secret = payment["client_secret"]
    path = f"/v1/payments/{payment['id']}"
    for spelling in SAME_PARAMETER:
        # A raw URL: httpx sends the query as written.
        read = await anonymous.get(f"{path}?{spelling}={secret}")
        assert read.status_code == 200, spelling
        assert read.json()["id"] == payment["id"]
    for spelling in OTHER_CASE:
        refused = await anonymous.get(f"{path}?{spelling}={secret}")
        assert refused.status_code == 401, spelling
        assert refused.json()["error"]["code"] == "missing_api_key"
    ws = stack.api_url.replace("http://", "ws://") + f"{path}/ws?client%5Fsecret={secret}"
    async with connect(ws) as socket:
        events = [json.loads(message) async for message in socket]
    assert events[0]["type"] == "payment.requested"

    asked = [f"{path}?{spelling}=" for spelling in SAME_PARAMETER + OTHER_CASE]
    asked.append(f"{path}/ws?client%5Fsecret=")
    lines = await logged(stack, asked)
    assert [line for line in lines if secret in line] == []
    for request in asked:
        assert any(f"{request}[redacted]" in line for line in lines), request


async def test_an_email_address_as_customer_id_is_refused_and_nothing_starts(
    stack: Stack, http: httpx.AsyncClient, temporal: Client
) -> None:
    key = f"email-{uuid.uuid4()}"
    refused = await http.post(
        "/v1/payments",
        json={**VISA, "customer_id": "jane.doe@example.com"},
        headers={"Idempotency-Key": key},
    )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "parameter_invalid",
        "customer_id",
    )
    assert "e-mail address" in error["message"]
    assert "jane.doe" not in refused.text
    with pytest.raises(RPCError) as missing:
        await temporal.get_workflow_handle(payment_id_for("demo", key)).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND
    # The same key with a reference instead is a payment like any other.
    accepted = await http.post(
        "/v1/payments", json={**VISA, "customer_id": "cus_jane"}, headers={"Idempotency-Key": key}
    )
    assert accepted.status_code == 202
    # Filtering by one only queries, so it still answers (with nothing).
    listed = await http.get("/v1/payments", params={"customer_id": "jane.doe@example.com"})
    assert listed.status_code == 200
    assert listed.json()["data"] == []


async def test_a_receipt_address_reaches_the_mail_and_the_merchant_only(
    stack: Stack, http: httpx.AsyncClient, anonymous: httpx.AsyncClient, temporal: Client
) -> None:
    address = f"ada.{uuid.uuid4().hex[:8]}@example.com"
    body = {**VISA, "receipt_email": address, "description": "Order 1815"}
    created = await http.post("/v1/payments", json=body, headers={"Prefer": "wait=10"})
    assert created.status_code == 200, created.text
    payment = created.json()
    assert (payment["status"], payment["receipt_email"]) == ("succeeded", address)
    events = []
    for _ in range(200):
        events = (await http.get(f"/v1/payments/{payment['id']}/events")).json()["data"]
        if any(e["type"] == "receipt.sent" for e in events):
            break
        await asyncio.sleep(0.1)
    [sent] = [e for e in events if e["type"] == "receipt.sent"]
    # The sink `make run` starts kept it, and said so without the address.
    mail_dir = stack.data_dir / "mail"
    [eml] = [p for p in mail_dir.glob("*.eml") if payment["id"] in p.name]
    text = eml.read_text()
    assert f"To: {address}" in text and sent["data"]["message_id"] in text
    lines: list[str] = getattr(stack, "output_lines", [])
    assert any(line.startswith("[mail]") and eml.name in line for line in lines)

    # A browser holding the client secret does not see the address.
    secret = {"client_secret": payment["client_secret"]}
    by_secret = (await anonymous.get(f"/v1/payments/{payment['id']}", params=secret)).json()
    assert by_secret["id"] == payment["id"] and "receipt_email" not in by_secret
    # Nor in the events, which a client secret reads too: payment.requested omits it.
    for reader, params in ((http, {}), (anonymous, secret)):
        read = await reader.get(f"/v1/payments/{payment['id']}/events", params=params)
        assert read.status_code == 200 and address not in read.text
        assert "receipt_email" not in read.json()["data"][0]["data"]
    # Not in the index, not in the history in the clear, not in any line logged.
    handle = temporal.get_workflow_handle(payment["id"])
    described = await handle.describe()
    indexed = described.raw_description.workflow_execution_info.search_attributes
    assert set(SEARCH_ATTRIBUTES) & set(indexed.indexed_fields) >= {"MerchantId", "PaymentStatus"}
    assert address.encode() not in indexed.SerializeToString()
    raw = (
        await Client(temporal.service_client, namespace=temporal.namespace)
        .get_workflow_handle(payment["id"])
        .fetch_history()
    )
    assert address.split("@")[0].encode() not in b"".join(e.SerializeToString() for e in raw.events)
    assert [line for line in lines if address in line] == []
