"""The Temporal Web UI as an operator reads payments (issue 19), in headless
Chromium against the stack's own UI: the list with the payment columns the
README says how to add, a failed payment shown failed, a payment's current
details, and a payment whose gateway is down (issue 13: what the fast path
leaves the UI to show). Screenshots go to tests/artifacts/."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from playwright.async_api import Browser, Locator, Page, expect
from support import simulator_ledger

from devstack import Stack

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"
WAIT = {"Prefer": "wait=20"}
# The columns the README's "In the Temporal UI" section adds.
COLUMNS = ["PaymentStatus", "PaymentAmount", "CustomerId"]


async def pay(http: httpx.AsyncClient, **body: Any) -> dict[str, Any]:
    card = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", **body}
    response = await http.post("/v1/payments", json=card, headers=WAIT)
    assert response.status_code == 200, response.text
    payment: dict[str, Any] = response.json()
    return payment


async def shown(
    page: Page, locator: Locator, again: Callable[[], Awaitable[object]] | None = None
) -> None:
    """Until ``locator`` is on the page. Each look gives the UI ten seconds to
    fetch and render (it takes about four here; a count right after a reload
    finds the table still empty, every time); only then a reload, and
    ``again`` (a tab's click), for what Temporal has recorded since."""
    for _ in range(4):
        try:
            await expect(locator).to_be_visible(timeout=10_000)
            return
        except AssertionError:
            await page.reload()
            if again is not None:
                await again()
    await expect(locator).to_be_visible()


async def row(page: Page, payment_id: str) -> list[str]:
    """The cells of the list's row for one payment, as the UI shows them."""
    cells = page.locator("tr", has=page.get_by_text(payment_id, exact=True)).locator("td")
    return [text.strip() for text in await cells.all_inner_texts()]


async def test_the_list_shows_payments_with_their_status_and_amount(
    stack: Stack, http: httpx.AsyncClient, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    paid = await pay(http, customer_id="cus_ui_1")
    declined = await pay(http, payment_method="pm_card_chargeDeclined", amount=500)
    assert (paid["status"], declined["status"]) == ("succeeded", "failed")
    page = await browser.new_page(viewport={"width": 1600, "height": 900})
    # Only these two (the stack is shared): the list's query, as the UI's filter writes it.
    query = f'WorkflowId = "{paid["id"]}" OR WorkflowId = "{declined["id"]}"'
    await page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows?query={quote(query)}")
    await shown(page, page.get_by_text(declined["id"], exact=True))  # visibility catches up

    await page.click('[data-testid="workflows-summary-table-configuration-button"]')
    for column in ("Run ID", "Type", "End"):
        await page.click(f'[data-testid="orderable-list-item-{column}-remove-button"]')
    for column in COLUMNS:
        await page.click(f'[data-testid="orderable-list-item-{column}-add-button"]')
    await page.click('[data-testid="drawer-close-button"]')
    await expect(page.locator("#workflows-table-configuration-drawer")).to_be_hidden()
    header = [h.strip() for h in await page.locator("thead th").all_inner_texts()]
    assert set(COLUMNS) <= set(header), header

    failed_row = await row(page, declined["id"])
    assert "Failed" in failed_row or "FAILED" in failed_row, failed_row
    assert "failed" in failed_row and "500" in failed_row, failed_row
    paid_row = await row(page, paid["id"])
    assert "succeeded" in paid_row and "1999" in paid_row and "cus_ui_1" in paid_row, paid_row
    await page.screenshot(path=ARTIFACTS / "temporal-ui-list.png")


async def test_a_payment_s_current_details(
    stack: Stack, http: httpx.AsyncClient, browser: Browser
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    held = await pay(http, capture_method="manual", amount=4200)
    assert held["status"] == "requires_capture"
    page = await browser.new_page(viewport={"width": 1400, "height": 800})
    await page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows/{held['id']}")
    await page.get_by_role("tab", name="User Metadata").click()
    details = await current_details(page)
    assert details.startswith("requires_capture · 42.00 USD · manual capture"), details
    assert "capturable 42.00 USD" in details
    assert "waiting for: capture or cancel, until " in details
    await page.screenshot(path=ARTIFACTS / "temporal-ui-current-details.png")


async def current_details(page: Page) -> str:
    """The Current Details panel's text (the UI renders its Markdown in a frame)."""
    for _ in range(100):
        for frame in page.frames[1:]:
            text = await frame.locator("body").inner_text()
            if "waiting for:" in text:
                return " ".join(text.split())
        await page.wait_for_timeout(200)
    raise AssertionError("no current details on the page")


async def test_a_payment_whose_gateway_is_down_shows_what_it_waits_for(
    stack: Stack, http: httpx.AsyncClient, simulator: httpx.AsyncClient, browser: Browser
) -> None:
    """The fast path's local attempt gets a 503 and hands the step to the
    regular activity: the UI shows authorize pending, with its attempts and
    the gateway's error, and the current details say what the run waits for.
    When the gateway is back, the payment settles, authorized and captured once."""
    ARTIFACTS.mkdir(exist_ok=True)
    await simulator.put("/_faults", json={"error_rate": 1.0})
    card = {"amount": 2500, "currency": "usd", "payment_method": "pm_card_visa"}
    created = await http.post("/v1/payments", json=card)
    assert created.status_code == 202, created.text
    payment_id = created.json()["id"]
    page = await browser.new_page(viewport={"width": 1400, "height": 900})
    await page.goto(f"{stack.temporal_ui_url}/namespaces/default/workflows/{payment_id}")

    tab = page.get_by_role("tab", name=re.compile("Pending Activities"))
    await tab.click()
    # The first retry's failure shows once it is recorded.
    await shown(page, page.get_by_text("GatewayUnavailable").first, tab.click)
    await expect(page.get_by_text("authorize", exact=True).first).to_be_visible()
    await page.screenshot(path=ARTIFACTS / "temporal-ui-gateway-down.png", full_page=True)

    await page.get_by_role("tab", name="User Metadata").click()
    details = await current_details(page)
    assert details.startswith("processing · 25.00 USD"), details
    assert "waiting for: the gateway: authorize 25.00 USD" in details

    await simulator.delete("/_faults")
    for _ in range(300):  # the next retry comes within its backoff
        payment = (await http.get(f"/v1/payments/{payment_id}")).json()
        if payment["status"] != "processing":
            break
        await asyncio.sleep(0.1)
    assert (payment["status"], payment["amount_captured"]) == ("succeeded", 2500)
    ledger = await simulator_ledger(stack.simulator_url, payment_id)
    assert [entry["kind"] for entry in ledger] == ["authorization", "capture"]
