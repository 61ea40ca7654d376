"""What the Temporal UI says about a payment while it runs: its current
details (``workflow.set_current_details``), Markdown, rewritten with every
event. Pure: the workflow says what it waits for, this says how it reads.

    **succeeded** · 20.00 USD
    captured 20.00 USD · refunded 5.00 USD
    waiting for: refunds, until 2027-05-31 12:00 UTC
"""

from __future__ import annotations

from datetime import datetime

from payments.currencies import format_amount
from payments.models import PaymentState


def current_details(state: PaymentState, waiting_for: str) -> str:
    def money(amount: int) -> str:
        return format_amount(amount, state.currency)

    lines = [f"**{state.status}** · {money(state.amount)} · {state.capture_method} capture"]
    amounts = []
    if state.amount_capturable:
        amounts.append(f"capturable {money(state.amount_capturable)}")
    if state.amount_captured:
        amounts.append(f"captured {money(state.amount_captured)}")
    if state.amount_refunded:
        amounts.append(f"refunded {money(state.amount_refunded)}")
    if amounts:
        lines.append(" · ".join(amounts))
    if state.failure is not None:
        failure = state.failure
        code = failure.code + (f" ({failure.decline_code})" if failure.decline_code else "")
        lines.append(f"failure: {code}: {failure.message}")
    redirect = state.next_action.redirect_to_url if state.next_action else None
    if redirect is not None and redirect.url:
        # 3-D Secure: where the customer confirms, for an operator helping one.
        lines.append(f"customer authenticates at: {redirect.url}")
    lines.append(f"waiting for: {waiting_for}")
    return "  \n".join(lines)


def until(when: datetime) -> str:
    """A deadline as the details show it."""
    return when.strftime("%Y-%m-%d %H:%M UTC")
