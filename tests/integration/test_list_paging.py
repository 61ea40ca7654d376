"""``GET /v1/payments`` pages through every payment of a merchant, newest
first, whatever their number (CONTRACT §4, §11): the API in this process
over HTTP, a real dev server behind it.

Payments that only need to be listed are started as the API starts them
(``PaymentService.start``: same memo, same search attributes) on a task queue
no worker polls, so a thousand of them cost seconds, not a thousand sagas."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support import running_stack, serving
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from api.app import create_app
from payments import listing, memo, names
from payments.ids import payment_id_for
from payments.models import CreatePayment, PaymentInput, PaymentState
from payments.service import PaymentService
from payments.settings import Settings

CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


def _merchant() -> str:
    return f"m_{uuid.uuid4().hex[:12]}"


async def start_unworked(
    client: Client, merchant: str, count: int, **fields: Any
) -> list[PaymentState]:
    """``count`` payments started by ``PaymentService.start`` on a queue no
    worker polls: listed like any other, never run."""
    settings = Settings(task_queue=f"nobody-{uuid.uuid4()}")
    request = CreatePayment.model_validate({**CARD, **fields})
    slots = asyncio.Semaphore(32)

    async def one() -> PaymentState:
        async with slots:
            state = (await PaymentService(client, settings).start(merchant, request)).payment
            return state

    return list(await asyncio.gather(*(one() for _ in range(count))))


async def start_created_at(
    client: Client, merchant: str, created_at: datetime, *, stamped: bool = True
) -> PaymentState:
    """A payment whose creation time the test chooses, started with the memo
    and search attributes ``PaymentService.start`` gives it, on no worker's
    queue; without ``PaymentCreatedAt`` (as before it existed) if not ``stamped``."""
    request = CreatePayment.model_validate(CARD)
    state = PaymentInput(
        payment_id=payment_id_for(merchant, None),
        merchant_id=merchant,
        request=request,
        request_fingerprint="",
        created_at=created_at,
        authorization_window_seconds=0,
        refund_window_seconds=0,
    ).first_state()
    attributes: list[SearchAttributePair[Any]] = [
        SearchAttributePair(names.STATUS, state.status.value),
        SearchAttributePair(names.MERCHANT, merchant),
    ]
    if stamped:
        attributes.append(listing.created_at_attribute(created_at))
    await client.start_workflow(
        names.WORKFLOW_TYPE,
        id=state.id,
        task_queue=f"nobody-{uuid.uuid4()}",
        memo=memo.at_start(state, ""),
        search_attributes=TypedSearchAttributes(attributes),
    )
    return state


async def visible(client: Client, merchant: str, count: int, extra: str = "") -> None:
    """Visibility is eventually consistent: wait until it holds ``count``."""
    query = f"MerchantId = '{merchant}'{extra}"
    for _ in range(300):
        if (await client.count_workflows(query)).count == count:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"visibility never showed {count} for {query}")


def newest_first(states: list[PaymentState]) -> list[str]:
    return [s.id for s in sorted(states, key=lambda s: (s.created_at, s.id), reverse=True)]


async def every_page(
    http: httpx.AsyncClient, key: str, limit: int, **params: str
) -> list[dict[str, Any]]:
    """Each page's body, following ``starting_after`` until ``has_more`` is false."""
    pages: list[dict[str, Any]] = []
    query: dict[str, Any] = {"limit": limit, **params}
    while True:
        response = await http.get(
            "/v1/payments", params=query, headers={"Authorization": f"Bearer {key}"}
        )
        assert response.status_code == 200, response.text
        pages.append(response.json())
        if not pages[-1]["has_more"]:
            return pages
        assert len(pages) < 1000, "has_more never ended"
        query["starting_after"] = pages[-1]["data"][-1]["id"]


