"""The v1 routes of CONTRACT §4 (streaming aside) and ``/healthz``.

Each handler parses (``api.parsing``), calls one use case of the service
(``payments.service``), and renders (``api.rendering``); a caller who sent
``Prefer: wait`` is answered once the outcome is known (``api.prefer``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse

from api import prefer
from api.deps import MerchantDep, ReaderDep, ServiceDep
from api.errors import ServiceUnavailable
from api.openapi import (
    PAYMENT_ERRORS,
    V1_ERRORS,
    EventList,
    Health,
    Payment,
    PaymentList,
    RefundObject,
    body_schema,
    errors,
    settled_or_accepted,
)
from api.parsing import IdempotencyKey, parse_body
from api.prefer import PreferWait
from api.rendering import etag, payment_response, render, render_refund
from payments.models import (
    CancelPayment,
    CapturePayment,
    CreatePayment,
    PaymentState,
    RefundPayment,
)
from payments.service import PaymentService, Sent
from payments.status import PaymentStatus, is_settled, needs_customer

router = APIRouter()


def _settled(state: PaymentState) -> bool:
    return is_settled(state.status)


def _all_it_can_do_alone(state: PaymentState) -> bool:
    """Where a create's wait ends: settled, or waiting on the customer (3-D
    Secure), who can act only once the caller has the ``next_action``. Still
    ``202``: the payment has not settled. A read's wait goes on to the outcome."""
    return _settled(state) or needs_customer(state.status)


@router.post(
    "/v1/payments",
    status_code=202,
    openapi_extra=body_schema(CreatePayment),
    tags=["payments"],
    responses={
        **settled_or_accepted(Payment, "the payment"),
        **errors(*V1_ERRORS, 409),
    },
)
async def create_payment(
    request: Request,
    service: ServiceDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, CreatePayment)
    started = await service.start(merchant_id, body, idempotency_key)
    state = started.payment
    if wait is not None and not _all_it_can_do_alone(state):
        changes = service.changes(
            state.id,
            merchant_id,
            # Just started here: nothing to read before following its history.
            started=state if started.created else None,
        )
        state = await prefer.wait_until(request, wait, _all_it_can_do_alone, changes)
    settled = _settled(state)
    headers = {"Location": f"/v1/payments/{state.id}", **prefer.response_headers(wait, settled)}
    if not started.created:
        headers["Idempotent-Replayed"] = "true"
    status_code = prefer.status_code(wait, settled)
    return payment_response(state, service.settings, service.client.namespace, status_code, headers)


@router.get(
    "/v1/payments",
    tags=["payments"],
    # 404: ``starting_after`` names no payment of this merchant.
    responses={200: {"model": PaymentList}, **errors(*PAYMENT_ERRORS)},
    response_model=None,
)
async def list_payments(
    service: ServiceDep,
    merchant_id: MerchantDep,
    status: PaymentStatus | None = None,
    customer_id: Annotated[
        str | None, Query(max_length=255, pattern=r"^[A-Za-z0-9_.:@-]+$")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[str | None, Query(max_length=100)] = None,
) -> dict[str, Any]:
    found, has_more = await service.list_payments(
        merchant_id,
        status=status.value if status else None,
        customer_id=customer_id,
        limit=limit,
        starting_after=starting_after,
    )
    namespace = service.client.namespace
    return {
        "object": "list",
        "data": [render(state, service.settings, namespace) for state in found],
        "has_more": has_more,
    }


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
    service: ServiceDep,
    reader: ReaderDep,
    wait: PreferWait,
) -> Response:
    if wait is None:
        state = await service.get(payment_id, reader.merchant_id)
    else:
        # Reading only: a client secret's wait follows the history, sends nothing.
        changes = service.changes(payment_id, reader.merchant_id)
        state = await prefer.wait_until(request, wait, _settled, changes)
    body = render(
        state,
        service.settings,
        service.client.namespace,
        for_merchant=reader.merchant_id is not None,
    )
    # Pollers send If-None-Match and get a bodiless 304 until something changed.
    tag = etag(body)
    headers = {"ETag": tag, **prefer.response_headers(wait, _settled(state))}
    if tag in request.headers.get("if-none-match", ""):
        return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


