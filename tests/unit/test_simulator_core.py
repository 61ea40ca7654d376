"""The simulator's ledger without HTTP: idempotency, business rules, faults;
and the in-memory adapter and factory built on it."""

from __future__ import annotations

import asyncio
import functools
import random
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError
from support import authorize_in, refused_with

from gateway.factory import build_gateway
from gateway.http_simulator import SimulatorGateway
from gateway.memory import InMemoryGateway
from gateway.simulator.core import (
    Fault,
    Faults,
    GatewayUnavailable,
    ReplyDropped,
    SimulatorLedger,
)
from payments.gateway import (
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)
from payments.settings import Settings


async def test_authorize_commits_one_operation() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger)
    assert auth.id.startswith("auth_")
    assert (auth.kind, auth.amount, auth.currency, auth.reference) == (
        "authorization",
        1000,
        "usd",
        "pay_1",
    )
    assert datetime.fromisoformat(auth.created_at).utcoffset() == timedelta(0)
    assert auth.created_at.endswith("Z")
    assert ledger.ledger("pay_1") == [auth]


async def test_same_key_same_request_replays_without_committing() -> None:
    ledger = SimulatorLedger()
    first = await authorize_in(ledger)
    again = await authorize_in(ledger)
    assert again == first
    assert ledger.ledger() == [first]


async def test_same_key_other_request_is_refused() -> None:
    ledger = SimulatorLedger()
    first = await authorize_in(ledger)
    await refused_with("idempotency_key_reused", authorize_in(ledger, amount=999))
    await refused_with(
        "idempotency_key_reused",
        ledger.void(authorization_id=first.id, idempotency_key="pay_1:authorize"),
    )
    assert ledger.ledger() == [first]


async def test_concurrent_calls_with_one_key_commit_once() -> None:
    ledger = SimulatorLedger()
    results = await asyncio.gather(*(authorize_in(ledger) for _ in range(50)))
    assert len({result.id for result in results}) == 1
    assert len(ledger.ledger()) == 1


async def test_concurrent_captures_with_different_keys_capture_once() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger)
    results = await asyncio.gather(
        *(
            ledger.capture(authorization_id=auth.id, amount=1000, idempotency_key=f"cap-{n}")
            for n in range(10)
        ),
        return_exceptions=True,
    )
    captures = [result for result in results if isinstance(result, GatewayOperation)]
    assert len(captures) == 1
    assert all(
        isinstance(result, InvalidGatewayRequest) and result.code == "already_captured"
        for result in results
        if result not in captures
    )
    assert [op.kind for op in ledger.ledger()] == ["authorization", "capture"]


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
        ("tok_chargeDeclined", "card_declined", "generic_decline"),
    ],
)
async def test_declines_carry_codes_and_replay(
    payment_method: str, code: str, decline_code: str
) -> None:
    ledger = SimulatorLedger()
    for _ in range(2):
        with pytest.raises(CardDeclined) as declined:
            await authorize_in(ledger, payment_method=payment_method)
        assert (declined.value.code, declined.value.decline_code) == (code, decline_code)
        assert declined.value.message
    assert ledger.ledger() == []
    # The key is spent on the decline, even for a card that would succeed.
    await refused_with(
        "idempotency_key_reused", authorize_in(ledger, payment_method="pm_card_visa")
    )


@pytest.mark.parametrize("payment_method", ["pm_card_mastercard", "pm_card_amex", "tok_visa"])
async def test_other_test_cards_succeed(payment_method: str) -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger, payment_method=payment_method)
    assert ledger.ledger() == [auth]


async def test_bad_authorizations_are_refused_and_store_nothing() -> None:
    ledger = SimulatorLedger()
    await refused_with("resource_missing", authorize_in(ledger, payment_method="4242424242424242"))
    await refused_with("amount_too_small", authorize_in(ledger, amount=0))
    await refused_with("amount_too_large", authorize_in(ledger, amount=100_000_000))
    await refused_with(
        "invalid_currency",
        ledger.authorize(
            reference="pay_1",
            amount=1,
            currency="USD",
            payment_method="pm_card_visa",
            idempotency_key="k",
        ),
    )
    await refused_with("idempotency_key_invalid", authorize_in(ledger, key=""))
    assert ledger.ledger() == []
    # Nothing was stored for the key, so a corrected request may use it.
    assert await authorize_in(ledger, amount=1) == ledger.ledger()[0]


