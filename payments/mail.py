"""Where receipts are mailed (CONTRACT §16): ``PAYMENTS_SMTP_URL`` read into
an :class:`SmtpServer`, and the sender ``PAYMENTS_RECEIPT_FROM``.

| URL                                         | connection                        |
|---------------------------------------------|-----------------------------------|
| ``smtp://host:25``                          | plain SMTP: a relay beside the    |
|                                             | worker, the sink of `make run`    |
| ``smtp+starttls://user:password@host:587``  | upgraded with STARTTLS, or nothing|
|                                             | is sent                           |
| ``smtps://user:password@host:465``          | TLS from the first byte           |

User and password are percent-encoded in the URL, as in any URL. No I/O here.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses, parseaddr
from typing import Literal
from urllib.parse import unquote, urlsplit

from email_validator import EmailNotValidError, validate_email

Security = Literal["none", "starttls", "tls"]

_SCHEMES: dict[str, tuple[Security, int]] = {
    "smtp": ("none", 25),
    "smtp+starttls": ("starttls", 587),
    "smtps": ("tls", 465),
}
MAX_ADDRESS_LENGTH = 254


@dataclass(frozen=True)
class SmtpServer:
    host: str
    port: int
    security: Security
    username: str | None = None
    password: str | None = None

    @property
    def sends_credentials_in_the_clear(self) -> bool:
        return self.username is not None and self.security == "none"


class BadSmtpUrl(ValueError):
    """A ``PAYMENTS_SMTP_URL`` that cannot be used; the message never holds the password."""


def parse_smtp_url(url: str) -> SmtpServer:
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        raise BadSmtpUrl("must be smtp://host:port, smtp+starttls://… or smtps://…") from None
    scheme = _SCHEMES.get(parts.scheme)
    if scheme is None:
        raise BadSmtpUrl(
            f"scheme {parts.scheme!r} is not one of smtp://, smtp+starttls://, smtps://"
        )
    if not parts.hostname:
        raise BadSmtpUrl("names no host")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise BadSmtpUrl("takes no path, query or fragment")
    security, default_port = scheme
    return SmtpServer(
        host=parts.hostname,
        port=port or default_port,
        security=security,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
    )


def ascii_address(text: str) -> str:
    """The address as SMTP carries it, its domain in ASCII (punycode): the
    syntax of RFC 5321 as ``email-validator`` reads it, a local part in ASCII
    (no SMTPUTF8: not every relay takes it), a domain that exists on the
    Internet (not ``localhost`` or ``.test``), at most 254 characters; no DNS
    lookup. ValueError for anything else, without quoting it."""
    if len(text) > MAX_ADDRESS_LENGTH:
        raise ValueError("longer than an address may be")
    try:
        checked = validate_email(text, check_deliverability=False, allow_smtputf8=False)
    except (EmailNotValidError, UnicodeError):
        raise ValueError("not an address mail can be delivered to") from None
    address: str = checked.ascii_email or checked.normalized
    return address


def is_email_address(text: str) -> bool:
    """Whether receipts can be mailed to ``text`` (:func:`ascii_address`)."""
    try:
        ascii_address(text)
    except ValueError:
        return False
    return True


def sender_address(sender: str) -> str:
    """The one address of ``"Name <address>"`` or of a bare address;
    ValueError for none, several, or a line break (a header of its own)."""
    if "\r" in sender or "\n" in sender or len(getaddresses([sender])) != 1:
        raise ValueError("must be one e-mail address, optionally with a name: Shop <receipts@shop>")
    _, address = parseaddr(sender)
    try:
        return ascii_address(address)
    except ValueError:
        raise ValueError(
            "must be an e-mail address, optionally with a name: Shop <receipts@shop>"
        ) from None
