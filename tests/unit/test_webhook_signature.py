"""Stripe-Signature verification: good, bad, stale, malformed, rotated."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from api.errors import InvalidRequest
from api.webhooks import verify_signature

SECRET = "whsec_test"
BODY = b'{"id": "evt_1", "type": "payment_intent.succeeded"}'
NOW = 1_800_000_000.0


def sign(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def test_a_good_signature_passes() -> None:
    header = f"t={int(NOW)},v1={sign(BODY, int(NOW))}"
    verify_signature(BODY, header, SECRET, 300, now=NOW)


def test_one_good_signature_among_several_passes() -> None:
    # During a secret roll Stripe signs with both secrets.
    header = f"t={int(NOW)},v1={sign(BODY, int(NOW), 'old')},v1={sign(BODY, int(NOW))}"
    verify_signature(BODY, header, SECRET, 300, now=NOW)


@pytest.mark.parametrize(
    ("header", "code"),
    [
        (None, "signature_missing"),
        ("", "signature_missing"),
        ("v1=abc", "signature_invalid"),
        (f"t={int(NOW)}", "signature_invalid"),
        (f"t={int(NOW)},v1={sign(BODY, int(NOW), 'wrong')}", "signature_invalid"),
        (f"t={int(NOW)},v1={sign(BODY + b' ', int(NOW))}", "signature_invalid"),
        (f"t={int(NOW) - 301},v1={sign(BODY, int(NOW) - 301)}", "signature_stale"),
        (f"t={int(NOW) + 301},v1={sign(BODY, int(NOW) + 301)}", "signature_stale"),
        (f"t=\u00b2,v1={sign(BODY, int(NOW))}", "signature_invalid"),
        (f"t={'9' * 400},v1={sign(BODY, int(NOW))}", "signature_invalid"),
        # A header is latin-1: a non-ASCII signature is wrong, not a crash.
        (f"t={int(NOW)},v1=\u00e9", "signature_invalid"),
    ],
)
def test_refusals(header: str | None, code: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        verify_signature(BODY, header, SECRET, 300, now=NOW)
    assert (refused.value.status_code, refused.value.code) == (400, code)
