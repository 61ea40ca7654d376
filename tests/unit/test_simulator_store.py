"""The simulator's ledger over a SQLite file, closed and reopened as a
restarted simulator does: the same book, the same replies to the same keys,
the same refusals, and no card number written."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from support import authorize_in, refused_with

from gateway.simulator.core import Faults, ReplyDropped, SimulatorLedger
from payments.gateway import CardDeclined, InvalidGatewayRequest


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "simulator.sqlite"


@pytest.fixture
def opened() -> Iterator[list[SimulatorLedger]]:
    """Ledgers a test opens, closed whatever happens to it."""
    ledgers: list[SimulatorLedger] = []
    yield ledgers
    for ledger in ledgers:
        ledger.close()


def _open(
    path: Path,
    opened: list[SimulatorLedger],
    clock: Callable[[], datetime] | None = None,
) -> SimulatorLedger:
    ledger = SimulatorLedger(path=path, clock=clock)
    opened.append(ledger)
    return ledger


def _reopen(ledger: SimulatorLedger, path: Path, opened: list[SimulatorLedger]) -> SimulatorLedger:
    ledger.close()
    return _open(path, opened)


async def test_a_reopened_ledger_has_the_same_operations(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    ledger = _open(path, opened)
    paid = await authorize_in(ledger, "pay_1:authorize")
    await ledger.capture(authorization_id=paid.id, amount=800, idempotency_key="pay_1:capture")
    await ledger.refund(authorization_id=paid.id, amount=300, idempotency_key="pay_1:refund:1")
    held = await authorize_in(ledger, "pay_2:authorize", reference="pay_2")
    await ledger.void(authorization_id=held.id, idempotency_key="pay_2:void")
    before = ledger.ledger()

    again = _reopen(ledger, path, opened)

    assert again.ledger() == before
    assert [op.kind for op in again.ledger("pay_1")] == ["authorization", "capture", "refund"]
    assert again.find_by_reference("pay_2") == before[3:]


async def test_a_reopened_ledger_keeps_the_time_window_reconciliation_reads(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    start = datetime(2026, 11, 26, 10, 0, tzinfo=UTC)
    ticks = iter(start + timedelta(minutes=n) for n in range(10))
    ledger = _open(path, opened, clock=lambda: next(ticks))
    for n in range(3):
        await authorize_in(ledger, f"k{n}", reference=f"pay_{n}")
    window = {"since": start + timedelta(minutes=1), "until": start + timedelta(minutes=2)}
    before = ledger.list_operations(**window)
    assert [op.reference for op in before] == ["pay_1"]

    again = _reopen(ledger, path, opened)

    assert again.list_operations(**window) == before


async def test_a_retry_after_reopening_replays_without_committing(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    ledger = _open(path, opened)
    auth = await authorize_in(ledger, "pay_1:authorize")
    capture = await ledger.capture(
        authorization_id=auth.id, amount=1000, idempotency_key="pay_1:capture"
    )

    again = _reopen(ledger, path, opened)

    assert await authorize_in(again, "pay_1:authorize") == auth
    replayed = await again.capture(
        authorization_id=auth.id, amount=1000, idempotency_key="pay_1:capture"
    )
    assert replayed == capture
    assert again.ledger() == [auth, capture]


async def test_a_different_request_under_a_key_is_refused_after_reopening(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    ledger = _open(path, opened)
    auth = await authorize_in(ledger, "pay_1:authorize")
    await ledger.capture(authorization_id=auth.id, amount=1000, idempotency_key="pay_1:capture")

    again = _reopen(ledger, path, opened)

    await refused_with("idempotency_key_reused", authorize_in(again, "pay_1:authorize", amount=999))
    await refused_with(
        "idempotency_key_reused",
        again.capture(authorization_id=auth.id, amount=500, idempotency_key="pay_1:capture"),
    )
    # The state of the book came back too, not only its list.
    await refused_with(
        "already_captured",
        again.capture(authorization_id=auth.id, amount=1000, idempotency_key="pay_1:capture:2"),
    )
    assert [op.kind for op in again.ledger()] == ["authorization", "capture"]


async def test_a_decline_replays_after_reopening(path: Path, opened: list[SimulatorLedger]) -> None:
    ledger = _open(path, opened)
    with pytest.raises(CardDeclined):
        await authorize_in(ledger, "pay_1:authorize", payment_method="pm_card_chargeDeclined")

    again = _reopen(ledger, path, opened)

    with pytest.raises(CardDeclined) as declined:
        await authorize_in(again, "pay_1:authorize", payment_method="pm_card_chargeDeclined")
    assert (declined.value.code, declined.value.decline_code) == (
        "card_declined",
        "generic_decline",
    )
    await refused_with("idempotency_key_reused", authorize_in(again, "pay_1:authorize"))
    assert again.ledger() == []


async def test_a_dropped_reply_was_committed_to_the_file(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    ledger = _open(path, opened)
    ledger.faults = Faults(drop_reply_rate=1.0)
    with pytest.raises(ReplyDropped):
        await ledger.run(lambda: authorize_in(ledger, "pay_1:authorize"))

    again = _reopen(ledger, path, opened)

    # Faults are not kept: the restarted simulator injects none.
    assert again.faults == Faults()
    (committed,) = again.ledger()
    assert await again.run(lambda: authorize_in(again, "pay_1:authorize")) == committed
    assert again.ledger() == [committed]


async def test_a_card_number_is_refused_and_never_written(
    path: Path, opened: list[SimulatorLedger]
) -> None:
    ledger = _open(path, opened)
    for payment_method in ("4242424242424242", "pm_card_4242424242424242"):
        with pytest.raises(InvalidGatewayRequest) as refused:
            await authorize_in(
                ledger, f"pay_1:{len(payment_method)}", payment_method=payment_method
            )
        assert refused.value.code == "resource_missing"
        assert "4242" not in refused.value.message
    await authorize_in(ledger, "pay_1:authorize")
    ledger.close()

    written = b"".join(
        file.read_bytes() for file in path.parent.iterdir() if file.name.startswith(path.name)
    )
    assert b"pm_card_visa" in written  # what it does write is there to be found
    assert b"4242424242424242" not in written


# The book as version 1 wrote it: before customer authentications (3-D Secure).
_VERSION_1 = """
CREATE TABLE operations (
    seq INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, kind TEXT NOT NULL,
    amount INTEGER NOT NULL, currency TEXT NOT NULL, reference TEXT NOT NULL,
    idempotency_key TEXT NOT NULL, authorization_id TEXT, created_at TEXT NOT NULL,
    payment_method TEXT
);
CREATE TABLE replies (
    idempotency_key TEXT PRIMARY KEY, request TEXT NOT NULL,
    operation_id TEXT REFERENCES operations (id), decline TEXT
);
INSERT INTO operations VALUES (1, 'auth_old', 'authorization', 1999, 'usd', 'pay_old',
    'pay_old:authorize', NULL, '2026-11-01T10:00:00.000000Z', 'pm_card_visa');
