"""Money in the gateway's units (issue 11, point 7; CONTRACT §11), on real
servers: payments in ISK and MGA run on the dev server through the Stripe
adapter against localstripe, which holds Stripe's units while our payments,
the adapter's operations and reconciliation hold ISO's; and the API refuses
an amount the configured gateway cannot hold with ``422
amount_not_representable``, starting nothing."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support import MERCHANT, payment_worker, running_stack
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from gateway.stripe_adapter import StripeGateway
from payments.ids import payment_id_for
from payments.models import CapturePayment, CreatePayment, PaymentState, Refund, RefundCommand
from payments.reconciliation import compare
from payments.service import PaymentService
from payments.settings import Settings

STRIPE_KEY = "sk_test_units"

# -- through the Stripe adapter, on localstripe ---------------------------------


@pytest.fixture
async def control(localstripe: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=localstripe, headers={"Authorization": f"Bearer {STRIPE_KEY}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture
async def stripe_worker(
    dev_client: Client, task_queue: str, localstripe: str
) -> AsyncIterator[tuple[Settings, StripeGateway]]:
    settings = Settings(
        gateway="stripe",
        stripe_api_base=localstripe,
        stripe_api_key=STRIPE_KEY,
        task_queue=task_queue,
    )
    gateway = StripeGateway(settings)
    try:
        async with payment_worker(dev_client, settings, gateway):
            yield settings, gateway
    finally:
        await gateway.aclose()


async def _pay(client: Client, settings: Settings, **fields: Any) -> str:
    request = CreatePayment.model_validate({"payment_method": "pm_card_visa", **fields})
    started = await PaymentService(client, settings).start(
        MERCHANT, request, f"units-{uuid.uuid4()}"
    )
    payment_id = started.payment.id
    return payment_id


async def _until(client: Client, payment_id: str, done: Any) -> PaymentState:
    for _ in range(400):
        state = await PaymentService(client, Settings()).get(payment_id, MERCHANT)
        if done(state):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} never got there: {state}")


async def test_isk_in_whole_kronur_at_stripe_and_iso_units_here(
    dev_client: Client,
    stripe_worker: tuple[Settings, StripeGateway],
    control: httpx.AsyncClient,
) -> None:
    settings, gateway = stripe_worker
    start = datetime.now(UTC) - timedelta(seconds=1)
    payment_id = await _pay(dev_client, settings, amount=500, currency="isk")
    state = await _until(dev_client, payment_id, lambda s: s.status == "succeeded")
    refund = await PaymentService(dev_client, Settings()).send(
        payment_id,
        MERCHANT,
        "refund",
        RefundCommand(refund_id=f"re_{uuid.uuid4().hex[:12]}", amount=200),
        result_type=Refund,
    )
    state = await _until(dev_client, payment_id, lambda s: s.refunds[0].status != "pending")
    assert (state.amount, state.amount_captured, state.amount_refunded) == (500, 500, 200)
    assert state.refunds[0].id == refund.id and state.refunds[0].status == "succeeded"

    # Stripe's side: 500 ISK is 50000 there, the refund of 200 ISK 20000.
    intent = (await control.get(f"/v1/payment_intents/{state.authorization_id}")).json()
    assert (intent["amount"], intent["currency"], intent["status"]) == (50000, "isk", "succeeded")
    refunds = (await control.get("/v1/refunds", params={"payment_intent": intent["id"]})).json()[
        "data"
    ]
    assert [r["amount"] for r in refunds] == [20000]

    # What the adapter reports, and so what reconciliation compares: ISO units.
    found = await gateway.find_by_reference(
        payment_id, since=state.created_at, authorization_id=state.authorization_id
    )
    assert [(op.kind, op.amount, op.currency) for op in found] == [
        ("authorization", 500, "isk"),
        ("capture", 500, "isk"),
        ("refund", 200, "isk"),
    ]
    listed = await gateway.list_operations(
        since=start, until=datetime.now(UTC) + timedelta(seconds=1)
    )
    assert sorted((op.kind, op.amount) for op in listed if op.reference == payment_id) == [
        ("authorization", 500),
        ("capture", 500),
        ("refund", 200),
    ]
    assert compare(payment_id, state, found) == []


async def test_mga_in_whole_ariary_at_stripe(
    dev_client: Client,
    stripe_worker: tuple[Settings, StripeGateway],
    control: httpx.AsyncClient,
) -> None:
    """MGA has two decimals in ISO and none at Stripe: 12300 here is 123 there,
    and a partial capture of 12300 out of 24600 captures 123 of 246."""
    settings, gateway = stripe_worker
    paid = await _pay(dev_client, settings, amount=12300, currency="mga")
    state = await _until(dev_client, paid, lambda s: s.status == "succeeded")
    intent = (await control.get(f"/v1/payment_intents/{state.authorization_id}")).json()
    assert (intent["amount"], intent["currency"]) == (123, "mga")
    assert state.amount_captured == 12300

    manual = await _pay(dev_client, settings, amount=24600, currency="mga", capture_method="manual")
    await _until(dev_client, manual, lambda s: s.status == "requires_capture")
    await PaymentService(dev_client, Settings()).send(
        manual,
        MERCHANT,
        "capture",
        CapturePayment(amount=12300),
        result_type=PaymentState,
    )
    state = await _until(dev_client, manual, lambda s: s.status == "succeeded")
    assert (state.amount, state.amount_captured) == (24600, 12300)
    intent = (await control.get(f"/v1/payment_intents/{state.authorization_id}")).json()
    assert intent["amount"] == 246
    # localstripe releases what was not captured as a refund: 123 were captured.
    released = (await control.get("/v1/refunds", params={"payment_intent": intent["id"]})).json()[
        "data"
    ]
    assert [r["amount"] for r in released] == [123]
    found = await gateway.find_by_reference(manual, authorization_id=state.authorization_id)
    assert [(op.kind, op.amount) for op in found] == [("authorization", 24600), ("capture", 12300)]
    assert compare(manual, state, found) == []


# -- the API refuses before anything starts -------------------------------------

API_KEY = "sk_test_units_api"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
DEMO = "demo-units"


def _api(client: Client, gateway: str, task_queue: str) -> httpx.AsyncClient:
    settings = Settings(
        gateway=gateway,  # type: ignore[arg-type]
        api_keys={API_KEY: MERCHANT},
        demo_merchant=DEMO,
        task_queue=task_queue,
    )
    app = create_app(settings, client)
    # httpx runs no lifespan: hand the app its Temporal client directly.
    app.state.temporal_client = client
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api")


async def _never_started(client: Client, payment_id: str) -> None:
    with pytest.raises(RPCError) as missing:
        await client.get_workflow_handle(payment_id).describe()
    assert missing.value.status == RPCStatusCode.NOT_FOUND


def _refused(response: httpx.Response, currency: str) -> None:
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "amount_not_representable",
        "amount",
    )
    assert currency.upper() in error["message"]


async def test_the_api_refuses_what_the_gateway_cannot_hold(
    dev_client: Client, task_queue: str
) -> None:
    async with running_stack(dev_client, task_queue), _api(dev_client, "stripe", task_queue) as api:
        for body, key in [
            ({"amount": 12345, "currency": "mga"}, f"mga-{uuid.uuid4()}"),
            ({"amount": 1234, "currency": "kwd"}, f"kwd-{uuid.uuid4()}"),
            ({"amount": 1000, "currency": "iqd"}, f"iqd-{uuid.uuid4()}"),
        ]:
            create = {**body, "payment_method": "pm_card_visa"}
            response = await api.post(
                "/v1/payments", json=create, headers={**AUTH, "Idempotency-Key": key}
            )
            _refused(response, str(body["currency"]))
            await _never_started(dev_client, payment_id_for(MERCHANT, key))
        # The demo page's own create goes through the same check.
        demo = await api.post(
            "/demo/payments",
            json={"amount": 12345, "currency": "mga", "payment_method": "pm_card_visa"},
        )
        _refused(demo, "mga")

        # Capture and refund amounts too, and the payment does not move.
        manual = {
            "amount": 24600,
            "currency": "mga",
            "payment_method": "pm_card_visa",
            "capture_method": "manual",
        }
        created = await api.post("/v1/payments", json=manual, headers=AUTH)
        assert created.status_code == 202, created.text
        payment_id = created.json()["id"]
        held = await _until(dev_client, payment_id, lambda s: s.status == "requires_capture")
        events = (await api.get(f"/v1/payments/{payment_id}/events", headers=AUTH)).json()["data"]
        capture = await api.post(
            f"/v1/payments/{payment_id}/capture", json={"amount": 12345}, headers=AUTH
        )
        _refused(capture, "mga")
        after = (await api.get(f"/v1/payments/{payment_id}/events", headers=AUTH)).json()["data"]
        assert after == events
        assert (await PaymentService(dev_client, Settings()).get(payment_id, MERCHANT)) == held

        accepted = await api.post(
            f"/v1/payments/{payment_id}/capture", json={"amount": 12300}, headers=AUTH
        )
        assert accepted.status_code in (200, 202), accepted.text
        await _until(dev_client, payment_id, lambda s: s.status == "succeeded")
        refund = await api.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": 50}, headers=AUTH
        )
        _refused(refund, "mga")
        assert (
            await PaymentService(dev_client, Settings()).get(payment_id, MERCHANT)
        ).refunds == []
        # Whole ariary are fine, and so is "all that remains" (no amount).
        part = await api.post(
            f"/v1/payments/{payment_id}/refunds", json={"amount": 100}, headers=AUTH
        )
        assert part.status_code in (200, 202), part.text
        rest = await api.post(f"/v1/payments/{payment_id}/refunds", headers=AUTH)
        assert rest.status_code in (200, 202), rest.text
        state = await _until(
            dev_client, payment_id, lambda s: len(s.refunds) == 2 and s.refund_reserved == 0
        )
        assert [r.amount for r in state.refunds] == [100, 12200]


async def test_the_simulator_takes_every_amount(dev_client: Client, task_queue: str) -> None:
    async with (
        running_stack(dev_client, task_queue),
        _api(dev_client, "simulator", task_queue) as api,
    ):
        body = {"amount": 12345, "currency": "mga", "payment_method": "pm_card_visa"}
        created = await api.post("/v1/payments", json=body, headers=AUTH)
        assert created.status_code == 202, created.text
        state = await _until(dev_client, created.json()["id"], lambda s: s.status == "succeeded")
        assert state.amount_captured == 12345


async def test_the_demo_pages_refund_is_checked_too(dev_client: Client, task_queue: str) -> None:
    async with running_stack(dev_client, task_queue), _api(dev_client, "stripe", task_queue) as api:
        body = {"amount": 12300, "currency": "mga", "payment_method": "pm_card_visa"}
        created = (await api.post("/demo/payments", json=body)).json()
        payment_id, secret = created["id"], created["demo_token"]
        for _ in range(400):
            state = await PaymentService(dev_client, Settings()).get(payment_id, DEMO)
            if state.status == "succeeded":
                break
            await asyncio.sleep(0.05)
        refunds = f"/demo/payments/{payment_id}/refunds"
        # The secret is checked before the payment is read for its currency.
        wrong = await api.post(refunds, params={"demo_token": "nope"}, json={"amount": 50})
        assert wrong.status_code == 401
        refused = await api.post(refunds, params={"demo_token": secret}, json={"amount": 50})
        _refused(refused, "mga")
        assert (await PaymentService(dev_client, Settings()).get(payment_id, DEMO)).refunds == []
        accepted = await api.post(refunds, params={"demo_token": secret}, json={"amount": 100})
        assert accepted.status_code == 202, accepted.text
