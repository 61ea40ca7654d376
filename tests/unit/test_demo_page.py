"""The demo page is served without Temporal, and only when it is turned on."""

from __future__ import annotations

import httpx

from api.app import create_app
from payments.settings import Settings


async def get(settings: Settings, path: str) -> httpx.Response:
    app = create_app(settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://api"
    ) as http:
        return await http.get(path)


ON = Settings(demo_merchant="demo-page")


async def test_page_and_assets_are_served() -> None:
    page = await get(ON, "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/static/app.js" in page.text
    script = await get(ON, "/static/app.js")
    assert script.status_code == 200 and "EventSource" in script.text
    # Only the page's own files; nothing else on disk.
    assert (await get(ON, "/static/..%2F..%2Fpayments%2Fsettings.py")).status_code == 404
    assert (await get(ON, "/static/nothing.js")).status_code == 404


async def test_the_page_is_off_unless_a_demo_merchant_is_set() -> None:
    response = await get(Settings(), "/")
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "invalid_request_error"
