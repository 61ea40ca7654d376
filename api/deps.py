"""Wiring for the routes: settings, the service layer, and who is calling.

The Temporal client is made once per process in the lifespan; routes reach it
only through the services (``payments/service.py``,
``payments/reconciliation_service.py``), handed out through ``Annotated``
aliases. Tests build the app with their own client, or override a service.

Every dependency is ``async def`` although none awaits anything: FastAPI runs a
plain ``def`` dependency in a worker thread, and those hops, four or five per
request, cost the API more than the checks themselves (bench/profile.py).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request
from fastapi.requests import HTTPConnection
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.errors import AuthenticationFailed, InvalidRequest, RateLimited
from api.limits import RateLimiter
from payments.cards import redact_card_numbers
from payments.ids import verify_client_secret
from payments.reconciliation_service import ReconciliationService
from payments.service import PaymentService
from payments.settings import Settings
from payments.webhook_service import WebhookService


async def get_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


async def get_service(connection: HTTPConnection) -> PaymentService:
    """The service layer the routes call, over the app's client and archive
    (a light object: building one per request costs nothing)."""
    state = connection.app.state
    # Set in the lifespan; an app driven without one reads endpoints each time.
    endpoints = getattr(state, "webhook_endpoints", None)
    return PaymentService(
        state.temporal_client,
        state.settings,
        state.archive,
        endpoints,
        eager_start=getattr(state, "hosts_worker", False),
    )


async def get_reconciliation(connection: HTTPConnection) -> ReconciliationService:
    """The operator's reconciliation use cases, over the app's client."""
    state = connection.app.state
    return ReconciliationService(state.temporal_client, state.settings.task_queue)


async def get_webhooks(connection: HTTPConnection) -> WebhookService:
    """The merchant's webhook endpoints' use cases, over the app's client."""
    state = connection.app.state
    return WebhookService(state.temporal_client, state.settings)


SettingsDep = Annotated[Settings, Depends(get_settings)]
ServiceDep = Annotated[PaymentService, Depends(get_service)]
ReconciliationDep = Annotated[ReconciliationService, Depends(get_reconciliation)]
WebhooksDep = Annotated[WebhookService, Depends(get_webhooks)]

# These only declare the schemes in the OpenAPI document (so /docs can send a
# key); the header itself is checked below, into the contract's 401.
_merchant_key = HTTPBearer(
    scheme_name="merchantKey", description="a merchant's API key", auto_error=False
)
_operator_key = HTTPBearer(
    scheme_name="operatorKey", description="an operator key (back office)", auto_error=False
)
DeclaredKey = Annotated[HTTPAuthorizationCredentials | None, Depends(_merchant_key)]
DeclaredOperatorKey = Annotated[HTTPAuthorizationCredentials | None, Depends(_operator_key)]


def _merchant_for_key(settings: Settings, presented: str) -> str | None:
    """The merchant of a presented key. Settings may hold keys as they are or as
    ``sha256:<hex digest>``; every one is compared, as digests of equal length
    (so not even a key's length leaks), in constant time."""
    digest = _digest(presented)
    found = None
    for key, merchant in settings.api_keys.items():
        hashed = key.lower().startswith("sha256:")
        configured = key.lower() if hashed else _digest(key)
        if hmac.compare_digest(configured.encode(), digest.encode()):
            found = merchant
    return found


