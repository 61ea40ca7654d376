"""Reconciliation: what the gateway holds against what the payments say.

Pure: given the gateway's operations for each reference and the payment (if
any) that reference names, list the mismatches. The activity gathers the
inputs; the workflow runs it on a schedule and reports.

Mismatch kinds:

| kind                     | the gateway holds                 | the payment says          |
|--------------------------|-----------------------------------|---------------------------|
| unknown_payment          | operations for a reference        | nothing: no such payment  |
| missing_capture          | no capture                        | captured                  |
| capture_not_recorded     | a capture                         | nothing captured          |
| capture_amount_mismatch  | captured X                        | captured Y                |
| refund_amount_mismatch   | refunded X                        | refunded Y                |
| authorization_not_voided | an open authorization             | failed or canceled        |
| authorization_orphaned   | an open authorization             | processing or             |
|                          |                                   | requires_capture, and its |
|                          |                                   | workflow no longer runs   |
|                          |                                   | (terminated, timed out)   |

Payments with work under way are left for the next run, unless their workflow
no longer runs: then nothing will finish that work, and they are compared.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import AwareDatetime, BaseModel, Field, field_validator, model_validator

from payments.gateway import GatewayOperation
from payments.models import PaymentState, RefusesCardNumbers
from payments.status import PaymentStatus

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
MAX_LOOKBACK_SECONDS = 10 * 366 * 24 * 3600
_WINDOW_RANGE = "must lie between 1970 and 9000"


class ReconciliationRequest(RefusesCardNumbers):
    """A window to check; both ends default to the last ``lookback_seconds``."""

    start: AwareDatetime | None = None
    end: AwareDatetime | None = None
    # Strict, as the API documents them: a number is not a time, text is not seconds.
    lookback_seconds: float = Field(default=3600, gt=0, le=MAX_LOOKBACK_SECONDS, strict=True)

    @field_validator("start", "end", mode="before")
    @classmethod
    def _iso_8601(cls, value: object) -> object:
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("must be an ISO 8601 date-time with a time zone")
        return value

    @field_validator("start", "end")
    @classmethod
    def _in_utc_within_reason(cls, value: datetime | None) -> datetime | None:
        # The workflow does arithmetic on these: near datetime's limits it would
        # raise OverflowError on every workflow task, and the run would never end.
        if value is None:
            return None
        try:
            utc = value.astimezone(UTC)
        except OverflowError:
            raise ValueError(_WINDOW_RANGE) from None
        if not EARLIEST <= utc < LATEST:
            raise ValueError(_WINDOW_RANGE)
        return utc

    @model_validator(mode="after")
    def _start_before_end(self) -> ReconciliationRequest:
        if self.start and self.end and self.start >= self.end:
            raise ValueError("start must be before end")
        return self


class Window(BaseModel):
    start: datetime
    end: datetime


class Mismatch(BaseModel):
    payment_id: str
    merchant_id: str | None = None
    kind: str
    gateway: int | None = None
    payment: int | None = None
    message: str


class ReconciliationReport(BaseModel):
    id: str = ""
    window: Window
    checked: int
    mismatches: list[Mismatch] = Field(default_factory=list)
    # Payments with work under way, left for the next run: named, not lost.
    in_flight: list[str] = Field(default_factory=list)


def _sum(operations: Iterable[GatewayOperation], kind: str) -> int:
    return sum(op.amount for op in operations if op.kind == kind)


def compare(
    reference: str,
    payment: PaymentState | None,
    operations: list[GatewayOperation],
    *,
    running: bool = True,
) -> list[Mismatch]:
    """The mismatches between one payment and the gateway's operations for it;
    ``running``: whether the payment's workflow still runs (its current run)."""
    captured = _sum(operations, "capture")
    refunded = _sum(operations, "refund")
    authorized = any(op.kind == "authorization" for op in operations)
    voided = any(op.kind == "void" for op in operations)
    if payment is None:
        if not operations:
            return []
        return [
            Mismatch(
                payment_id=reference,
                kind="unknown_payment",
                gateway=captured,
                message="the gateway holds operations for a payment we do not know",
            )
        ]
    found: list[Mismatch] = []

    def add(kind: str, gateway: int | None, ours: int | None, message: str) -> None:
        found.append(
            Mismatch(
                payment_id=payment.id,
                merchant_id=payment.merchant_id,
                kind=kind,
                gateway=gateway,
                payment=ours,
                message=message,
            )
        )

    if payment.amount_captured and not captured:
        add("missing_capture", 0, payment.amount_captured, "captured here, not at the gateway")
    elif captured and not payment.amount_captured:
        add("capture_not_recorded", captured, 0, "captured at the gateway, not here")
    elif captured != payment.amount_captured:
        add("capture_amount_mismatch", captured, payment.amount_captured, "captured amounts differ")
    if refunded != payment.amount_refunded:
        add("refund_amount_mismatch", refunded, payment.amount_refunded, "refunded amounts differ")
    open_authorization = authorized and not voided and not captured
    closed_unpaid = payment.status in (PaymentStatus.FAILED, PaymentStatus.CANCELED)
    if closed_unpaid and open_authorization:
        add(
            "authorization_not_voided",
            None,
            None,
            f"the payment is {payment.status} but its authorization is still open",
        )
    undecided = payment.status in (
        PaymentStatus.PROCESSING,
        PaymentStatus.REQUIRES_ACTION,
        PaymentStatus.REQUIRES_CAPTURE,
    )
    if undecided and open_authorization and not running:
        add(
            "authorization_orphaned",
            None,
            None,
            f"the payment's workflow ended while it was {payment.status}: nothing will capture "
            "or void its open authorization",
        )
    return found


def in_flight(payment: PaymentState, *, running: bool = True) -> bool:
    """Work under way: comparing now would report what is about to be true. A
    payment whose workflow no longer runs has nothing under way."""
    pending_refund = any(not refund.settled for refund in payment.refunds)
    # Waiting on the customer counts: the gateway may authorize at any moment.
    deciding = payment.status in (PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_ACTION)
    return running and (deciding or pending_refund)
