"""The demo page in headless Chromium (Debian's package, never a downloaded
browser): pay with a success card and with a declined one, watch the
timeline reach the outcome, and keep screenshots in tests/artifacts/."""

from __future__ import annotations

from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from devstack import Stack

pytestmark = pytest.mark.e2e

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"


async def pay(page: Page, method: str, *, manual: bool = False) -> None:
    await page.select_option("#payment-method", method)
    await page.set_checked("#manual", manual)
    await page.click("#pay")


async def timeline(page: Page) -> list[str]:
    return await page.locator("#timeline li").evaluate_all(
        "items => items.map(i => i.dataset.type)"
    )


async def test_pay_on_the_page_and_watch_the_outcome(stack: Stack, browser: Browser) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    await page.goto(f"{stack.api_url}/")

    await pay(page, "pm_card_visa")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "succeeded", timeout=20_000)
    await expect(status).to_have_text("Payment succeeded")
    await expect(page.locator("#timeline li")).to_have_count(3)
    assert await timeline(page) == ["payment.requested", "payment.authorized", "payment.captured"]
    ui_link = await page.locator("#temporal-link").get_attribute("href")
    payment_id = await page.locator("#payment-id").text_content()
    assert ui_link == f"{stack.temporal_ui_url}/namespaces/default/workflows/{payment_id}"
    await page.screenshot(path=ARTIFACTS / "demo-page-succeeded.png", full_page=True)

    await page.click("#refund")
    await expect(status).to_have_attribute("data-status", "refunded", timeout=20_000)
    assert (await timeline(page))[-2:] == ["refund.requested", "refund.succeeded"]

    await pay(page, "pm_card_chargeDeclinedInsufficientFunds")
    await expect(status).to_have_attribute("data-status", "failed", timeout=20_000)
    await expect(status).to_have_text("Payment failed: insufficient funds")
    assert await timeline(page) == ["payment.requested", "payment.declined", "payment.failed"]
    await page.screenshot(path=ARTIFACTS / "demo-page-declined.png", full_page=True)


async def test_capture_later_from_the_page(stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{stack.api_url}/")
    await pay(page, "pm_card_visa", manual=True)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "requires_capture", timeout=20_000)
    await expect(page.locator("#capture")).to_be_enabled()
    await page.click("#capture")
    await expect(status).to_have_attribute("data-status", "succeeded", timeout=20_000)
    assert "payment.captured" in await timeline(page)


async def test_the_page_shows_its_payments_webhook_deliveries(
    stack: Stack, browser: Browser
) -> None:
    """The demo merchant's endpoint is the API's /demo/webhook, which checks
    each signature: every event of the payment is delivered and says so."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1200, "height": 1100})
    await page.goto(f"{stack.api_url}/")
    await pay(page, "pm_card_visa")
    await expect(page.locator("#status")).to_have_attribute(
        "data-status", "succeeded", timeout=20_000
    )
    delivered = page.locator('#deliveries li[data-status="succeeded"]')
    await expect(delivered).to_have_count(3, timeout=20_000)
    kinds = await delivered.evaluate_all("items => items.map(i => i.dataset.type)")
    assert kinds == ["payment.requested", "payment.authorized", "payment.captured"]
    await expect(delivered.first).to_contain_text("HTTP 200")
    await page.screenshot(path=ARTIFACTS / "demo-page-webhook-deliveries.png", full_page=True)


async def test_confirm_with_your_bank_then_the_payment_succeeds(
    stack: Stack, browser: Browser
) -> None:
    """3-D Secure: the bank's challenge opens in the page, the customer
    approves there, and the outcome arrives over the stream."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1200, "height": 1100})
    await page.goto(f"{stack.api_url}/")
    await pay(page, "pm_card_threeDSecure2Required")
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "requires_action", timeout=20_000)
    await expect(status).to_have_text("Confirm with your bank")
    await expect(page.locator("#cancel")).to_be_enabled()
    challenge = page.frame_locator("#challenge")
    await expect(challenge.locator("#approve")).to_be_visible(timeout=10_000)
    await page.screenshot(path=ARTIFACTS / "demo-page-3ds-challenge.png", full_page=True)

    await challenge.locator("#approve").click()
    await expect(status).to_have_attribute("data-status", "succeeded", timeout=20_000)
    await expect(status).to_have_text("Payment succeeded")
    await expect(page.locator("#action")).to_be_hidden()
    assert [t for t in await timeline(page) if t != "payment.gateway_event"] == [
        "payment.requested",
        "payment.action_required",
        "payment.authenticated",
        "payment.authorized",
        "payment.captured",
    ]
    await page.screenshot(path=ARTIFACTS / "demo-page-3ds-succeeded.png", full_page=True)


async def test_fail_with_your_bank_on_the_page(stack: Stack, browser: Browser) -> None:
    page = await browser.new_page()
    await page.goto(f"{stack.api_url}/")
    await pay(page, "pm_card_threeDSecure2Required")
    challenge = page.frame_locator("#challenge")
    await challenge.locator("#fail").click(timeout=20_000)
    status = page.locator("#status")
    await expect(status).to_have_attribute("data-status", "failed", timeout=20_000)
    await expect(status).to_have_text("Payment failed: authentication failed")
    assert (await timeline(page))[-2:] == ["payment.authentication_failed", "payment.failed"]


async def test_a_receipt_by_email_from_the_page(stack: Stack, browser: Browser) -> None:
    """The page's optional address: the receipt reaches the stack's mail sink,
    and ``receipt.sent`` the timeline."""
    ARTIFACTS.mkdir(exist_ok=True)
    page = await browser.new_page(viewport={"width": 1200, "height": 1000})
    await page.goto(f"{stack.api_url}/")
    await page.fill("#receipt-email", "page.visitor@example.com")
    await pay(page, "pm_card_visa")
    await expect(page.locator("#status")).to_have_attribute(
        "data-status", "succeeded", timeout=20_000
    )
    sent = page.locator('#timeline li[data-type="receipt.sent"]')
    await expect(sent).to_have_count(1, timeout=20_000)
    payment_id = await page.locator("#payment-id").text_content()
    assert payment_id
    await expect(sent.locator(".detail")).to_contain_text(f"receipt.{payment_id}@")
    [eml] = (stack.data_dir / "mail").glob(f"*{payment_id}*.eml")
    assert "To: page.visitor@example.com" in eml.read_text()
    await page.screenshot(path=ARTIFACTS / "demo-page-receipt.png", full_page=True)
