"""The v1 routes of CONTRACT §4 (streaming aside) and ``/healthz``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from temporalio.client import Client

from api import engine, prefer
from api.deps import ArchiveDep, ClientDep, MerchantDep, ReaderDep, SettingsDep
from api.errors import InvalidRequest, ServiceUnavailable, from_validation_error
from api.limits import MAX_JSON_DEPTH, json_depth
from api.openapi import (
    PAYMENT_ERRORS,
    V1_ERRORS,
    EventList,
    Health,
    Payment,
    PaymentList,
    RefundObject,
    errors,
    settled_or_accepted,
)
from api.prefer import PreferWait
from payments import currencies
from payments.archive import Archive
from payments.cards import find_card_number
from payments.ids import (
    client_secret,
    command_key_for,
    fingerprint,
    payment_id_for,
    refund_id_for,
    update_id_for,
)
from payments.models import (
    INTERNAL_FIELDS,
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    NEW_REQUEST,
    CancelCommand,
    CancelPayment,
    CaptureCommand,
    CapturePayment,
    CreatePayment,
    Keyed,
    PaymentState,
    Refund,
    RefundCommand,
    RefundPayment,
)
from payments.names import Updates
from payments.settings import Settings
from payments.status import PaymentStatus, can_cancel, is_settled

router = APIRouter()
M = TypeVar("M", bound=BaseModel)

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
]


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    schema = model.model_json_schema()
    if model is CreatePayment:
        # What CreatePayment's validators enforce beyond its types, so the
        # document tells clients (and schemathesis) the whole rule.
        properties = schema["properties"]
        properties["currency"]["enum"] = sorted(currencies.MINOR_UNITS)
        properties["metadata"].update(
            maxProperties=MAX_METADATA_KEYS,
            propertyNames={"minLength": 1, "maxLength": MAX_METADATA_KEY_LENGTH},
            additionalProperties={"type": "string", "maxLength": MAX_METADATA_VALUE_LENGTH},
        )
    return {
        "requestBody": {
            "content": {"application/json": {"schema": schema}},
            "required": model is CreatePayment,
        }
    }


def _too_deep() -> InvalidRequest:
    return InvalidRequest(400, "json_too_deep", "the request body nests too deeply")


async def parse_body(request: Request, model: type[M], *, required: bool = True) -> M:
    """Parse a JSON body into ``model``: card numbers first, then the model's rules."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidRequest(400, "body_missing", "a JSON body is required")
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(400, "invalid_json", "the request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep() from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    if not isinstance(data, dict):
        raise InvalidRequest(400, "invalid_json", "the request body must be a JSON object")
    param = find_card_number(data)
    if param is not None:
        # Refused before anything is logged or started; the digits are not echoed.
        raise InvalidRequest(
            422,
            "card_number_refused",
            "card numbers must never be sent to this API; use a payment method token",
            param or None,
        )
    try:
        return model.model_validate(data, context=NEW_REQUEST)
    except ValidationError as err:
        raise from_validation_error(err) from None


async def refuse_unrepresentable(
    request: Request,
    amount: int | None,
    currency: str | Callable[[], Awaitable[PaymentState]],
) -> None:
    """``422 amount_not_representable`` unless the configured gateway can hold
    ``amount`` exactly in its own units (``payments.currencies``), so nothing
    starts with it. ``currency`` may be a read of the payment, made only when
    the answer depends on it. No amount (a refund of all that remains) is
    representable: the captured and refunded amounts it derives from were."""
    settings: Settings = request.app.state.settings
    if amount is None or currencies.counts_as_iso(settings.gateway):
        return
    if not isinstance(currency, str):
        currency = (await currency()).currency
    try:
        currencies.to_gateway_units(amount, currency, settings.gateway)
    except currencies.NotRepresentable as err:
        raise InvalidRequest(422, "amount_not_representable", str(err), "amount") from None


def render(state: PaymentState, settings: Settings, namespace: str) -> dict[str, Any]:
    """The payment object of CONTRACT §4."""
    body = state.model_dump(mode="json", exclude=set(INTERNAL_FIELDS))
    key = settings.client_secret_key.get_secret_value().encode()
    body["client_secret"] = client_secret(state.id, key)
    base = f"/v1/payments/{state.id}"
    body["links"] = {
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "temporal_ui": f"{settings.temporal_ui_base()}/namespaces/{namespace}/workflows/{state.id}",
    }
    return body


def _payment_response(
    state: PaymentState,
    settings: Settings,
    namespace: str,
    status_code: int,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        render(state, settings, namespace), status_code=status_code, headers=headers
    )


@router.post(
    "/v1/payments",
    status_code=202,
    openapi_extra=_body_schema(CreatePayment),
    tags=["payments"],
    responses={
        **settled_or_accepted(Payment, "the payment"),
        **errors(*V1_ERRORS, 409),
    },
)
async def create_payment(
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    archive: ArchiveDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, CreatePayment)
    await refuse_unrepresentable(request, body.amount, body.currency)
    payment_id = payment_id_for(merchant_id, idempotency_key)
    state, created = await engine.start_payment(
        client,
        settings,
        payment_id=payment_id,
        merchant_id=merchant_id,
        request=body,
        fingerprint=fingerprint(body),
        # Without a key the id is new: no earlier payment, archived or not, can hold it.
        archive=archive if idempotency_key is not None else None,
    )
    if wait is not None and not _settled(state):
        changes = engine.payment_changes(
            client,
            payment_id,
            merchant_id,
            archive=archive,
            # Just started here: nothing to read before following its history.
            started=state if created else None,
        )
        state = await prefer.wait_until(request, wait, _settled, changes)
    settled = _settled(state)
    headers = {"Location": f"/v1/payments/{payment_id}", **prefer.response_headers(wait, settled)}
    if not created:
        headers["Idempotent-Replayed"] = "true"
    status_code = prefer.status_code(wait, settled)
    return _payment_response(state, settings, client.namespace, status_code, headers)


@router.get(
    "/v1/payments",
    tags=["payments"],
    # 404: ``starting_after`` names no payment of this merchant.
    responses={200: {"model": PaymentList}, **errors(*PAYMENT_ERRORS)},
    response_model=None,
)
async def list_payments(
    settings: SettingsDep,
    client: ClientDep,
    archive: ArchiveDep,
    merchant_id: MerchantDep,
    status: PaymentStatus | None = None,
    customer_id: Annotated[
        str | None, Query(max_length=255, pattern=r"^[A-Za-z0-9_.:@-]+$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    found, has_more = await engine.list_payments(
        client,
        merchant_id,
        status=status.value if status else None,
        customer_id=customer_id,
        limit=limit,
        starting_after=starting_after,
        archive=archive,
    )
    return {
        "object": "list",
        "data": [render(state, settings, client.namespace) for state in found],
        "has_more": has_more,
    }


def _settled(state: PaymentState) -> bool:
    return is_settled(state.status)


@router.get(
    "/v1/payments/{payment_id}",
    tags=["payments"],
    responses={
        200: {
            "model": Payment,
            "headers": {"ETag": {"schema": {"type": "string"}, "required": True}},
        },
        304: {"description": "unchanged since the `If-None-Match` ETag"},
        **errors(*PAYMENT_ERRORS),
    },
)
async def get_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    archive: ArchiveDep,
    reader: ReaderDep,
    wait: PreferWait,
) -> Response:
    if wait is None:
        state = await engine.get_payment(client, payment_id, reader.merchant_id, archive=archive)
    else:
        # Reading only: a client secret's wait follows the history, sends nothing.
        changes = engine.payment_changes(client, payment_id, reader.merchant_id, archive=archive)
        state = await prefer.wait_until(request, wait, _settled, changes)
    body = render(state, settings, client.namespace)
    # Pollers send If-None-Match and get a bodiless 304 until something changed.
    etag = 'W/"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'
    headers = {"ETag": etag, **prefer.response_headers(wait, _settled(state))}
    if etag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


@router.get(
    "/v1/payments/{payment_id}/events",
    tags=["payments"],
    responses={200: {"model": EventList}, **errors(*PAYMENT_ERRORS)},
    response_model=None,
)
async def list_events(
    payment_id: str, client: ClientDep, archive: ArchiveDep, reader: ReaderDep
) -> dict[str, Any]:
    found = await engine.payment_events(client, payment_id, reader.merchant_id, archive=archive)
    return {"object": "list", "data": [event.model_dump(mode="json") for event in found]}


async def _decide(
    request: Request,
    settings: Settings,
    client: Client,
    merchant_id: str,
    wait: int | None,
    payment_id: str,
    update: str,
    model: type[CapturePayment] | type[CancelPayment],
    done: Callable[[PaymentState], bool],
    idempotency_key: str | None,
    archive: Archive,
) -> JSONResponse:
    """Capture or cancel: send the update, and wait for its outcome if asked. A
    retry with the same Idempotency-Key (say, after a timeout) gets the first
    answer again instead of "already under way"."""
    body = await parse_body(request, model, required=False)
    await refuse_unrepresentable(
        request,
        getattr(body, "amount", None),
        lambda: engine.get_payment(client, payment_id, merchant_id, archive=archive),
    )
    keyed = update_id = None
    if idempotency_key is not None:
        keyed = Keyed(
            key=command_key_for(payment_id, update, idempotency_key), fingerprint=fingerprint(body)
        )
        update_id = update_id_for(keyed.key, keyed.fingerprint)
    command = (
        CaptureCommand(amount=body.amount, idempotency=keyed)
        if isinstance(body, CapturePayment)
        else CancelCommand(reason=body.reason, idempotency=keyed)
    )
    state = await engine.update_payment(
        client,
        payment_id,
        merchant_id,
        update,
        command,
        result_type=PaymentState,
        update_id=update_id,
        archive=archive,
        keyed=keyed,
        replayed=lambda payment: payment,
    )
    if wait is not None and not done(state):
        changes = engine.payment_changes(client, payment_id, merchant_id, archive=archive)
        state = await prefer.wait_until(request, wait, done, changes)
    settled = done(state)
    status_code = prefer.status_code(wait, settled)
    headers = prefer.response_headers(wait, settled)
    return _payment_response(state, settings, client.namespace, status_code, headers)


@router.post(
    "/v1/payments/{payment_id}/capture",
    status_code=202,
    openapi_extra=_body_schema(CapturePayment),
    tags=["payments"],
    responses={**settled_or_accepted(Payment, "the payment"), **errors(*PAYMENT_ERRORS, 409)},
)
async def capture_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    archive: ArchiveDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def captured_or_failed(state: PaymentState) -> bool:
        return state.status is not PaymentStatus.REQUIRES_CAPTURE

    return await _decide(
        request,
        settings,
        client,
        merchant_id,
        wait,
        payment_id,
        Updates.CAPTURE,
        CapturePayment,
        captured_or_failed,
        idempotency_key,
        archive,
    )


@router.post(
    "/v1/payments/{payment_id}/cancel",
    status_code=202,
    openapi_extra=_body_schema(CancelPayment),
    tags=["payments"],
    responses={**settled_or_accepted(Payment, "the payment"), **errors(*PAYMENT_ERRORS, 409)},
)
async def cancel_payment(
    payment_id: str,
    request: Request,
    settings: SettingsDep,
    client: ClientDep,
    archive: ArchiveDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    def canceled(state: PaymentState) -> bool:
        return not can_cancel(state.status)

    return await _decide(
        request,
        settings,
        client,
        merchant_id,
        wait,
        payment_id,
        Updates.CANCEL,
        CancelPayment,
        canceled,
        idempotency_key,
        archive,
    )


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=202,
    openapi_extra=_body_schema(RefundPayment),
    tags=["refunds"],
    responses={**settled_or_accepted(RefundObject, "the refund"), **errors(*PAYMENT_ERRORS, 409)},
)
async def refund_payment(
    payment_id: str,
    request: Request,
    client: ClientDep,
    archive: ArchiveDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, RefundPayment, required=False)
    await refuse_unrepresentable(
        request,
        body.amount,
        lambda: engine.get_payment(client, payment_id, merchant_id, archive=archive),
    )
    refund_id = refund_id_for(payment_id, idempotency_key)
    # With a key: the same request is the same update; another one under the
    # key reaches the workflow, which refuses it.
    request_fingerprint = fingerprint(body) if idempotency_key is not None else None
    update_id = update_id_for(refund_id, request_fingerprint) if request_fingerprint else refund_id
    command = RefundCommand(
        refund_id=refund_id,
        amount=body.amount,
        reason=body.reason,
        fingerprint=request_fingerprint,
    )
    refund = await engine.update_payment(
        client,
        payment_id,
        merchant_id,
        Updates.REFUND,
        command,
        result_type=Refund,
        update_id=update_id,
        archive=archive,
        keyed=Keyed(key=refund_id, fingerprint=request_fingerprint)
        if request_fingerprint
        else None,
        replayed=lambda payment: next(r for r in payment.refunds if r.id == refund_id),
    )

    def this_refund(state: PaymentState) -> Refund:
        return next((r for r in state.refunds if r.id == refund_id), refund)

    def refund_done(state: PaymentState) -> bool:
        return this_refund(state).status != "pending"

    if wait is not None and refund.status == "pending":
        changes = engine.payment_changes(client, payment_id, merchant_id, archive=archive)
        refund = this_refund(await prefer.wait_until(request, wait, refund_done, changes))
    settled = refund.status != "pending"
    body_out = {"object": "refund", "payment_id": payment_id, **refund.model_dump(mode="json")}
    status_code = prefer.status_code(wait, settled)
    return JSONResponse(
        body_out, status_code=status_code, headers=prefer.response_headers(wait, settled)
    )


@router.get(
    "/healthz",
    tags=["health"],
    responses={200: {"model": Health}, **errors(503)},
    response_model=None,
)
async def healthz(client: ClientDep) -> dict[str, str]:
    if not await engine.healthy(client):
        raise ServiceUnavailable("temporal_unavailable", "the payment engine is unreachable")
    return {"status": "ok"}
