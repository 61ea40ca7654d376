"""The domain models: the create body of CONTRACT §4, refusing card data, and the
workflow input surviving the JSON round trip the data converter makes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError
from temporalio.contrib.pydantic import pydantic_data_converter

from payments.ids import fingerprint
from payments.models import (
    CancelPayment,
    CapturePayment,
    CardDataRefused,
    CreatePayment,
    Failure,
    PaymentInput,
    PaymentState,
    Refund,
    RefundPayment,
)
from payments.status import PaymentStatus

EXAMPLE = {
    "amount": 1999,
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "capture_method": "automatic",
    "customer_id": "cus_42",
    "description": "Order 1001",
    "metadata": {"order_id": "1001"},
}
MINIMAL = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
NOW = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)


def create(**changes: Any) -> CreatePayment:
    return CreatePayment.model_validate({**MINIMAL, **changes})


def test_the_contract_example_body_is_accepted() -> None:
    payment = CreatePayment.model_validate(EXAMPLE)
    assert payment.model_dump() == {**EXAMPLE, "return_url": None, "receipt_email": None}


@pytest.mark.parametrize(
    "url", ["https://shop.example/orders/1001?x=1", "http://127.0.0.1:8000/demo"]
)
def test_a_return_url_is_an_http_url(url: str) -> None:
    assert create(return_url=url).return_url == url


@pytest.mark.parametrize(
    "url",
    [
        "javascript:alert(1)",
        "shop.example/orders",
        "https://",
        "ftp://x.example",
        "https://a b",
        "https://shop.example/\x00",
        "https://user:secret@shop.example/",
        "https://shop.example/" + "a" * 2048,
    ],
)
def test_a_return_url_that_is_not_an_http_url_is_refused(url: str) -> None:
    with pytest.raises(ValidationError) as info:
        create(return_url=url)
    assert info.value.errors()[0]["loc"] == ("return_url",)


def test_a_request_without_return_url_keeps_its_fingerprint() -> None:
    # The digest a request had before return_url existed: a create sent again
    # under its Idempotency-Key after the upgrade is still the same request.
    assert fingerprint(create()) == (
        "5335806623060a9d453b8214ff8ce250139713b3403167a32e821d1bf4c91ad0"
    )
    assert fingerprint(create(return_url="https://shop.example/")) != fingerprint(create())


def test_defaults() -> None:
    payment = create()
    assert (payment.capture_method, payment.customer_id, payment.description) == (
        "automatic",
        None,
        None,
    )
    assert payment.metadata == {}


@pytest.mark.parametrize("amount", [1, 50, 99_999_999])
def test_amount_in_bounds(amount: int) -> None:
    assert create(amount=amount).amount == amount


@pytest.mark.parametrize("amount", [0, -1, 100_000_000, 19.99, 1999.0, "1999", True, None])
def test_amount_out_of_bounds_or_not_an_int_is_refused(amount: Any) -> None:
    with pytest.raises(ValidationError) as info:
        create(amount=amount)
    assert info.value.errors()[0]["loc"] == ("amount",)


@pytest.mark.parametrize("currency", ["usd", "jpy", "kwd", "eur"])
def test_known_lowercase_currency(currency: str) -> None:
    assert create(currency=currency).currency == currency


@pytest.mark.parametrize("currency", ["USD", "Usd", "xyz", "xau", "us", "usdd", "", 840])
def test_unknown_or_uppercase_currency_is_refused(currency: Any) -> None:
    with pytest.raises(ValidationError) as info:
        create(currency=currency)
    assert info.value.errors()[0]["loc"] == ("currency",)


@pytest.mark.parametrize(
    "method", ["pm_card_visa", "tok_visa", "pm_1AbC", "pm_card_chargeDeclined"]
)
def test_payment_method_token(method: str) -> None:
    assert create(payment_method=method).payment_method == method


@pytest.mark.parametrize(
    "method", ["card_visa", "pm_", "pm-card", "pm_card visa", "tok_ab$c", "PM_card", "", "x" * 8]
)
def test_payment_method_that_is_not_a_token_is_refused(method: str) -> None:
    with pytest.raises(ValidationError) as info:
        create(payment_method=method)
    assert info.value.errors()[0]["loc"] == ("payment_method",)


@pytest.mark.parametrize(
    ("value", "ok"),
    [("automatic", True), ("manual", True), ("Manual", False), ("auto", False), ("", False)],
)
def test_capture_method(value: str, ok: bool) -> None:
    if ok:
        assert create(capture_method=value).capture_method == value
    else:
        with pytest.raises(ValidationError):
            create(capture_method=value)


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(50)},
        {"k" * 40: "v"},
        {"note": "v" * 500},
        {"note": ""},
    ],
)
def test_metadata_within_limits(metadata: dict[str, str]) -> None:
    assert create(metadata=metadata).metadata == metadata


@pytest.mark.parametrize(
    "metadata",
    [
        {f"k{i}": "v" for i in range(51)},
        {"k" * 41: "v"},
        {"": "v"},
        {"note": "v" * 501},
        {"count": 5},
        {"flag": True},
        {"note": None},
        {"tags": ["a"]},
        {"nested": {"a": "b"}},
        ["order_id", "1001"],
    ],
)
def test_metadata_beyond_limits_or_not_strings_is_refused(metadata: Any) -> None:
    with pytest.raises(ValidationError) as info:
        create(metadata=metadata)
    assert info.value.errors()[0]["loc"][0] == "metadata"


@pytest.mark.parametrize(
    "extra", [{"amount_cents": 1999}, {"confirm": True}, {"object": "payment"}]
)
def test_unknown_fields_are_refused(extra: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        create(**extra)
    assert info.value.errors()[0]["type"] == "extra_forbidden"


# An e-mail address is refused: tests/unit/test_personal_data.py.
@pytest.mark.parametrize("customer", ["cus_42", "a.b:c-d", "C" * 255])
def test_customer_id(customer: str) -> None:
    assert create(customer_id=customer).customer_id == customer


@pytest.mark.parametrize("customer", ["cus 42", "cus/42", "", "cus#1", "é", "C" * 256])
def test_customer_id_outside_the_pattern_is_refused(customer: str) -> None:
    with pytest.raises(ValidationError) as info:
        create(customer_id=customer)
    assert info.value.errors()[0]["loc"] == ("customer_id",)


def test_commands_are_frozen() -> None:
    with pytest.raises(ValidationError):
        create().amount = 5  # type: ignore[misc]


PAN = "4242424242424242"


@pytest.mark.parametrize(
    ("changes", "param"),
    [
        ({"payment_method": PAN}, "payment_method"),
        ({"description": "card 4242-4242-4242-4242 exp 12/30"}, "description"),
        ({"customer_id": PAN}, "customer_id"),
        ({"metadata": {"note": "4242 4242 4242 4242"}}, "metadata.note"),
        ({"metadata": {PAN: "x"}}, "metadata"),
        ({"card_number": "5555555555554444"}, "card_number"),
        ({"amount": int(PAN)}, "amount"),
        ({PAN: "x"}, None),  # an unknown key that is itself a PAN: any path but the PAN
    ],
    ids=[
        "payment_method",
        "description",
        "customer_id",
        "metadata_value",
        "metadata_key",
        "unknown_field",
        "amount",
        "unknown_key",
    ],
)
def test_card_numbers_anywhere_are_refused_without_echoing_them(
    changes: dict[str, Any], param: str | None
) -> None:
    with pytest.raises(ValidationError) as info:
        create(**changes)
    err = info.value
    assert err.error_count() == 1
    refused = err.errors()[0]["ctx"]["error"]
    assert isinstance(refused, CardDataRefused)
    if param is not None:
        assert refused.param == param
    assert refused.param is not None
    text = f"{err}\n{err!r}\n{refused}\n{refused.param}"
    for fragment in ("42424242", "4242 4242", "4242-4242", "55555555"):
        assert fragment not in text


@pytest.mark.parametrize(
    ("model", "body"),
    [
        (RefundPayment, {"reason": "customer sent 4242 4242 4242 4242"}),
        (CancelPayment, {"reason": PAN}),
        (CapturePayment, {"amount": int(PAN)}),
    ],
)
def test_other_commands_refuse_card_numbers(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as info:
        model.model_validate(body)
    assert PAN not in str(info.value)
    assert isinstance(info.value.errors()[0]["ctx"]["error"], CardDataRefused)


def test_hidden_input_also_for_ordinary_errors() -> None:
    with pytest.raises(ValidationError) as info:
        create(customer_id="secret value/1")
    assert "secret value" not in str(info.value)


def state(**changes: Any) -> PaymentState:
    fields: dict[str, Any] = {
        "id": "pay_abc",
        "amount": 1000,
        "currency": "usd",
        "capture_method": "automatic",
        "payment_method": "pm_card_visa",
        "created_at": NOW,
        "updated_at": NOW,
        "merchant_id": "demo",
    }
    return PaymentState.model_validate({**fields, **changes})


def refund(id_: str, status: str, amount: int) -> Refund:
    return Refund(id=id_, status=status, amount=amount, created_at=NOW)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("captured", "refunded", "refunds", "pending", "refundable"),
    [
        (1000, 0, [], 0, 1000),
        (0, 0, [], 0, 0),
        (1000, 200, [refund("re_1", "succeeded", 200)], 0, 800),
        (1000, 0, [refund("re_1", "pending", 300)], 300, 700),
        (
            1000,
            200,
            [
                refund("re_1", "succeeded", 200),
                refund("re_2", "pending", 300),
                refund("re_3", "failed", 100),
                refund("re_4", "pending", 50),
            ],
            350,
            450,
        ),
        (1000, 1000, [refund("re_1", "succeeded", 1000)], 0, 0),
    ],
)
def test_refundable_amount_counts_pending_refunds(
    captured: int, refunded: int, refunds: list[Refund], pending: int, refundable: int
) -> None:
    payment = state(amount_captured=captured, amount_refunded=refunded, refunds=refunds)
    assert payment.refund_reserved == pending
    assert payment.refundable_amount == refundable


def test_a_refund_of_unknown_outcome_stays_reserved() -> None:
    unknown = refund("re_1", "failed", 300).model_copy(
        update={"failure": Failure(type="api_error", code="outcome_unknown", message="no answer")}
    )
    payment = state(amount_captured=1000, amount_refunded=0, refunds=[unknown])
    # It may have been paid out: it cannot be refunded a second time.
    assert payment.refundable_amount == 700


def payment_input(carried: PaymentState | None) -> PaymentInput:
    return PaymentInput(
        payment_id="pay_abc",
        merchant_id="demo",
        request=CreatePayment.model_validate(EXAMPLE),
        request_fingerprint="f" * 64,
        created_at=NOW,
        authorization_window_seconds=timedelta(days=7).total_seconds(),
        refund_window_seconds=timedelta(days=180).total_seconds(),
        carried_state=carried,
        refund_window_ends_at=NOW + timedelta(days=180) if carried else None,
    )


CARRIED = state(
    status=PaymentStatus.PARTIALLY_REFUNDED,
    amount_captured=1000,
    amount_refunded=200,
    metadata={"order_id": "1001"},
    authorization_id="auth_1",
    failure=Failure(type="card_error", code="card_declined", message="declined"),
    refunds=[refund("re_1", "succeeded", 200), refund("re_2", "pending", 300)],
)


@pytest.mark.parametrize("carried", [None, CARRIED], ids=["fresh", "carried_state"])
def test_payment_input_round_trips_through_json(carried: PaymentState | None) -> None:
    original = payment_input(carried)
    again = PaymentInput.model_validate_json(original.model_dump_json())
    assert again == original
    assert isinstance(again.request, CreatePayment)
    if carried is not None:
        assert again.carried_state is not None
        assert again.carried_state.status is PaymentStatus.PARTIALLY_REFUNDED
        assert again.carried_state.refundable_amount == 500
        assert again.carried_state.created_at == NOW


def test_payment_input_round_trips_through_the_data_converter() -> None:
    converter = pydantic_data_converter.payload_converter
    original = payment_input(CARRIED)
    [again] = converter.from_payloads(converter.to_payloads([original]), [PaymentInput])
    assert again == original
