"""Identifiers, the settings' defaults (CONTRACT §3) and the retry classification."""

from __future__ import annotations

import json
import os
import re
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel

from payments import retries
from payments.ids import (
    client_secret,
    fingerprint,
    idempotency_key,
    instance_id,
    payment_id_for,
    refund_id_for,
    verify_client_secret,
)
from payments.mail import SmtpServer, parse_smtp_url
from payments.models import CreatePayment
from payments.personal import without_addresses
from payments.settings import Settings

PAYMENT_ID = re.compile(r"^pay_[a-z0-9]{24}$")
REFUND_ID = re.compile(r"^re_[a-z0-9]{24}$")
KEY = b"test-client-secret-key"


@pytest.mark.parametrize(
    ("make", "pattern"),
    [(payment_id_for, PAYMENT_ID), (refund_id_for, REFUND_ID)],
    ids=["payment", "refund"],
)
def test_ids_derive_from_owner_and_idempotency_key(make: Any, pattern: re.Pattern[str]) -> None:
    first = make("demo", "key-1")
    assert pattern.match(first)
    assert make("demo", "key-1") == first
    others = {make("other", "key-1"), make("demo", "key-2"), make("demo", "key-1 ")}
    assert first not in others and len(others) == 3
    random_ids = {make("demo", None) for _ in range(20)}
    assert len(random_ids) == 20
    assert all(pattern.match(i) for i in random_ids)


def test_payment_and_refund_ids_do_not_share_a_digest() -> None:
    assert payment_id_for("x", "k").removeprefix("pay_") != refund_id_for("x", "k").removeprefix(
        "re_"
    )


BODY = {
    "amount": 1999,
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "customer_id": "cus_42",
    "metadata": {"a": "1", "b": "2"},
}


def test_fingerprint_is_stable_across_field_order() -> None:
    reordered = dict(reversed(list(BODY.items())))
    reordered["metadata"] = {"b": "2", "a": "1"}
    one = CreatePayment.model_validate(BODY)
    two = CreatePayment.model_validate(reordered)
    assert one == two
    assert fingerprint(one) == fingerprint(two) == fingerprint(one.model_copy())
    assert re.fullmatch(r"[0-9a-f]{64}", fingerprint(one))


@pytest.mark.parametrize(
    "change",
    [
        {"amount": 2000},
        {"currency": "eur"},
        {"payment_method": "pm_card_mastercard"},
        {"capture_method": "manual"},
        {"customer_id": "cus_43"},
        {"description": "Order 1001"},
        {"metadata": {"a": "1", "b": "3"}},
        {"metadata": {"a": "1"}},
    ],
)
def test_fingerprint_changes_with_any_field(change: dict[str, Any]) -> None:
    base = CreatePayment.model_validate(BODY)
    assert fingerprint(CreatePayment.model_validate({**BODY, **change})) != fingerprint(base)


def test_fingerprint_tells_models_apart_only_by_content() -> None:
    class A(BaseModel):
        x: int

    assert fingerprint(A(x=1)) == fingerprint(A(x=1)) != fingerprint(A(x=2))


def test_client_secret() -> None:
    pid = payment_id_for("demo", "k")
    secret = client_secret(pid, KEY)
    assert re.fullmatch(rf"{pid}_secret_[a-z0-9]+", secret)
    assert client_secret(pid, KEY) == secret
    assert verify_client_secret(pid, secret, KEY)
    other = payment_id_for("demo", "k2")
    assert not verify_client_secret(other, secret, KEY)
    assert not verify_client_secret(pid, client_secret(other, KEY), KEY)
    assert not verify_client_secret(pid, secret, b"another-key")
    tampered = secret[:-1] + ("a" if secret[-1] != "a" else "b")
    assert not verify_client_secret(pid, tampered, KEY)
    assert not verify_client_secret(pid, secret + "x", KEY)
    assert not verify_client_secret(pid, "", KEY)
    # A browser can put anything in the query; non-ASCII is a wrong secret, not a crash.
    assert not verify_client_secret(pid, "\u00e9" * len(secret), KEY)


