"""The customer's receipt (CONTRACT §16): the message for a payment that
succeeded, or for one of its refunds, in plain text and HTML.

The message is a function of :class:`~payments.models.SendReceipt` and the
sender alone, so every attempt at one receipt is the same message, under the
same ``Message-ID`` (:func:`message_id`): a mail server or a mailbox that sees
it twice can tell. No I/O here; the activity sends it.
"""

from __future__ import annotations

import html
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from payments.currencies import display_amount
from payments.mail import ascii_address, sender_address
from payments.models import SendReceipt


def message_id(receipt: SendReceipt, sender: str) -> str:
    """The receipt's ``Message-ID``: the payment and, for a refund, the refund,
    at the sender's domain."""
    domain = sender_address(sender).rpartition("@")[2]
    what = receipt.payment_id
    if receipt.refund_id is not None:
        what += f".{receipt.refund_id}"
    return f"<receipt.{what}@{domain}>"


# CRLF, and headers unfolded up to SMTP's own limit: a long Message-ID reads
# the same in every mailbox.
_ON_THE_WIRE = SMTP.clone(max_line_length=998)


def on_the_wire(message: EmailMessage) -> bytes:
    """The message as it is sent."""
    return message.as_bytes(policy=_ON_THE_WIRE)


def _lines(receipt: SendReceipt) -> tuple[str, list[tuple[str, str]]]:
    """The receipt's heading and its rows (label, value)."""

    def money(amount: int) -> str:
        return display_amount(amount, receipt.currency)

    rows = [("Merchant", receipt.merchant_id)]
    if receipt.description:
        rows.append(("Description", receipt.description))
    if receipt.refund_id is None or receipt.refund_amount is None:
        heading = f"Receipt for your payment of {money(receipt.amount_captured)}"
        rows.append(("Amount paid", money(receipt.amount_captured)))
    else:
        heading = f"Refund of {money(receipt.refund_amount)}"
        rows += [
            ("Amount refunded", money(receipt.refund_amount)),
            ("Paid originally", money(receipt.amount_captured)),
            ("Remaining after refunds", money(receipt.remaining)),
            ("Refund", receipt.refund_id),
        ]
    rows += [
        ("Payment", receipt.payment_id),
        ("Date", receipt.at.strftime("%d %B %Y, %H:%M UTC")),
    ]
    return heading, rows


def render_receipt(receipt: SendReceipt, sender: str) -> EmailMessage:
    """The message, ready to send: text first, HTML as the alternative."""
    heading, rows = _lines(receipt)
    message = EmailMessage()
    message["From"] = sender
    message["To"] = ascii_address(receipt.to)
    message["Subject"] = f"{heading} ({receipt.merchant_id})"
    message["Date"] = format_datetime(receipt.at)
    message["Message-ID"] = message_id(receipt, sender)
    width = max(len(label) for label, _ in rows)
    text = [heading, "", *(f"{label:<{width}}  {value}" for label, value in rows), ""]
    text.append("Keep this e-mail for your records.")
    message.set_content("\n".join(text) + "\n")
    cells = "\n".join(
        f'<tr><th align="left">{html.escape(label)}</th><td>{html.escape(value)}</td></tr>'
        for label, value in rows
    )
    message.add_alternative(
        "<!doctype html>\n<html><body>\n"
        f"<h1>{html.escape(heading)}</h1>\n<table>\n{cells}\n</table>\n"
        "<p>Keep this e-mail for your records.</p>\n</body></html>\n",
        subtype="html",
    )
    return message
