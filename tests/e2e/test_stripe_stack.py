"""The whole stack on the Stripe adapter, as `PAYMENTS_GATEWAY=stripe make run`
runs it: with no PAYMENTS_STRIPE_API_BASE the stack starts a localstripe of its
own (from scratch, on a free port here) instead of the simulator, says so in
its banner, and every test payment method the demo page offers there does what
the README's table says, over the HTTP API, each with exactly one
PaymentIntent on the Stripe side. A Stripe server given by URL that does not
serve keeps the stack from starting, saying why."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack import Stack, StackConfig, StackError, free_ports

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
WAIT = {"Prefer": "wait=20"}
STRIPE_KEY = "sk_test_stack"


@pytest.fixture(scope="module")
def stripe_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PAYMENTS_GATEWAY": "stripe",
        # Empty as unset, whatever the shell running the tests says.
        "PAYMENTS_STRIPE_API_BASE": "",
        "PAYMENTS_STRIPE_API_KEY": STRIPE_KEY,
    }
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("stripe-stack"))
    lines: list[str] = []
    with Stack(config, env=env, output=lines.append) as stack:
        stack.output_lines = lines  # type: ignore[attr-defined]
        yield stack


@pytest.fixture
async def api(stripe_stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stripe_stack.api_key}"}
    async with httpx.AsyncClient(
        base_url=stripe_stack.api_url, headers=headers, timeout=60
    ) as client:
        yield client


async def payment_intents(stack: Stack, payment_id: str) -> list[dict[str, Any]]:
    """The PaymentIntents the stack's localstripe holds for one of our payments."""
    assert stack.stripe_api_base is not None
    async with httpx.AsyncClient(
        base_url=stack.stripe_api_base, headers={"Authorization": f"Bearer {STRIPE_KEY}"}
    ) as stripe:
        listed = (await stripe.get("/v1/payment_intents", params={"limit": 100})).json()
    return [
        intent
        for intent in listed["data"]
        if (intent.get("metadata") or {}).get("payment_id") == payment_id
    ]


async def pay(api: httpx.AsyncClient, **fields: Any) -> dict[str, Any]:
    created = await api.post("/v1/payments", json={**VISA, **fields}, headers=WAIT)
    assert created.status_code in (200, 202), created.text
    payment: dict[str, Any] = created.json()
    return payment


def test_the_stack_runs_its_own_localstripe_and_says_so(stripe_stack: Stack) -> None:
    config = stripe_stack.config
    assert stripe_stack.process_names == ("temporal", "localstripe", "mail", "worker", "api")
    assert stripe_stack.stripe_api_base == f"http://127.0.0.1:{config.localstripe_port}"
    assert stripe_stack.command("localstripe")[1:] == [
        "--port",
        str(config.localstripe_port),
        "--from-scratch",
    ]
    banner = stripe_stack.banner()
    assert f"Gateway      stripe     localstripe at {stripe_stack.stripe_api_base}" in banner
    assert "simulator" not in banner.lower()
    assert str(config.simulator_port) not in banner
    lines = stripe_stack.output_lines  # type: ignore[attr-defined]
    assert any(line.startswith("[devstack] localstripe is ready") for line in lines)
    assert not any(line.startswith("[simulator]") for line in lines)
    # Its access log is not printed (a line a request would drown the rest).
    assert not any('"GET /v1/payment_intents' in line for line in lines)


