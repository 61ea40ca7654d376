"""Card-number detection (CONTRACT §4: 13-19 digits passing Luhn, spaces or dashes allowed)."""

from __future__ import annotations

from typing import Any

import pytest

from payments.cards import (
    contains_card_number,
    find_card_number,
    luhn_valid,
    redact_card_numbers,
)

VISA = "4242424242424242"


@pytest.mark.parametrize(
    ("digits", "valid"),
    [
        ("4242424242424242", True),
        ("5555555555554444", True),
        ("378282246310005", True),
        ("6011111111111117", True),
        ("4242424242424241", False),
        ("5555555555554440", False),
        ("378282246310006", False),
    ],
)
def test_luhn(digits: str, valid: bool) -> None:
    assert luhn_valid(digits) is valid


@pytest.mark.parametrize(
    "text",
    [
        "4242424242424242",
        "5555555555554444",
        "378282246310005",
        "6011111111111117",
        "4242 4242 4242 4242",
        "4242-4242-4242-4242",
        "3782 822463 10005",
        "5555-5555 5555-4444",
        "my card is 4242 4242 4242 4242, thanks",
        "card:6011111111111117;",
        "abc4242424242424242def",
        "4242 4242 4242 4242 12",
        "4242424242424242 order 1001",
        "12 4242 4242 4242 4242",
        # A PAN after an order number: the order's digits plus the PAN exceed 19.
        "order 1001 4242 4242 4242 4242",
    ],
)
def test_card_numbers_are_found(text: str) -> None:
    assert contains_card_number(text)


@pytest.mark.parametrize(
    "text",
    [
        "424242424242",
        "4242 4242 4242",
        "12345678901234567890",
        "424242424242424212345678",
        "4242424242424241",
        "4242 4242 4242 4241",
        "pm_card_visa",
        "tok_visa",
        "pm_card_chargeDeclinedInsufficientFunds",
        "order_1001",
        "ord-2026-11-26-0042",
        "2026-11-26T10:00:00Z",
        "+1 415-555-0100",
        "",
    ],
)
def test_non_card_numbers_are_not_found(text: str) -> None:
    assert not contains_card_number(text)


@pytest.mark.parametrize(
    ("payload", "path"),
    [
        ({"metadata": {"note": f"pay with {VISA}"}}, "metadata.note"),
        ({"card": {"number": "4242 4242 4242 4242"}}, "card.number"),
        ({"payment_method": VISA}, "payment_method"),
        ({"metadata": {VISA: "x"}}, "metadata"),
        ({"items": ["ok", VISA]}, "items[1]"),
        ({"a": [{"b": VISA}]}, "a[0].b"),
        ({"amount": int(VISA)}, "amount"),
        ({"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}, None),
        ({"metadata": {"order_id": "1001", "note": "4242424242424241"}}, None),
    ],
)
def test_find_card_number_returns_the_path(payload: Any, path: str | None) -> None:
    assert find_card_number(payload) == path


def test_a_top_level_key_that_is_a_pan_is_found_without_echoing_it() -> None:
    path = find_card_number({"amount": 1999, VISA: "x"})
    assert path is not None
    assert VISA not in path


@pytest.mark.parametrize(
    ("line", "redacted"),
    [
        (
            '127.0.0.1:5 - "GET /v1/payments?customer_id=4242424242424242 HTTP/1.1" 200',
            '127.0.0.1:5 - "GET /v1/payments?customer_id=[card number] HTTP/1.1" 200',
        ),
        ("GET /v1/payments/4242%204242%204242%204242", "GET /v1/payments/[card number]"),
        ("?q=4242+4242+4242+4242&x=1", "?q=[card number]&x=1"),
        ("/v1/payments/pay_5555-5555-5555-4444/ws", "/v1/payments/pay_[card number]/ws"),
        ("378282246310005:0 - GET /", "[card number]:0 - GET /"),
        # Not card numbers: left as they are.
        ("pay_abc 2026-11-26T10:00:00Z 1999 usd", "pay_abc 2026-11-26T10:00:00Z 1999 usd"),
        ("4242424242424241", "4242424242424241"),
    ],
)
def test_redact_card_numbers(line: str, redacted: str) -> None:
    assert redact_card_numbers(line) == redacted
