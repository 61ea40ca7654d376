"""The Stripe adapter's requests per payment stay flat as the account grows
(issue 11, point 8), counted on the wire against a localstripe of this module's
own, whose store these tests crowd with PaymentIntents of nobody's.

localstripe neither filters lists by ``created`` nor searches, so any lookup
by reference there lists the whole account: a payment whose requests do not
grow with it there makes no such lookup at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from support import localstripe_intents, payment_worker, request_shape, requests_sent
from temporalio.client import Client
from temporalio.testing import ActivityEnvironment

from activities.reconciliation import ReconciliationActivities
from gateway.stripe_adapter import StripeGateway
from payments.gateway import TransientGatewayError
from payments.models import CreatePayment, PaymentState
from payments.reconciliation import Window
from payments.service import PaymentService
from payments.settings import Settings

API_KEY = "sk_test_lookups"
MERCHANT = "acme"
CROWD = 300


def _settings(url: str, task_queue: str = "payments") -> Settings:
    return Settings(
        gateway="stripe", stripe_api_base=url, stripe_api_key=API_KEY, task_queue=task_queue
    )


@pytest.fixture
async def control(module_localstripe: str) -> AsyncIterator[httpx.AsyncClient]:
    """Talks to localstripe directly, around the adapter."""
    async with httpx.AsyncClient(
        base_url=module_localstripe, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=30
    ) as client:
        yield client


@pytest.fixture
async def gateway(module_localstripe: str) -> AsyncIterator[StripeGateway]:
    adapter = StripeGateway(_settings(module_localstripe))
    try:
        yield adapter
    finally:
        await adapter.aclose()


@pytest.fixture
def reference() -> str:
    return f"pay_{uuid.uuid4().hex[:12]}"


def _account_listings(sent: list[httpx.Request]) -> list[httpx.Request]:
    """Requests that list the account's PaymentIntents (not one PaymentIntent's refunds)."""
    return [r for r in sent if r.method == "GET" and r.url.path == "/v1/payment_intents"]


async def _crowd(control: httpx.AsyncClient, count: int) -> None:
    """``count`` PaymentIntents of nobody's, straight through localstripe's API."""

    async def one() -> None:
        created = await control.post("/v1/payment_intents", data={"amount": 100, "currency": "usd"})
        assert created.status_code == 200, created.text

    for _ in range(0, count, 25):
        await asyncio.gather(*(one() for _ in range(25)))


async def _whole_payment(gateway: StripeGateway, reference: str) -> list[str]:
    """The requests of one payment as the activities make them: authorize (a
    first attempt), capture, a refund, then a lookup with what they know."""
    sent = requests_sent(gateway)
    since = datetime.now(UTC)
    auth = await gateway.authorize(
        reference=reference,
        amount=2000,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key=f"{reference}:authorize",
        since=since,
        first_attempt=True,
    )
    await gateway.capture(
        authorization_id=auth.id, amount=2000, idempotency_key=f"{reference}:capture"
    )
    await gateway.refund(
        authorization_id=auth.id, amount=500, idempotency_key=f"{reference}:refund:1"
    )
    found = await gateway.find_by_reference(reference, since=since, authorization_id=auth.id)
    assert [(op.kind, op.amount) for op in found] == [
        ("authorization", 2000),
        ("capture", 2000),
        ("refund", 500),
    ]
    assert _account_listings(sent) == []
    return [request_shape(request) for request in sent]


async def test_a_payments_requests_do_not_grow_with_the_account(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str
) -> None:
    # The adapter's first create learns which parameter localstripe refuses.
    await _whole_payment(gateway, f"{reference}_warm")
    few = await _whole_payment(gateway, f"{reference}_few")
    await _crowd(control, CROWD)
    many = await _whole_payment(gateway, f"{reference}_many")
    assert many == few
    assert few == [
        "POST /v1/payment_intents",  # authorize: create,
        "POST /v1/payment_intents/{id}/confirm",  # confirm
        "GET /v1/payment_intents/{id}",  # capture: read,
        "POST /v1/payment_intents/{id}",  # mark with its key,
        "POST /v1/payment_intents/{id}/capture",  # capture,
        "GET /v1/refunds",  # read its refunds (the captured amount, on localstripe)
        "GET /v1/payment_intents/{id}",  # refund: read,
        "GET /v1/refunds",  # its earlier refunds,
        "POST /v1/refunds",  # refund
        "GET /v1/payment_intents/{id}",  # lookup by authorization id
        "GET /v1/refunds",
    ]


async def test_a_retry_finds_the_payment_intent_its_first_attempt_remembered(
    gateway: StripeGateway, control: httpx.AsyncClient, reference: str
) -> None:
    """The first attempt's confirm reply is lost after localstripe confirmed:
    the retry, handed the id the first attempt remembered, retrieves it and
    answers its authorization, without listing the account or confirming again."""
    _lose_the_first_confirm_reply(gateway)
    remembered: list[str] = []
    request = {
        "reference": reference,
        "amount": 2000,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "idempotency_key": f"{reference}:authorize",
        "since": datetime.now(UTC),
    }
    with pytest.raises(TransientGatewayError):
        await gateway.authorize(**request, first_attempt=True, remember=remembered.append)
    [intent_id] = remembered
    sent = requests_sent(gateway)
    auth = await gateway.authorize(
        **request, authorization_id=intent_id, remember=remembered.append
    )
    assert (auth.id, auth.kind, auth.amount) == (intent_id, "authorization", 2000)
    assert [request_shape(r) for r in sent] == ["GET /v1/payment_intents/{id}"]
    # Without the id (create's own reply lost), the retry must look the
    # reference up: on localstripe that lists the account; it finds the same one.
    sent.clear()
    assert await gateway.authorize(**request) == auth
    assert _account_listings(sent) != []
    # A hint that names nothing of ours is only a hint.
    assert await gateway.authorize(**request, authorization_id="pi_missing") == auth
    assert [(pi["id"], pi["status"]) for pi in await localstripe_intents(control, reference)] == [
        (auth.id, "requires_capture")
    ]


async def test_lookups_by_reference_skip_what_is_older_than_the_payment(
    gateway: StripeGateway, reference: str
) -> None:
    """``since`` bounds a lookup by reference: a PaymentIntent of the same
    reference from before (a payment id that came back) is not this payment's."""
    old = await gateway.authorize(
        reference=reference,
        amount=2000,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key=f"{reference}:ins_old:authorize",
        first_attempt=True,
    )
    assert await gateway.find_by_reference(reference) == [old]
    assert await gateway.find_by_reference(reference, since=datetime.now(UTC)) == [old]
    later = datetime.now(UTC) + timedelta(minutes=10)
    assert await gateway.find_by_reference(reference, since=later) == []


