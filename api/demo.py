"""The demo page at ``/`` and the few endpoints it needs.

The page lets a person try the service in a browser: pay with a test payment
method and watch the events arrive. It never holds an API key: it creates
payments through ``/demo/payments`` (as the demo merchant, server side) and
follows each one with that payment's client secret. A client secret only
reads, so the demo's capture, cancel and refund endpoints ask for the
payment's ``demo_token`` instead, which only ``/demo/payments`` hands out.
``PAYMENTS_DEMO_MERCHANT`` empty turns all of it off (and production refuses
to start with it set).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, JSONResponse
from temporalio.client import Client

from api import engine
from api.deps import ClientDep, SettingsDep, refusals_spend, spend
from api.errors import AuthenticationFailed, InvalidRequest, not_found
from api.routes import parse_body, refuse_unrepresentable, render
from payments.archive import Archive
from payments.ids import (
    demo_token,
    fingerprint,
    payment_id_for,
    refund_id_for,
    verify_demo_token,
)
from payments.models import (
    CancelCommand,
    CaptureCommand,
    CreatePayment,
    PaymentState,
    Refund,
    RefundCommand,
    RefundPayment,
)
from payments.names import Updates
from payments.settings import Settings

STATIC = Path(__file__).parent / "static"
router = APIRouter(include_in_schema=False)
Token = Annotated[str, Query(max_length=200)]


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
async def config(settings: SettingsDep, client: ClientDep) -> dict[str, Any]:
    _demo_merchant(settings)
    return {"temporal_ui": settings.temporal_ui_base(), "namespace": client.namespace}


@router.post("/demo/payments")
async def create(request: Request, settings: SettingsDep, client: ClientDep) -> JSONResponse:
    merchant_id = _demo_merchant(settings)
    # The page is public: every visitor draws from the demo merchant's one bucket.
    spend(request, merchant_id)
    body = await parse_body(request, CreatePayment)
    await refuse_unrepresentable(request, body.amount, body.currency)
    state, _ = await engine.start_payment(
        client,
        settings,
        payment_id=payment_id_for(merchant_id, None),
        merchant_id=merchant_id,
        request=body,
        fingerprint=fingerprint(body),
    )
    key = settings.client_secret_key.get_secret_value().encode()
    made = {**render(state, settings, client.namespace), "demo_token": demo_token(state.id, key)}
    return JSONResponse(made, status_code=202)


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


async def _read(
    request: Request, client: Client, settings: Settings, payment_id: str, token: str
) -> PaymentState:
    merchant_id = _acting(request, settings, payment_id, token)
    archive: Archive = request.app.state.archive
    return await engine.get_payment(client, payment_id, merchant_id, archive=archive)


async def _act(
    request: Request,
    client: Client,
    settings: Settings,
    payment_id: str,
    token: str,
    update: str,
    argument: Any,
    result_type: type,
    update_id: str | None = None,
) -> Any:
    merchant_id = _acting(request, settings, payment_id, token)
    archive: Archive = request.app.state.archive
    return await engine.update_payment(
        client,
        payment_id,
        merchant_id,
        update,
        argument,
        result_type=result_type,
        update_id=update_id,
        archive=archive,
    )


@router.post("/demo/payments/{payment_id}/capture")
async def capture(
    payment_id: str, request: Request, demo_token: Token, settings: SettingsDep, client: ClientDep
) -> JSONResponse:
    state = await _act(
        request,
        client,
        settings,
        payment_id,
        demo_token,
        Updates.CAPTURE,
        CaptureCommand(),
        PaymentState,
    )
    return JSONResponse(render(state, settings, client.namespace), status_code=202)


@router.post("/demo/payments/{payment_id}/cancel")
async def cancel(
    payment_id: str, request: Request, demo_token: Token, settings: SettingsDep, client: ClientDep
) -> JSONResponse:
    state = await _act(
        request,
        client,
        settings,
        payment_id,
        demo_token,
        Updates.CANCEL,
        CancelCommand(reason="requested_by_customer"),
        PaymentState,
    )
    return JSONResponse(render(state, settings, client.namespace), status_code=202)


@router.post("/demo/payments/{payment_id}/refunds")
async def refund(
    payment_id: str,
    request: Request,
    demo_token: Token,
    settings: SettingsDep,
    client: ClientDep,
) -> JSONResponse:
    body = await parse_body(request, RefundPayment, required=False)
    await refuse_unrepresentable(
        request, body.amount, lambda: _read(request, client, settings, payment_id, demo_token)
    )
    refund_id = refund_id_for(payment_id, None)
    command = RefundCommand(refund_id=refund_id, amount=body.amount, reason=body.reason)
    result: Refund = await _act(
        request,
        client,
        settings,
        payment_id,
        demo_token,
        Updates.REFUND,
        command,
        Refund,
        update_id=refund_id,
    )
    if result.status == "failed":
        raise InvalidRequest(409, "refund_failed", "the refund failed")
    return JSONResponse({"object": "refund", **result.model_dump(mode="json")}, status_code=202)
