"""``/docs`` and ``/redoc`` work without the internet: their HTML names only
this server's URLs, and every one of them answers with what a browser expects
(the browser itself is tests/e2e/test_docs_offline.py)."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from html.parser import HTMLParser

import httpx
import pytest

from api.app import create_app
from payments.settings import Settings

# What a browser needs of each kind of file to use it.
CONTENT_TYPES = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".png": "image/png",
    ".json": "application/json",
}
# Anything that would make the browser leave this server: a scheme or a
# protocol-relative ``//host``.
ELSEWHERE = re.compile(r"""(?:[a-z][a-z0-9+.-]*:)?//[^/\s'"][^\s'"<>]*""", re.IGNORECASE)


class _References(HTMLParser):
    """The URLs a page loads: src, href, ReDoc's spec-url, Swagger UI's ``url:``."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [
            value for name, value in attrs if name in {"src", "href", "spec-url"} and value
        ]

    def handle_data(self, data: str) -> None:
        self.urls += re.findall(r"""\burl:\s*['"]([^'"]+)['"]""", data)


@pytest.fixture
async def api() -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(Settings())
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def _references(html: str) -> list[str]:
    parser = _References()
    parser.feed(html)
    return parser.urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_the_page_names_only_this_server(api: httpx.AsyncClient, page: str) -> None:
    response = await api.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # ... and the browser holds the page's scripts to it.
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert ELSEWHERE.findall(response.text) == []
    urls = _references(response.text)
    assert "/openapi.json" in urls
    assert all(url.startswith("/") for url in urls), urls


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
async def test_every_file_the_page_loads_is_served(api: httpx.AsyncClient, page: str) -> None:
    urls = _references((await api.get(page)).text)
    # The page's script, its styles (Swagger UI), its icon and the document.
    assert len(urls) >= 3, urls
    for url in urls:
        response = await api.get(url)
        assert response.status_code == 200, url
        extension = url[url.rindex(".") :]
        assert response.headers["content-type"].startswith(CONTENT_TYPES[extension]), url
        assert response.content, url


async def test_swagger_ui_s_oauth2_redirect_page_is_served(api: httpx.AsyncClient) -> None:
    response = await api.get("/docs/oauth2-redirect")
    assert response.status_code == 200
    assert "<script" in response.text


async def test_only_the_shipped_files_are_served(api: httpx.AsyncClient) -> None:
    for url in ("/docs/assets/nope.js", "/docs/assets/../../app.py", "/docs/assets/"):
        assert (await api.get(url)).status_code == 404, url