def test_idempotency_key() -> None:
    # Payments from before instances keep the keys they began with.
    assert idempotency_key("pay_x", "capture", None) == "pay_x:capture"
    assert idempotency_key("pay_x", "refund:re_1", None) == "pay_x:refund:re_1"
    assert idempotency_key("pay_x", "capture", "ins_a") == "pay_x:ins_a:capture"
    # Two instances of one payment id never share a key.
    first, second = instance_id(), instance_id()
    assert first != second
    assert idempotency_key("pay_x", "authorize", first) != idempotency_key(
        "pay_x", "authorize", second
    )


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PAYMENTS_* variable of the surrounding shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("PAYMENTS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_settings_defaults_match_the_contract(env: pytest.MonkeyPatch) -> None:
    settings = Settings()
    assert settings.api_keys == {"sk_test_demo": "demo"}
    assert settings.gateway == "simulator"
    assert settings.gateway_base() == "http://127.0.0.1:8100"
    assert settings.task_queue == "payments"
    assert settings.temporal_ui_base() == "http://127.0.0.1:8233"
    assert settings.authorization_window == timedelta(days=7)
    assert settings.refund_window == timedelta(days=180)
    assert (settings.api_host, settings.api_port) == ("127.0.0.1", 8000)
    assert settings.action_window_seconds == 3600
    # The simulator tells the API by default, at the API's own address.
    assert settings.simulator_webhook_target() == (
        "http://127.0.0.1:8000/v1/gateway/webhooks/simulator"
    )


@pytest.mark.parametrize(
    ("name", "value", "field", "expected"),
    [
        (
            "API_KEYS",
            json.dumps({"sk_a": "m_a", "sk_b": "m_b"}),
            "api_keys",
            {"sk_a": "m_a", "sk_b": "m_b"},
        ),
        ("REFUND_WINDOW", "P30D", "refund_window", timedelta(days=30)),
        ("REFUND_WINDOW", "PT3600S", "refund_window", timedelta(seconds=3600)),
        ("REFUND_WINDOW", "3600", "refund_window", timedelta(seconds=3600)),
        ("AUTHORIZATION_WINDOW", "P1DT12H", "authorization_window", timedelta(hours=36)),
        ("GATEWAY", "stripe", "gateway", "stripe"),
        ("TASK_QUEUE", "payments-test", "task_queue", "payments-test"),
        ("ACTION_WINDOW_SECONDS", "600", "action_window_seconds", 600),
        ("SIMULATOR_WEBHOOK_URL", "", "simulator_webhook_target", None),
    ],
)
def test_settings_from_the_environment(
    env: pytest.MonkeyPatch, name: str, value: str, field: str, expected: Any
) -> None:
    env.setenv(f"PAYMENTS_{name}", value)
    found = getattr(Settings(), field)
    assert (found() if callable(found) else found) == expected


def test_settings_urls_from_the_environment(env: pytest.MonkeyPatch) -> None:
    env.setenv("PAYMENTS_GATEWAY_URL", "http://simulator:9000/")
    env.setenv("PAYMENTS_TEMPORAL_UI_URL", "https://ui.example.com")
    settings = Settings()
    assert settings.gateway_base() == "http://simulator:9000"
    assert settings.temporal_ui_base() == "https://ui.example.com"


@pytest.mark.parametrize("seconds", [3600, 1.5])
def test_windows_accept_seconds(env: pytest.MonkeyPatch, seconds: float) -> None:
    settings = Settings(refund_window=seconds, authorization_window=seconds)  # type: ignore[arg-type]
    assert settings.refund_window == settings.authorization_window == timedelta(seconds=seconds)


@pytest.mark.parametrize(("value", "seconds"), [("20", 20), ("600", 600), ("PT10M", 600)])
def test_the_archiver_may_pass_as_seldom_as_every_ten_minutes(
    env: pytest.MonkeyPatch, value: str, seconds: int
) -> None:
    """Its alert (PaymentsArchiveBehind) counts 20 minutes since a complete
    pass; longer intervals are refused (test_invalid_settings_are_refused)."""
    env.setenv("PAYMENTS_ARCHIVE_INTERVAL", value)
    assert Settings().archive_interval == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("REFUND_WINDOW", "-P1D"),
        ("REFUND_WINDOW", "PT0S"),
        ("AUTHORIZATION_WINDOW", "-PT1S"),
        ("REFUND_WINDOW", "thirty days"),
        ("API_KEYS", json.dumps({"": "demo"})),
        ("API_KEYS", json.dumps({"sk_test_demo": ""})),
        ("API_KEYS", "{not json"),
        ("API_KEYS", json.dumps({"sk_test_demo": 5})),
        ("GATEWAY", "paypal"),
        ("GATEWAY_URL", "not a url"),
        ("API_PORT", "0"),
        ("ACTION_WINDOW_SECONDS", "0"),
        ("ACTION_WINDOW_SECONDS", "90000"),
        ("ARCHIVE_INTERVAL", "0"),
        ("ARCHIVE_INTERVAL", "601"),
        ("ARCHIVE_INTERVAL", "PT1H"),
        ("SMTP_URL", "http://mail.example.com"),
        ("SMTP_URL", "smtp://"),
        ("SMTP_URL", "smtps://mail.example.com:465/inbox"),
        ("RECEIPT_FROM", "receipts"),
        ("RECEIPT_FROM", "Shop <a@shop.example.com>\nBcc: b@evil.example.com"),
        ("RECEIPT_FROM", "a@shop.example.com, b@evil.example.com"),
    ],
)
def test_invalid_settings_are_refused(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(f"PAYMENTS_{name}", value)
    with pytest.raises(ValueError):
        Settings()


@pytest.mark.parametrize(
    "policy", [retries.AUTHORIZE, retries.CAPTURE, retries.VOID, retries.REFUND]
)
def test_permanent_errors_are_exactly_the_non_retryable_ones(policy: retries.StepPolicy) -> None:
    assert set(retries.PERMANENT_ERROR_TYPES) == set(policy.retry.non_retryable_error_types or ())
    assert len(policy.retry.non_retryable_error_types or ()) == len(retries.PERMANENT_ERROR_TYPES)
    assert retries.GATEWAY_UNAVAILABLE not in retries.PERMANENT_ERROR_TYPES
    assert policy.schedule_to_close >= policy.start_to_close


def test_permanent_error_types_are_the_documented_ones() -> None:
    assert set(retries.PERMANENT_ERROR_TYPES) == {
        "CardDeclined",
        "GatewayRejected",
        "GatewayNotFound",
    }
    assert len(retries.PERMANENT_ERROR_TYPES) == 3


@pytest.mark.parametrize(
    ("url", "server"),
    [
        ("smtp://127.0.0.1:1025", SmtpServer("127.0.0.1", 1025, "none")),
        ("smtp://relay.internal", SmtpServer("relay.internal", 25, "none")),
        (
            "smtp+starttls://mailer:p%40ss@smtp.example.com",
            SmtpServer("smtp.example.com", 587, "starttls", "mailer", "p@ss"),
        ),
        (
            "smtps://mailer:secret@smtp.example.com:465",
            SmtpServer("smtp.example.com", 465, "tls", "mailer", "secret"),
        ),
    ],
)
def test_smtp_urls(url: str, server: SmtpServer) -> None:
    assert parse_smtp_url(url) == server


def test_a_mail_servers_words_lose_the_address_before_they_are_kept() -> None:
    said = "550 5.1.1 <Jane.Doe@example.com>: unknown; jane.doe has left; try other@x.example"
    assert without_addresses(said, "jane.doe@example.com") == (
        "550 5.1.1 <address>: unknown; <address> has left; try <address>"
    )
    assert without_addresses("550 mailbox unavailable", "a@example.com") == (
        "550 mailbox unavailable"
    )
