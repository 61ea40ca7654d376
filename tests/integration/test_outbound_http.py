"""The webhooks' outbound HTTP (payments/outbound.py) against real servers on
loopback: what it refuses, that it connects to the address it checked (DNS
rebinding) and verifies TLS for the name, that it follows no redirect, reads
no endless answer, gives up in time, and logs nothing it sends."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import aiohappyeyeballs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from support import Receiver, serving

from payments.outbound import (
    Attempt,
    Outbound,
    UnsafeUrl,
    check_destination,
    check_url,
    system_resolve,
)

PUBLIC = "93.184.216.34"
Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


# -- check_url: the text alone ---------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/", "url_scheme"),
        ("file:///etc/passwd", "url_scheme"),
        ("http://example.com/", "url_scheme"),
        ("https://", "url_invalid"),
        ("https:///hooks", "url_invalid"),
        ("not a url", "url_invalid"),
        ("", "url_invalid"),
        ("https://user:pass@example.com/", "url_invalid"),
        ("https://example.com:99999/", "url_invalid"),
        ("https://example.com:0/", "url_invalid"),
        ("https://exa mple.com/", "url_invalid"),
        ("https://example.com/" + "a" * 2048, "url_invalid"),
        ("https://127.0.0.1/", "address_not_allowed"),
        ("https://[::1]/", "address_not_allowed"),
        ("https://10.1.2.3/", "address_not_allowed"),
        ("https://172.16.0.1/", "address_not_allowed"),
        ("https://192.168.1.1/", "address_not_allowed"),
        ("https://169.254.169.254/latest/meta-data", "address_not_allowed"),
        ("https://100.64.0.1/", "address_not_allowed"),
        ("https://[::ffff:127.0.0.1]/", "address_not_allowed"),
        ("https://[::ffff:10.0.0.1]/", "address_not_allowed"),
        ("https://0.0.0.0/", "address_not_allowed"),
        ("https://[::]/", "address_not_allowed"),
        ("https://[fe80::1]/", "address_not_allowed"),
        ("https://[fc00::1]/", "address_not_allowed"),
        ("https://[fec0::1]/", "address_not_allowed"),
        ("https://[2002:7f00:1::]/", "address_not_allowed"),  # 6to4 of 127.0.0.1
        ("https://[64:ff9b::a00:1]/", "address_not_allowed"),  # NAT64 of 10.0.0.1
        ("https://224.0.0.1/", "address_not_allowed"),
        ("https://[ff02::1]/", "address_not_allowed"),
        ("https://255.255.255.255/", "address_not_allowed"),
        ("https://240.0.0.1/", "address_not_allowed"),
        ("https://198.18.0.1/", "address_not_allowed"),
        ("https://2130706433/", "address_not_allowed"),  # getaddrinfo reads 127.0.0.1
        ("https://127.1/", "address_not_allowed"),
        ("https://localhost/", "address_not_allowed"),
        ("https://hooks.localhost./", "address_not_allowed"),
    ],
)
def test_production_refuses_what_it_must_not_call(url: str, code: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, allow_private=False)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "url",
    [
        f"https://{PUBLIC}/hooks",
        "https://example.com/hooks?x=1",
        "https://hooks.example.com:8443/",
        "https://[2606:4700:4700::1111]/",
        "https://[64:ff9b::5db8:d822]/",  # NAT64 of the public address
        "https://bücher.example/hooks",
    ],
)
def test_production_takes_a_public_https_url(url: str) -> None:
    assert check_url(f"  {url} ", allow_private=False) == url


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://127.0.0.1/", "url_scheme"),
        ("http://user:pass@127.0.0.1/", "url_invalid"),
        ("http://", "url_invalid"),
    ],
)
def test_development_still_refuses_what_is_not_a_webhook_url(url: str, code: str) -> None:
    with pytest.raises(UnsafeUrl) as refused:
        check_url(url, allow_private=True)
    assert refused.value.code == code


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:9/hooks", "http://localhost:8080/", "https://[::1]/", "http://10.0.0.2/"],
)
def test_development_takes_http_and_private_addresses(url: str) -> None:
    assert check_url(url, allow_private=True) == url


# -- check_destination: with DNS -------------------------------------------------------


def resolver(
    *answers: list[str], asked: list[str] | None = None
) -> Callable[[str, int], Awaitable[list[str]]]:
    """A DNS that gives these answers in turn (the last one from then on)."""
    given = list(answers)

    async def resolve(host: str, port: int) -> list[str]:
        if asked is not None:
            asked.append(host)
        return given.pop(0) if len(given) > 1 else given[0]

    return resolve


async def nowhere(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_registration_refuses_a_name_if_any_of_its_addresses_is_private() -> None:
    for answer in (["10.0.0.7"], [PUBLIC, "127.0.0.1"], ["::ffff:192.168.0.1"]):
        with pytest.raises(UnsafeUrl) as refused:
            await check_destination(
                "https://hooks.example/", allow_private=False, resolve=resolver(answer)
            )
        assert refused.value.code == "address_not_allowed"
    await check_destination(
        "https://hooks.example/", allow_private=False, resolve=resolver([PUBLIC])
    )
    await check_destination(
        "http://hooks.example/", allow_private=True, resolve=resolver(["10.0.0.7"])
    )


async def test_registration_refuses_a_name_that_does_not_resolve() -> None:
    for resolve in (nowhere, resolver([])):
        with pytest.raises(UnsafeUrl) as refused:
            await check_destination("https://hooks.example/", allow_private=False, resolve=resolve)
        assert refused.value.code == "url_invalid"


async def test_registration_checks_the_text_before_asking_dns() -> None:
    asked: list[str] = []
    with pytest.raises(UnsafeUrl) as refused:
        await check_destination(
            "http://hooks.example/", allow_private=False, resolve=resolver([PUBLIC], asked=asked)
        )
    assert (refused.value.code, asked) == ("url_scheme", [])


async def test_the_system_resolver_finds_this_machine_s_name_on_loopback() -> None:
    addresses = await system_resolve("localhost", 443)
    assert addresses and set(addresses) <= {"127.0.0.1", "::1"}
    await check_destination("http://localhost:9/", allow_private=True)


# -- Servers on loopback, stopped on the way out (also when the test fails) -----------------


@contextlib.asynccontextmanager
async def raw_server(handle: Handler, tls: ssl.SSLContext | None = None) -> AsyncIterator[str]:
    """A TCP (or TLS) server on loopback whose connections ``handle`` speaks for; its URL."""
    connections: set[asyncio.Task[Any]] = set()

    async def connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connections.add(task)
        try:
            # Cancelled too when the server stops: asyncio would log that as an error.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await handle(reader, writer)
        finally:
            writer.close()

    server = await asyncio.start_server(connection, "127.0.0.1", 0, ssl=tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    finally:
        server.close()
        for task in connections:
            task.cancel()
        await asyncio.gather(*connections, return_exceptions=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


async def read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        ),
        0,
    )
    return head + await reader.readexactly(length)


def answering(status: int, seen: list[bytes] | None = None, extra: str = "") -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if seen is not None:
            seen.append(request)
        writer.write(f"HTTP/1.1 {status} X\r\n{extra}Content-Length: 2\r\n\r\nok".encode())
        await writer.drain()

    return handle


@contextlib.asynccontextmanager
async def outbound(**options: Any) -> AsyncIterator[Outbound]:
    client = Outbound(**options)
    try:
        yield client
    finally:
        await client.aclose()


# -- A delivery ------------------------------------------------------------------------


async def test_a_post_delivers_the_body_and_headers_as_given() -> None:
    receiver = Receiver()
    async with serving(receiver) as url, outbound(allow_private=True) as out:
        attempt = await out.post(f"{url}/hooks", b'{"a":1}', {"webhook-id": "evt_1"})
    assert attempt == Attempt(200, None) and attempt.delivered
    [received] = receiver.received
    assert received.body == b'{"a":1}'
    assert received.headers["webhook-id"] == "evt_1"
    assert received.headers["host"] == url.removeprefix("http://")


@pytest.mark.parametrize("status", [400, 404, 410, 500, 503])
async def test_an_answer_other_than_2xx_is_not_delivered(status: int) -> None:
    receiver = Receiver(lambda _: status)
    async with serving(receiver) as url, outbound(allow_private=True) as out:
        attempt = await out.post(url, b"{}", {})
    assert (attempt, attempt.delivered) == (Attempt(status, None), False)


async def test_production_posts_over_https_only() -> None:
    receiver = Receiver()
    async with serving(receiver) as url, outbound(allow_private=False) as out:
        attempt = await out.post(url, b"{}", {})
    assert attempt == Attempt(None, "url_scheme")
    assert receiver.received == []


async def test_it_connects_to_the_address_it_resolved_and_checked() -> None:
    receiver = Receiver()
    async with serving(receiver) as url:
        port = url.rsplit(":", 1)[1]
        # No system resolver knows this name: only the checked answer can be used.
        named = f"http://receiver.test:{port}/hooks"
        async with outbound(allow_private=True, resolve=resolver(["127.0.0.1"])) as out:
            delivered = await out.post(named, b"{}", {"Host": "elsewhere.test"})
        async with outbound(allow_private=False, resolve=resolver(["127.0.0.1"])) as out:
            blocked = await out.post(named.replace("http:", "https:"), b"{}", {})
    assert delivered == Attempt(200, None)
    assert blocked == Attempt(None, "address_not_allowed")
    [received] = receiver.received
    assert received.headers["host"] == f"receiver.test:{port}"


async def test_a_name_that_turns_private_after_registration_is_refused() -> None:
    """DNS rebinding: public when registered, loopback when delivered."""
    asked: list[str] = []
    dns = resolver([PUBLIC], ["127.0.0.1"], asked=asked)
    await check_destination("https://hooks.example/", allow_private=False, resolve=dns)
    async with outbound(allow_private=False, resolve=dns) as out:
        attempt = await out.post("https://hooks.example/", b"{}", {})
    assert attempt == Attempt(None, "address_not_allowed")
    assert asked == ["hooks.example", "hooks.example"]


async def test_a_name_with_one_private_address_among_public_ones_is_not_posted_to() -> None:
    seen: list[bytes] = []
    async with raw_server(answering(200, seen)) as url:
        port = url.rsplit(":", 1)[1]
        dns = resolver([PUBLIC, "127.0.0.1"])
        async with outbound(allow_private=False, resolve=dns) as out:
            attempt = await out.post(f"https://hooks.example:{port}/", b"{}", {})
    assert attempt == Attempt(None, "address_not_allowed")
    assert seen == []


async def test_the_next_checked_address_is_tried_when_one_refuses_the_connection() -> None:
    # As localhost is ::1 and 127.0.0.1, and a receiver listens on one of them.
    receiver = Receiver()
    async with serving(receiver) as url:
        port = url.rsplit(":", 1)[1]
        dns = resolver(["127.0.0.2", "127.0.0.1"])
        async with outbound(allow_private=True, resolve=dns) as out:
            attempt = await out.post(f"http://receiver.test:{port}/", b"{}", {})
    assert attempt == Attempt(200, None)
    assert len(receiver.received) == 1


async def test_the_peer_connected_to_is_checked_too(
    certificates: Certificates, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name resolves to a public address, yet the network takes the
    connection somewhere private (a NAT, a transparent proxy): nothing is
    sent there."""
    seen: list[bytes] = []
    tls = certificates.server("hooks.example", [])
    async with raw_server(answering(200, seen), tls) as url:
        port = int(url.rsplit(":", 1)[1])
        connect = aiohappyeyeballs.start_connection
        dialled: list[Any] = []

        async def elsewhere(addr_infos: list[Any], **options: Any) -> socket.socket:
            dialled.extend(info[4][0] for info in addr_infos)
            loopback = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]
            return await connect(loopback, **options)

        monkeypatch.setattr(aiohappyeyeballs, "start_connection", elsewhere)
        async with outbound(
            allow_private=False,
            resolve=resolver([PUBLIC]),
            ssl_context=certificates.trusting(),
        ) as out:
            attempt = await out.post(f"https://hooks.example:{port}/in", b"{}", {})
    assert attempt == Attempt(None, "address_not_allowed")
    # It dialled the checked address, and sent nothing to the peer it reached.
    assert dialled == [PUBLIC]
    assert seen == []


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_an_answer_not_followed(status: int) -> None:
    elsewhere = Receiver()
    async with serving(elsewhere) as target:
        location = f"Location: {target}/\r\n"
        async with (
            raw_server(answering(status, extra=location)) as url,
            outbound(allow_private=True) as out,
        ):
            attempt = await out.post(url, b"{}", {})
    assert (attempt, attempt.delivered) == (Attempt(status, None), False)
    assert elsewhere.received == []


