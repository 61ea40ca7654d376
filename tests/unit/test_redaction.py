"""What the API's log filter takes out of a line before any handler writes it:
a secret query parameter under every spelling the server reads as its name,
and a client secret quoted anywhere."""

from __future__ import annotations

import logging

import pytest

from api.app import _RedactSecrets, redact_secrets

SECRET = "pay_0123456789abcdef_secret_kq3vx7z2mbn4"


@pytest.mark.parametrize(
    "spelling",
    [
        "client_secret",
        "client%5Fsecret",
        "client%5fsecret",
        "client_secre%74",
        "%63%6C%69%65%6E%74%5F%73%65%63%72%65%74",
        "CLIENT_SECRET",
        "Client_Secret",
        "client_secret%20",
    ],
)
def test_a_secret_parameter_is_redacted_however_its_name_is_spelled(spelling: str) -> None:
    # The value as a browser may send it, too: percent-encoded.
    for value in (SECRET, SECRET.replace("_", "%5F"), "wrong-guess"):
        line = (
            f'127.0.0.1:5000 - "GET /v1/payments/pay_1?follow=true&{spelling}={value} HTTP/1.1" 200'
        )
        cleaned = redact_secrets(line)
        assert value not in cleaned
        assert f"?follow=true&{spelling}=[redacted] HTTP/1.1" in cleaned


def test_other_parameters_and_the_path_are_left_alone() -> None:
    line = '"GET /v1/payments/pay_1/stream?last_event_id=7&follow=true HTTP/1.1" 200'
    assert redact_secrets(line) == line
    first = "/v1/payments/pay_1/ws?client_secret=abc&last_event_id=3"
    assert redact_secrets(first) == "/v1/payments/pay_1/ws?client_secret=[redacted]&last_event_id=3"


def test_a_client_secret_is_redacted_wherever_it_is_quoted() -> None:
    assert SECRET not in redact_secrets(f"payment {SECRET} read")
    assert SECRET not in redact_secrets(f"/v1/payments/x?token={SECRET}")


def test_the_filter_cleans_the_arguments_uvicorn_formats_its_access_line_with() -> None:
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/v1/payments/pay_1?client%5Fsecret={SECRET}", "1.1", 200),
        None,
    )
    assert _RedactSecrets().filter(record)
    assert SECRET not in record.getMessage()
    assert "client%5Fsecret=[redacted]" in record.getMessage()


def test_a_demo_token_is_redacted_too() -> None:
    token = "pay_0123456789abcdef_demo_kq3vx7z2mbn4"
    line = f"POST /demo/payments/pay_0123456789abcdef/cancel?demo%5Ftoken={token} HTTP/1.1"
    assert token not in redact_secrets(line)
    assert token not in redact_secrets(f"refused {token}")
