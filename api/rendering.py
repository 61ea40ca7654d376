"""What a route answers with: the payment and refund objects of CONTRACT §4,
built from the service's ``PaymentState`` and ``Refund``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi.responses import JSONResponse

from payments.models import PaymentState, Refund
from payments.rendering import render
from payments.settings import Settings

__all__ = ["etag", "payment_response", "render", "render_refund"]


def render_refund(refund: Refund, payment_id: str | None) -> dict[str, Any]:
    """The refund object of CONTRACT §4 (``payment_id`` None: without it)."""
    named = {} if payment_id is None else {"payment_id": payment_id}
    return {"object": "refund", **named, **refund.model_dump(mode="json")}


def etag(body: dict[str, Any]) -> str:
    """A weak ETag of a rendered body: pollers get a bodiless 304 until it changes."""
    return 'W/"' + hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:32] + '"'


def payment_response(
    state: PaymentState,
    settings: Settings,
    namespace: str,
    status_code: int,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    return JSONResponse(
        render(state, settings, namespace), status_code=status_code, headers=headers
    )