async def test_a_receiver_that_never_answers_times_out() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        await asyncio.sleep(30)

    async with raw_server(silent) as url, outbound(allow_private=True, timeout=0.5) as out:
        began = time.monotonic()
        attempt = await out.post(url, b"{}", {})
        took = time.monotonic() - began
    assert attempt == Attempt(None, "timeout")
    assert 0.4 < took < 3


async def test_an_endless_answer_is_not_read_to_its_end() -> None:
    sent = 0

    async def endless(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal sent
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n")
        while True:
            writer.write(b"x" * 65536)
            sent += 65536
            await writer.drain()

    async with raw_server(endless) as url, outbound(allow_private=True, timeout=10) as out:
        began = time.monotonic()
        attempt = await out.post(url, b"{}", {})
        took = time.monotonic() - began
    assert attempt == Attempt(200, None)
    # It stopped after a few KiB, long before its deadline; the server was still sending.
    assert took < 3
    assert sent < 64 * 1024 * 1024


async def test_an_answer_whose_body_drips_still_counts_by_its_status() -> None:
    async def drip(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n")
        while True:
            writer.write(b"x")
            await writer.drain()
            await asyncio.sleep(0.05)

    async with raw_server(drip) as url, outbound(allow_private=True, timeout=0.5) as out:
        began = time.monotonic()
        attempt = await out.post(url, b"{}", {})
        took = time.monotonic() - began
    assert attempt == Attempt(200, None)
    assert took < 3


async def test_a_refused_connection_is_an_outcome() -> None:
    async with raw_server(answering(200)) as url:
        pass  # closed: nothing listens there now
    async with outbound(allow_private=True) as out:
        attempt = await out.post(url, b"{}", {})
    assert attempt == Attempt(None, "connection_failed")


async def test_a_name_that_does_not_resolve_at_delivery_is_an_outcome() -> None:
    async with outbound(allow_private=False, resolve=nowhere) as out:
        attempt = await out.post("https://hooks.example/", b"{}", {})
    assert attempt == Attempt(None, "url_invalid")


async def test_nothing_it_sends_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    receiver = Receiver()
    async with serving(receiver) as url, outbound(allow_private=True) as out:
        attempt = await out.post(
            url, b'{"secret":"BODY-MARK"}', {"webhook-signature": "v1,SIGNATURE-MARK"}
        )
    assert attempt.delivered
    assert "BODY-MARK" not in caplog.text and "SIGNATURE-MARK" not in caplog.text


# -- TLS: verified for the name, at the checked address -----------------------------------


class Certificates:
    """A certificate authority of the test's own, and a server certificate from it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "outbound test CA")])
        self.ca = (
            self._builder(name, name, self._key.public_key())
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self._key, hashes.SHA256())
        )

    def _builder(self, subject: x509.Name, issuer: x509.Name, key: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer)
            .public_key(key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(hours=1))
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key), critical=False)
        )

    def server(self, hostname: str, seen_sni: list[str | None]) -> ssl.SSLContext:
        """A server context whose certificate is for ``hostname``; it notes each SNI."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostname)])
        cert = (
            self._builder(subject, self.ca.subject, key.public_key())
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(hostname)]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()),
                critical=False,
            )
            .sign(self._key, hashes.SHA256())
        )
        cert_file, key_file = self.directory / f"{hostname}.pem", self.directory / f"{hostname}.key"
        cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_file.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert_file, key_file)
        context.sni_callback = lambda _sock, name, _ctx: seen_sni.append(name)
        return context

    def trusting(self) -> ssl.SSLContext:
        """A client context that trusts this authority (and verifies as the default one does)."""
        pem = self.ca.public_bytes(serialization.Encoding.PEM).decode()
        return ssl.create_default_context(cadata=pem)


