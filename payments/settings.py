"""The service's settings: one class, env prefix ``PAYMENTS_``, a working local
default for every field. The Temporal connection itself is configured the
Temporal way (``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ...), see
:mod:`payments.temporal`."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import AnyHttpUrl, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from payments.codec import EncryptionKey, parse_keys
from payments.mail import SmtpServer, parse_smtp_url, sender_address
from payments.personal import looks_like_email

# A merchant id is indexed in Temporal (MerchantId), in the clear.
_MERCHANT_NOT_AN_EMAIL = "a merchant id must not be an e-mail address (it is a search attribute)"
# The longest archiver interval (PAYMENTS_ARCHIVE_INTERVAL): ops/prometheus/alerts.yml's
# PaymentsArchiveBehind counts 20 minutes since the last complete pass.
ARCHIVE_INTERVAL_AT_MOST = timedelta(minutes=10)


class Settings(BaseSettings):
    # Errors name the setting, never echo its value: it may be a key.
    model_config = SettingsConfigDict(
        env_prefix="PAYMENTS_", extra="ignore", hide_input_in_errors=True
    )

    # Unset means production: a process started by hand, in a container or by a
    # unit file, refuses built-in secrets (payments/production.py). `make run`
    # and the tests say development.
    env: Literal["development", "production"] = "production"

    # API key -> merchant id.
    api_keys: dict[str, str] = Field(default_factory=lambda: {"sk_test_demo": "demo"})
    # Keys for back-office endpoints (reconciliation), not tied to a merchant.
    operator_api_keys: list[str] = Field(default_factory=lambda: ["sk_test_operator"])
    # Signs client secrets (``pay_..._secret_...``); never leaves the API.
    client_secret_key: SecretStr = SecretStr("dev-only-client-secret-key-change-me")

    # The merchant the demo page at / pays as; empty (the default) turns it off.
    # `make run` turns it on as its own merchant, "demo-page".
    demo_merchant: str = ""

    gateway: Literal["simulator", "stripe"] = "simulator"
    gateway_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8100")
    gateway_timeout_seconds: float = Field(default=10.0, gt=0)
    stripe_api_key: SecretStr = SecretStr("sk_test_stripe")
    stripe_api_base: AnyHttpUrl = AnyHttpUrl("https://api.stripe.com")
    # Verifies Stripe-Signature on inbound webhooks.
    stripe_webhook_secret: SecretStr = SecretStr("whsec_local_dev_only")
    stripe_webhook_tolerance_seconds: float = Field(default=300, gt=0)
    # The simulator's webhooks to the API (a customer's 3-D Secure decision):
    # unset, the API's own URL from api_host and api_port; "" sends none. Its
    # word only wakes the payment, which asks the gateway what was decided;
    # production refuses the built-in secret all the same (with the simulator).
    simulator_webhook_url: str | None = None
    simulator_webhook_secret: SecretStr = SecretStr("whsec_simulator_local_dev_only")
    # How long a payment waits for its customer to authenticate (CONTRACT §14):
    # at most a day, since a bank's challenge lasts minutes and the payment
    # looks every 5 minutes while it waits.
    action_window_seconds: float = Field(default=3600.0, gt=0, le=86_400)

    # Each merchant's token bucket in each API process: requests a second, and
    # how many may come at once after a quiet spell. Over it: 429, Retry-After.
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)

    # Seals every payload written to Temporal: "<key id>:<base64 32 bytes>", comma
    # separated, the first one active. Empty: payloads are written in the clear.
    # `make run` makes a key of its own in `.data/`. See payments/codec.py.
    encryption_keys: SecretStr = SecretStr("")
    # Origins (besides the Temporal UI's own) allowed to call /codec from a browser.
    codec_cors_origins: list[str] = Field(default_factory=list)
    # /codec decrypts history for whoever calls it: by default it wants an
    # operator key. The local UI has no login to pass one; `make run` opens it.
    codec_allow_anonymous: bool = False

    # Webhook endpoints may point at loopback and private addresses, over
    # plain http (CONTRACT §12): for a receiver on this machine. `make run` and
    # the tests turn it on; production refuses it (payments/production.py).
    webhook_allow_private_addresses: bool = False

    # Receipts by e-mail (CONTRACT §16, payments/mail.py): the SMTP server,
    # smtp://host:port, smtp+starttls://user:password@host:587 or
    # smtps://user:password@host:465 (a secret: it may hold a password), and
    # who receipts come from. The default is the sink `make run` starts.
    smtp_url: SecretStr = SecretStr("smtp://127.0.0.1:1025")
    receipt_from: str = "Payments <receipts@payments.example.com>"

    task_queue: str = "payments"
    # The API runs a worker of its own for the task queue, beside worker.py's,
    # and starts each payment on it eagerly (Temporal's eager workflow start):
    # the start's answer carries the payment's first workflow task, so no task
    # is dispatched and a payment whose gateway answers at once settles there
    # (README, "Performance and scaling"). The API process then holds the
    # gateway's credentials and runs workflow code; its worker's metrics are
    # served on their own address ("" for none).
    api_worker: bool = False
    api_worker_metrics_address: str = "127.0.0.1:9465"
    temporal_ui_url: AnyHttpUrl = AnyHttpUrl("http://127.0.0.1:8233")

    # Comment lines on idle event streams, so proxies do not cut them.
    stream_keepalive_seconds: float = Field(default=15.0, gt=0, le=300)

    # Event streams (SSE and WebSocket together) each API process keeps open:
    # per payment, and per merchant (the payment's, whoever reads it). Over
    # either: SSE 429, WebSocket closed 1013. Each long-polls Temporal.
    streams_per_payment: int = Field(default=20, ge=1, le=10_000)
    streams_per_merchant: int = Field(default=1000, ge=1, le=1_000_000)
    # A stream ends after this long however it was opened; the client
    # reconnects with Last-Event-ID / last_event_id and misses nothing.
    stream_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)

    authorization_window: timedelta = timedelta(days=7)
    refund_window: timedelta = timedelta(days=180)
    # How often the reconciliation Schedule runs, and the window each run checks.
    reconciliation_interval: timedelta = timedelta(hours=1)

    api_host: str = "127.0.0.1"
    api_port: int = Field(default=8000, ge=1, le=65535)
    simulator_host: str = "127.0.0.1"
    simulator_port: int = Field(default=8100, ge=1, le=65535)
    # Where `make run` starts localstripe when PAYMENTS_GATEWAY=stripe and no
    # PAYMENTS_STRIPE_API_BASE is given (localstripe binds every interface).
    localstripe_port: int = Field(default=8420, ge=1, le=65535)
    # Where `make run` has the dev server serve its Prometheus metrics.
    temporal_metrics_port: int = Field(default=9233, ge=1, le=65535)

    # Where `make run` keeps the dev server's SQLite file and local keys.
    data_dir: Path = Path(".data")

    # The record lasts (CONTRACT §10). Closed histories are kept this long by
    # the namespace (`make run` and compose set it; the worker warns when it
    # is shorter), and every closed payment is archived well before that.
    retention_days: int = Field(default=30, ge=1, le=3650)
    archive_dir: Path = Path(".data/archive")
    # How often the archiver looks for payments that closed (at most
    # ARCHIVE_INTERVAL_AT_MOST).
    archive_interval: timedelta = timedelta(seconds=20)

    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    # Prometheus metrics (CONTRACT §15). The worker's, Temporal's SDK metrics
    # beside ours, on this address ("" for none). The API's on an address of
    # their own when set; unset, on the API's port at /metrics, except in
    # production, where the public port never serves them.
    worker_metrics_address: str = "127.0.0.1:9464"
    api_metrics_address: str = ""

    @field_validator("encryption_keys")
    @classmethod
    def _keys_parse(cls, value: SecretStr) -> SecretStr:
        parse_keys(value.get_secret_value())  # a bad key stops the process at startup
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url_parses(cls, value: SecretStr) -> SecretStr:
        parse_smtp_url(value.get_secret_value())
        return value

    def smtp_server(self) -> SmtpServer:
        return parse_smtp_url(self.smtp_url.get_secret_value())

    @field_validator("receipt_from")
    @classmethod
    def _a_sender(cls, value: str) -> str:
        sender_address(value)
        return value

    def encryption_key_list(self) -> list[EncryptionKey]:
        return parse_keys(self.encryption_keys.get_secret_value())

    def ui_origins(self) -> list[str]:
        """Browser origins the codec endpoint answers: the Temporal UI's (under both
        loopback names when it is local) and any configured."""
        url = self.temporal_ui_url
        default_port = {"http": 80, "https": 443}.get(url.scheme)
        origin = f"{url.scheme}://{url.host}"
        if url.port and url.port != default_port:
            origin += f":{url.port}"
        origins = [origin]
        for alias, twin in (("127.0.0.1", "localhost"), ("localhost", "127.0.0.1")):
            if url.host == alias:
                origins.append(origin.replace(alias, twin, 1))
        return [*origins, *self.codec_cors_origins]

    @field_validator("api_keys")
    @classmethod
    def _keys_not_empty(cls, value: dict[str, str]) -> dict[str, str]:
        for key, merchant in value.items():
            if not key or not merchant:
                raise ValueError("API keys and merchant ids must be non-empty")
            if looks_like_email(merchant):
                raise ValueError(_MERCHANT_NOT_AN_EMAIL)
        return value

    @field_validator("demo_merchant")
    @classmethod
    def _demo_merchant_not_an_email(cls, value: str) -> str:
        if looks_like_email(value):
            raise ValueError(_MERCHANT_NOT_AN_EMAIL)
        return value

    @field_validator(
        "authorization_window",
        "refund_window",
        "reconciliation_interval",
        "archive_interval",
        mode="before",
    )
    @classmethod
    def _seconds_or_iso(cls, value: object) -> object:
        # From the environment: "604800" (seconds) as well as ISO 8601 "P7D".
        if isinstance(value, str) and value.strip().isdigit():
            return int(value)
        return value

    @field_validator(
        "authorization_window", "refund_window", "reconciliation_interval", "archive_interval"
    )
    @classmethod
    def _positive(cls, value: timedelta) -> timedelta:
        if value <= timedelta(0):
            raise ValueError("must be positive")
        return value

    @field_validator("archive_interval")
    @classmethod
    def _archives_in_time(cls, value: timedelta) -> timedelta:
        if value > ARCHIVE_INTERVAL_AT_MOST:
            raise ValueError(f"must be at most {ARCHIVE_INTERVAL_AT_MOST.total_seconds():.0f} s")
        return value

    def temporal_ui_base(self) -> str:
        return str(self.temporal_ui_url).rstrip("/")

    def gateway_base(self) -> str:
        return str(self.gateway_url).rstrip("/")

    def api_self_url(self) -> str:
        """The API as a process on its own machine reaches it (an API that
        listens on every interface is reached on loopback)."""
        host = "127.0.0.1" if self.api_host in ("", "0.0.0.0", "::") else self.api_host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.api_port}"

    def simulator_webhook_target(self) -> str | None:
        """Where the simulator sends its webhooks; None for nowhere."""
        if self.simulator_webhook_url is None:
            return f"{self.api_self_url()}/v1/gateway/webhooks/simulator"
        return self.simulator_webhook_url or None
