"""The webhook endpoints API on the running stack (CONTRACT §12), over HTTP:
what an endpoint looks like, when its secret is shown, what is refused (and
that a refused request registers nothing), who sees what; and a payment's
events delivered to a receiver on loopback, listed as deliveries."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from standardwebhooks import Webhook
from support import Receiver, serving

from devstack import Stack

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
PATH = "/v1/webhook_endpoints"


@pytest.fixture
async def other(stack: Stack) -> Any:
    """The second merchant of the e2e stack."""
    headers = {"Authorization": "Bearer sk_test_other"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client


async def _ids(http: httpx.AsyncClient) -> list[str]:
    response = await http.get(PATH, params={"limit": 100})
    assert response.status_code == 200
    return [e["id"] for e in response.json()["data"]]


async def test_an_endpoint_is_made_shown_changed_and_removed(http: httpx.AsyncClient) -> None:
    made = await http.post(
        PATH,
        json={
            "url": "http://127.0.0.1:9/hooks",
            "enabled_events": ["payment.captured", "refund.succeeded"],
            "description": "orders",
        },
    )
    assert made.status_code == 201, made.text
    endpoint = made.json()
    assert endpoint["id"].startswith("we_")
    assert endpoint["object"] == "webhook_endpoint"
    assert endpoint["status"] == "enabled"
    assert endpoint["secret"].startswith("whsec_")
    assert made.headers["location"] == f"{PATH}/{endpoint['id']}"
    one = (await http.get(f"{PATH}/{endpoint['id']}")).json()
    # The secret is shown once only.
    assert "secret" not in one
    assert {k: v for k, v in endpoint.items() if k != "secret"} == one
    assert endpoint["id"] in await _ids(http)

    changed = await http.post(
        f"{PATH}/{endpoint['id']}", json={"status": "disabled", "enabled_events": ["*"]}
    )
    assert changed.status_code == 200
    assert changed.json()["status"] == "disabled"
    assert changed.json()["enabled_events"] == ["*"]
    assert changed.json()["description"] == "orders"

    rotated = await http.post(f"{PATH}/{endpoint['id']}/rotate_secret")
    assert rotated.status_code == 200
    assert rotated.json()["secret"].startswith("whsec_")
    assert rotated.json()["secret"] != endpoint["secret"]

    removed = await http.delete(f"{PATH}/{endpoint['id']}")
    assert removed.status_code == 200
    assert removed.json()["deleted"] is True
    gone = await http.get(f"{PATH}/{endpoint['id']}")
    assert gone.status_code == 404
    assert gone.json()["error"]["code"] == "resource_missing"
    assert endpoint["id"] not in await _ids(http)


@pytest.mark.parametrize(
    ("body", "code", "param"),
    [
        ({"url": "ftp://127.0.0.1/x", "enabled_events": ["*"]}, "url_invalid", "url"),
        ({"url": "not a url", "enabled_events": ["*"]}, "url_invalid", "url"),
        (
            {"url": "http://127.0.0.1:9/", "enabled_events": ["payment.shipped"]},
            "parameter_invalid",
            "enabled_events",
        ),
        ({"enabled_events": ["*"]}, "parameter_missing", "url"),
        (
            {"url": "http://127.0.0.1:9/", "enabled_events": ["*"], "colour": "red"},
            "parameter_unknown",
            "colour",
        ),
    ],
)
async def test_a_bad_endpoint_is_refused_and_nothing_is_registered(
    http: httpx.AsyncClient, body: dict[str, Any], code: str, param: str
) -> None:
    before = await _ids(http)
    refused = await http.post(PATH, json=body)
    assert refused.status_code == 422, refused.text
    error = refused.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] == code
    assert error["param"] == param
    assert await _ids(http) == before


async def test_another_merchants_endpoint_does_not_exist_for_you(
    http: httpx.AsyncClient, other: httpx.AsyncClient
) -> None:
    made = (
        await http.post(PATH, json={"url": "http://127.0.0.1:9/", "enabled_events": ["*"]})
    ).json()
    for method, path in [
        ("GET", f"{PATH}/{made['id']}"),
        ("POST", f"{PATH}/{made['id']}/rotate_secret"),
        ("DELETE", f"{PATH}/{made['id']}"),
        ("GET", f"{PATH}/{made['id']}/deliveries"),
    ]:
        answer = await other.request(method, path)
        assert answer.status_code == 404, (method, path)
    assert made["id"] not in await _ids(other)
    assert (await http.get(f"{PATH}/{made['id']}")).status_code == 200
    await http.delete(f"{PATH}/{made['id']}")


async def test_a_payment_is_delivered_and_listed_as_deliveries(http: httpx.AsyncClient) -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        made = (
            await http.post(PATH, json={"url": url, "enabled_events": ["payment.captured"]})
        ).json()
        paid = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
        payment = paid.json()
        [received] = await receiver.wait_for(lambda r: len(r) == 1)
        body = Webhook(made["secret"]).verify(received.body, received.headers)
        deliveries: list[dict[str, Any]] = []
        for _ in range(100):
            listed = await http.get(f"{PATH}/{made['id']}/deliveries")
            deliveries = listed.json()["data"]
            if deliveries and deliveries[0]["status"] == "succeeded":
                break
            await asyncio.sleep(0.1)
        again = await http.post(f"{PATH}/{made['id']}/deliveries/{body['id']}/retry")
        assert again.status_code == 202
        await receiver.wait_for(lambda r: len(r) == 2)
        await http.delete(f"{PATH}/{made['id']}")
    assert body["type"] == "payment.captured"
    assert body["payment_id"] == payment["id"]
    assert body["data"]["object"]["status"] == "succeeded"
    assert body["data"]["object"]["id"] == payment["id"]
    [delivery] = deliveries
    assert delivery["event_id"] == body["id"]
    assert delivery["status"] == "succeeded"
    assert delivery["attempts"] == 1
    assert delivery["last_status_code"] == 200
    assert delivery["payment_id"] == payment["id"]
    assert delivery["type"] == "payment.captured"
    assert delivery["next_attempt_at"] is None
    assert received.body == receiver.received[1].body


async def test_retry_of_an_event_that_is_not_there_is_404(http: httpx.AsyncClient) -> None:
    made = (
        await http.post(PATH, json={"url": "http://127.0.0.1:9/", "enabled_events": ["*"]})
    ).json()
    for event in ("evt_nobody_3", "nonsense"):
        answer = await http.post(f"{PATH}/{made['id']}/deliveries/{event}/retry")
        assert answer.status_code == 404, answer.text
    await http.delete(f"{PATH}/{made['id']}")