# -- through Temporal: the activities hand the adapter what they know ------------


def _lose_the_first_confirm_reply(gateway: StripeGateway) -> list[httpx.Response]:
    """localstripe confirms, and the adapter never hears back, once."""
    lost: list[httpx.Response] = []

    async def lose(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/confirm") and not lost:
            lost.append(response)
            raise httpx.ReadError("the reply was lost", request=response.request)

    client = gateway._http._client_async
    client.event_hooks = {**client.event_hooks, "response": [lose]}
    return lost


@contextlib.asynccontextmanager
async def _worker(client: Client, task_queue: str, gateway: StripeGateway) -> AsyncIterator[None]:
    async with payment_worker(client, Settings(task_queue=task_queue), gateway):
        yield


async def _pay(client: Client, settings: Settings) -> PaymentState:
    request = CreatePayment(amount=1999, currency="usd", payment_method="pm_card_visa")
    started = await PaymentService(client, settings).start(
        MERCHANT, request, f"lookups-{uuid.uuid4()}"
    )
    payment_id = started.payment.id
    for _ in range(400):
        state = await PaymentService(client, Settings()).get(payment_id, MERCHANT)
        if state.status not in ("processing", "requires_capture"):
            return state
        await asyncio.sleep(0.05)
    raise AssertionError(f"{payment_id} did not settle: {state.status}")


async def test_the_authorize_activity_remembers_across_attempts(
    dev_client: Client,
    task_queue: str,
    module_localstripe: str,
    gateway: StripeGateway,
    control: httpx.AsyncClient,
) -> None:
    """A real payment on the dev server whose first confirm reply is lost: the
    activity's second attempt gets the PaymentIntent id from the first one's
    heartbeat details and retrieves it; nothing lists the account, and
    localstripe holds one PaymentIntent for the payment."""
    lost = _lose_the_first_confirm_reply(gateway)
    sent = requests_sent(gateway)
    async with _worker(dev_client, task_queue, gateway):
        state = await _pay(dev_client, _settings(module_localstripe, task_queue))
    assert lost, "the fault never fired"
    assert (state.status, state.amount_captured) == ("succeeded", 1999)
    intents = await localstripe_intents(control, state.id)
    assert [(pi["id"], pi["status"]) for pi in intents] == [(state.authorization_id, "succeeded")]
    assert _account_listings(sent) == []


async def test_reconciliation_looks_payments_up_by_what_it_knows(
    dev_client: Client,
    task_queue: str,
    module_localstripe: str,
    gateway: StripeGateway,
    control: httpx.AsyncClient,
) -> None:
    """The reconcile activity hands each lookup the payment's creation time and
    authorization id: on a crowded account, it lists no more than the window's
    own listing does, and finds nothing wrong."""
    await _crowd(control, CROWD)
    start = datetime.now(UTC) - timedelta(seconds=1)
    async with _worker(dev_client, task_queue, gateway):
        paid = await _pay(dev_client, _settings(module_localstripe, task_queue))
    window = Window(start=start, end=datetime.now(UTC) + timedelta(seconds=1))
    # The first listing learns that localstripe refuses ``created`` filters.
    await gateway.list_operations(since=window.start, until=window.end)
    sent = requests_sent(gateway)
    await gateway.list_operations(since=window.start, until=window.end)
    listing_alone = len(_account_listings(sent))
    sent.clear()
    reconcile = ReconciliationActivities(gateway, dev_client).reconcile
    report = await ActivityEnvironment().run(reconcile, window)
    assert paid.id not in report.in_flight and report.checked >= 1
    assert report.mismatches == []
    assert len(_account_listings(sent)) == listing_alone
