"""The receipt activity: render the customer's receipt and hand it to the
SMTP server of ``PAYMENTS_SMTP_URL`` (CONTRACT §16) with ``aiosmtplib``.

A mail server's answer becomes the ``ApplicationError`` types of
:mod:`payments.retries`: ``ReceiptRefused`` (final) for a 5xx refusal of the
recipient or of the message, or an address that cannot be mailed at all;
``MailUnavailable`` (retried) for anything else, our own sender or login
refused among it (ours to fix, not the customer's). The recipient's address
is personal data: no error, log line or failure this module raises names it
(failures are stored in history unsealed), a server's own words are scrubbed
of addresses and of this one before they are repeated, and an error this
module did not expect is reported by its type alone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiosmtplib
from temporalio import activity
from temporalio.exceptions import ApplicationError

from payments import retries
from payments.mail import SmtpServer, ascii_address, sender_address
from payments.models import ReceiptSent, SendReceipt
from payments.names import Activities
from payments.personal import without_addresses
from payments.receipts import on_the_wire, render_receipt
from payments.settings import Settings

# Each SMTP command may take this long, a whole attempt a little longer; the
# policy's timeout (60 s) is longer still, so attempts never overlap.
SMTP_TIMEOUT_SECONDS = 30.0
ATTEMPT_SECONDS = 50.0


def _refusal(code: int, text: str, what: str) -> ApplicationError:
    if code >= 500:
        return ApplicationError(
            f"the mail server refused the {what}: {code} {text}",
            {"smtp_code": code},
            type=retries.RECEIPT_REFUSED,
            non_retryable=True,
        )
    return _unavailable(f"the mail server deferred the {what}: {code} {text}")


def _unavailable(message: str) -> ApplicationError:
    return ApplicationError(message, type=retries.MAIL_UNAVAILABLE)


class ReceiptActivities:
    def __init__(self, settings: Settings) -> None:
        self.server: SmtpServer = settings.smtp_server()
        self.sender = settings.receipt_from
        self.sender_address = sender_address(settings.receipt_from)

    def all(self) -> list[Callable[..., Any]]:
        return [self.send_receipt]

    @activity.defn(name=Activities.SEND_RECEIPT)
    async def send_receipt(self, receipt: SendReceipt) -> ReceiptSent:
        try:
            return await self._send(receipt)
        except ApplicationError:
            raise
        # `from None` throughout: the library's exceptions quote the recipient.
        except aiosmtplib.SMTPRecipientsRefused as refused:
            codes = [recipient.code for recipient in refused.recipients] or [550]
            words = without_addresses(refused.recipients[0].message, receipt.to)
            raise _refusal(min(codes), words, "recipient") from None
        except aiosmtplib.SMTPDataError as err:
            words = without_addresses(err.message, receipt.to)
            raise _refusal(err.code, words, "message") from None
        except (aiosmtplib.SMTPSenderRefused, aiosmtplib.SMTPHeloError) as err:
            # Our sender or our name, not the customer's address: fixable, so retried.
            raise _unavailable(f"the mail server refused our sender: {err.code}") from None
        except aiosmtplib.SMTPAuthenticationError as err:
            raise _unavailable(f"the mail server refused our login: {err.code}") from None
        except aiosmtplib.SMTPResponseException as err:
            raise _unavailable(f"the mail server answered {err.code}") from None
        except (aiosmtplib.SMTPException, OSError) as err:
            # Unreachable, timed out, hung up, no STARTTLS, a bad certificate.
            server = self.server
            raise _unavailable(
                f"the mail server at {server.host}:{server.port} is unreachable "
                f"({type(err).__name__})"
            ) from None
        except Exception as err:
            # Unexpected, and its words may hold the address: its type alone.
            raise _unavailable(f"the receipt could not be sent ({type(err).__name__})") from None

    async def _send(self, receipt: SendReceipt) -> ReceiptSent:
        try:
            recipient = ascii_address(receipt.to)
        except ValueError:
            # Taken before today's rules: no mail server could deliver it.
            raise ApplicationError(
                "the address cannot be mailed", type=retries.RECEIPT_REFUSED, non_retryable=True
            ) from None
        message = render_receipt(receipt, self.sender)
        server = self.server
        async with asyncio.timeout(ATTEMPT_SECONDS):
            await aiosmtplib.send(
                on_the_wire(message),
                sender=self.sender_address,
                recipients=[recipient],
                hostname=server.host,
                port=server.port,
                username=server.username,
                password=server.password,
                use_tls=server.security == "tls",
                start_tls=server.security == "starttls",
                timeout=SMTP_TIMEOUT_SECONDS,
            )
        return ReceiptSent(message_id=str(message["Message-ID"]))