@router.get(
    "/v1/payments/{payment_id}/events",
    tags=["payments"],
    responses={200: {"model": EventList}, **errors(*PAYMENT_ERRORS)},
    response_model=None,
)
async def list_events(payment_id: str, service: ServiceDep, reader: ReaderDep) -> dict[str, Any]:
    found = await service.payment_events(payment_id, reader.merchant_id)
    return {"object": "list", "data": [event.model_dump(mode="json") for event in found]}


async def _answer(
    request: Request,
    service: PaymentService,
    payment_id: str,
    merchant_id: str,
    wait: int | None,
    sent: Sent,
) -> JSONResponse:
    """The answer to a capture, cancel or refund the payment accepted: at once
    (``202``), or once its outcome is known if the caller waits for it."""
    payment, refund = sent.payment, sent.refund
    settled = sent.settled(payment) if payment is not None else bool(refund and refund.settled)
    if wait is not None and not settled:
        changes = service.changes(payment_id, merchant_id)
        payment = await prefer.wait_until(request, wait, sent.settled, changes)
        settled = sent.settled(payment)
        if refund is not None:
            refund = next((r for r in payment.refunds if r.id == refund.id), refund)
    status_code = prefer.status_code(wait, settled)
    headers = prefer.response_headers(wait, settled)
    if refund is not None:
        body = render_refund(refund, payment_id)
        return JSONResponse(body, status_code=status_code, headers=headers)
    assert payment is not None
    namespace = service.client.namespace
    return payment_response(payment, service.settings, namespace, status_code, headers)


@router.post(
    "/v1/payments/{payment_id}/capture",
    status_code=202,
    openapi_extra=body_schema(CapturePayment),
    tags=["payments"],
    responses={**settled_or_accepted(Payment, "the payment"), **errors(*PAYMENT_ERRORS, 409)},
)
async def capture_payment(
    payment_id: str,
    request: Request,
    service: ServiceDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, CapturePayment, required=False)
    sent = await service.capture(payment_id, merchant_id, body, idempotency_key)
    return await _answer(request, service, payment_id, merchant_id, wait, sent)


@router.post(
    "/v1/payments/{payment_id}/cancel",
    status_code=202,
    openapi_extra=body_schema(CancelPayment),
    tags=["payments"],
    responses={**settled_or_accepted(Payment, "the payment"), **errors(*PAYMENT_ERRORS, 409)},
)
async def cancel_payment(
    payment_id: str,
    request: Request,
    service: ServiceDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, CancelPayment, required=False)
    sent = await service.cancel(payment_id, merchant_id, body, idempotency_key)
    return await _answer(request, service, payment_id, merchant_id, wait, sent)


@router.post(
    "/v1/payments/{payment_id}/refunds",
    status_code=202,
    openapi_extra=body_schema(RefundPayment),
    tags=["refunds"],
    responses={**settled_or_accepted(RefundObject, "the refund"), **errors(*PAYMENT_ERRORS, 409)},
)
async def refund_payment(
    payment_id: str,
    request: Request,
    service: ServiceDep,
    merchant_id: MerchantDep,
    wait: PreferWait,
    idempotency_key: IdempotencyKey = None,
) -> JSONResponse:
    body = await parse_body(request, RefundPayment, required=False)
    sent = await service.refund(payment_id, merchant_id, body, idempotency_key)
    return await _answer(request, service, payment_id, merchant_id, wait, sent)


@router.get(
    "/healthz",
    tags=["health"],
    responses={200: {"model": Health}, **errors(503)},
    response_model=None,
)
async def healthz(service: ServiceDep) -> dict[str, str]:
    if not await service.healthy():
        raise ServiceUnavailable("temporal_unavailable", "the payment engine is unreachable")
    return {"status": "ok"}
