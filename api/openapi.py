"""What the OpenAPI document says each route answers: the bodies of CONTRACT §4
(payment, refund, lists, events, the error body) and, per route, every status
it can give, so a client generated from ``/openapi.json`` (or schemathesis)
knows them all.

These models only describe responses; the routes build the bodies themselves
(:func:`payments.rendering.render`). They forbid extra fields, so a body that grows a
field the document does not name fails the schema tests.

The pages that show the document, ``/docs`` (Swagger UI) and ``/redoc``, are
here too (:func:`install_docs`), served with their scripts and styles from
this server, so they work where no CDN can be reached.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict

from payments import currencies
from payments.models import (
    MAX_METADATA_KEY_LENGTH,
    MAX_METADATA_KEYS,
    MAX_METADATA_VALUE_LENGTH,
    CreatePayment,
    Event,
    Failure,
    NextAction,
    Refund,
)
from payments.reconciliation import ReconciliationReport
from payments.status import PaymentStatus
from payments.webhooks import CreateEndpoint


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    type: Literal[
        "invalid_request_error",
        "authentication_error",
        "idempotency_error",
        "rate_limit_error",
        "api_error",
    ]
    code: str
    message: str
    param: str | None


class ErrorBody(_Body):
    """Every error, whatever the status: ``{"error": {...}}``."""

    error: ErrorDetail


class PaymentLinks(_Body):
    events: str
    stream: str
    temporal_ui: str


class Payment(_Body):
    id: str
    object: Literal["payment"]
    status: PaymentStatus
    amount: int
    currency: str
    amount_capturable: int
    amount_captured: int
    amount_refunded: int
    capture_method: Literal["automatic", "manual"]
    payment_method: str
    customer_id: str | None
    description: str | None
    metadata: dict[str, str]
    # Where receipts go (CONTRACT §16): shown to the merchant, absent for a client secret.
    receipt_email: str | None = None
    failure: Failure | None
    # While requires_action: where the customer authenticates (CONTRACT §14).
    next_action: NextAction | None
    refunds: list[Refund]
    client_secret: str
    created_at: datetime
    updated_at: datetime
    # When the closed payment's record reached the archive; null until then.
    archived_at: datetime | None
    links: PaymentLinks


class PaymentList(_Body):
    object: Literal["list"]
    data: list[Payment]
    has_more: bool


class EventList(_Body):
    object: Literal["list"]
    data: list[Event]


class RefundObject(_Body):
    object: Literal["refund"]
    payment_id: str
    id: str
    status: Literal["pending", "succeeded", "failed"]
    amount: int
    reason: str | None
    created_at: datetime
    failure: Failure | None


class Health(_Body):
    status: Literal["ok"]


class WebhookReceipt(_Body):
    received: bool
    delivered: bool


class ReconciliationRunning(_Body):
    id: str
    object: Literal["reconciliation_run"]
    status: Literal["running"]


class ReconciliationCompleted(ReconciliationReport):
    model_config = ConfigDict(extra="forbid")

    object: Literal["reconciliation_run"]
    status: Literal["completed"]


# One Server-Sent Event of a payment's stream (Open API before 3.2: ``schema``
# describes each event); its ``data`` is the event as JSON.
SSE_EVENT: dict[str, Any] = {
    "type": "object",
    "required": ["id", "event", "data"],
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "the event's `seq`"},
        "event": {"type": "string", "description": "the event's `type`"},
        "data": {
            "type": "string",
            "contentMediaType": "application/json",
            "contentSchema": {"$ref": "#/components/schemas/Event"},
        },
    },
}


def _header(description: str, type_: str = "string") -> dict[str, Any]:
    return {"description": description, "schema": {"type": type_}}


RETRY_AFTER = _header("seconds to wait before asking again", "integer")

_ERRORS: dict[int, str] = {
    400: "malformed request: invalid JSON, a body nested too deeply, a bad `Prefer` header",
    401: "no API key, or one that is not valid (`authentication_error`)",
    404: "no such payment, or another merchant's (`invalid_request_error`)",
    409: "the payment's state does not allow it, or an `Idempotency-Key` reused "
    "with another body (`idempotency_error`)",
    413: "request body over 64 KiB",
    422: "a parameter is missing, unknown or invalid; a card number anywhere is refused",
    429: "too many requests for this merchant (`rate_limit_error`); see `Retry-After`",
    500: "an internal error (`api_error`)",
    503: "the payment engine (Temporal) is unreachable; retry shortly (`api_error`)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The error responses ``statuses``, each with the contract's error body."""
    found: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        found[status] = {"model": ErrorBody, "description": _ERRORS[status]}
        if status == 429:
            found[status]["headers"] = {"Retry-After": {**RETRY_AFTER, "required": True}}
    return found


