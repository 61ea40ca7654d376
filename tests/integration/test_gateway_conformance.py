"""One conformance suite, two gateways: the same scenarios through the port
against the simulator (over HTTP, in-process) and against localstripe (a
Stripe-compatible server, started from the venv's console script) through
``StripeGateway``. Each asserts what the gateway itself holds afterwards (its
ledger, or the PaymentIntents and Refunds localstripe lists), not what the
adapter says alone.

3-D Secure is the same on both: a card that needs the customer answers
authorize with a pending authentication, which the customer approves or
fails (the simulator's challenge page; localstripe's authenticate route, with
its own 3-D Secure card), or which the payment ends.

Declines are the same on both: localstripe knows few of Stripe's test payment
methods, and declines only ``pm_card_chargeCustomerFail`` (``card_declined``,
no ``decline_code``), so the adapter sends it for ``pm_card_chargeDeclined``,
``..InsufficientFunds`` and ``..ExpiredCard`` and reports Stripe's codes for
them (``gateway.localstripe``).

What localstripe cannot do, and so is not tested on it:

- A capture that fails (``pm_card_captureFails``, the simulator's own).
- Idempotency keys: ignored, as are over-refunds; the adapter's reads before
  writes are what the retry scenarios check.
- Search, ``created`` filters on lists, ``canceled_at``: the adapter lists
  and filters itself, and dates a void at its authorization. (How many
  requests it makes is tests/integration/test_stripe_lookups.py's subject.)
"""

from __future__ import annotations

import asyncio
import math
import socket
import sys
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from support import localstripe_card, localstripe_intents, serving

from gateway.http_simulator import SimulatorGateway
from gateway.simulator.app import create_app
from gateway.simulator.core import SimulatorLedger
from gateway.stripe_adapter import StripeGateway
from payments.gateway import (
    Authentication,
    CardDeclined,
    Gateway,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)
from payments.settings import Settings

LOCALSTRIPE = Path(sys.executable).parent / "localstripe"
API_KEY = "sk_test_conformance"


@dataclass
class Decline:
    payment_method: str
    code: str
    decline_code: str | None


@dataclass
class Subject:
    """A gateway under test and how to read what it really holds."""

    name: str
    gateway: Gateway
    # Authorization records the gateway made for a reference: ledger
    # authorizations on the simulator, PaymentIntents on Stripe.
    authorizations: Callable[[str], Awaitable[int]]
    # Refund records the gateway holds for a reference, oldest first.
    refunds: Callable[[str], Awaitable[list[int]]]
    declines: list[Decline]
    # A payment method that needs the customer to authenticate (3-D Secure),
    # and the customer's answer to its authentication.
    three_d_secure: Callable[[], Awaitable[str]]
    customer_answers: Callable[[Authentication, bool], Awaitable[None]]