async def test_pay_refund_capture_and_cancel_on_stripe(
    api: httpx.AsyncClient, stripe_stack: Stack
) -> None:
    paid = await pay(api)
    assert paid["status"] == "succeeded", paid
    refund = await api.post(
        f"/v1/payments/{paid['id']}/refunds", json={"amount": 500}, headers=WAIT
    )
    assert refund.json()["status"] == "succeeded"

    to_capture = await pay(api, capture_method="manual", payment_method="pm_card_mastercard")
    assert to_capture["status"] == "requires_capture", to_capture
    captured = await api.post(
        f"/v1/payments/{to_capture['id']}/capture", json={"amount": 1500}, headers=WAIT
    )
    assert captured.json()["status"] == "succeeded"
    assert captured.json()["amount_captured"] == 1500
    refunded = await api.post(f"/v1/payments/{to_capture['id']}/refunds", json={}, headers=WAIT)
    assert refunded.json()["status"] == "succeeded" and refunded.json()["amount"] == 1500
    after = (await api.get(f"/v1/payments/{to_capture['id']}")).json()
    assert (after["status"], after["amount_refunded"]) == ("refunded", 1500)

    to_cancel = await pay(api, capture_method="manual")
    canceled = await api.post(f"/v1/payments/{to_cancel['id']}/cancel", headers=WAIT)
    assert canceled.json()["status"] == "canceled"

    expected = {paid["id"]: "succeeded", to_capture["id"]: "succeeded", to_cancel["id"]: "canceled"}
    for payment_id, status in expected.items():
        intents = await payment_intents(stripe_stack, payment_id)
        assert len(intents) == 1, (payment_id, intents)
        assert intents[0]["status"] == status


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_declines_on_stripe_have_the_readme_s_codes(
    api: httpx.AsyncClient, stripe_stack: Stack, payment_method: str, code: str, decline_code: str
) -> None:
    failed = await pay(api, payment_method=payment_method)
    assert failed["status"] == "failed", failed
    assert failed["failure"] == {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": failed["failure"]["message"],
    }
    assert len(await payment_intents(stripe_stack, failed["id"])) == 1


async def test_the_simulator_s_capture_failure_is_refused_on_stripe(
    api: httpx.AsyncClient, stripe_stack: Stack
) -> None:
    """Stripe has no card whose capture fails: the payment fails at once, naming
    the payment method, and the demo page does not offer it (below)."""
    failed = await pay(api, payment_method="pm_card_captureFails", capture_method="manual")
    for _ in range(100):
        if failed["status"] == "failed":
            break
        await asyncio.sleep(0.2)
        failed = (await api.get(f"/v1/payments/{failed['id']}")).json()
    assert failed["status"] == "failed", failed
    assert failed["failure"]["code"] == "resource_missing"
    assert "pm_card_captureFails" in failed["failure"]["message"]
    assert await payment_intents(stripe_stack, failed["id"]) == []


async def test_the_demo_page_offers_what_stripe_supports(stripe_stack: Stack) -> None:
    async with httpx.AsyncClient(base_url=stripe_stack.api_url) as browser:
        config = (await browser.get("/demo/config")).json()
    assert config["gateway"] == "stripe"
    methods = [method["id"] for method in config["payment_methods"]]
    assert methods[0] == "pm_card_visa"
    assert "pm_card_captureFails" not in methods


async def test_reconciliation_on_stripe_finds_nothing_wrong(api: httpx.AsyncClient) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    paid = await pay(api)
    await api.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": 100}, headers=WAIT)
    operator = {"Authorization": "Bearer sk_test_operator"}
    window = {
        "start": start.isoformat(),
        "end": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }
    run = await api.post("/v1/reconciliation/runs", json=window, headers=operator)
    assert run.status_code == 200, run.text
    report = run.json()
    assert report["checked"] >= 1
    assert report["mismatches"] == []


# -- a Stripe server given by URL ------------------------------------------------


def _given_server(tmp_path: Path, base: str, **env: str) -> Stack:
    config = StackConfig.on_free_ports(tmp_path / "data")
    env = {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_BASE": base, **env}
    return Stack(config, env=env, output=lambda line: None, stripe_check_timeout=1)


def test_a_given_stripe_server_that_is_not_there_stops_the_start(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    stack = _given_server(tmp_path, f"http://127.0.0.1:{port}")
    assert stack.process_names == ("temporal", "mail", "worker", "api")
    with pytest.raises(StackError) as failure:
        stack.start()
    assert (
        f"PAYMENTS_GATEWAY=stripe, but the Stripe server at "
        f"PAYMENTS_STRIPE_API_BASE=http://127.0.0.1:{port} does not serve: nothing answers there"
    ) in str(failure.value)
    # Nothing was started, so nothing is left running.
    assert all(child.pid is None for child in stack.processes.values())


def test_a_given_stripe_server_that_refuses_the_key_stops_the_start(
    tmp_path: Path, localstripe: str
) -> None:
    # localstripe takes any key that starts with sk_.
    stack = _given_server(tmp_path, localstripe, PAYMENTS_STRIPE_API_KEY="rk_not_secret")
    with pytest.raises(StackError, match="answered HTTP 401: the server refuses the key"):
        stack.start()
    assert all(child.pid is None for child in stack.processes.values())
