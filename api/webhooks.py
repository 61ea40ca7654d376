"""Inbound gateway webhooks: ``POST /v1/gateway/webhooks/stripe``, and the
simulator's, which signs the same way with its own secret
(``POST /v1/gateway/webhooks/simulator``: a customer's 3-D Secure decision).

A request is believed only with a valid ``Stripe-Signature``: a timestamp
within the tolerance and an HMAC-SHA256 of ``"<t>.<body>"`` under the
endpoint secret, compared in constant time. A believed event is delivered to
its payment's workflow as the ``gateway_event`` signal; the workflow records
each event id once, so Stripe's retries and replays change nothing. Anything
else is refused (``400``) and changes nothing, as is an event whose ids look
like a card number (they would be recorded and logged).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Request

from api.deps import ServiceDep
from api.errors import InvalidRequest, not_found
from api.openapi import WebhookReceipt, errors
from payments.cards import find_card_number
from payments.models import GatewayEvent

router = APIRouter(tags=["webhooks"])
log = logging.getLogger("api.webhooks")


def verify_signature(
    body: bytes, header: str | None, secret: str, tolerance: float, now: float | None = None
) -> None:
    """Raise ``InvalidRequest`` unless ``header`` signs ``body`` recently with ``secret``."""
    if not header:
        raise InvalidRequest(400, "signature_missing", "the Stripe-Signature header is missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and re.fullmatch(r"[0-9]{1,12}", value):
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise InvalidRequest(400, "signature_invalid", "the Stripe-Signature header is malformed")
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise InvalidRequest(400, "signature_stale", "the signature's timestamp is too old")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256
    ).hexdigest()
    # Check every candidate, so the time taken says nothing about which one matched.
    matched = False
    for candidate in signatures:
        # As bytes: a header may hold non-ASCII, which compare_digest refuses in a str.
        matched |= hmac.compare_digest(expected.encode(), candidate.encode())
    if not matched:
        raise InvalidRequest(400, "signature_invalid", "the signature does not match")


def _event(body: bytes) -> GatewayEvent | None:
    try:
        data: Any = json.loads(body)
        obj = data["data"]["object"]
        payment_id = (obj.get("metadata") or {}).get("payment_id")
        return GatewayEvent(
            id=data["id"],
            type=data["type"],
            created=data.get("created"),
            object_id=obj.get("id"),
            payment_id=payment_id,
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        return None


def _route(gateway: str) -> dict[str, Any]:
    return {
        "path": f"/v1/gateway/webhooks/{gateway}",
        "responses": {200: {"model": WebhookReceipt}, **errors(400, 413, 429, 503)},
        "response_model": None,
        # Read raw (the signature covers the exact bytes), so declared here by hand.
        "openapi_extra": {
            "parameters": [
                {
                    "name": "Stripe-Signature",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                    "description": "`t=<unix time>,v1=<HMAC-SHA256 of '<t>.<body>'>`",
                }
            ],
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": {"type": "object"}}},
            },
        },
    }


@router.post(**_route("stripe"))
async def stripe_webhook(request: Request, service: ServiceDep) -> Any:
    secret = service.settings.stripe_webhook_secret.get_secret_value()
    return await _receive(request, service, secret)


@router.post(**_route("simulator"))
async def simulator_webhook(request: Request, service: ServiceDep) -> Any:
    """The simulator's word that a customer decided: it only wakes the payment,
    which asks the gateway itself what was decided. Only while the simulator
    is the gateway."""
    if service.settings.gateway != "simulator":
        raise not_found("webhook endpoint")
    secret = service.settings.simulator_webhook_secret.get_secret_value()
    return await _receive(request, service, secret)


async def _receive(request: Request, service: ServiceDep, secret: str) -> Any:
    settings = service.settings
    body = await request.body()
    verify_signature(
        body,
        request.headers.get("stripe-signature"),
        secret,
        settings.stripe_webhook_tolerance_seconds,
    )
    event = _event(body)
    if event is None:
        raise InvalidRequest(400, "invalid_event", "the body is not a Stripe event")
    if find_card_number(event.model_dump()) is not None:
        # What is kept of an event (ids, type) goes into history and logs; Stripe
        # never sends card numbers, so an event that holds one there is refused.
        raise InvalidRequest(
            400, "card_number_refused", "the event holds what looks like a card number"
        )
    if event.payment_id is None:
        return {"received": True, "delivered": False}
    if not await service.deliver(event):
        # Not ours, or its workflow has closed: acknowledge, so Stripe stops retrying.
        log.info("webhook %s for unknown or closed payment %s", event.id, event.payment_id)
        return {"received": True, "delivered": False}
    return {"received": True, "delivered": True}
