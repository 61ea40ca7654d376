"""No e-mail address reaches a search attribute: a customer id that is one is
refused ``422`` before anything starts, and a merchant id cannot be one.
Status, amount and currency are an enum, an int and a known ISO code."""

from __future__ import annotations

import httpx
import pytest
from pydantic import ValidationError

from api.app import create_app
from payments.currencies import is_known
from payments.models import NEW_REQUEST, CreatePayment, PaymentInput
from payments.personal import looks_like_email
from payments.settings import Settings
from payments.status import PaymentStatus

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@pytest.mark.parametrize(
    "text", ["jane@example.com", "JANE.DOE+shop@Example.CO.UK", "a@b", "cus_1:jane@example.com"]
)
def test_addresses_look_like_addresses(text: str) -> None:
    assert looks_like_email(text)


@pytest.mark.parametrize("text", ["cus_42", "cus:acme.1-2", "@handle", "cus@", "a @ b"])
def test_references_do_not(text: str) -> None:
    assert not looks_like_email(text)


async def test_an_email_address_as_customer_id_is_422_and_starts_nothing() -> None:
    app = create_app(Settings(api_keys={"sk_test_shop": "shop"}))
    app.state.temporal_client = None  # starting anything would fail loudly
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        refused = await http.post(
            "/v1/payments",
            json={**VISA, "customer_id": "jane@example.com"},
            headers={"Authorization": "Bearer sk_test_shop"},
        )
    assert refused.status_code == 422
    error = refused.json()["error"]
    assert (error["type"], error["code"], error["param"]) == (
        "invalid_request_error",
        "parameter_invalid",
        "customer_id",
    )
    assert error["message"].startswith("customer_id: must not be an e-mail address")
    assert "search attribute" in error["message"]
    assert "jane" not in refused.text


def test_a_reference_is_still_a_customer_id() -> None:
    assert CreatePayment.model_validate({**VISA, "customer_id": "cus_42"}).customer_id == "cus_42"


def test_a_new_request_is_refused_but_a_recorded_one_still_decodes() -> None:
    body = {**VISA, "customer_id": "jane@example.com"}
    with pytest.raises(ValidationError) as info:
        CreatePayment.model_validate(body, context=NEW_REQUEST)
    assert info.value.errors()[0]["loc"] == ("customer_id",)
    # A payment made before the rule: its workflow input is decoded again on
    # every replay and continue-as-new, and its events are projected from it.
    recorded = PaymentInput.model_validate(
        {
            "payment_id": "pay_old",
            "merchant_id": "shop",
            "request": body,
            "request_fingerprint": "f" * 64,
            "created_at": "2026-11-01T10:00:00Z",
            "authorization_window_seconds": 604800,
            "refund_window_seconds": 15552000,
        }
    )
    assert recorded.request.customer_id == "jane@example.com"


@pytest.mark.parametrize(
    "settings",
    [{"api_keys": {"sk_live_1": "owner@shop.example"}}, {"demo_merchant": "me@example.com"}],
)
def test_a_merchant_id_cannot_be_an_email_address(settings: dict[str, object]) -> None:
    with pytest.raises(ValidationError, match="must not be an e-mail address"):
        Settings.model_validate(settings)


def test_the_other_search_attributes_cannot_hold_one() -> None:
    assert all("@" not in status.value for status in PaymentStatus)
    assert not is_known("a@b")
    with pytest.raises(ValidationError):
        CreatePayment.model_validate({**VISA, "currency": "a@b"})
    with pytest.raises(ValidationError):
        CreatePayment.model_validate({**VISA, "amount": "1@2"})