@pytest.fixture
async def api(dev_client: Client) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The API over HTTP and the merchants its keys (the dict's values) belong to."""
    merchants = {"sk_test_one": _merchant(), "sk_test_other": _merchant()}
    settings = Settings(task_queue=f"nobody-{uuid.uuid4()}", api_keys=merchants)
    async with (
        serving(create_app(settings, client=dev_client)) as url,
        httpx.AsyncClient(base_url=url, timeout=60) as http,
    ):
        yield http, merchants


def _ids(pages: list[dict[str, Any]]) -> list[str]:
    return [payment["id"] for page in pages for payment in page["data"]]


async def test_more_than_a_thousand_payments_page_through_exactly_once(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, merchants = api
    merchant, other = merchants["sk_test_one"], merchants["sk_test_other"]
    mine = await start_unworked(dev_client, merchant, 1050)
    theirs = await start_unworked(dev_client, other, 5)
    await visible(dev_client, merchant, 1050)
    await visible(dev_client, other, 5)

    pages = await every_page(http, "sk_test_one", 100)

    assert [len(page["data"]) for page in pages] == [100] * 10 + [50]
    assert [page["has_more"] for page in pages] == [True] * 10 + [False]
    assert _ids(pages) == newest_first(mine)
    assert not set(_ids(pages)) & {state.id for state in theirs}
    assert _ids(await every_page(http, "sk_test_other", 100)) == newest_first(theirs)


async def test_payments_of_one_millisecond_straddle_pages_without_loss_or_repeat(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, merchants = api
    merchant = merchants["sk_test_one"]
    millisecond = datetime(2026, 11, 30, 12, 0, 0, 7000, tzinfo=UTC)
    moments = (
        # Five at the very same microsecond: only the id orders them. Past the
        # half millisecond, where a store that rounds would file them under the next.
        [millisecond + timedelta(microseconds=700)] * 5
        # Three more inside the same millisecond, and neighbours on both sides.
        + [millisecond + timedelta(microseconds=us) for us in (0, 100, 999)]
        + [millisecond - timedelta(microseconds=1), millisecond + timedelta(milliseconds=1)]
        + [millisecond - timedelta(milliseconds=1), millisecond + timedelta(microseconds=1001)]
    )
    states = [await start_created_at(dev_client, merchant, moment) for moment in moments]
    await visible(dev_client, merchant, len(states))

    for limit in (1, 2, 3, 4):
        pages = await every_page(http, "sk_test_one", limit)
        assert _ids(pages) == newest_first(states), f"limit {limit}"
        assert [page["has_more"] for page in pages][-1] is False
        assert all(page["has_more"] for page in pages[:-1])


async def test_gaps_and_bursts_of_any_size_are_walked_through(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    """A quiet year, then a burst in one millisecond at its far end: the walk
    reaches across the gap and narrows onto the burst."""
    http, merchants = api
    merchant = merchants["sk_test_one"]
    now = datetime.now(UTC)
    moments = (
        [now - timedelta(days=400, microseconds=us) for us in range(30)]
        + [now - timedelta(days=399, hours=23)]
        + [now - timedelta(days=10)]
        + [now - timedelta(hours=1, seconds=seconds) for seconds in range(12)]
        + [now - timedelta(milliseconds=ms) for ms in range(3)]
    )
    states = await asyncio.gather(*(start_created_at(dev_client, merchant, m) for m in moments))
    await visible(dev_client, merchant, len(states))

    for limit in (1, 5, 29, 100):
        pages = await every_page(http, "sk_test_one", limit)
        assert _ids(pages) == newest_first(list(states)), f"limit {limit}"
        assert [len(page["data"]) for page in pages[:-1]] == [limit] * (len(pages) - 1)
        assert [page["has_more"] for page in pages][-1] is False


async def test_payments_from_before_the_creation_attribute_follow_the_others(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, merchants = api
    merchant = merchants["sk_test_one"]
    now = datetime.now(UTC)
    unstamped = [
        await start_created_at(
            dev_client, merchant, now - timedelta(days=3, minutes=i), stamped=False
        )
        for i in range(5)
    ]
    # One started by an API not yet upgraded while the upgraded ones ran.
    unstamped.append(await start_created_at(dev_client, merchant, now, stamped=False))
    stamped = [
        await start_created_at(dev_client, merchant, now - timedelta(minutes=i)) for i in range(4)
    ]
    await visible(dev_client, merchant, 10)

    for limit in (1, 3, 4, 5, 100):
        pages = await every_page(http, "sk_test_one", limit)
        assert _ids(pages) == newest_first(stamped) + newest_first(unstamped), f"limit {limit}"
        assert [len(page["data"]) for page in pages[:-1]] == [limit] * (len(pages) - 1)


async def test_filters_page_too_and_leave_others_out(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]], task_queue: str
) -> None:
    http, merchants = api
    merchant, other = merchants["sk_test_one"], merchants["sk_test_other"]
    alice = await start_unworked(dev_client, merchant, 7, customer_id="cus_alice")
    await start_unworked(dev_client, merchant, 6, customer_id="cus_bob")
    await start_unworked(dev_client, other, 4, customer_id="cus_alice")
    # Statuses need the saga: declined cards end failed, the others succeed.
    settings = Settings(task_queue=task_queue)
    declined = []
    async with running_stack(dev_client, task_queue):
        for method in ["pm_card_chargeDeclined"] * 5 + ["pm_card_visa"] * 3:
            request = CreatePayment.model_validate({**CARD, "payment_method": method})
            state = (await PaymentService(dev_client, settings).start(merchant, request)).payment
            if method == "pm_card_chargeDeclined":
                declined.append(state)
        await visible(dev_client, merchant, 5, " AND PaymentStatus = 'failed'")
        await visible(dev_client, merchant, 3, " AND PaymentStatus = 'succeeded'")
    await visible(dev_client, merchant, 21)

    by_customer = await every_page(http, "sk_test_one", 3, customer_id="cus_alice")
    assert _ids(by_customer) == newest_first(alice)
    assert [page["has_more"] for page in by_customer] == [True, True, False]
    by_status = await every_page(http, "sk_test_one", 2, status="failed")
    assert _ids(by_status) == newest_first(declined)
    assert all(p["status"] == "failed" for page in by_status for p in page["data"])
    assert [page["has_more"] for page in by_status] == [True, True, False]


async def test_a_cursor_that_is_not_the_merchants_answers_404(
    dev_client: Client, api: tuple[httpx.AsyncClient, dict[str, str]]
) -> None:
    http, merchants = api
    (theirs,) = await start_unworked(dev_client, merchants["sk_test_other"], 1)
    await start_unworked(dev_client, merchants["sk_test_one"], 2)
    await visible(dev_client, merchants["sk_test_one"], 2)
    headers = {"Authorization": "Bearer sk_test_one"}
    for cursor in (theirs.id, payment_id_for("nobody", None)):
        response = await http.get(
            "/v1/payments", params={"starting_after": cursor}, headers=headers
        )
        assert response.status_code == 404, response.text
        error = response.json()["error"]
        assert (error["type"], error["code"]) == ("invalid_request_error", "resource_missing")
