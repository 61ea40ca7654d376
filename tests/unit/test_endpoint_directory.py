"""The endpoints cache (payments/webhook_service.py ``EndpointDirectory``): what
it hands out was read less than ``ttl`` ago, and a merchant looked up often
never waits for the query, which is read again in the background. The client
is a stand-in whose queries the test answers, on a clock the test moves."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from payments.webhook_service import EndpointDirectory
from payments.webhooks import endpoints_workflow_id


class HeldQueries:
    """A client whose endpoint queries wait until the test answers them."""

    def __init__(self) -> None:
        self.asked: list[str] = []
        self._answers: list[asyncio.Future[list[Any]]] = []

    def get_workflow_handle(self, workflow_id: str) -> HeldQueries.Handle:
        return HeldQueries.Handle(self, workflow_id)

    class Handle:
        def __init__(self, client: HeldQueries, workflow_id: str) -> None:
            self.client, self.workflow_id = client, workflow_id

        async def query(self, *args: Any, **kwargs: Any) -> list[Any]:
            self.client.asked.append(self.workflow_id)
            answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
            self.client._answers.append(answer)
            return await answer

    def answer(self, endpoints: list[Any] | Exception) -> None:
        waiting = [a for a in self._answers if not a.done()]
        assert waiting, "no endpoints query is waiting for an answer"
        pending = waiting[0]
        if isinstance(endpoints, Exception):
            pending.set_exception(endpoints)
        else:
            pending.set_result(endpoints)


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def acme_read_once(
    endpoints: list[Any],
) -> tuple[HeldQueries, Clock, EndpointDirectory]:
    """A directory (ttl 1 s, refresh after 0.5 s) that has read acme's
    endpoints once, in the foreground, at the clock's now."""
    client, clock = HeldQueries(), Clock()
    directory = EndpointDirectory(client, ttl=1.0, clock=clock, refresh_after=0.5)  # type: ignore[arg-type]
    look = looking(directory)
    await settle()
    client.answer(endpoints)
    assert await look == endpoints
    return client, clock, directory


def looking(directory: EndpointDirectory, merchant_id: str = "acme") -> asyncio.Future[list[Any]]:
    """A look at the merchant's endpoints, on its way in the background."""
    return asyncio.ensure_future(directory.of(merchant_id))


async def test_a_fresh_read_is_handed_out_without_asking_again() -> None:
    client, clock, directory = await acme_read_once(["first"])
    clock.now += 0.4
    assert await directory.of("acme") == ["first"]
    assert client.asked == [endpoints_workflow_id("acme")]


async def test_past_refresh_after_it_answers_at_once_and_reads_again_behind() -> None:
    client, clock, directory = await acme_read_once(["first"])
    clock.now += 0.6
    # Answered from what is kept while the query is still unanswered.
    async with asyncio.timeout(1):
        assert await directory.of("acme") == ["first"]
        assert await directory.of("acme") == ["first"]
    await settle()
    assert len(client.asked) == 2, "one read in the background, not one per look"
    client.answer(["second"])
    await settle()
    assert await directory.of("acme") == ["second"]
    assert len(client.asked) == 2


async def test_past_ttl_a_look_waits_for_the_read() -> None:
    client, clock, directory = await acme_read_once(["first"])
    clock.now += 1.0
    look = looking(directory)
    await settle()
    assert not look.done(), "an entry as old as ttl must not be handed out"
    client.answer(["second"])
    assert await look == ["second"]


async def test_the_age_counts_from_when_the_read_began() -> None:
    """A background read that took long is kept as old as its start: a
    change applied while it was under way can still be missing from it."""
    client, clock, directory = await acme_read_once(["first"])
    clock.now += 0.6
    assert await directory.of("acme") == ["first"]
    await settle()
    clock.now += 0.9
    client.answer(["second"])
    await settle()
    clock.now += 0.2  # 1.1 s after the background read began
    look = looking(directory)
    await settle()
    assert not look.done()
    client.answer(["third"])
    assert await look == ["third"]


async def test_a_failed_background_read_fails_the_next_look_past_ttl_only() -> None:
    client, clock, directory = await acme_read_once(["first"])
    clock.now += 0.6
    assert await directory.of("acme") == ["first"]
    await settle()
    client.answer(RuntimeError("Temporal is down"))
    await settle()
    clock.now += 0.3
    assert await directory.of("acme") == ["first"]  # still younger than ttl
    await settle()
    client.answer(RuntimeError("Temporal is down"))
    await settle()
    clock.now += 0.2
    look = looking(directory)
    await settle()
    client.answer(RuntimeError("Temporal is down"))
    with pytest.raises(RuntimeError, match="Temporal is down"):
        await look


async def test_merchants_are_read_apart() -> None:
    client, _, directory = await acme_read_once(["acme's"])
    look = looking(directory, "globex")
    await settle()
    assert client.asked[-1] == endpoints_workflow_id("globex")
    client.answer(["globex's"])
    assert await look == ["globex's"]
    assert await directory.of("acme") == ["acme's"]
