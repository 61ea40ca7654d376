"""The announcer's group commit (payments/webhook_service.py): per merchant one
signal-with-start in flight, and what comes meanwhile goes out together in
the next, in the order it came. The client is a stand-in that holds each
request until the test lets it go, so the test decides what is in flight."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from payments.names import DeliverySignals
from payments.webhook_service import Announcer
from payments.webhooks import Announcement, dispatch_workflow_id


class HeldClient:
    """Records each signal-with-start and answers it when ``release`` says."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, list[str]]] = []
        self._answers: list[asyncio.Future[None]] = []

    async def start_workflow(self, *args: Any, **kwargs: Any) -> None:
        assert kwargs["start_signal"] == DeliverySignals.ANNOUNCE_ALL
        [announcements] = kwargs["start_signal_args"]
        self.sent.append((kwargs["id"], [a.payment_id for a in announcements]))
        answer = asyncio.get_running_loop().create_future()
        self._answers.append(answer)
        await answer

    def release(self, error: Exception | None = None) -> None:
        answer = next(a for a in self._answers if not a.done())
        if error is None:
            answer.set_result(None)
        else:
            answer.set_exception(error)


def announcement(payment_id: str, merchant_id: str = "acme") -> Announcement:
    return Announcement(
        payment_id=payment_id,
        merchant_id=merchant_id,
        run_id="run",
        first=0,
        end=3,
        types=["payment.requested", "payment.authorized", "payment.captured"],
    )


def announcing(
    announcer: Announcer, payment_id: str, merchant_id: str = "acme"
) -> asyncio.Future[None]:
    """The payment's announcement, on its way in the background."""
    return asyncio.ensure_future(
        announcer.announce(announcement(payment_id, merchant_id), "payments")
    )


def bounded(test: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
    """A broken announcer fails the test in a second instead of hanging it."""

    @functools.wraps(test)
    async def run() -> None:
        async with asyncio.timeout(1):
            await test()

    return run


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


@bounded
async def test_what_comes_while_a_signal_is_in_flight_goes_out_together_next() -> None:
    client = HeldClient()
    announcer = Announcer(client)  # type: ignore[arg-type]
    first = announcing(announcer, "pay_1")
    await settle()
    assert client.sent == [(dispatch_workflow_id("acme"), ["pay_1"])]
    later = [announcing(announcer, f"pay_{n}") for n in (2, 3, 4)]
    await settle()
    assert len(client.sent) == 1  # they wait for the one in flight
    assert not any(task.done() for task in [first, *later])
    client.release()
    await settle()
    assert first.done() and not any(task.done() for task in later)
    assert client.sent[1] == (dispatch_workflow_id("acme"), ["pay_2", "pay_3", "pay_4"])
    client.release()
    await asyncio.gather(*later)
    assert len(client.sent) == 2


@bounded
async def test_merchants_do_not_wait_for_each_other() -> None:
    client = HeldClient()
    announcer = Announcer(client)  # type: ignore[arg-type]
    tasks = [announcing(announcer, "pay_a", merchant) for merchant in ("acme", "globex")]
    await settle()
    assert sorted(workflow_id for workflow_id, _ in client.sent) == sorted(
        [dispatch_workflow_id("acme"), dispatch_workflow_id("globex")]
    )
    client.release()
    client.release()
    await asyncio.gather(*tasks)


@bounded
async def test_a_failed_signal_fails_every_announcement_in_it_and_the_next_goes_out() -> None:
    client = HeldClient()
    announcer = Announcer(client)  # type: ignore[arg-type]
    first = announcing(announcer, "pay_1")
    await settle()
    later = [announcing(announcer, f"pay_{n}") for n in (2, 3)]
    await settle()
    client.release()
    await first
    client.release(RuntimeError("unavailable"))
    for task in later:
        with pytest.raises(RuntimeError, match="unavailable"):
            await task
    retried = announcing(announcer, "pay_2")
    await settle()
    assert client.sent[-1] == (dispatch_workflow_id("acme"), ["pay_2"])
    client.release()
    await retried


@bounded
async def test_an_announcement_whose_caller_gave_up_is_left_out() -> None:
    client = HeldClient()
    announcer = Announcer(client)  # type: ignore[arg-type]
    first = announcing(announcer, "pay_1")
    await settle()
    gave_up = announcing(announcer, "pay_2")
    kept = announcing(announcer, "pay_3")
    await settle()
    gave_up.cancel()
    client.release()
    await first
    await settle()
    assert client.sent[-1] == (dispatch_workflow_id("acme"), ["pay_3"])
    client.release()
    await kept


@bounded
async def test_one_signal_carries_at_most_so_many() -> None:
    client = HeldClient()
    announcer = Announcer(client, most=2)  # type: ignore[arg-type]
    first = announcing(announcer, "pay_1")
    await settle()
    later = [announcing(announcer, f"pay_{n}") for n in (2, 3, 4)]
    await settle()
    for _ in range(3):
        client.release()
        await settle()
    await asyncio.gather(first, *later)
    assert [payments for _, payments in client.sent] == [["pay_1"], ["pay_2", "pay_3"], ["pay_4"]]
