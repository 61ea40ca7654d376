"""The webhooks' outbound HTTP (payments/outbound.py) against real servers on
loopback: what it refuses, that it connects to the address it checked (DNS
rebinding), that it follows no redirect, reads no endless answer, and gives
up in time."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from support import Receiver, serving

from payments.outbound import Outbound, UnsafeUrl, check_destination, check_url

PUBLIC = "93.184.216.34"


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/", "url_invalid"),
        ("https://", "url_invalid"),
        ("not a url", "url_invalid"),
        ("https://user:pass@example.com/", "url_invalid"),
        ("http://example.com/", "url_scheme"),
        ("https://127.0.0.1/", "address_not_allowed"),
        ("https://[::1]/", "address_not_allowed"),
        ("https://10.1.2.3/", "address_not_allowed"),
        ("https://172.16.0.1/", "address_not_allowed"),
        ("https://192.168.1.1/", "address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("https://100.64.0.1/", "address_not_allowed"),
        ("https://[::ffff:127.0.0.1]/", "address_not_allowed"),
        ("https://0.0.0.0/", "address_not_allowed"),
        ("https://[fe80::1]/", "address_not_allowed"),
        ("https://[fc00::1]/", "address_not_allowed"),
        ("https://224.0.0.1/", "address_not_allowed"),
        ("https://localhost/", "address_not_allowed"),
    ],
)
def test_production_refuses_what_it_must_not_call(url: str, code: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, allow_private=False)
    assert refused.value.code == code


def test_production_takes_a_public_https_url_and_development_takes_loopback() -> None:
    assert check_url(f" https://{PUBLIC}/hooks ", allow_private=False) == f"https://{PUBLIC}/hooks"
    assert check_url("https://example.com/hooks", allow_private=False)
    assert check_url("http://127.0.0.1:9/hooks", allow_private=True)


def resolver(*answers: list[str]) -> Callable[[str, int], Awaitable[list[str]]]:
    """A DNS that gives these answers in turn (the last one from then on)."""
    given = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        return given.pop(0) if len(given) > 1 else given[0]

    return resolve


async def test_a_post_delivers_the_body_and_headers_as_given() -> None:
    receiver = Receiver()
    outbound = Outbound(allow_private=True)
    try:
        async with serving(receiver) as url:
            attempt = await outbound.post(f"{url}/hooks", b'{"a":1}', {"webhook-id": "evt_1"})
    finally:
        await outbound.aclose()
    assert attempt.delivered and attempt.status_code == 200 and attempt.error is None
    [received] = receiver.received
    assert received.body == b'{"a":1}'
    assert received.headers["webhook-id"] == "evt_1"
    assert received.headers["host"] == url.removeprefix("http://")


async def test_it_connects_to_the_address_it_resolved_and_checked() -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        port = url.rsplit(":", 1)[1]
        # No system resolver knows this name: only the checked answer can be used.
        named = f"http://receiver.test:{port}/hooks"
        allowed = Outbound(allow_private=True, resolve=resolver(["127.0.0.1"]))
        refused = Outbound(allow_private=False, resolve=resolver(["127.0.0.1"]))
        try:
            delivered = await allowed.post(named, b"{}", {})
            blocked = await refused.post(named.replace("http:", "https:"), b"{}", {})
        finally:
            await allowed.aclose()
            await refused.aclose()
    assert delivered.delivered
    assert receiver.received[0].headers["host"] == f"receiver.test:{port}"
    assert blocked == type(blocked)(None, "address_not_allowed")
    assert len(receiver.received) == 1


async def test_a_name_that_turns_private_after_registration_is_refused() -> None:
    """DNS rebinding: public when registered, loopback when delivered."""
    dns = resolver([PUBLIC], ["127.0.0.1"])
    await check_destination("https://hooks.example/", allow_private=False, resolve=dns)
    outbound = Outbound(allow_private=False, resolve=dns)
    try:
        attempt = await outbound.post("https://hooks.example/", b"{}", {})
    finally:
        await outbound.aclose()
    assert (attempt.status_code, attempt.error) == (None, "address_not_allowed")
    with pytest.raises(UnsafeUrl):
        await check_destination("https://hooks.example/", allow_private=False, resolve=dns)


@contextlib.asynccontextmanager
async def raw_server(
    handle: Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]],
) -> AsyncIterator[str]:
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


async def _read_request(reader: asyncio.StreamReader) -> None:
    with contextlib.suppress(Exception):
        await reader.readuntil(b"\r\n\r\n")


async def test_a_redirect_is_an_answer_not_followed() -> None:
    elsewhere = Receiver()
    async with serving(elsewhere) as target:

        async def redirect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(
                f"HTTP/1.1 307 Temporary Redirect\r\nLocation: {target}/\r\n"
                "Content-Length: 0\r\n\r\n".encode()
            )
            await writer.drain()
            writer.close()

        async with raw_server(redirect) as url:
            outbound = Outbound(allow_private=True)
            try:
                attempt = await outbound.post(url, b"{}", {})
            finally:
                await outbound.aclose()
    assert (attempt.status_code, attempt.delivered) == (307, False)
    assert elsewhere.received == []


async def test_a_receiver_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(silent) as url:
        outbound = Outbound(allow_private=True, timeout=0.5)
        began = time.monotonic()
        try:
            attempt = await outbound.post(url, b"{}", {})
        finally:
            await outbound.aclose()
    assert (attempt.status_code, attempt.error) == (None, "timeout")
    assert time.monotonic() - began < 5


async def test_an_endless_answer_is_not_read_to_its_end() -> None:
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await _read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        with contextlib.suppress(Exception):
            while True:
                writer.write(b"x" * 65536)
                sent += 65536
                await writer.drain()

    async with raw_server(endless) as url:
        outbound = Outbound(allow_private=True, timeout=5)
        try:
            attempt = await outbound.post(url, b"{}", {})
        finally:
            await outbound.aclose()
    assert attempt.delivered
    # It stopped after a few KiB; the server was still sending.
    assert sent < 64 * 1024 * 1024


async def test_a_refused_connection_is_an_outcome() -> None:
    async with raw_server(_read_request) as url:
        pass  # closed: nothing listens there now
    outbound = Outbound(allow_private=True)
    try:
        attempt = await outbound.post(url, b"{}", {})
    finally:
        await outbound.aclose()
    assert (attempt.status_code, attempt.error) == (None, "connection_failed")
