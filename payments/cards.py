"""Card-number detection: a request must never carry a primary account number.

A PAN is 13-19 digits, possibly grouped with spaces or dashes, that passes the
Luhn check. We look inside every string of a request, so a card number pasted
into ``description`` or a metadata value is refused like one in
``payment_method``, and the refusal never echoes the digits back.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

# A run of digits, possibly grouped by single spaces or dashes ("4242 4242 ...").
_DIGIT_RUN = re.compile(r"(?<!\d)\d(?:[ -]?\d)*")


def luhn_valid(digits: str) -> bool:
    total = 0
    for index, char in enumerate(reversed(digits)):
        value = int(char)
        if index % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def contains_card_number(text: str) -> bool:
    for match in _DIGIT_RUN.finditer(text):
        # "order 1001 4242 4242 4242 4242" and "4242 4242 4242 4242 12" must be
        # caught: try every sequence of whole groups with 13-19 digits.
        groups = re.split(r"[ -]", match.group())
        for first in range(len(groups)):
            digits = ""
            for group in groups[first:]:
                digits += group
                if len(digits) > 19:
                    break
                if len(digits) >= 13 and luhn_valid(digits):
                    return True
    return False


# A digit run as log lines quote it: grouped by spaces, dashes, or what a URL
# makes of them ("+", "%20", "%2D").
_QUOTED_RUN = re.compile(r"(?<!\d)\d(?:(?:[ +-]|%20|%2[dD])?\d)*")
_URL_SEPARATOR = re.compile(r"\+|%20|%2[dD]")
REDACTED = "[card number]"


def redact_card_numbers(text: str) -> str:
    """``text`` with every digit run that holds a card number replaced by
    ``[card number]``: for log lines, which quote paths, queries and addresses."""

    def mask(match: re.Match[str]) -> str:
        run = match.group()
        return REDACTED if contains_card_number(_URL_SEPARATOR.sub(" ", run)) else run

    return _QUOTED_RUN.sub(mask, text)


def _strings(value: Any, path: str) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, dict):
        for key, item in value.items():
            child = f"{path}.{key}" if path else str(key)
            # A key that is itself a PAN is reported by where it sits, never by itself.
            yield path, str(key)
            yield from _strings(item, child)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _strings(item, f"{path}[{index}]")
    elif isinstance(value, int | float) and not isinstance(value, bool):
        yield path, str(value)


def find_card_number(payload: Any) -> str | None:
    """Where the first thing that looks like a PAN sits ("metadata.note"; "" for
    a top-level key), or None when there is none."""
    for path, text in _strings(payload, ""):
        if contains_card_number(text):
            return path
    return None
