"""What a route answers with: the payment and refund objects of CONTRACT §4,
built from the service's ``PaymentState`` and ``Refund``."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from fastapi.responses import JSONResponse

from payments.ids import client_secret
from payments.models import INTERNAL_FIELDS, PaymentState, Refund
from payments.settings import Settings


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
