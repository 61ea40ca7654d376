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
