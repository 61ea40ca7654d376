"""The payment status machine of CONTRACT §5, as pure functions.

The workflow asks this module before every status change, and the tests use
the same table, so the diagram lives in exactly one place.

    processing ──► requires_capture ──► succeeded ──► partially_refunded ──► refunded
     ▲   │               │                  └──────────────────────────────► refunded
     │   ├──► succeeded  ├──► failed (capture refused, authorization voided)
     │   ├──► failed     └──► canceled (cancel or expiry, authorization voided)
     │   ├──► canceled
     │   └──► requires_action (the customer must authenticate: 3-D Secure)
     │               ├──► failed (authentication failed or not done in time)
     │               └──► canceled
     └───────────────┘ (authenticated: the gateway decides)
"""

from __future__ import annotations

from enum import StrEnum


class PaymentStatus(StrEnum):
    PROCESSING = "processing"
    REQUIRES_ACTION = "requires_action"
    REQUIRES_CAPTURE = "requires_capture"
    SUCCEEDED = "succeeded"
    PARTIALLY_REFUNDED = "partially_refunded"
    REFUNDED = "refunded"
    FAILED = "failed"
    CANCELED = "canceled"


S = PaymentStatus

TRANSITIONS: dict[PaymentStatus, frozenset[PaymentStatus]] = {
    S.PROCESSING: frozenset(
        {S.REQUIRES_ACTION, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.FAILED, S.CANCELED}
    ),
    S.REQUIRES_ACTION: frozenset({S.PROCESSING, S.FAILED, S.CANCELED}),
    S.REQUIRES_CAPTURE: frozenset({S.SUCCEEDED, S.FAILED, S.CANCELED}),
    S.SUCCEEDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.PARTIALLY_REFUNDED: frozenset({S.PARTIALLY_REFUNDED, S.REFUNDED}),
    S.REFUNDED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELED: frozenset(),
}

FINAL: frozenset[PaymentStatus] = frozenset(s for s, nxt in TRANSITIONS.items() if not nxt)


class InvalidTransition(ValueError):
    def __init__(self, current: PaymentStatus, target: PaymentStatus) -> None:
        super().__init__(f"a {current} payment cannot become {target}")
        self.current = current
        self.target = target


def can_transition(current: PaymentStatus, target: PaymentStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: PaymentStatus, target: PaymentStatus) -> PaymentStatus:
    if not can_transition(current, target):
        raise InvalidTransition(current, target)
    return target


def is_final(status: PaymentStatus) -> bool:
    return status in FINAL


def can_capture(status: PaymentStatus) -> bool:
    return status is S.REQUIRES_CAPTURE


def can_cancel(status: PaymentStatus) -> bool:
    return status in (S.PROCESSING, S.REQUIRES_ACTION, S.REQUIRES_CAPTURE)


# What "settled" means, for whoever waits on an outcome: the API's
# ``Prefer: wait``, its streams and the workflow's own ``wait_settled``
# (a refund's is ``Refund.settled``).


def is_settled(status: PaymentStatus) -> bool:
    """Settled: the outcome of the request is known (any status but
    processing and requires_action, CONTRACT §5)."""
    return status not in (S.PROCESSING, S.REQUIRES_ACTION)


def needs_customer(status: PaymentStatus) -> bool:
    """Nothing more happens until the customer acts (3-D Secure): not settled,
    but whoever waits for the outcome (``Prefer: wait``) has the answer for
    now, the ``next_action`` to send the customer to."""
    return status is S.REQUIRES_ACTION


def capture_settled(status: PaymentStatus) -> bool:
    """A capture's outcome is known: the payment no longer waits for one."""
    return not can_capture(status)


def cancel_settled(status: PaymentStatus) -> bool:
    """A cancel's outcome is known: nothing is left that it could stop."""
    return not can_cancel(status)


def can_refund(status: PaymentStatus) -> bool:
    return status in (S.SUCCEEDED, S.PARTIALLY_REFUNDED)


def status_after_refund(captured: int, refunded: int) -> PaymentStatus:
    """The status of a captured payment once ``refunded`` of ``captured`` went back."""
    if refunded <= 0:
        return S.SUCCEEDED
    return S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED
