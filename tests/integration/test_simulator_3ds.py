"""The simulator's 3-D Secure card over real HTTP (CONTRACT §14): authorize
answers with the customer's pending authentication, the challenge page
decides it, the decision reaches a real loopback receiver as a signed webhook
(verified with the API's own verifier), and the ledger holds an authorization
only once the customer approved. Its book survives a restart."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from support import Receiver, serving

from api.webhooks import verify_signature
from gateway.http_simulator import SimulatorGateway
from gateway.simulator.app import create_app
from gateway.simulator.core import SimulatorLedger
from gateway.simulator.notify import Notifier
from payments.gateway import Authentication, NotFound

SECRET = "whsec_test_simulator"
KEY = "pay_3ds:i1:authorize"


@dataclass
class Bank:
    url: str
    browser: httpx.AsyncClient  # the customer's: no redirects followed
    gateway: SimulatorGateway
    receiver: Receiver


@pytest.fixture
async def bank(tmp_path: Path) -> AsyncIterator[Bank]:
    receiver = Receiver()
    async with serving(receiver) as hook_url:
        app = create_app(SimulatorLedger(), notifier=Notifier(hook_url, SECRET))
        async with (
            serving(app, access_log=False, ws="none") as url,
            httpx.AsyncClient(base_url=url, timeout=5) as browser,
        ):
            gateway = SimulatorGateway(url, timeout=5)
            try:
                yield Bank(url, browser, gateway, receiver)
            finally:
                await gateway.aclose()


async def _authorize(gateway: SimulatorGateway, **extra: str) -> Authentication:
    pending = await gateway.authorize(
        reference="pay_3ds",
        amount=1999,
        currency="eur",
        payment_method="pm_card_threeDSecure2Required",
        idempotency_key=KEY,
        **extra,
    )
    assert isinstance(pending, Authentication)
    return pending


async def _ledger(bank: Bank) -> list[tuple[object, object]]:
    entries = (await bank.browser.get("/_ledger", params={"reference": "pay_3ds"})).json()["data"]
    return [(entry["kind"], entry["idempotency_key"]) for entry in entries]


async def test_approve_authorizes_redirects_and_tells_the_service(bank: Bank) -> None:
    pending = await _authorize(bank.gateway, return_url="https://shop.example/orders/1")
    assert pending.status == "pending"
    assert pending.url == f"{bank.url}/authenticate/{pending.id}"
    # The same call again is the same authentication, and nothing is held yet.
    assert (await _authorize(bank.gateway)).id == pending.id
    assert await _ledger(bank) == []

    page = await bank.browser.get(f"/authenticate/{pending.id}")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert 'value="approve"' in page.text and 'value="fail"' in page.text

    answer = await bank.browser.post(
        f"/authenticate/{pending.id}",
        content="result=approve",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert (answer.status_code, answer.headers["location"]) == (
        303,
        "https://shop.example/orders/1",
    )
    assert await _ledger(bank) == [("authorization", KEY)]

    decided = await bank.gateway.authentication(pending.id)
    assert decided.status == "succeeded" and decided.url is None
    assert decided.authorization is not None and decided.authorization.amount == 1999
    # A repeated authorize now learns the decision.
    assert (await _authorize(bank.gateway)).status == "succeeded"

    [hook] = await bank.receiver.wait_for(lambda got: len(got) >= 1)
    verify_signature(hook.body, hook.headers["stripe-signature"], SECRET, tolerance=60)
    event = json.loads(hook.body)
    assert event["type"] == "authentication.succeeded"
    assert event["data"]["object"]["id"] == pending.id
    assert event["data"]["object"]["metadata"] == {"payment_id": "pay_3ds"}


async def test_fail_holds_nothing_and_a_decision_is_final(bank: Bank) -> None:
    pending = await _authorize(bank.gateway)
    form = {"content-type": "application/x-www-form-urlencoded"}
    failed = await bank.browser.post(
        f"/authenticate/{pending.id}", content="result=fail", headers=form
    )
    # Without a return_url the page itself shows the outcome.
    assert failed.status_code == 200 and "Authentication failed" in failed.text
    assert (await bank.gateway.authentication(pending.id)).status == "failed"
    again = await bank.browser.post(
        f"/authenticate/{pending.id}", content="result=approve", headers=form
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "authentication_closed"
    nonsense = await bank.browser.post(
        f"/authenticate/{pending.id}", content="result=maybe", headers=form
    )
    assert nonsense.status_code == 422
    assert await _ledger(bank) == []
    [hook] = await bank.receiver.wait_for(lambda got: len(got) >= 1)
    assert json.loads(hook.body)["type"] == "authentication.failed"


async def test_cancel_ends_a_pending_authentication_only(bank: Bank) -> None:
    pending = await _authorize(bank.gateway)
    canceled = await bank.gateway.cancel_authentication(pending.id, idempotency_key="k1")
    assert canceled.status == "canceled"
    # Canceling again answers where it ended.
    assert (await bank.gateway.cancel_authentication(pending.id, idempotency_key="k2")).status == (
        "canceled"
    )
    refused = await bank.browser.post(
        f"/authenticate/{pending.id}",
        content="result=approve",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "authentication_closed"
    assert await _ledger(bank) == []
    with pytest.raises(NotFound, match="no such authentication"):
        await bank.gateway.cancel_authentication("authn_nope", idempotency_key="k3")


async def test_the_book_remembers_authentications_across_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "simulator.sqlite"
    first = SimulatorLedger(path=path)
    pending = await first.authorize(
        reference="pay_3ds",
        amount=500,
        currency="usd",
        payment_method="pm_card_threeDSecure2Required",
        idempotency_key=KEY,
    )
    assert isinstance(pending, Authentication)
    first.decide(pending.id, approve=True)
    first.close()

    again = SimulatorLedger(path=path)
    try:
        found = again.authentication(pending.id)
        assert found.status == "succeeded" and found.authorization is not None
        assert [op.kind for op in again.ledger("pay_3ds")] == ["authorization"]
        # The authorize key still replays: the decided authentication, not a second hold.
        replayed = await again.authorize(
            reference="pay_3ds",
            amount=500,
            currency="usd",
            payment_method="pm_card_threeDSecure2Required",
            idempotency_key=KEY,
        )
        assert isinstance(replayed, Authentication) and replayed.status == "succeeded"
        assert len(again.ledger("pay_3ds")) == 1
    finally:
        again.close()
