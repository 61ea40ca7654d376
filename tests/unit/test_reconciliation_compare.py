"""The comparison at the heart of reconciliation, one mismatch kind at a time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pydantic import ValidationError

from payments.gateway import GatewayOperation
from payments.models import PaymentState
from payments.reconciliation import ReconciliationRequest, compare, in_flight
from payments.status import PaymentStatus

NOW = datetime(2026, 11, 26, tzinfo=UTC)


def op(kind: str, amount: int) -> GatewayOperation:
    return GatewayOperation(
        id=f"{kind}_1",
        kind=kind,
        amount=amount,
        currency="usd",
        reference="pay_a",  # type: ignore[arg-type]
        idempotency_key=f"pay_a:{kind}",
        created_at=NOW.isoformat(),
    )


def payment(**fields: Any) -> PaymentState:
    base: dict[str, Any] = {
        "id": "pay_a",
        "merchant_id": "demo",
        "amount": 1000,
        "currency": "usd",
        "capture_method": "automatic",
        "payment_method": "pm_card_visa",
        "created_at": NOW,
        "updated_at": NOW,
        "status": PaymentStatus.SUCCEEDED,
        "amount_captured": 1000,
    }
    return PaymentState(**{**base, **fields})


def kinds(found: list[Any]) -> list[str]:
    return [m.kind for m in found]


def test_agreeing_payment_has_no_mismatch() -> None:
    assert compare("pay_a", payment(), [op("authorization", 1000), op("capture", 1000)]) == []


@pytest.mark.parametrize(
    ("ours", "theirs", "expected"),
    [
        ({}, [op("authorization", 1000)], ["missing_capture"]),
        (
            {"amount_captured": 0, "status": PaymentStatus.REQUIRES_CAPTURE},
            [op("authorization", 1000), op("capture", 1000)],
            ["capture_not_recorded"],
        ),
        ({}, [op("authorization", 1000), op("capture", 900)], ["capture_amount_mismatch"]),
        (
            {},
            [op("authorization", 1000), op("capture", 1000), op("refund", 100)],
            ["refund_amount_mismatch"],
        ),
        (
            {"amount_captured": 0, "status": PaymentStatus.CANCELED},
            [op("authorization", 1000)],
            ["authorization_not_voided"],
        ),
    ],
)
def test_each_kind(
    ours: dict[str, Any], theirs: list[GatewayOperation], expected: list[str]
) -> None:
    found = compare("pay_a", payment(**ours), theirs)
    assert kinds(found) == expected
    assert all(m.merchant_id == "demo" for m in found)


def test_operations_for_an_unknown_payment() -> None:
    found = compare("pay_ghost", None, [op("authorization", 5), op("capture", 5)])
    assert kinds(found) == ["unknown_payment"] and found[0].gateway == 5
    assert compare("pay_ghost", None, []) == []


@pytest.mark.parametrize("status", [PaymentStatus.PROCESSING, PaymentStatus.REQUIRES_CAPTURE])
def test_an_open_authorization_of_a_workflow_that_ended_is_orphaned(status: PaymentStatus) -> None:
    waiting = payment(amount_captured=0, status=status)
    held = [op("authorization", 1000)]
    # Running: the workflow will still capture or void it.
    assert compare("pay_a", waiting, held) == []
    found = compare("pay_a", waiting, held, running=False)
    assert kinds(found) == ["authorization_orphaned"]
    assert str(status) in found[0].message
    # Voided or captured at the gateway: nothing is held.
    assert compare("pay_a", waiting, [*held, op("void", 1000)], running=False) == []
    # A terminated payment is compared, never left for later as in flight.
    assert in_flight(waiting) is (status is PaymentStatus.PROCESSING)
    assert not in_flight(waiting, running=False)


def test_voided_cancel_is_clean_and_work_in_flight_is_recognised() -> None:
    canceled = payment(amount_captured=0, status=PaymentStatus.CANCELED)
    assert compare("pay_a", canceled, [op("authorization", 1000), op("void", 1000)]) == []
    assert in_flight(payment(status=PaymentStatus.PROCESSING, amount_captured=0))
    assert not in_flight(payment())


@pytest.mark.parametrize(
    "window",
    [
        {"start": "2026-11-26T10:00:00"},  # no timezone: which hour is that?
        {"start": "2026-11-26T11:00:00Z", "end": "2026-11-26T10:00:00Z"},
        {"lookback_seconds": 0},
        # Near datetime's limits the workflow's window arithmetic would overflow.
        {"end": "0001-01-01T00:00:00Z"},
        {"start": "9999-12-31T23:00:00-23:00"},
        {"lookback_seconds": 1e300},
        # What the API documents: a time is ISO 8601 text, seconds are a number.
        {"start": 0},
        {"lookback_seconds": "3600"},
    ],
)
def test_windows_that_cannot_be_checked_are_refused(window: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ReconciliationRequest.model_validate(window)


def test_a_window_is_kept_in_utc() -> None:
    request = ReconciliationRequest.model_validate({"start": "2026-11-26T12:00:00+02:00"})
    assert request.start == datetime(2026, 11, 26, 10, tzinfo=UTC)
    assert request.start.utcoffset() == timedelta(0)