async def test_partial_capture_once() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger)
    await refused_with(
        "amount_too_large",
        ledger.capture(authorization_id=auth.id, amount=1001, idempotency_key="c0"),
    )
    await refused_with(
        "amount_too_small", ledger.capture(authorization_id=auth.id, amount=0, idempotency_key="c0")
    )
    capture = await ledger.capture(authorization_id=auth.id, amount=600, idempotency_key="c1")
    assert capture.id.startswith("cap_")
    assert (capture.kind, capture.amount, capture.authorization_id) == ("capture", 600, auth.id)
    assert capture.reference == "pay_1"
    await refused_with(
        "already_captured",
        ledger.capture(authorization_id=auth.id, amount=400, idempotency_key="c2"),
    )
    assert await ledger.capture(authorization_id=auth.id, amount=600, idempotency_key="c1") == (
        capture
    )
    assert [op.kind for op in ledger.ledger("pay_1")] == ["authorization", "capture"]


async def test_capture_fails_card_is_refused_and_can_be_voided() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger, payment_method="pm_card_captureFails")
    for key in ("c1", "c1", "c2"):
        await refused_with(
            "capture_refused",
            ledger.capture(authorization_id=auth.id, amount=1000, idempotency_key=key),
        )
    void = await ledger.void(authorization_id=auth.id, idempotency_key="v1")
    assert (void.kind, void.amount) == ("void", 1000)
    assert void.id.startswith("void_")
    assert [op.kind for op in ledger.ledger()] == ["authorization", "void"]


async def test_void_rules() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger)
    void = await ledger.void(authorization_id=auth.id, idempotency_key="v1")
    assert await ledger.void(authorization_id=auth.id, idempotency_key="v1") == void
    await refused_with(
        "already_voided", ledger.void(authorization_id=auth.id, idempotency_key="v2")
    )
    await refused_with(
        "authorization_voided",
        ledger.capture(authorization_id=auth.id, amount=1, idempotency_key="c1"),
    )
    await refused_with(
        "not_captured", ledger.refund(authorization_id=auth.id, amount=1, idempotency_key="r1")
    )

    captured = await authorize_in(ledger, "pay_2:authorize", reference="pay_2")
    await ledger.capture(authorization_id=captured.id, amount=1000, idempotency_key="c2")
    await refused_with(
        "already_captured", ledger.void(authorization_id=captured.id, idempotency_key="v3")
    )
    assert [op.kind for op in ledger.ledger("pay_1")] == ["authorization", "void"]


async def test_refunds_are_bounded_by_the_capture() -> None:
    ledger = SimulatorLedger()
    auth = await authorize_in(ledger)
    await refused_with(
        "not_captured", ledger.refund(authorization_id=auth.id, amount=1, idempotency_key="r0")
    )
    await ledger.capture(authorization_id=auth.id, amount=600, idempotency_key="c1")
    first = await ledger.refund(authorization_id=auth.id, amount=400, idempotency_key="r1")
    assert first.id.startswith("re_")
    assert await ledger.refund(authorization_id=auth.id, amount=400, idempotency_key="r1") == first
    await refused_with(
        "amount_too_large",
        ledger.refund(authorization_id=auth.id, amount=201, idempotency_key="r2"),
    )
    await ledger.refund(authorization_id=auth.id, amount=200, idempotency_key="r2")
    await refused_with(
        "amount_too_large", ledger.refund(authorization_id=auth.id, amount=1, idempotency_key="r3")
    )
    refunds = [op.amount for op in ledger.ledger() if op.kind == "refund"]
    assert refunds == [400, 200]


async def test_unknown_authorization_is_not_found() -> None:
    ledger = SimulatorLedger()
    with pytest.raises(NotFound):
        await ledger.capture(authorization_id="auth_nope", amount=1, idempotency_key="c")
    with pytest.raises(NotFound):
        await ledger.void(authorization_id="auth_nope", idempotency_key="v")
    with pytest.raises(NotFound):
        await ledger.refund(authorization_id="auth_nope", amount=1, idempotency_key="r")


async def test_list_operations_by_reference_and_time_window() -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    ticks = iter(start + timedelta(minutes=n) for n in range(10))
    ledger = SimulatorLedger(clock=lambda: next(ticks))
    one = await authorize_in(ledger, "k1", reference="pay_1")  # 10:00
    two = await authorize_in(ledger, "k2", reference="pay_2")  # 10:01
    cap = await ledger.capture(authorization_id=one.id, amount=5, idempotency_key="k3")  # 10:02
    assert one.created_at == "2026-11-26T10:00:00.000000Z"
    assert ledger.find_by_reference("pay_1") == [one, cap]
    window = ledger.list_operations(
        since=start + timedelta(minutes=1), until=start + timedelta(minutes=2)
    )
    assert window == [two]
    assert ledger.list_operations(reference="pay_1", since=start + timedelta(minutes=1)) == [cap]


