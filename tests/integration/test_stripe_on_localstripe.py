"""The Stripe adapter against what localstripe really serves (issue 19): the
test payment methods of Stripe's it lacks, sent as their stand-ins and learnt
from its first refusal, and a list it cannot expand, against a localstripe of
this module's own (one test leaves its store with an object it lost)."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support import localstripe_card, localstripe_intents, request_shape, requests_sent

from gateway.localstripe import STAND_INS
from gateway.stripe_adapter import StripeGateway
from payments.gateway import (
    Authentication,
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
)
from payments.settings import Settings

API_KEY = "sk_test_localstripe_gaps"


@pytest.fixture
async def control(module_localstripe: str) -> AsyncIterator[httpx.AsyncClient]:
    """Talks to localstripe directly, around the adapter."""
    async with httpx.AsyncClient(
        base_url=module_localstripe, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def gateway(module_localstripe: str) -> AsyncIterator[StripeGateway]:
    """A fresh adapter: it has learnt nothing about the server yet."""
    settings = Settings(
        gateway="stripe", stripe_api_base=module_localstripe, stripe_api_key=API_KEY
    )
    adapter = StripeGateway(settings)
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.fixture
def reference() -> str:
    return f"pay_{uuid.uuid4().hex[:12]}"


async def _authorize(
    gateway: StripeGateway, reference: str, payment_method: str = "pm_card_visa"
) -> GatewayOperation:
    return await gateway.authorize(
        reference=reference,
        amount=2000,
        currency="usd",
        payment_method=payment_method,
        idempotency_key=f"{reference}:authorize",
        since=datetime.now(UTC),
        first_attempt=True,
    )


async def test_stripe_s_card_brands_authorize_as_localstripe_s_visa(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str
) -> None:
    for brand in ("pm_card_mastercard", "pm_card_amex"):
        payment = f"{reference}_{brand}"
        auth = await _authorize(gateway, payment, brand)
        capture = await gateway.capture(
            authorization_id=auth.id, amount=2000, idempotency_key=f"{payment}:capture"
        )
        assert await gateway.find_by_reference(payment) == [auth, capture]
        intents = await localstripe_intents(control, payment)
        assert [(pi["payment_method"], pi["status"]) for pi in intents] == [
            ("pm_card_visa", "succeeded")
        ]


async def test_a_stand_in_is_learnt_from_the_first_refusal_and_then_costs_nothing(
    gateway: StripeGateway, reference: str
) -> None:
    sent = requests_sent(gateway)
    await _authorize(gateway, f"{reference}_first", "pm_card_mastercard")
    assert [request_shape(r) for r in sent] == [
        "POST /v1/payment_intents",  # refused: allowed_payment_method_types
        "POST /v1/payment_intents",  # refused: no pm_card_mastercard here
        "POST /v1/payment_intents",  # with pm_card_visa
        "POST /v1/payment_intents/{id}/confirm",
    ]
    sent.clear()
    await _authorize(gateway, f"{reference}_then", "pm_card_amex")
    with pytest.raises(CardDeclined):
        await _authorize(gateway, f"{reference}_declined", "pm_card_chargeDeclined")
    # As many requests as pm_card_visa's authorize: create, confirm.
    assert [request_shape(r) for r in sent] == 2 * [
        "POST /v1/payment_intents",
        "POST /v1/payment_intents/{id}/confirm",
    ]


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_declines_come_with_stripe_s_codes_and_messages(
    gateway: StripeGateway,
    control: httpx.AsyncClient,
    reference: str,
    payment_method: str,
    code: str,
    decline_code: str,
) -> None:
    with pytest.raises(CardDeclined) as declined:
        await _authorize(gateway, reference, payment_method)
    stand_in = STAND_INS[payment_method]
    assert stand_in.decline is not None
    assert (declined.value.code, declined.value.decline_code) == (code, decline_code)
    assert declined.value.message == stand_in.decline[2]
    # Declined by localstripe itself, on the stand-in, and held as declined there.
    intents = await localstripe_intents(control, reference)
    assert [(pi["payment_method"], pi["status"]) for pi in intents] == [
        ("pm_card_chargeCustomerFail", "requires_payment_method")
    ]


@pytest.mark.parametrize("payment_method", ["pm_card_captureFails", "tok_visa", "pm_card_nope"])
async def test_a_payment_method_without_a_stand_in_is_refused_by_name(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str, payment_method: str
) -> None:
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(gateway, reference, payment_method)
    assert refused.value.code == "resource_missing"
    assert f"knows no payment method {payment_method!r}" in refused.value.message
    assert await localstripe_intents(control, reference) == []


async def _lose_a_balance_transaction(control: httpx.AsyncClient) -> None:
    """A PaymentIntent of nobody's, captured, whose charge refers to a balance
    transaction localstripe does not hold: what a store loaded from a pickle
    another localstripe was writing can look like. (localstripe deletes no
    balance transaction, but lets any field of a charge be set.)"""
    created = await control.post(
        "/v1/payment_intents",
        data={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa"},
    )
    intent = created.json()["id"]
    assert (await control.post(f"/v1/payment_intents/{intent}/confirm")).status_code == 200
    charge = (await control.get(f"/v1/payment_intents/{intent}")).json()["latest_charge"]
    lost = await control.post(
        f"/v1/charges/{charge['id']}", data={"balance_transaction": "txn_lost"}
    )
    assert lost.status_code == 200, lost.text
    expanded = await control.get(
        "/v1/payment_intents",
        params={"limit": 100, "expand[]": "data.latest_charge.balance_transaction"},
    )
    assert expanded.status_code == 404  # the whole list, for one item's lost reference


async def test_lookups_and_reconciliation_survive_an_object_localstripe_lost(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str
) -> None:
    start = datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp()), UTC)
    auth = await _authorize(gateway, reference)
    # A second later, so that the capture's date is its own and not the charge's.
    await asyncio.sleep(1.05)
    capture = await gateway.capture(
        authorization_id=auth.id, amount=1500, idempotency_key=f"{reference}:capture"
    )
    refund = await gateway.refund(
        authorization_id=auth.id, amount=300, idempotency_key=f"{reference}:refund:1"
    )
    assert capture.created_at > auth.created_at
    await _lose_a_balance_transaction(control)

    sent = requests_sent(gateway)
    # Without the authorization id: the lookup that lists the account.
    assert await gateway.find_by_reference(reference) == [auth, capture, refund]
    listed = [r for r in sent if r.method == "GET" and r.url.path == "/v1/payment_intents"]
    assert [r.url.params.get_list("expand[0]") for r in listed] == [
        ["data.latest_charge.balance_transaction"],  # 404: learnt once,
        ["data.latest_charge"],  # then the charges only
    ]
    operations = await gateway.list_operations(
        since=start, until=datetime.now(UTC) + timedelta(seconds=2)
    )
    assert [op for op in operations if op.reference == reference] == [auth, capture, refund]


async def test_a_card_declined_after_3d_secure_is_the_decline(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str
) -> None:
    """localstripe's 4000 0084 0000 1629 needs 3-D Secure, then declines: the
    authentication's lookup answers with the decline, not a failed authentication."""
    pending = await gateway.authorize(
        reference=reference,
        amount=2000,
        currency="usd",
        payment_method=await localstripe_card(control, "4000008400001629"),
        idempotency_key=f"{reference}:authorize",
        since=datetime.now(UTC),
        first_attempt=True,
    )
    assert isinstance(pending, Authentication) and pending.status == "pending"
    intent = (await control.get(f"/v1/payment_intents/{pending.id}")).json()
    answered = await control.post(
        f"/v1/payment_intents/{pending.id}/_authenticate",
        data={"client_secret": intent["client_secret"], "success": "true"},
    )
    # localstripe answers the authenticate call itself with the charge's decline.
    assert answered.status_code == 402, answered.text
    with pytest.raises(CardDeclined) as declined:
        await gateway.authentication(pending.id)
    assert declined.value.code == "card_declined"
    assert await gateway.find_by_reference(reference) == []
