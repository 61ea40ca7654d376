"""The HTTP API of the running stack: auth, merchant isolation, idempotency,
every validation error, and the contract's error shape, over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from support import simulator_ledger
from temporalio.client import Client

from devstack import Stack

pytestmark = pytest.mark.e2e

DEMO = {"Authorization": "Bearer sk_test_demo"}
OTHER = {"Authorization": "Bearer sk_test_other"}
VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@pytest.fixture
async def api(
    stack: Stack, anonymous: httpx.AsyncClient
) -> AsyncIterator[tuple[httpx.AsyncClient, Stack]]:
    yield anonymous, stack


async def ledger_kinds(stack: Stack, payment_id: str) -> list[str]:
    return [entry["kind"] for entry in await simulator_ledger(stack.simulator_url, payment_id)]


def assert_error(response: httpx.Response, status: int, kind: str, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) >= {"type", "code", "message", "param"}
    assert (error["type"], error["code"]) == (kind, code)
    return dict(error)


async def wait_status(http: httpx.AsyncClient, payment_id: str, status: str) -> dict[str, Any]:
    for _ in range(400):
        body = (await http.get(f"/v1/payments/{payment_id}", headers=DEMO)).json()
        if body["status"] == status:
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} never reached {status}: {body['status']}")


async def count_workflows(client: Client) -> int:
    return (await client.count_workflows("WorkflowType = 'PaymentWorkflow'")).count


async def test_create_read_list_refund_over_http(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    created = await http.post("/v1/payments", json={**VISA, "customer_id": "cus_42"}, headers=DEMO)
    assert created.status_code == 202
    payment = created.json()
    assert payment["status"] == "processing" and payment["object"] == "payment"
    assert created.headers["location"] == f"/v1/payments/{payment['id']}"
    assert payment["links"]["temporal_ui"].endswith(
        f"/namespaces/default/workflows/{payment['id']}"
    )
    assert "merchant_id" not in payment and "authorization_id" not in payment
    done = await wait_status(http, payment["id"], "succeeded")
    assert done["amount_captured"] == 1999

    refund = await http.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 500}, headers=DEMO
    )
    assert refund.status_code == 202
    assert (refund.json()["object"], refund.json()["amount"]) == ("refund", 500)
    over = await http.post(
        f"/v1/payments/{payment['id']}/refunds", json={"amount": 5000}, headers=DEMO
    )
    assert_error(over, 409, "invalid_request_error", "amount_too_large")
    await wait_status(http, payment["id"], "partially_refunded")
    assert await ledger_kinds(stack, payment["id"]) == ["authorization", "capture", "refund"]

    events = (await http.get(f"/v1/payments/{payment['id']}/events", headers=DEMO)).json()["data"]
    assert [e["type"] for e in events] == [
        "payment.requested",
        "payment.authorized",
        "payment.captured",
        "refund.requested",
        "refund.succeeded",
    ]
    listed = (await http.get("/v1/payments", params={"customer_id": "cus_42"}, headers=DEMO)).json()
    assert [p["id"] for p in listed["data"]] == [payment["id"]] and listed["has_more"] is False


async def test_list_is_newest_first_with_cursor_and_filters(
    api: tuple[httpx.AsyncClient, Stack],
) -> None:
    http, _ = api
    ids = []
    for method in ("pm_card_visa", "pm_card_chargeDeclined", "pm_card_visa"):
        response = await http.post(
            "/v1/payments",
            json={**VISA, "payment_method": method, "customer_id": "cus_list"},
            headers=DEMO,
        )
        ids.append(response.json()["id"])
    await wait_status(http, ids[1], "failed")
    await asyncio.sleep(1.5)  # visibility is eventually consistent
    page = (
        await http.get("/v1/payments", params={"customer_id": "cus_list", "limit": 2}, headers=DEMO)
    ).json()
    assert [p["id"] for p in page["data"]] == [ids[2], ids[1]] and page["has_more"] is True
    rest = (
        await http.get(
            "/v1/payments",
            params={"customer_id": "cus_list", "starting_after": ids[1]},
            headers=DEMO,
        )
    ).json()
    assert [p["id"] for p in rest["data"]] == [ids[0]] and rest["has_more"] is False
    failed = (
        await http.get(
            "/v1/payments", params={"customer_id": "cus_list", "status": "failed"}, headers=DEMO
        )
    ).json()
    assert [p["id"] for p in failed["data"]] == [ids[1]]
    assert failed["data"][0]["failure"]["decline_code"] == "generic_decline"
    other = (
        await http.get("/v1/payments", params={"customer_id": "cus_list"}, headers=OTHER)
    ).json()
    assert other["data"] == []


async def test_auth_and_merchant_isolation(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    assert_error(await http.get("/v1/payments"), 401, "authentication_error", "missing_api_key")
    assert_error(
        await http.get("/v1/payments", headers={"Authorization": "Bearer nope"}),
        401,
        "authentication_error",
        "invalid_api_key",
    )
    payment = (await http.post("/v1/payments", json=VISA, headers=DEMO)).json()
    for path in ("", "/events"):
        assert_error(
            await http.get(f"/v1/payments/{payment['id']}{path}", headers=OTHER),
            404,
            "invalid_request_error",
            "resource_missing",
        )
    assert_error(
        await http.post(f"/v1/payments/{payment['id']}/cancel", headers=OTHER),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    # The client secret opens reading this one payment, and nothing else.
    secret = payment["client_secret"]
    by_secret = await http.get(f"/v1/payments/{payment['id']}", params={"client_secret": secret})
    assert by_secret.status_code == 200 and by_secret.json()["id"] == payment["id"]
    assert (
        await http.get(f"/v1/payments/{payment['id']}/events", params={"client_secret": secret})
    ).status_code == 200
    assert_error(
        await http.get(f"/v1/payments/{payment['id']}", params={"client_secret": secret + "x"}),
        401,
        "authentication_error",
        "invalid_client_secret",
    )
    assert_error(
        await http.post(f"/v1/payments/{payment['id']}/cancel", params={"client_secret": secret}),
        401,
        "authentication_error",
        "missing_api_key",
    )


async def test_idempotent_create(api: tuple[httpx.AsyncClient, Stack], temporal: Client) -> None:
    http, stack = api
    headers = {**DEMO, "Idempotency-Key": "order-1001"}
    responses = await asyncio.gather(
        *(http.post("/v1/payments", json=VISA, headers=headers) for _ in range(20))
    )
    assert all(r.status_code == 202 for r in responses)
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 1
    payment_id = ids.pop()
    await wait_status(http, payment_id, "succeeded")
    assert await ledger_kinds(stack, payment_id) == ["authorization", "capture"]
    replay = await http.post("/v1/payments", json=VISA, headers=headers)
    # Asynchronous unless asked to wait: a replay answers 202 like the original.
    assert replay.status_code == 202 and replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["status"] == "succeeded"
    conflict = await http.post("/v1/payments", json={**VISA, "amount": 2000}, headers=headers)
    assert_error(conflict, 409, "idempotency_error", "idempotency_key_reused")
    # The same key under another merchant is another payment.
    theirs = await http.post(
        "/v1/payments", json=VISA, headers={**OTHER, "Idempotency-Key": "order-1001"}
    )
    assert theirs.json()["id"] != payment_id


@pytest.mark.parametrize(
    ("body", "status", "code", "param"),
    [
        ({**VISA, "amount": 0}, 422, "parameter_invalid", "amount"),
        ({**VISA, "amount": 100_000_000}, 422, "parameter_invalid", "amount"),
        ({**VISA, "amount": 19.99}, 422, "parameter_invalid", "amount"),
        ({**VISA, "amount": "1999"}, 422, "parameter_invalid", "amount"),
        ({**VISA, "currency": "USD"}, 422, "parameter_invalid", "currency"),
        ({**VISA, "currency": "xyz"}, 422, "parameter_invalid", "currency"),
        ({**VISA, "capture_method": "later"}, 422, "parameter_invalid", "capture_method"),
        ({**VISA, "payment_method": "visa"}, 422, "parameter_invalid", "payment_method"),
        ({"amount": 1999, "currency": "usd"}, 422, "parameter_missing", "payment_method"),
        ({**VISA, "colour": "red"}, 422, "parameter_unknown", "colour"),
        ({**VISA, "receipt_email": "jane.doe"}, 422, "parameter_invalid", "receipt_email"),
        ({**VISA, "receipt_email": "jane@localhost"}, 422, "parameter_invalid", "receipt_email"),
        ({**VISA, "receipt_email": "a b@example.com"}, 422, "parameter_invalid", "receipt_email"),
        (
            {**VISA, "receipt_email": "j" * 243 + "@example.com"},
            422,
            "parameter_invalid",
            "receipt_email",
        ),
        ({**VISA, "receipt_email": 42}, 422, "parameter_invalid", "receipt_email"),
        # Not every relay speaks SMTPUTF8: such an address could never be mailed.
        ({**VISA, "receipt_email": "josé@example.com"}, 422, "parameter_invalid", "receipt_email"),
        (
            {**VISA, "metadata": {f"k{i}": "v" for i in range(51)}},
            422,
            "parameter_invalid",
            "metadata",
        ),
        ({**VISA, "metadata": {"k" * 41: "v"}}, 422, "parameter_invalid", "metadata"),
        ({**VISA, "metadata": {"k": "v" * 501}}, 422, "parameter_invalid", "metadata"),
        ({**VISA, "metadata": {"k": 1}}, 422, "parameter_invalid", "metadata.k"),
        (
            {**VISA, "payment_method": "4242424242424242"},
            422,
            "card_number_refused",
            "payment_method",
        ),
        (
            {**VISA, "description": "card 4242 4242 4242 4242 exp 12/30"},
            422,
            "card_number_refused",
            "description",
        ),
        (
            {**VISA, "metadata": {"note": "4000-0566-5566-5556"}},
            422,
            "card_number_refused",
            "metadata.note",
        ),
        (
            {**VISA, "card": {"number": "5555555555554444"}},
            422,
            "card_number_refused",
            "card.number",
        ),
    ],
)
async def test_validation_refuses_and_starts_nothing(
    api: tuple[httpx.AsyncClient, Stack],
    temporal: Client,
    body: dict[str, Any],
    status: int,
    code: str,
    param: str,
) -> None:
    http, _ = api
    before = await count_workflows(temporal)
    response = await http.post("/v1/payments", json=body, headers=DEMO)
    error = assert_error(response, status, "invalid_request_error", code)
    assert error["param"] == param
    for digits in ("4242424242424242", "4242 4242 4242 4242", "5555555555554444", "5556"):
        assert digits not in response.text
    await asyncio.sleep(0.3)
    assert await count_workflows(temporal) == before


async def test_malformed_requests_get_the_error_shape(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    bad_json = await http.post("/v1/payments", content=b"{not json", headers=DEMO)
    assert_error(bad_json, 400, "invalid_request_error", "invalid_json")
    array = await http.post("/v1/payments", json=[1, 2], headers=DEMO)
    assert_error(array, 400, "invalid_request_error", "invalid_json")
    assert_error(
        await http.get("/v1/nowhere", headers=DEMO),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    assert_error(
        await http.delete("/v1/payments", headers=DEMO),
        405,
        "invalid_request_error",
        "method_not_allowed",
    )
    assert_error(
        await http.get("/v1/payments/pay_unknown", headers=DEMO),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    assert_error(
        await http.get("/v1/payments/../../etc", headers=DEMO),
        404,
        "invalid_request_error",
        "resource_missing",
    )
    long_key = {**DEMO, "Idempotency-Key": "k" * 256}
    assert_error(
        await http.post("/v1/payments", json=VISA, headers=long_key),
        422,
        "invalid_request_error",
        "parameter_invalid",
    )
    assert_error(
        await http.get("/v1/payments", params={"limit": 101}, headers=DEMO),
        422,
        "invalid_request_error",
        "parameter_invalid",
    )
    assert_error(
        await http.get("/v1/payments", params={"status": "lost"}, headers=DEMO),
        422,
        "invalid_request_error",
        "parameter_invalid",
    )


async def test_capture_and_cancel_over_http(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, stack = api
    manual = {**VISA, "capture_method": "manual"}
    first = (await http.post("/v1/payments", json=manual, headers=DEMO)).json()
    await wait_status(http, first["id"], "requires_capture")
    captured = await http.post(
        f"/v1/payments/{first['id']}/capture", json={"amount": 1000}, headers=DEMO
    )
    assert captured.status_code == 202
    done = await wait_status(http, first["id"], "succeeded")
    assert done["amount_captured"] == 1000
    assert_error(
        await http.post(f"/v1/payments/{first['id']}/cancel", headers=DEMO),
        409,
        "invalid_request_error",
        "payment_not_cancelable",
    )

    second = (await http.post("/v1/payments", json=manual, headers=DEMO)).json()
    await wait_status(http, second["id"], "requires_capture")
    canceled = await http.post(
        f"/v1/payments/{second['id']}/cancel",
        json={"reason": "requested_by_customer"},
        headers=DEMO,
    )
    assert canceled.status_code == 202
    await wait_status(http, second["id"], "canceled")
    assert await ledger_kinds(stack, second["id"]) == ["authorization", "void"]
    assert_error(
        await http.post(f"/v1/payments/{second['id']}/capture", headers=DEMO),
        409,
        "invalid_request_error",
        "payment_closed",
    )


async def test_healthz(api: tuple[httpx.AsyncClient, Stack]) -> None:
    http, _ = api
    response = await http.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
