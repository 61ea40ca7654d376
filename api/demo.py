"""The demo page at ``/`` and the few endpoints it needs.

The page lets a person try the service in a browser: pay with a test payment
method and watch the events arrive. It never holds an API key: it creates
payments through ``/demo/payments`` (as the demo merchant, server side) and
follows each one with that payment's client secret. A client secret only
reads, so the demo's capture, cancel and refund endpoints ask for the
payment's ``demo_token`` instead, which only ``/demo/payments`` hands out.
The demo merchant's backend is played by ``/demo/webhook``: the API
registers it as the merchant's webhook endpoint when it starts
(:func:`keep_demo_endpoint`), checks each delivery's signature there, and the
page shows the payment's deliveries. ``PAYMENTS_DEMO_MERCHANT`` empty turns
all of it off (and production refuses to start with it set). ``/demo/config``
tells the page what it needs, the test payment methods of the configured
gateway among it.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from standardwebhooks import Webhook, WebhookVerificationError

from api.deps import ServiceDep, SettingsDep, WebhooksDep, refusals_spend, spend
from api.errors import AuthenticationFailed, InvalidRequest, not_found
from api.parsing import parse_body
from api.rendering import render, render_refund
from payments import events
from payments.ids import demo_token, verify_demo_token
from payments.models import CancelPayment, CapturePayment, CreatePayment, RefundPayment
from payments.settings import Settings
from payments.webhook_service import WebhookService

log = logging.getLogger("api.demo")
STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
Token = Annotated[str, Query(max_length=200)]

# The test payment methods the page offers, by gateway (PAYMENTS_GATEWAY), with
# what each does there. The Stripe ones are Stripe's test PaymentMethods, which
# hold on localstripe too, where the adapter stands in for those it lacks
# (gateway/localstripe.py); a capture that fails is the simulator's alone.
_SUCCEEDS = [
    ("pm_card_visa", "Visa · succeeds"),
    ("pm_card_mastercard", "Mastercard · succeeds"),
]
_DECLINES = [
    ("pm_card_chargeDeclined", "Declined · generic decline"),
    ("pm_card_chargeDeclinedInsufficientFunds", "Declined · insufficient funds"),
    ("pm_card_chargeDeclinedExpiredCard", "Declined · expired card"),
]
PAYMENT_METHODS: dict[str, list[tuple[str, str]]] = {
    "simulator": [
        *_SUCCEEDS,
        *_DECLINES,
        ("pm_card_captureFails", "Authorizes, capture refused · voided"),
        ("pm_card_threeDSecure2Required", "3-D Secure · confirm with your bank"),
    ],
    "stripe": [*_SUCCEEDS, *_DECLINES],
}


def _demo_merchant(settings: Settings) -> str:
    if not settings.demo_merchant:
        raise not_found("page")
    return settings.demo_merchant


@router.get("/")
async def page(settings: SettingsDep) -> FileResponse:
    _demo_merchant(settings)
    return FileResponse(STATIC / "index.html")


@router.get("/static/{name}")
async def asset(name: str, settings: SettingsDep) -> FileResponse:
    _demo_merchant(settings)
    path = STATIC / name
    if name not in {p.name for p in STATIC.iterdir()} or not path.is_file():
        raise not_found("file")
    return FileResponse(path)


@router.get("/demo/config")
async def config(service: ServiceDep) -> dict[str, Any]:
    settings = service.settings
    _demo_merchant(settings)
    return {
        "temporal_ui": settings.temporal_ui_base(),
        "namespace": service.client.namespace,
        "gateway": settings.gateway,
        "payment_methods": [
            {"id": method, "label": label} for method, label in PAYMENT_METHODS[settings.gateway]
        ],
        # What the page follows on the stream, receipts by e-mail among them.
        "event_types": list(events.TYPES),
    }


@router.post("/demo/payments")
async def create(request: Request, service: ServiceDep) -> JSONResponse:
    settings = service.settings
    merchant_id = _demo_merchant(settings)
    # The page is public: every visitor draws from the demo merchant's one bucket.
    spend(request, merchant_id)
    body = await parse_body(request, CreatePayment)
    state = (await service.start(merchant_id, body)).payment
    key = settings.client_secret_key.get_secret_value().encode()
    rendered = render(state, settings, service.client.namespace)
    return JSONResponse({**rendered, "demo_token": demo_token(state.id, key)}, status_code=202)


def _acting(request: Request, settings: Settings, payment_id: str, token: str) -> str:
    """The demo merchant, once ``token`` shows the browser made this payment on
    this page; 401 otherwise (spent from the caller's address, as every 401)."""
    merchant_id = _demo_merchant(settings)
    key = settings.client_secret_key.get_secret_value().encode()
    with refusals_spend(request):
        if not verify_demo_token(payment_id, token, key):
            raise AuthenticationFailed("invalid_demo_token", "the demo token is not valid")
    spend(request, merchant_id)
    return merchant_id


# The page's buttons send what the API's handlers send, through the same
# use cases, without a key and without waiting.


@router.post("/demo/payments/{payment_id}/capture")
async def capture(
    payment_id: str, request: Request, demo_token: Token, service: ServiceDep
) -> JSONResponse:
    merchant_id = _acting(request, service.settings, payment_id, demo_token)
    sent = await service.capture(payment_id, merchant_id, CapturePayment())
    assert sent.payment is not None
    rendered = render(sent.payment, service.settings, service.client.namespace)
    return JSONResponse(rendered, status_code=202)


@router.post("/demo/payments/{payment_id}/cancel")
async def cancel(
    payment_id: str, request: Request, demo_token: Token, service: ServiceDep
) -> JSONResponse:
    merchant_id = _acting(request, service.settings, payment_id, demo_token)
    sent = await service.cancel(
        payment_id, merchant_id, CancelPayment(reason="requested_by_customer")
    )
    assert sent.payment is not None
    rendered = render(sent.payment, service.settings, service.client.namespace)
    return JSONResponse(rendered, status_code=202)


@router.post("/demo/payments/{payment_id}/refunds")
async def refund(
    payment_id: str, request: Request, demo_token: Token, service: ServiceDep
) -> JSONResponse:
    merchant_id = _acting(request, service.settings, payment_id, demo_token)
    body = await parse_body(request, RefundPayment, required=False)
    sent = await service.refund(payment_id, merchant_id, body)
    assert sent.refund is not None
    if sent.refund.status == "failed":
        raise InvalidRequest(409, "refund_failed", "the refund failed")
    return JSONResponse(render_refund(sent.refund, None), status_code=202)


# -- the demo merchant's webhook endpoint --------------------------------------

DEMO_ENDPOINT_PATH = "/demo/webhook"
DEMO_ENDPOINT_DESCRIPTION = "the demo page's own receiver"


def demo_endpoint_url(settings: Settings) -> str:
    return f"{settings.api_self_url()}{DEMO_ENDPOINT_PATH}"


async def keep_demo_endpoint(app: FastAPI) -> None:
    """Register ``/demo/webhook`` as the demo merchant's endpoint, once Temporal
    and a worker answer, and keep its secret (this process's alone: a restart
    rotates it, the old one signing for a day more)."""
    settings: Settings = app.state.settings
    webhooks = WebhookService(app.state.temporal_client, settings)
    pause = 1.0
    while True:
        try:
            made = await webhooks.ensure_endpoint(
                settings.demo_merchant, demo_endpoint_url(settings), DEMO_ENDPOINT_DESCRIPTION
            )
        except Exception as err:  # Temporal or the worker not there yet: try again
            log.debug("demo webhook endpoint not registered yet: %s", err)
            await asyncio.sleep(pause)
            pause = min(pause * 2, 30.0)
            continue
        app.state.demo_webhook_secret = made.secret
        log.info("the demo page receives its webhooks at %s", made.endpoint.url)
        return


@router.post(DEMO_ENDPOINT_PATH)
async def demo_receiver(request: Request, settings: SettingsDep) -> JSONResponse:
    """The demo merchant's backend: believes a delivery only with its signature."""
    _demo_merchant(settings)
    secret = getattr(request.app.state, "demo_webhook_secret", None)
    if secret is None:
        return JSONResponse({"received": False}, status_code=503)
    body = await request.body()
    try:
        Webhook(secret).verify(body, dict(request.headers))
    except WebhookVerificationError:
        raise InvalidRequest(
            400, "signature_invalid", "the webhook signature is not valid"
        ) from None
    return JSONResponse({"received": True})


@router.get("/demo/payments/{payment_id}/deliveries")
async def deliveries(
    payment_id: str, request: Request, demo_token: Token, webhooks: WebhooksDep
) -> dict[str, Any]:
    merchant_id = _acting(request, webhooks.settings, payment_id, demo_token)
    found = await webhooks.payment_deliveries(merchant_id, payment_id)
    return {"data": [delivery.view() for delivery in found]}
