"""The Stripe adapter's error mapping (:func:`gateway.stripe_errors.translate_error`)
on the SDK's own exception classes, for answers localstripe cannot give (rate
limits, 5xx, decline codes), and the factory wiring; no server."""

# The SDK leaves its error classes' constructors unannotated.
# mypy: disable-error-code="no-untyped-call"

from __future__ import annotations

import pytest
import stripe

from gateway.factory import build_gateway
from gateway.stripe_adapter import StripeGateway
from gateway.stripe_errors import translate_error
from payments.gateway import (
    CardDeclined,
    GatewayError,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)
from payments.settings import Settings


def _card_error(code: str, decline_code: str | None) -> stripe.CardError:
    body = {
        "error": {
            "type": "card_error",
            "code": code,
            "decline_code": decline_code,
            "message": "Your card has insufficient funds.",
        }
    }
    return stripe.CardError(body["error"]["message"], None, code, http_status=402, json_body=body)


def test_card_errors_keep_code_and_decline_code() -> None:
    mapped = translate_error("confirm", _card_error("card_declined", "insufficient_funds"))
    assert isinstance(mapped, CardDeclined)
    assert (mapped.code, mapped.decline_code, mapped.message) == (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    )
    # localstripe's declines carry no decline_code (and claim invalid_request_error).
    bare = stripe.CardError(
        "Your card was declined.",
        None,
        "card_declined",
        http_status=402,
        json_body={"error": {"type": "invalid_request_error", "code": "card_declined"}},
    )
    mapped = translate_error("confirm", bare)
    assert isinstance(mapped, CardDeclined)
    assert (mapped.code, mapped.decline_code) == ("card_declined", None)


@pytest.mark.parametrize(
    "error",
    [
        stripe.RateLimitError("Too many requests", http_status=429),
        stripe.APIConnectionError("A ReadTimeout was raised", should_retry=True),
        stripe.APIError("Internal error", http_status=500),
        stripe.APIError("Bad gateway", http_status=502),
        stripe.APIError("A concurrent request used this key", http_status=409),
        stripe.APIError("Invalid response body from API", http_status=200),
    ],
    ids=["429", "timeout", "500", "502", "409", "unreadable"],
)
def test_transient_answers(error: stripe.StripeError) -> None:
    mapped = translate_error("capture PaymentIntent", error, intent_id="pi_1")
    assert isinstance(mapped, TransientGatewayError)
    assert str(mapped).startswith("capture PaymentIntent: ")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (stripe.AuthenticationError("Invalid API Key", http_status=401), "authentication_failed"),
        (stripe.PermissionError("Restricted key", http_status=403), "authentication_failed"),
        (
            stripe.IdempotencyError("Keys for idempotent requests", http_status=400),
            ("idempotency_key_reused"),
        ),
        (
            stripe.InvalidRequestError(
                "Amount must be at least 50 cents", "amount", "amount_too_small", http_status=400
            ),
            "amount_too_small",
        ),
        (stripe.InvalidRequestError("Bad request", None, None, http_status=400), "invalid_request"),
        (stripe.APIError("Unsupported media type", http_status=415), "http_415"),
    ],
)
def test_permanent_answers(error: stripe.StripeError, code: str) -> None:
    mapped = translate_error("create PaymentIntent", error)
    assert isinstance(mapped, InvalidGatewayRequest)
    assert mapped.code == code


def test_a_missing_payment_intent_is_not_found_a_missing_payment_method_invalid() -> None:
    stripe_404 = stripe.InvalidRequestError(
        "No such payment_intent: 'pi_x'", "intent", "resource_missing", http_status=404
    )
    localstripe_404 = stripe.InvalidRequestError("Not Found", None, None, http_status=404)
    for error in (stripe_404, localstripe_404):
        assert isinstance(translate_error("retrieve", error, intent_id="pi_x"), NotFound)
        # Without a PaymentIntent addressed (creating one), it is the request that is wrong.
        mapped: GatewayError = translate_error("create PaymentIntent", error)
        assert isinstance(mapped, InvalidGatewayRequest)
        assert mapped.code == "resource_missing"


async def test_factory_builds_the_stripe_adapter() -> None:
    gateway = build_gateway(Settings(gateway="stripe"))
    assert isinstance(gateway, StripeGateway)
    await gateway.aclose()