# What every authenticated v1 route may answer besides its own outcomes.
V1_ERRORS = (400, 401, 413, 422, 429, 503)
# ... and what a route about one payment adds.
PAYMENT_ERRORS = (*V1_ERRORS, 404)


def settled_or_accepted(model: type[BaseModel], what: str) -> dict[int | str, dict[str, Any]]:
    """``200`` when ``Prefer: wait`` saw the outcome, else ``202`` (CONTRACT §4)."""
    return {
        200: {"model": model, "description": f"{what}, settled within `Prefer: wait`"},
        202: {
            "model": model,
            "description": f"{what}, accepted; still in progress",
            "headers": {"Retry-After": RETRY_AFTER},
        },
    }


# The bodies a request cannot do without (others: an empty body is no change).
_BODY_REQUIRED: frozenset[type[BaseModel]] = frozenset({CreatePayment, CreateEndpoint})


def body_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The request body a route reads itself (``api.parsing``), as the document shows it."""
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
            "content": {"application/json": {"schema": _inlined(schema)}},
            "required": model in _BODY_REQUIRED,
        }
    }


def _inlined(schema: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with its ``$defs`` put in place of each reference to them: a
    request body's schema sits inside the document, where ``#/$defs`` means
    nothing (ReDoc refuses it)."""
    defs = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return resolve(defs[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


# -- the pages that show the document -------------------------------------------

DOCS_URL = "/docs"
REDOC_URL = "/redoc"
OAUTH2_REDIRECT_URL = "/docs/oauth2-redirect"
# Swagger UI's and ReDoc's files as the fastapi-offline wheel ships them
# (swagger-ui-bundle.js, swagger-ui.css, redoc.standalone.js, favicon.png).
DOCS_ASSETS_URL = "/docs/assets"
DOCS_ASSETS_PACKAGE = ("fastapi_offline", "static")
# The pages load from this server only, and the browser holds them to it:
# ReDoc's sidebar would fetch its maker's logo from cdn.redoc.ly, whatever the
# options. Inline scripts and styles are the pages' own (Swagger UI's set-up,
# ReDoc's styled components); ReDoc's search index runs in a blob: worker.
DOCS_CSP = "; ".join(
    (
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data: blob:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "frame-ancestors 'self'",
    )
)


def install_docs(app: FastAPI) -> None:
    """FastAPI's recipe for self-hosted docs: the app is made with
    ``docs_url=None, redoc_url=None`` and these routes take their place."""
    assert app.docs_url is None and app.redoc_url is None, "the app would serve CDN pages too"
    assert app.openapi_url is not None
    openapi_url = app.openapi_url
    app.mount(DOCS_ASSETS_URL, StaticFiles(packages=[DOCS_ASSETS_PACKAGE]), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_URL}"

    @app.get(DOCS_URL, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_files_only(
            get_swagger_ui_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets(request)}/swagger-ui.css",
                swagger_favicon_url=f"{assets(request)}/favicon.png",
                oauth2_redirect_url=f"{root}{OAUTH2_REDIRECT_URL}",
                # Swagger UI would otherwise send the document to
                # validator.swagger.io for its badge: another host, and our document.
                swagger_ui_parameters={**(app.swagger_ui_parameters or {}), "validatorUrl": None},
            )
        )

    @app.get(OAUTH2_REDIRECT_URL, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(REDOC_URL, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return _own_files_only(
            get_redoc_html(
                openapi_url=f"{root}{openapi_url}",
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{assets(request)}/redoc.standalone.js",
                redoc_favicon_url=f"{assets(request)}/favicon.png",
                with_google_fonts=False,
            )
        )


def _own_files_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_CSP
    return page