def _digest(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def _bearer(header: str | None) -> str | None:
    if not header:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthenticationFailed("invalid_authorization", "use 'Authorization: Bearer <api key>'")
    return token.strip()


def merchant_for(settings: Settings, authorization: str | None) -> str:
    """The merchant an ``Authorization`` header speaks for, or 401."""
    token = _bearer(authorization)
    if token is None:
        raise AuthenticationFailed("missing_api_key", "no API key given")
    merchant_id = _merchant_for_key(settings, token)
    if merchant_id is None:
        raise AuthenticationFailed("invalid_api_key", "the API key is not valid")
    return merchant_id


def spend(connection: HTTPConnection, bucket: str) -> None:
    """One request (or WebSocket) against ``bucket``'s rate limit, or 429."""
    limiter: RateLimiter = connection.app.state.rate_limiter
    limiter.take(bucket)


@contextmanager
def refusals_spend(connection: HTTPConnection) -> Iterator[None]:
    """A caller refused ``401`` pays for it first, from a bucket of its address
    (``unauthenticated:<host>``), so guessing keys or secrets is as limited as
    any other request; once that bucket is empty it is answered ``429``.

    The bucket is the address's, not the merchant's the key was meant for: a
    stranger must not be able to starve a merchant by sending bad keys, and a
    merchant's good key from the same address (a shared office, a proxy) still
    spends only from the merchant's own bucket."""
    try:
        yield
    except AuthenticationFailed:
        host = connection.client.host if connection.client else "unknown"
        try:
            spend(connection, f"unauthenticated:{host}")
        except RateLimited as limited:
            raise RateLimited(limited.retry_after, "refused requests from this address") from None
        raise


def reader_of(
    connection: HTTPConnection, settings: Settings, payment_id: str, client_secret: str | None
) -> Reader:
    """:func:`reader_for` the caller of ``connection``, its refusals rate-limited."""
    with refusals_spend(connection):
        return reader_for(
            settings, payment_id, connection.headers.get("authorization"), client_secret
        )


async def merchant(request: Request, settings: SettingsDep, _: DeclaredKey) -> str:
    with refusals_spend(request):
        merchant_id = merchant_for(settings, request.headers.get("authorization"))
    spend(request, merchant_id)
    known_query_only(request)
    return merchant_id


@dataclass(frozen=True)
class Reader:
    """Who may read one payment: its merchant, or a browser holding its client secret."""

    # None: a browser holding the payment's client secret (checked already).
    merchant_id: str | None

    def bucket(self, payment_id: str) -> str:
        """The rate-limit bucket this reader spends from: a browser holding a
        client secret reads one payment, so it gets that payment's bucket."""
        return self.merchant_id or f"client_secret:{payment_id}"


def reader_for(
    settings: Settings, payment_id: str, authorization: str | None, client_secret: str | None
) -> Reader:
    """A merchant key, or this payment's client secret (read-only, this payment only)."""
    if authorization or client_secret is None:
        return Reader(merchant_id=merchant_for(settings, authorization))
    key = settings.client_secret_key.get_secret_value().encode()
    if not verify_client_secret(payment_id, client_secret, key):
        raise AuthenticationFailed("invalid_client_secret", "the client secret is not valid")
    return Reader(merchant_id=None)


async def reader(
    request: Request,
    settings: SettingsDep,
    payment_id: str,
    _: DeclaredKey,
    client_secret: Annotated[str | None, Query(max_length=200)] = None,
) -> Reader:
    found = reader_of(request, settings, payment_id, client_secret)
    spend(request, found.bucket(payment_id))
    known_query_only(request)
    return found


async def operator(request: Request, settings: SettingsDep, _: DeclaredOperatorKey) -> None:
    """Back-office endpoints take an operator key, not a merchant's."""
    with refusals_spend(request):
        operator_for(settings, request.headers.get("authorization"))


def operator_for(settings: Settings, authorization: str | None) -> None:
    """Nothing when ``authorization`` holds an operator key, else 401."""
    token = _bearer(authorization)
    if token is None:
        raise AuthenticationFailed("missing_api_key", "no API key given")
    valid = False
    presented = _digest(token).encode()
    for key in settings.operator_api_keys:
        valid |= hmac.compare_digest(_digest(key).encode(), presented)
    if not valid:
        raise AuthenticationFailed("invalid_api_key", "this endpoint needs an operator key")


def known_query_only(request: Request) -> None:
    """A query parameter the route does not take is refused, as Stripe refuses
    one (``parameter_unknown``), not silently ignored: a typo such as
    ``?stauts=failed`` must not quietly list every payment. Checked once the
    caller is known (``merchant``, ``reader``), so a stranger still gets 401."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    taken = _query_names(route)
    for name in request.query_params:
        if name not in taken:
            shown = redact_card_numbers(name)
            raise InvalidRequest(422, "parameter_unknown", f"unknown parameter: {shown}", shown)


def _query_names(route: APIRoute) -> set[str]:
    """The query parameters a route takes, its dependencies' included (a walk
    over a handful of dependants: cheaper than keeping it anywhere)."""
    names: set[str] = set()
    pending = [route.dependant]
    while pending:
        dependant = pending.pop()
        names.update(field.alias for field in dependant.query_params)
        pending.extend(dependant.dependencies)
    return names


MerchantDep = Annotated[str, Depends(merchant)]
OperatorDep = Depends(operator)
ReaderDep = Annotated[Reader, Depends(reader)]
