"""What production refuses (CONTRACT §9), and how a process loads its settings.

Every built-in default of :class:`~payments.settings.Settings` works out of the
box, which is what a laptop wants and what a deployment must never run with:
the demo API key, the operator key and the client-secret signing key are in
this repository for anyone to read, an empty encryption key list writes
payloads to Temporal in the clear, an anonymous codec endpoint decrypts
history for whoever asks, and the demo page takes payments from strangers.
:func:`problems` names each of those, one line per setting; it is pure, so
``Settings()`` itself never refuses anything and tests build it freely.

:func:`load_settings` is what the entry points call instead of ``Settings()``
(``python -m api``, ``python worker.py``, ``python -m gateway.simulator``):
a value that does not parse, or in production any problem, ends the process
with one line per setting on stderr and no traceback.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from pydantic import SecretStr, ValidationError
from pydantic_settings import SettingsError

from payments.settings import Settings

_HOW_TO_LEAVE = "or PAYMENTS_ENV=development for a local run"


def variable(field: str) -> str:
    """The environment variable that sets ``field``."""
    return f"PAYMENTS_{field.upper()}"


def _builtin(field: str) -> Any:
    """The default a field has when nothing sets it: the value everybody knows."""
    info = Settings.model_fields[field]
    value = info.default_factory() if info.default_factory is not None else info.default  # type: ignore[call-arg]
    return value.get_secret_value() if isinstance(value, SecretStr) else value


def _secret(settings: Settings, field: str) -> str:
    value = getattr(settings, field)
    assert isinstance(value, SecretStr)
    return value.get_secret_value().strip()


def _digest_of(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def problems(settings: Settings) -> list[str]:
    """Why ``settings`` must not run in production: one line per setting, each
    naming its variable and what to do; empty when they may. Only built-in and
    empty values are refused; how strong an operator's own key is, is theirs."""
    found: list[str] = []

    def refuse(field: str, why: str, remedy: str) -> None:
        found.append(f"{variable(field)} {why}; {remedy}")

    builtin_keys = set(_builtin("api_keys"))
    configured = {key.lower() for key in settings.api_keys}
    for key in sorted(builtin_keys):
        # A key may be configured as itself or as the digest of itself (api/deps.py).
        if key.lower() in configured or _digest_of(key) in configured:
            refuse("api_keys", f"holds the built-in demo key {key}", "set your own")
    if not settings.api_keys:
        refuse("api_keys", "holds no key, so no merchant can call the API", "set your own")

    for key in _builtin("operator_api_keys"):
        if key in settings.operator_api_keys:
            refuse("operator_api_keys", f"holds the built-in operator key {key}", "set your own")
    if any(not key.strip() for key in settings.operator_api_keys):
        refuse("operator_api_keys", "holds an empty key", "remove it")

    if _secret(settings, "client_secret_key") in ("", _builtin("client_secret_key")):
        refuse(
            "client_secret_key",
            "is the built-in development key or empty: anyone could forge client secrets",
            "set a random one (python -c 'import secrets; print(secrets.token_urlsafe(32))')",
        )

    if not settings.encryption_key_list():
        refuse(
            "encryption_keys",
            "is empty: payloads would reach Temporal in the clear",
            "set one (python -m payments.codec prints a key)",
        )

    if _secret(settings, "stripe_webhook_secret") in ("", _builtin("stripe_webhook_secret")):
        refuse(
            "stripe_webhook_secret",
            "is the built-in development secret or empty: anyone could sign gateway events",
            "set the endpoint's signing secret (whsec_...) from Stripe",
        )

    if settings.gateway == "simulator" and _secret(settings, "simulator_webhook_secret") in (
        "",
        _builtin("simulator_webhook_secret"),
    ):
        refuse(
            "simulator_webhook_secret",
            "is the built-in development secret or empty while PAYMENTS_GATEWAY=simulator: "
            "anyone could sign the simulator's events",
            "set a random one, the same for the simulator and the API",
        )

    if settings.gateway == "stripe" and _secret(settings, "stripe_api_key") in (
        "",
        _builtin("stripe_api_key"),
    ):
        refuse(
            "stripe_api_key",
            "is the built-in placeholder or empty while PAYMENTS_GATEWAY=stripe",
            "set your Stripe secret key",
        )

    if settings.codec_allow_anonymous:
        refuse(
            "codec_allow_anonymous",
            "is true: /codec would decrypt history for anyone",
            "unset it (the codec then wants an operator key)",
        )

    if settings.webhook_allow_private_addresses:
        refuse(
            "webhook_allow_private_addresses",
            "is true: webhook endpoints could reach this network's private addresses",
            "unset it (endpoints are then https and public only)",
        )

    if settings.receipt_from == _builtin("receipt_from"):
        refuse(
            "receipt_from",
            "is the built-in example sender: receipts would come from a domain not yours",
            "set your own, e.g. 'Shop <receipts@shop.example.com>'",
        )

    if _secret(settings, "smtp_url") == _builtin("smtp_url"):
        refuse(
            "smtp_url",
            "is the local mail sink of `make run`: receipts would never leave this machine",
            "set the SMTP relay receipts go through (smtps://user:password@host:465)",
        )
    elif settings.smtp_server().sends_credentials_in_the_clear:
        refuse(
            "smtp_url",
            "sends a user name and password over plain smtp://",
            "use smtp+starttls:// or smtps://",
        )

    if settings.demo_merchant:
        refuse(
            "demo_merchant",
            "is set: the demo page would take payments from anyone",
            "unset it",
        )
    return found


def unparsable(error: ValueError) -> list[str]:
    """What a settings error says, one line per setting, without its value. Only
    the field is named: deeper in the location is a dict key, and the keys of
    ``api_keys`` are the secrets."""
    if isinstance(error, ValidationError):
        lines: list[str] = []
        for detail in error.errors(include_input=False, include_url=False):
            loc = detail.get("loc", ())
            field = variable(str(loc[0])) if loc else "a PAYMENTS_ setting"
            message = str(detail.get("msg", "invalid value")).removeprefix("Value error, ")
            line = f"{field}: {message}"
            if line not in lines:
                lines.append(line)
        return lines
    if isinstance(error, SettingsError):
        # pydantic-settings names the field only in its message; it reads the
        # complex ones (dicts, lists) as JSON.
        named = re.search(r'field "(\w+)"', str(error))
        field = variable(named.group(1)) if named else "a PAYMENTS_ setting"
        cause = error.__cause__
        if isinstance(cause, json.JSONDecodeError):
            return [f"{field}: not valid JSON ({cause.msg} at character {cause.pos})"]
        return [f"{field}: could not be read"]
    return [str(error)]


def load_settings() -> Settings:
    """The settings of this process, or ``SystemExit`` with one line per problem
    on stderr: a value that does not parse, or (in production) anything
    :func:`problems` refuses."""
    try:
        settings = Settings()
    except ValueError as error:
        lines = [f"invalid setting {line}" for line in unparsable(error)]
        raise SystemExit("\n".join(lines)) from None
    if settings.env == "production":
        refused = problems(settings)
        if refused:
            lines = [f"refusing to start in production: {why}, {_HOW_TO_LEAVE}" for why in refused]
            raise SystemExit("\n".join(lines))
    return settings