INSERT INTO replies VALUES ('pay_old:authorize',
    '["authorize", "pay_old", 1999, "usd", "pm_card_visa"]', 'auth_old', NULL);
PRAGMA user_version=1;
"""


@pytest.mark.parametrize("altered_already", [False, True])
async def test_a_version_1_book_opens_with_what_it_held(
    path: Path, opened: list[SimulatorLedger], altered_already: bool
) -> None:
    db = sqlite3.connect(path)
    db.executescript(_VERSION_1)
    if altered_already:
        # A simulator that died after the column was added, before the version was.
        db.execute("ALTER TABLE replies ADD COLUMN authentication_id TEXT")
    db.close()
    ledger = _open(path, opened)
    assert [op.id for op in ledger.ledger("pay_old")] == ["auth_old"]
    again = await ledger.authorize(
        reference="pay_old",
        amount=1999,
        currency="usd",
        payment_method="pm_card_visa",
        idempotency_key="pay_old:authorize",
    )
    assert again.id == "auth_old"
    pending = await ledger.authorize(
        reference="pay_new",
        amount=500,
        currency="usd",
        payment_method="pm_card_threeDSecure2Required",
        idempotency_key="pay_new:authorize",
    )
    ledger = _reopen(ledger, path, opened)
    assert ledger.authentication(pending.id).status == "pending"
    version = sqlite3.connect(path).execute("PRAGMA user_version").fetchone()[0]
    assert version == 2
