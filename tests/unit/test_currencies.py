"""Currencies and their minor units (CONTRACT §4: amounts are in the minor unit)."""

from __future__ import annotations

import pytest

from payments import currencies
from payments.currencies import MINOR_UNITS, format_amount, is_known, minor_units


@pytest.mark.parametrize(
    ("currency", "places"),
    [("jpy", 0), ("krw", 0), ("usd", 2), ("eur", 2), ("gbp", 2), ("kwd", 3), ("bhd", 3)],
)
def test_minor_units(currency: str, places: int) -> None:
    assert minor_units(currency) == places


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (1999, "usd", "19.99 USD"),
        (1999, "jpy", "1999 JPY"),
        (1999, "kwd", "1.999 KWD"),
        (5, "usd", "0.05 USD"),
        (1, "kwd", "0.001 KWD"),
        (0, "jpy", "0 JPY"),
        (99_999_999, "usd", "999999.99 USD"),
    ],
)
def test_format_amount(amount: int, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


@pytest.mark.parametrize("code", ["xyz", "xau", "xts", "usdt", "us", "", "USD", "Usd", "JPY"])
def test_unknown_and_uppercase_codes_are_not_known(code: str) -> None:
    assert not is_known(code)
    with pytest.raises(KeyError):
        minor_units(code)


def test_table_has_no_duplicates_across_groups() -> None:
    groups = [
        currencies._ZERO_DECIMAL.split(),
        currencies._TWO_DECIMAL.split(),
        currencies._THREE_DECIMAL.split(),
    ]
    codes = [code for group in groups for code in group]
    assert len(codes) == len(set(codes)) == len(MINOR_UNITS)


def test_table_holds_lowercase_iso_codes_including_the_majors() -> None:
    assert all(len(code) == 3 and code.isalpha() and code.islower() for code in MINOR_UNITS)
    assert set(MINOR_UNITS.values()) == {0, 2, 3}
    assert all(is_known(code) for code in ("usd", "eur", "gbp", "jpy", "chf", "cad", "aud"))


# -- gateway units (CONTRACT §11): Stripe's special cases, both ways ------------

# Stripe's "Supported currencies" page, special cases.
STRIPE_ZERO_DECIMAL = ["bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga"]
STRIPE_ZERO_DECIMAL += ["pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"]
STRIPE_THREE_DECIMAL = ["bhd", "jod", "kwd", "omr", "tnd"]
NOT_AT_STRIPE = ["iqd", "lyd"]


@pytest.mark.parametrize(
    ("amount", "currency", "stripe"),
    [
        # MGA: two decimals in ISO, none at Stripe.
        (12300, "mga", 123),
        (100, "mga", 1),
        # The other zero-decimal ones are zero-decimal in ISO too.
        (1999, "jpy", 1999),
        (500, "ugx", 500),
        (7, "xof", 7),
        # ISK: no decimals in ISO, two at Stripe (whole krónur).
        (500, "isk", 50000),
        (1, "isk", 100),
        # Three decimals both sides, the last one 0 at Stripe.
        (1230, "kwd", 1230),
        (10, "bhd", 10),
        (99_999_990, "tnd", 99_999_990),
        # Two decimals both sides; HUF and TWD are not special for charges.
        (1999, "usd", 1999),
        (12345, "huf", 12345),
        (1, "twd", 1),
    ],
)
def test_stripe_units_both_ways(amount: int, currency: str, stripe: int) -> None:
    assert currencies.to_gateway_units(amount, currency, "stripe") == stripe
    assert currencies.from_gateway_units(stripe, currency, "stripe") == amount


@pytest.mark.parametrize(
    ("amount", "currency", "rule"),
    [
        (
            12345,
            "mga",
            "the stripe gateway takes MGA in steps of 1.00 MGA: amount 12345 "
            "(123.45 MGA) must be a multiple of 100",
        ),
        (1, "mga", "steps of 1.00 MGA: amount 1 (0.01 MGA) must be a multiple of 100"),
        (
            1234,
            "kwd",
            "the stripe gateway takes KWD in steps of 0.010 KWD: amount 1234 "
            "(1.234 KWD) must be a multiple of 10",
        ),
        (5, "omr", "OMR in steps of 0.010 OMR: amount 5 (0.005 OMR) must be a multiple of 10"),
        (1000, "iqd", "the stripe gateway does not document its unit for IQD"),
        (1000, "lyd", "does not document its unit for LYD"),
    ],
)
def test_amounts_stripe_cannot_hold_are_refused(amount: int, currency: str, rule: str) -> None:
    with pytest.raises(currencies.NotRepresentable) as refused:
        currencies.to_gateway_units(amount, currency, "stripe")
    assert rule in str(refused.value)


@pytest.mark.parametrize(
    ("stripe", "currency"),
    # Nothing this service sends: a part of an ISO unit, or a currency we refuse.
    [(50050, "isk"), (1, "isk"), (1000, "iqd"), (1000, "lyd")],
)
def test_stripe_amounts_that_are_no_iso_amount_are_refused(stripe: int, currency: str) -> None:
    with pytest.raises(currencies.NotRepresentable):
        currencies.from_gateway_units(stripe, currency, "stripe")


@pytest.mark.parametrize("currency", sorted(MINOR_UNITS))
def test_one_whole_unit_of_every_currency_at_stripe(currency: str) -> None:
    whole = 10 ** minor_units(currency)
    if currency in NOT_AT_STRIPE:
        with pytest.raises(currencies.NotRepresentable):
            currencies.to_gateway_units(whole, currency, "stripe")
        return
    expected = 100  # two decimals, as for most currencies (ISK included)
    if currency in STRIPE_ZERO_DECIMAL:
        expected = 1
    elif currency in STRIPE_THREE_DECIMAL:
        expected = 1000
    assert currencies.to_gateway_units(whole, currency, "stripe") == expected


@pytest.mark.parametrize("currency", sorted(MINOR_UNITS))
def test_the_simulator_takes_every_amount_as_it_is(currency: str) -> None:
    assert currencies.counts_as_iso("simulator")
    assert not currencies.counts_as_iso("stripe")
    for amount in (1, 1234, 12345, 99_999_999):
        assert currencies.to_gateway_units(amount, currency, "simulator") == amount
        assert currencies.from_gateway_units(amount, currency, "simulator") == amount
