"""Stripe's answers as the port's exceptions (``payments.gateway``), for the
Stripe adapter.

Gateway answers map onto the port's exceptions in :func:`translate_error`, the
one place: card errors are ``CardDeclined``; 429, 5xx, 409, connection errors
and timeouts are ``TransientGatewayError``; authentication and permission
errors, and other invalid requests, are ``InvalidGatewayRequest`` (a missing
PaymentIntent is ``NotFound``). :func:`answers` applies it around every call,
and makes a reply we cannot read ``TransientGatewayError``. A PaymentIntent
that needs 3-D Secure, which a server-side integration cannot perform, is
``CardDeclined`` with ``authentication_required``
(:func:`gateway.stripe_mapping.authorization_outcome`, with the other states a
PaymentIntent answers by).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import stripe
from pydantic import ValidationError

from payments.gateway import (
    CardDeclined,
    GatewayError,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)


def translate_error(
    what: str, err: stripe.StripeError, *, intent_id: str | None = None
) -> GatewayError:
    """The port's exception for a Stripe error; ``intent_id`` names the
    PaymentIntent the call addressed, whose absence is ``NotFound``."""
    status = err.http_status
    code = err.code
    message = f"{what}: {err.user_message or type(err).__name__}"
    if isinstance(err, stripe.CardError):
        decline_code = err.error.decline_code if err.error is not None else None
        return CardDeclined(code or "card_declined", decline_code, err.user_message or message)
    if isinstance(err, stripe.RateLimitError | stripe.APIConnectionError):
        return TransientGatewayError(f"{message} ({type(err).__name__}); the outcome is unknown")
    if isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        # A configuration problem (wrong or restricted key): retrying cannot help.
        return InvalidGatewayRequest("authentication_failed", message)
    if isinstance(err, stripe.IdempotencyError):
        return InvalidGatewayRequest("idempotency_key_reused", message)
    if isinstance(err, stripe.InvalidRequestError):
        if intent_id is not None and (status == 404 or code == "resource_missing"):
            return NotFound(f"{what}: no such PaymentIntent: {intent_id!r}")
        # localstripe answers a missing object with a bare 404, Stripe with this code.
        missing = "resource_missing" if status == 404 else "invalid_request"
        return InvalidGatewayRequest(code or missing, message)
    # APIError and anything newer: 409 is a concurrent request on the same
    # key, a 2xx the SDK could not read leaves the outcome unknown.
    if status is None or status < 300 or status in (409, 429) or status >= 500:
        return TransientGatewayError(f"{message} (HTTP {status}); the outcome is unknown")
    return InvalidGatewayRequest(code or f"http_{status}", message)


@contextmanager
def answers(what: str, *, intent_id: str | None = None) -> Iterator[None]:
    """Turn the SDK's exceptions, and replies we cannot read, into the port's."""
    try:
        yield
    except stripe.StripeError as err:
        raise translate_error(what, err, intent_id=intent_id) from err
    except ValidationError as err:
        raise TransientGatewayError(f"{what}: unreadable reply: {err}") from err