# The declines of the README's table: the simulator's, and Stripe's for the same names.
SIMULATOR_DECLINES = [
    Decline("pm_card_chargeDeclined", "card_declined", "generic_decline"),
    Decline("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
    Decline("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
]


# -- the simulator --------------------------------------------------------------


@pytest.fixture
async def simulator_subject() -> AsyncIterator[Subject]:
    ledger = SimulatorLedger()
    app = create_app(ledger)
    async with (
        serving(app, access_log=False, lifespan="off", ws="none") as url,
        httpx.AsyncClient(timeout=10) as customer,
    ):
        gateway = SimulatorGateway(url, timeout=5)

        async def authorizations(reference: str) -> int:
            return sum(op.kind == "authorization" for op in ledger.ledger(reference))

        async def refunds(reference: str) -> list[int]:
            return [op.amount for op in ledger.ledger(reference) if op.kind == "refund"]

        async def three_d_secure() -> str:
            return "pm_card_threeDSecure2Required"

        async def customer_answers(authentication: Authentication, approve: bool) -> None:
            # The challenge page's form, as the customer's browser posts it.
            assert authentication.url is not None
            answered = await customer.post(
                authentication.url,
                content=f"result={'approve' if approve else 'fail'}",
                headers={"content-type": "application/x-www-form-urlencoded"},
            )
            assert answered.status_code == 200, answered.text

        try:
            yield Subject(
                "simulator",
                gateway,
                authorizations,
                refunds,
                SIMULATOR_DECLINES,
                three_d_secure,
                customer_answers,
            )
        finally:
            await gateway.aclose()


# -- localstripe ----------------------------------------------------------------


def _stripe_settings(url: str, api_key: str = API_KEY) -> Settings:
    return Settings(gateway="stripe", stripe_api_base=url, stripe_api_key=api_key)


@pytest.fixture
async def localstripe_subject(localstripe: str) -> AsyncIterator[Subject]:
    gateway = StripeGateway(_stripe_settings(localstripe))
    async with httpx.AsyncClient(
        base_url=localstripe, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as control:

        async def authorizations(reference: str) -> int:
            return len(await localstripe_intents(control, reference))

        async def refunds(reference: str) -> list[int]:
            amounts: list[int] = []
            for intent in await localstripe_intents(control, reference):
                if intent["latest_charge"] is None:
                    continue
                page = await control.get(
                    "/v1/refunds", params={"payment_intent": str(intent["id"]), "limit": 100}
                )
                amounts.extend(refund["amount"] for refund in page.json()["data"])
            return amounts[::-1]

        async def three_d_secure() -> str:
            # localstripe's card that requires 3-D Secure 2 (Stripe's 4000 0027 6000 3184).
            return await localstripe_card(control, "4000002760003184")

        async def customer_answers(authentication: Authentication, approve: bool) -> None:
            # localstripe's authenticate route, with the PaymentIntent's client secret.
            path = f"/v1/payment_intents/{authentication.id}"
            intent = (await control.get(path)).json()
            answered = await control.post(
                f"{path}/_authenticate",
                data={"client_secret": intent["client_secret"], "success": str(approve).lower()},
            )
            assert answered.status_code == 200, answered.text

        try:
            yield Subject(
                "localstripe",
                gateway,
                authorizations,
                refunds,
                [
                    *SIMULATOR_DECLINES,
                    # localstripe's own decline, as it reports it.
                    Decline("pm_card_chargeCustomerFail", "card_declined", None),
                ],
                three_d_secure,
                customer_answers,
            )
        finally:
            await gateway.aclose()


@pytest.fixture(params=["simulator", "localstripe"])
def subject(request: pytest.FixtureRequest) -> Subject:
    # Looked up by name so that a run of the simulator's cases starts no localstripe.
    found: Subject = request.getfixturevalue(f"{request.param}_subject")
    return found


@pytest.fixture
def reference() -> str:
    return f"pay_{uuid.uuid4().hex[:12]}"


async def _authorize(
    subject: Subject,
    reference: str,
    *,
    amount: int = 2000,
    payment_method: str = "pm_card_visa",
    key: str | None = None,
) -> GatewayOperation:
    return await subject.gateway.authorize(
        reference=reference,
        amount=amount,
        currency="usd",
        payment_method=payment_method,
        idempotency_key=key or f"{reference}:authorize",
    )


# -- the scenarios --------------------------------------------------------------


async def _needs_the_customer(subject: Subject, reference: str) -> Authentication:
    pending = await subject.gateway.authorize(
        reference=reference,
        amount=2500,
        currency="eur",
        payment_method=await subject.three_d_secure(),
        idempotency_key=f"{reference}:authorize",
        since=datetime.now(UTC),
        first_attempt=True,
    )
    assert isinstance(pending, Authentication), pending
    assert (pending.status, pending.amount, pending.currency) == ("pending", 2500, "eur")
    assert pending.reference == reference
    assert (await subject.gateway.authentication(pending.id)).status == "pending"
    # Nothing is authorized while the customer has not answered.
    assert await subject.gateway.find_by_reference(reference) == []
    return pending


async def test_3d_secure_approved_authorizes(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    pending = await _needs_the_customer(subject, reference)
    await subject.customer_answers(pending, True)
    decided = await gateway.authentication(pending.id)
    assert decided.status == "succeeded" and decided.authorization is not None
    auth = decided.authorization
    assert (auth.kind, auth.amount, auth.reference) == ("authorization", 2500, reference)
    capture = await gateway.capture(
        authorization_id=auth.id, amount=2500, idempotency_key=f"{reference}:capture"
    )
    assert await gateway.find_by_reference(reference) == [auth, capture]
    assert await subject.authorizations(reference) == 1


async def test_3d_secure_failed_holds_nothing(subject: Subject, reference: str) -> None:
    pending = await _needs_the_customer(subject, reference)
    await subject.customer_answers(pending, False)
    failed = await subject.gateway.authentication(pending.id)
    assert (failed.status, failed.authorization) == ("failed", None)
    assert await subject.gateway.find_by_reference(reference) == []


async def test_3d_secure_ended_by_the_payment(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    pending = await _needs_the_customer(subject, reference)
    key = f"{reference}:cancel_authentication"
    assert (await gateway.cancel_authentication(pending.id, idempotency_key=key)).status == (
        "canceled"
    )
    # Again: answered where it ended; and nothing was, or can now be, authorized.
    assert (await gateway.cancel_authentication(pending.id, idempotency_key=key)).status == (
        "canceled"
    )
    assert await gateway.find_by_reference(reference) == []


async def test_authorize_and_capture(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    auth = await _authorize(subject, reference)
    assert (auth.kind, auth.amount, auth.currency, auth.reference) == (
        "authorization",
        2000,
        "usd",
        reference,
    )
    capture = await gateway.capture(
        authorization_id=auth.id, amount=2000, idempotency_key=f"{reference}:capture"
    )
    assert (capture.kind, capture.amount, capture.authorization_id) == ("capture", 2000, auth.id)
    assert await gateway.find_by_reference(reference) == [auth, capture]
    assert await subject.authorizations(reference) == 1
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.void(authorization_id=auth.id, idempotency_key=f"{reference}:void")
    assert refused.value.code == "already_captured"


async def test_partial_capture(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    auth = await _authorize(subject, reference)
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.capture(authorization_id=auth.id, amount=2001, idempotency_key="too-much")
    assert refused.value.code == "amount_too_large"
    capture = await gateway.capture(
        authorization_id=auth.id, amount=1500, idempotency_key=f"{reference}:capture"
    )
    assert (capture.kind, capture.amount) == ("capture", 1500)
    again = await gateway.capture(
        authorization_id=auth.id, amount=1500, idempotency_key=f"{reference}:capture"
    )
    assert again == capture
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.capture(authorization_id=auth.id, amount=500, idempotency_key="other")
    assert refused.value.code == "already_captured"
    assert await gateway.find_by_reference(reference) == [auth, capture]
    # What was left of the authorization is released, not refundable.
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.refund(authorization_id=auth.id, amount=1501, idempotency_key="r-too-much")
    assert refused.value.code == "amount_too_large"


async def test_void(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    auth = await _authorize(subject, reference)
    void = await gateway.void(authorization_id=auth.id, idempotency_key=f"{reference}:void")
    assert (void.kind, void.amount, void.authorization_id) == ("void", 2000, auth.id)
    assert await gateway.void(authorization_id=auth.id, idempotency_key=f"{reference}:void") == (
        void
    )
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.void(authorization_id=auth.id, idempotency_key=f"{reference}:void:2")
    assert refused.value.code == "already_voided"
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.capture(authorization_id=auth.id, amount=2000, idempotency_key="c")
    assert refused.value.code == "authorization_voided"
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.refund(authorization_id=auth.id, amount=1, idempotency_key="r")
    assert refused.value.code == "not_captured"
    assert await gateway.find_by_reference(reference) == [auth, void]
    # An authorize retried after the void answers with the authorization it made.
    assert await _authorize(subject, reference) == auth
    assert await subject.authorizations(reference) == 1


async def test_partial_and_full_refunds(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    auth = await _authorize(subject, reference)
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.refund(authorization_id=auth.id, amount=100, idempotency_key="early")
    assert refused.value.code == "not_captured"
    capture = await gateway.capture(
        authorization_id=auth.id, amount=2000, idempotency_key=f"{reference}:capture"
    )
    first = await gateway.refund(
        authorization_id=auth.id, amount=500, idempotency_key=f"{reference}:refund:1"
    )
    rest = await gateway.refund(
        authorization_id=auth.id, amount=1500, idempotency_key=f"{reference}:refund:2"
    )
    assert [(r.kind, r.amount, r.authorization_id) for r in (first, rest)] == [
        ("refund", 500, auth.id),
        ("refund", 1500, auth.id),
    ]
    # localstripe would take this one: the adapter's bound refuses it.
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.refund(
            authorization_id=auth.id, amount=1, idempotency_key=f"{reference}:refund:3"
        )
    assert refused.value.code == "amount_too_large"
    assert await gateway.find_by_reference(reference) == [auth, capture, first, rest]
    assert sorted(await subject.refunds(reference)) == [500, 1500]


async def test_declines(subject: Subject, reference: str) -> None:
    for n, decline in enumerate(subject.declines):
        payment = f"{reference}_{n}"
        with pytest.raises(CardDeclined) as declined:
            await _authorize(subject, payment, payment_method=decline.payment_method)
        assert (declined.value.code, declined.value.decline_code) == (
            decline.code,
            decline.decline_code,
        )
        held = await subject.authorizations(payment)
        # The retry answers the same decline and charges nothing new.
        with pytest.raises(CardDeclined) as again:
            await _authorize(subject, payment, payment_method=decline.payment_method)
        assert (again.value.code, again.value.decline_code) == (decline.code, decline.decline_code)
        assert await subject.authorizations(payment) == held
        assert await subject.gateway.find_by_reference(payment) == []


async def test_lookup_by_reference(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    assert await gateway.find_by_reference(reference) == []
    auth = await _authorize(subject, reference)
    other = await _authorize(subject, f"{reference}_other")
    assert await gateway.find_by_reference(reference) == [auth]
    assert await gateway.find_by_reference(f"{reference}_other") == [other]
    with pytest.raises(NotFound):
        await gateway.capture(authorization_id="pi_missing", amount=1, idempotency_key="c")
    with pytest.raises(NotFound):
        await gateway.void(authorization_id="pi_missing", idempotency_key="v")
    with pytest.raises(NotFound):
        await gateway.refund(authorization_id="pi_missing", amount=1, idempotency_key="r")


async def test_retried_calls_commit_once(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    auth = await _authorize(subject, reference)
    assert await _authorize(subject, reference) == auth
    assert await subject.authorizations(reference) == 1
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(subject, reference, amount=1999)
    assert refused.value.code == "idempotency_key_reused"
    await gateway.capture(
        authorization_id=auth.id, amount=2000, idempotency_key=f"{reference}:capture"
    )
    refund = await gateway.refund(
        authorization_id=auth.id, amount=700, idempotency_key=f"{reference}:refund:1"
    )
    again = await gateway.refund(
        authorization_id=auth.id, amount=700, idempotency_key=f"{reference}:refund:1"
    )
    assert again == refund
    assert await subject.refunds(reference) == [700]
    assert await subject.authorizations(reference) == 1


async def test_hints_change_no_answer(subject: Subject, reference: str) -> None:
    """``since``, ``authorization_id`` and ``first_attempt`` only spare an
    adapter a search: the answers are those it gives without them."""
    gateway = subject.gateway
    since = datetime.now(UTC)
    request = {
        "reference": reference,
        "amount": 2000,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "idempotency_key": f"{reference}:authorize",
        "since": since,
    }
    auth = await gateway.authorize(**request, first_attempt=True)
    capture = await gateway.capture(
        authorization_id=auth.id, amount=2000, idempotency_key=f"{reference}:capture"
    )
    refund = await gateway.refund(
        authorization_id=auth.id, amount=300, idempotency_key=f"{reference}:refund:1"
    )
    everything = [auth, capture, refund]
    assert await gateway.find_by_reference(reference) == everything
    assert await gateway.find_by_reference(reference, since=since) == everything
    assert (
        await gateway.find_by_reference(reference, since=since, authorization_id=auth.id)
        == everything
    )
    # A hint naming another payment's authorization is no answer for this one.
    other = await _authorize(subject, f"{reference}_other")
    assert (
        await gateway.find_by_reference(reference, since=since, authorization_id=other.id)
        == everything
    )
    # Retries, handed the id or not, replay the one authorization.
    assert await gateway.authorize(**request, authorization_id=auth.id) == auth
    assert await gateway.authorize(**request) == auth
    assert await subject.authorizations(reference) == 1


async def test_each_instance_of_a_payment_authorizes_once(subject: Subject, reference: str) -> None:
    """A payment id that came back is a new instance with keys of its own: it
    gets its own authorization, and each key replays only its own."""
    old = await _authorize(subject, reference, key=f"{reference}:ins_old:authorize")
    new = await _authorize(subject, reference, key=f"{reference}:ins_new:authorize")
    assert old.id != new.id
    assert await _authorize(subject, reference, key=f"{reference}:ins_old:authorize") == old
    assert await _authorize(subject, reference, key=f"{reference}:ins_new:authorize") == new
    assert await subject.authorizations(reference) == 2
    assert {op.id for op in await subject.gateway.find_by_reference(reference)} == {old.id, new.id}


async def test_refused_amounts(subject: Subject, reference: str) -> None:
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(subject, reference, amount=0)
    assert refused.value.code == "amount_too_small"
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(subject, reference, payment_method="pm_nonexistent")
    assert refused.value.code == "resource_missing"


async def _next_second() -> datetime:
    """Sleep to the next whole second and return it: Stripe dates to the second."""
    now = datetime.now(UTC)
    boundary = datetime.fromtimestamp(math.floor(now.timestamp()) + 1, UTC)
    await asyncio.sleep((boundary - now).total_seconds() + 0.01)
    return boundary


async def test_list_operations_by_window(subject: Subject, reference: str) -> None:
    gateway = subject.gateway
    start = datetime.fromtimestamp(math.floor(datetime.now(UTC).timestamp()), UTC)
    first = f"{reference}_a"
    auth = await _authorize(subject, first)
    capture = await gateway.capture(
        authorization_id=auth.id, amount=1200, idempotency_key=f"{first}:capture"
    )
    middle = await _next_second()
    second = f"{reference}_b"
    later = await _authorize(subject, second)
    refund = await gateway.refund(
        authorization_id=auth.id, amount=200, idempotency_key=f"{first}:refund:1"
    )
    end = await _next_second()

    def ours(operations: list[GatewayOperation]) -> list[GatewayOperation]:
        # localstripe is shared by the session's tests: keep this test's payments.
        return [op for op in operations if op.reference in (first, second)]

    assert ours(await gateway.list_operations(since=start, until=middle)) == [auth, capture]
    after = ours(await gateway.list_operations(since=middle, until=end))
    assert sorted(after, key=lambda op: op.kind) == [later, refund]
    everything = ours(await gateway.list_operations(since=start, until=end))
    assert {op.id for op in everything} == {auth.id, capture.id, later.id, refund.id}
    assert ours(await gateway.list_operations(since=end, until=end + timedelta(hours=1))) == []
    for op in everything:
        assert start <= datetime.fromisoformat(op.created_at) < end


# -- localstripe only: what the simulator has no equivalent of ------------------


async def test_authorize_confirms_an_intent_an_earlier_attempt_left(
    localstripe: str, reference: str
) -> None:
    """An attempt that created the PaymentIntent and was lost before confirming
    it: the retry confirms that one instead of creating another."""
    async with httpx.AsyncClient(
        base_url=localstripe, headers={"Authorization": f"Bearer {API_KEY}"}
    ) as control:
        left = await control.post(
            "/v1/payment_intents",
            data={
                "amount": "2000",
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "capture_method": "manual",
                "metadata[payment_id]": reference,
                "metadata[idempotency_key]": f"{reference}:authorize",
            },
        )
        assert left.json()["status"] == "requires_confirmation"
        gateway = StripeGateway(_stripe_settings(localstripe))
        try:
            auth = await gateway.authorize(
                reference=reference,
                amount=2000,
                currency="usd",
                payment_method="pm_card_visa",
                idempotency_key=f"{reference}:authorize",
            )
        finally:
            await gateway.aclose()
        intents = await localstripe_intents(control, reference)
    assert auth.id == left.json()["id"]
    assert [(pi["id"], pi["status"]) for pi in intents] == [(auth.id, "requires_capture")]


async def test_localstripe_decline_limits(localstripe_subject: Subject, reference: str) -> None:
    # Declined by localstripe only when attached to a customer.
    auth = await _authorize(
        localstripe_subject, f"{reference}_v", payment_method="pm_card_visa_chargeDeclined"
    )
    assert auth.kind == "authorization"
    # The simulator's capture failure has no Stripe card: refused, and named.
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(localstripe_subject, reference, payment_method="pm_card_captureFails")
    assert refused.value.code == "resource_missing"
    assert "'pm_card_captureFails'" in refused.value.message
    assert await localstripe_subject.authorizations(reference) == 0


async def test_wrong_api_key_is_permanent(localstripe: str, reference: str) -> None:
    gateway = StripeGateway(_stripe_settings(localstripe, api_key="not_a_secret_key"))
    try:
        with pytest.raises(InvalidGatewayRequest) as refused:
            await gateway.find_by_reference(reference)
    finally:
        await gateway.aclose()
    assert refused.value.code == "authentication_failed"


async def test_unreachable_stripe_is_transient(reference: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, not listening: connections are refused
        port = sock.getsockname()[1]
        gateway = StripeGateway(_stripe_settings(f"http://127.0.0.1:{port}"))
        try:
            with pytest.raises(TransientGatewayError, match="APIConnectionError"):
                await gateway.authorize(
                    reference=reference,
                    amount=2000,
                    currency="usd",
                    payment_method="pm_card_visa",
                    idempotency_key=f"{reference}:authorize",
                )
        finally:
            await gateway.aclose()