@pytest.fixture
def certificates(tmp_path: Path) -> Certificates:
    return Certificates(tmp_path)


async def test_https_goes_to_the_checked_address_verified_for_the_name(
    certificates: Certificates,
) -> None:
    sni: list[str | None] = []
    seen: list[bytes] = []
    tls = certificates.server("receiver.test", sni)
    async with raw_server(answering(200, seen), tls) as url:
        port = url.rsplit(":", 1)[1]
        async with outbound(
            allow_private=True, resolve=resolver(["127.0.0.1"]), ssl_context=certificates.trusting()
        ) as out:
            # The certificate names receiver.test, not 127.0.0.1: it verifies only
            # if the handshake was for the name.
            attempt = await out.post(f"https://receiver.test:{port}/hooks", b"{}", {})
    assert attempt == Attempt(200, None)
    assert sni == ["receiver.test"]
    [request] = seen
    assert request.startswith(b"POST /hooks HTTP/1.1\r\n")
    assert f"host: receiver.test:{port}\r\n".encode() in request.lower()


async def test_a_certificate_for_another_name_is_a_tls_failure(certificates: Certificates) -> None:
    seen: list[bytes] = []
    tls = certificates.server("someone-else.test", [])
    async with raw_server(answering(200, seen), tls) as url:
        port = url.rsplit(":", 1)[1]
        async with outbound(
            allow_private=True, resolve=resolver(["127.0.0.1"]), ssl_context=certificates.trusting()
        ) as out:
            attempt = await out.post(f"https://receiver.test:{port}/", b"{}", {})
    assert attempt == Attempt(None, "tls_failed")
    assert seen == []


async def test_the_default_client_verifies_certificates(certificates: Certificates) -> None:
    seen: list[bytes] = []
    tls = certificates.server("receiver.test", [])
    async with raw_server(answering(200, seen), tls) as url:
        port = url.rsplit(":", 1)[1]
        async with outbound(allow_private=True, resolve=resolver(["127.0.0.1"])) as out:
            attempt = await out.post(f"https://receiver.test:{port}/", b"{}", {})
    assert attempt == Attempt(None, "tls_failed")
    assert seen == []


async def test_plain_http_where_tls_was_expected_is_a_tls_failure() -> None:
    async def plain(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.write(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()

    async with raw_server(plain) as url, outbound(allow_private=True) as out:
        attempt = await out.post(url.replace("http:", "https:"), b"{}", {})
    assert attempt == Attempt(None, "tls_failed")
