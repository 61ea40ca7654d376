"""``/docs`` and ``/redoc`` in headless Chromium (Debian's package) that cannot
reach anything but this machine: Swagger UI lists the API's operations and
ReDoc renders them, from files the API serves itself. The pages need the API
alone (not Temporal), so it is served here on its own, as `make run` builds it.
Screenshots go to ``$TMPDIR/payments-docs-screenshots/``."""

from __future__ import annotations

import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Error, Page, Route, expect
from support import chromium, serving

from api.app import create_app
from payments.settings import Settings

pytestmark = pytest.mark.e2e

SCREENSHOTS = Path(tempfile.gettempdir()) / "payments-docs-screenshots"
# The e2e browser's flags, and no way out: no name resolves but loopback, and
# whatever is not loopback (an address written as digits too) goes to a proxy
# port nobody listens on.
OFFLINE = (
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    "--proxy-server=http://127.0.0.1:9",
)


@pytest.fixture
async def api_url() -> AsyncIterator[str]:
    async with serving(create_app(Settings())) as url:
        yield url


@pytest.fixture
async def offline_browser() -> AsyncIterator[Browser]:
    async with chromium(*OFFLINE) as launched:
        yield launched


async def _page(browser: Browser, origin: str) -> tuple[Page, list[str]]:
    """A page, and every request it sends to the network that is not for
    ``origin`` (refused as well). A request the page's Content-Security-Policy
    stops never leaves the browser, so it is not one of them."""
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    elsewhere: list[str] = []

    async def only_here(route: Route) -> None:
        if _local(route.request.url, origin):
            await route.continue_()
        else:
            elsewhere.append(route.request.url)
            await route.abort("blockedbyclient")

    await page.route("**/*", only_here)
    return page, elsewhere


def _local(url: str, origin: str) -> bool:
    # data: URLs (images inlined in the CSS) are not fetched from anywhere.
    return url.startswith("data:") or _origin(url) == origin


def _origin(url: str) -> str:
    """Where a request goes; a ``blob:`` URL names the origin that made it."""
    parts = urlsplit(url.removeprefix("blob:"))
    return f"{parts.scheme}://{parts.netloc}"


async def test_the_browser_cannot_reach_the_internet(offline_browser: Browser) -> None:
    page = await offline_browser.new_page()
    for outside in ("https://cdn.jsdelivr.net/", "http://93.184.215.14/"):
        with pytest.raises(Error):
            await page.goto(outside, timeout=15_000)


async def test_swagger_ui_lists_the_operations_offline(
    api_url: str, offline_browser: Browser
) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page, elsewhere = await _page(offline_browser, api_url)
    await page.goto(f"{api_url}/docs")
    create = page.locator(".opblock-post .opblock-summary-path[data-path='/v1/payments']")
    await expect(create).to_be_visible(timeout=20_000)
    await expect(
        page.locator(".opblock-get [data-path='/v1/payments/{payment_id}']")
    ).to_be_visible()
    await expect(page.locator(".info .title")).to_contain_text("Payments")
    await page.screenshot(path=SCREENSHOTS / "swagger-ui.png", full_page=True)
    assert elsewhere == []


async def test_redoc_renders_the_document_offline(api_url: str, offline_browser: Browser) -> None:
    SCREENSHOTS.mkdir(exist_ok=True)
    page, elsewhere = await _page(offline_browser, api_url)
    await page.goto(f"{api_url}/redoc")
    operation = page.locator(
        "[data-section-id='tag/payments/operation/create_payment_v1_payments_post']"
    )
    await expect(operation).to_be_visible(timeout=20_000)
    await expect(operation.get_by_role("heading", name="Create Payment")).to_be_visible()
    await expect(operation).to_contain_text("post/v1/payments")
    await page.screenshot(path=SCREENSHOTS / "redoc.png")
    assert elsewhere == []
