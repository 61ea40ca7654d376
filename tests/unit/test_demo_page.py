"""The demo page is served without Temporal, and only when it is turned on; its
menu of test payment methods is the configured gateway's."""

from __future__ import annotations

from types import SimpleNamespace

import httpx

from api.app import create_app
from gateway.localstripe import STAND_INS
from payments.settings import Settings


async def get(settings: Settings, path: str) -> httpx.Response:
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        return await http.get(path)


ON = Settings(demo_merchant="demo-page")


async def test_page_and_assets_are_served() -> None:
    page = await get(ON, "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    script = await get(ON, "/static/app.js")
    assert script.status_code == 200 and "EventSource" in script.text
    # Only the page's own files; nothing else on disk.
    assert (await get(ON, "/static/..%2F..%2Fpayments%2Fsettings.py")).status_code == 404
    assert (await get(ON, "/static/nothing.js")).status_code == 404


async def test_the_page_is_off_unless_a_demo_merchant_is_set() -> None:
    response = await get(Settings(), "/")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"


async def _config(settings: Settings) -> dict[str, object]:
    app = create_app(settings)
    # /demo/config reads the client's namespace only: no Temporal behind it.
    app.state.temporal_client = SimpleNamespace(namespace="default")
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        answer = await http.get("/demo/config")
    assert answer.status_code == 200, answer.text
    config: dict[str, object] = answer.json()
    return config


def _methods(config: dict[str, object]) -> list[str]:
    listed = config["payment_methods"]
    assert isinstance(listed, list)
    assert all(method["label"] for method in listed)
    return [method["id"] for method in listed]


async def test_the_config_offers_the_simulator_s_test_payment_methods() -> None:
    config = await _config(Settings(demo_merchant="demo-page", gateway="simulator"))
    assert config["gateway"] == "simulator"
    assert _methods(config) == [
        "pm_card_visa",
        "pm_card_mastercard",
        "pm_card_chargeDeclined",
        "pm_card_chargeDeclinedInsufficientFunds",
        "pm_card_chargeDeclinedExpiredCard",
        "pm_card_captureFails",
        "pm_card_threeDSecure2Required",
    ]


async def test_the_config_offers_on_stripe_only_what_stripe_has() -> None:
    config = await _config(Settings(demo_merchant="demo-page", gateway="stripe"))
    assert config["gateway"] == "stripe"
    methods = _methods(config)
    # The simulator's own capture failure has no Stripe test card.
    assert "pm_card_captureFails" not in methods
    # Each is one of Stripe's that localstripe knows, or has a stand-in there.
    assert set(methods) <= {"pm_card_visa", *STAND_INS}
    assert {"pm_card_visa", "pm_card_chargeDeclined"} <= set(methods)


async def test_the_page_builds_its_menu_from_the_config() -> None:
    page = await get(ON, "/")
    assert '<select id="payment-method"' in page.text
    assert "<option" not in page.text.split('id="payment-method"', 1)[1].split("</select>")[0]
    script = await get(ON, "/static/app.js")
    assert 'fetch("/demo/config")' in script.text and "payment_methods" in script.text