def test_faults_are_validated() -> None:
    for bad in ({"error_rate": 1.5}, {"drop_reply_rate": -0.1}, {"latency_ms": -1}, {"x": 1}):
        with pytest.raises(ValidationError):
            Faults.model_validate(bad)


async def test_error_rate_refuses_before_committing() -> None:
    ledger = SimulatorLedger()
    ledger.faults = Faults(error_rate=1.0)
    with pytest.raises(GatewayUnavailable):
        await ledger.run(lambda: authorize_in(ledger))
    assert ledger.ledger() == []
    ledger.faults = Faults()
    assert len([await ledger.run(lambda: authorize_in(ledger))]) == len(ledger.ledger()) == 1


async def test_dropped_reply_commits_and_the_retry_replays() -> None:
    ledger = SimulatorLedger()
    ledger.faults = Faults(drop_reply_rate=1.0)
    with pytest.raises(ReplyDropped):
        await ledger.run(lambda: authorize_in(ledger))
    committed = ledger.ledger()
    assert len(committed) == 1
    ledger.faults = Faults()
    assert await ledger.run(lambda: authorize_in(ledger)) == committed[0]
    assert ledger.ledger() == committed


async def test_dropped_decline_replays_the_decline() -> None:
    ledger = SimulatorLedger()
    ledger.faults = Faults(drop_reply_rate=1.0)
    with pytest.raises(ReplyDropped):
        await ledger.run(lambda: authorize_in(ledger, payment_method="pm_card_chargeDeclined"))
    ledger.faults = Faults()
    with pytest.raises(CardDeclined):
        await ledger.run(lambda: authorize_in(ledger, payment_method="pm_card_chargeDeclined"))
    assert ledger.ledger() == []


async def test_latency_comes_after_the_commit() -> None:
    ledger = SimulatorLedger()
    ledger.faults = Faults(latency_ms=10_000)
    # A caller that gives up waiting is left with a committed, unknown outcome.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ledger.run(lambda: authorize_in(ledger)), timeout=0.05)
    assert len(ledger.ledger()) == 1


async def test_seeded_faults_are_reproducible_and_mixed() -> None:
    async def outcomes(seed: int) -> list[str]:
        ledger = SimulatorLedger(rng=random.Random(seed))
        ledger.faults = Faults(error_rate=0.3, drop_reply_rate=0.3)
        seen = []
        for n in range(100):
            try:
                await ledger.run(
                    functools.partial(authorize_in, ledger, f"k{n}", reference=f"p{n}")
                )
                seen.append("ok")
            except GatewayUnavailable:
                seen.append("unavailable")
            except ReplyDropped:
                seen.append("dropped")
            # Whatever the fault, a reply was lost only when something was committed.
            assert bool(ledger.ledger(f"p{n}")) == (seen[-1] != "unavailable")
        return seen

    first = await outcomes(7)
    assert first == await outcomes(7)
    assert {"ok", "unavailable", "dropped"} <= set(first)


def test_roll_follows_the_rates() -> None:
    ledger = SimulatorLedger(rng=random.Random(1))
    assert {ledger.roll() for _ in range(50)} == {Fault.NONE}
    ledger.faults = Faults(error_rate=1.0, drop_reply_rate=1.0)
    assert {ledger.roll() for _ in range(50)} == {Fault.UNAVAILABLE}
    ledger.faults = Faults(drop_reply_rate=1.0)
    assert {ledger.roll() for _ in range(50)} == {Fault.DROP_REPLY}


async def test_in_memory_gateway_has_the_simulator_semantics() -> None:
    gateway = InMemoryGateway()
    auth = await gateway.authorize(
        reference="pay_1",
        amount=1000,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key="pay_1:authorize",
    )
    gateway.ledger.faults = Faults(drop_reply_rate=1.0)
    with pytest.raises(TransientGatewayError):
        await gateway.capture(authorization_id=auth.id, amount=1000, idempotency_key="pay_1:cap")
    gateway.ledger.faults = Faults(error_rate=1.0)
    with pytest.raises(TransientGatewayError):
        await gateway.refund(authorization_id=auth.id, amount=1000, idempotency_key="pay_1:re")
    gateway.ledger.faults = Faults()
    capture = await gateway.capture(
        authorization_id=auth.id, amount=1000, idempotency_key="pay_1:cap"
    )
    with pytest.raises(InvalidGatewayRequest):
        await gateway.void(authorization_id=auth.id, idempotency_key="pay_1:void")
    assert await gateway.find_by_reference("pay_1") == [auth, capture]
    await gateway.aclose()


async def test_factory_builds_the_configured_adapter() -> None:
    gateway = build_gateway(Settings(gateway="simulator"))
    assert isinstance(gateway, SimulatorGateway)
    await gateway.aclose()
