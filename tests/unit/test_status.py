"""The status machine against CONTRACT §5, written out here independently."""

from __future__ import annotations

import itertools

import pytest

from payments.status import (
    FINAL,
    TRANSITIONS,
    InvalidTransition,
    PaymentStatus,
    can_cancel,
    can_capture,
    can_refund,
    can_transition,
    check_transition,
    is_final,
    is_settled,
    needs_customer,
    status_after_refund,
)

S = PaymentStatus
EXPECTED = {
    S.PROCESSING: {S.REQUIRES_ACTION, S.REQUIRES_CAPTURE, S.SUCCEEDED, S.FAILED, S.CANCELED},
    # The customer authenticated (back to processing), failed or ran out of time, or canceled.
    S.REQUIRES_ACTION: {S.PROCESSING, S.FAILED, S.CANCELED},
    S.REQUIRES_CAPTURE: {S.SUCCEEDED, S.FAILED, S.CANCELED},
    S.SUCCEEDED: {S.PARTIALLY_REFUNDED, S.REFUNDED},
    S.PARTIALLY_REFUNDED: {S.PARTIALLY_REFUNDED, S.REFUNDED},
    S.FAILED: set(),
    S.CANCELED: set(),
    S.REFUNDED: set(),
}
PAIRS = list(itertools.product(S, S))


def test_status_values_are_the_contract_words() -> None:
    assert {s.value for s in S} == {
        "processing",
        "requires_action",
        "requires_capture",
        "succeeded",
        "partially_refunded",
        "refunded",
        "failed",
        "canceled",
    }


def test_transition_table_matches_the_contract() -> None:
    assert {status: set(targets) for status, targets in TRANSITIONS.items()} == EXPECTED


def test_final_statuses_have_no_way_out() -> None:
    assert {S.FAILED, S.CANCELED, S.REFUNDED} == FINAL
    assert [s for s in S if is_final(s)] == [s for s in S if not EXPECTED[s]]


@pytest.mark.parametrize(("current", "target"), PAIRS, ids=[f"{a}->{b}" for a, b in PAIRS])
def test_check_transition(current: PaymentStatus, target: PaymentStatus) -> None:
    allowed = target in EXPECTED[current]
    assert can_transition(current, target) is allowed
    if allowed:
        assert check_transition(current, target) is target
    else:
        with pytest.raises(InvalidTransition) as info:
            check_transition(current, target)
        assert (info.value.current, info.value.target) == (current, target)
        assert isinstance(info.value, ValueError)
        assert str(current) in str(info.value) and str(target) in str(info.value)


@pytest.mark.parametrize(
    ("status", "settled", "capture", "cancel", "refund"),
    [
        (S.PROCESSING, False, False, True, False),
        (S.REQUIRES_ACTION, False, False, True, False),
        (S.REQUIRES_CAPTURE, True, True, True, False),
        (S.SUCCEEDED, True, False, False, True),
        (S.PARTIALLY_REFUNDED, True, False, False, True),
        (S.REFUNDED, True, False, False, False),
        (S.FAILED, True, False, False, False),
        (S.CANCELED, True, False, False, False),
    ],
)
def test_what_each_status_allows(
    status: PaymentStatus, settled: bool, capture: bool, cancel: bool, refund: bool
) -> None:
    assert is_settled(status) is settled
    assert can_capture(status) is capture
    assert can_cancel(status) is cancel
    assert can_refund(status) is refund
    assert needs_customer(status) is (status is S.REQUIRES_ACTION)


@pytest.mark.parametrize(
    ("captured", "refunded", "status"),
    [
        (1000, 0, S.SUCCEEDED),
        (1000, 1, S.PARTIALLY_REFUNDED),
        (1000, 999, S.PARTIALLY_REFUNDED),
        (1000, 1000, S.REFUNDED),
        (1, 1, S.REFUNDED),
    ],
)
def test_status_after_refund(captured: int, refunded: int, status: PaymentStatus) -> None:
    assert status_after_refund(captured, refunded) is status
    if refunded:
        assert can_transition(S.SUCCEEDED, status)
