"""Outbound HTTP to merchants' webhook endpoints (CONTRACT §12), made safe.

Which URLs may be called (:func:`check_url` on the text, :func:`check_destination`
with DNS, at registration), and the POST of a delivery (:class:`Outbound`): it
resolves the name once, checks every address, connects to a checked address
itself and so cannot be turned on an internal service by a second DNS answer
(DNS rebinding), checks the address the socket reached before it sends,
follows no redirect, reads a few KiB of the answer at most, and ends within
its timeout. Network trouble is an :class:`Attempt`, never an
exception; bodies and headers are never logged, they carry signatures.

    UnsafeUrl   a URL this service will not call (``code``: url_invalid,
                url_scheme, address_not_allowed)
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import re
import socket
import ssl
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import aiohttp
import httpx
from aiohttp.connector import Connection

MAX_URL_LENGTH: Final = 2048
Resolver = Callable[[str, int], Awaitable[list[str]]]
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_CGNAT: Final = ipaddress.ip_network("100.64.0.0/10")
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")
_HOSTNAME: Final = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?", re.IGNORECASE)
# What inet_aton, and so getaddrinfo, also reads as IPv4: 2130706433, 0x7f.1, 127.1.
_LEGACY_IPV4: Final = re.compile(r"[0-9a-fx.]+", re.IGNORECASE)


class UnsafeUrl(ValueError):
    """A webhook URL this service will not call; ``code`` says why."""

    code: str

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def address_allowed(address: str) -> bool:
    """Whether production may connect to ``address``: a global unicast one."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return _is_public(ip)


def _is_public(ip: IPAddress) -> bool:
    if isinstance(ip, ipaddress.IPv6Address):
        # These reach the IPv4 address inside them, so that one is judged.
        inner = ip.ipv4_mapped or ip.sixtofour
        if inner is None and ip in _NAT64:
            inner = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if inner is not None:
            return _is_public(inner)
        if ip.is_site_local:  # deprecated, yet not in is_global's list
            return False
    elif ip in _CGNAT:
        return False
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_unspecified or ip.is_loopback
    )


def _literal(host: str) -> IPAddress | None:
    """The address a host names without DNS, if it is one."""
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host)
    if _LEGACY_IPV4.fullmatch(host):
        with contextlib.suppress(OSError):
            return ipaddress.IPv4Address(socket.inet_aton(host))
    return None


def _parse(url: str, *, allow_private: bool) -> httpx.URL:
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH:
        raise UnsafeUrl("url_invalid", "the URL is empty or too long")
    try:
        parsed = httpx.URL(text)
        port = parsed.port
    except (httpx.InvalidURL, ValueError):
        raise UnsafeUrl("url_invalid", "the URL is not valid") from None
    if "://" not in text or not parsed.scheme:
        raise UnsafeUrl("url_invalid", "the URL is not an absolute one")
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl("url_scheme", "the URL must be http or https")
    if not allow_private and parsed.scheme != "https":
        raise UnsafeUrl("url_scheme", "the URL must be https")
    if not parsed.host:
        raise UnsafeUrl("url_invalid", "the URL has no host")
    if parsed.userinfo:
        raise UnsafeUrl("url_invalid", "the URL must not carry credentials")
    if port is not None and not 0 < port < 65536:
        raise UnsafeUrl("url_invalid", "the URL's port is not valid")
    if _literal(parsed.host) is None and not _HOSTNAME.fullmatch(_ascii_host(parsed)):
        raise UnsafeUrl("url_invalid", "the URL's host is not a name")
    return parsed


def _ascii_host(parsed: httpx.URL) -> str:
    # IDNA-encoded: what DNS, SNI and the certificate know the host by.
    return parsed.raw_host.decode("ascii")


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, stripped, if its text allows calling it (no DNS); else :class:`UnsafeUrl`."""
    _checked(url, allow_private=allow_private)
    return url.strip()


def _checked(url: str, *, allow_private: bool) -> httpx.URL:
    parsed = _parse(url, allow_private=allow_private)
    if not allow_private:
        name = parsed.host.rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            raise UnsafeUrl("address_not_allowed", "the URL names this machine")
        literal = _literal(parsed.host)
        if literal is not None and not _is_public(literal):
            raise UnsafeUrl("address_not_allowed", "the URL's address is not a public one")
    return parsed


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _addresses(parsed: httpx.URL, *, allow_private: bool, resolve: Resolver) -> list[str]:
    """The addresses to connect to, every one of them checked."""
    literal = _literal(parsed.host)
    if literal is not None:
        found: list[IPAddress] = [literal]
    else:
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        try:
            found = [ipaddress.ip_address(a) for a in await resolve(_ascii_host(parsed), port)]
        except (OSError, UnicodeError, ValueError):
            raise UnsafeUrl("url_invalid", "the URL's host does not resolve") from None
        if not found:
            raise UnsafeUrl("url_invalid", "the URL's host does not resolve")
    if not allow_private and not all(_is_public(ip) for ip in found):
        raise UnsafeUrl("address_not_allowed", "the URL's host has a non-public address")
    return [str(ip) for ip in found]


async def check_destination(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolve
) -> None:
    """:func:`check_url`, then every address the host resolves to (registration)."""
    parsed = _checked(url, allow_private=allow_private)
    await _addresses(parsed, allow_private=allow_private, resolve=resolve)


@dataclass(frozen=True)
class Attempt:
    """What one POST got: an HTTP status, or why there was none."""

    status_code: int | None
    # None when an answer came: "timeout", "connection_failed", "tls_failed",
    # "address_not_allowed", "url_invalid", "url_scheme".
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class _NoAnswer(Exception):
    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


class _PeerNotAllowed(Exception):
    pass


class _CheckedPeer(aiohttp.ClientRequest):
    """A request sent only to a peer production may call: the address the
    socket is connected to is checked once more before a byte goes out (a
    NAT or a proxy on the way could have taken the connection elsewhere)."""

    async def send(self, conn: Connection) -> aiohttp.ClientResponse:
        transport = conn.transport
        peer = None if transport is None else transport.get_extra_info("peername")
        if not peer or not address_allowed(str(peer[0])):
            raise _PeerNotAllowed
        return await super().send(conn)


# Headers aiohttp would add of its own: what is sent is what the caller gave.
_NOT_ADDED: Final = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


class Outbound:
    """The one HTTP client of a process's deliveries (aiohttp: a POST costs a
    third of httpx's CPU, and deliveries are most of what a webhook costs)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        max_response_bytes: int = 4096,
        resolve: Resolver = system_resolve,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._resolve = resolve
        # Certificates verified, for the name (server_hostname), as by default.
        self._ssl = ssl_context or ssl.create_default_context()
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, in the event loop that uses it (aiohttp's rule).
        if self._session is None:
            self._session = aiohttp.ClientSession(
                # The pool knows a connection by address, port and the name its
                # TLS was verified for (server_hostname): kept open, it carries
                # only that name's deliveries.
                connector=aiohttp.TCPConnector(ssl=self._ssl, use_dns_cache=False),
                # A receiver's cookies are not sent to the next one.
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
                request_class=aiohttp.ClientRequest if self._allow_private else _CheckedPeer,
                auto_decompress=False,
                timeout=aiohttp.ClientTimeout(total=None),
                skip_auto_headers=_NOT_ADDED,
            )
        return self._session

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                parsed = _checked(url, allow_private=self._allow_private)
                addresses = await _addresses(
                    parsed, allow_private=self._allow_private, resolve=self._resolve
                )
                response = await self._send(parsed, addresses, body, headers)
        except UnsafeUrl as err:
            return Attempt(None, err.code)
        except _NoAnswer as err:
            return Attempt(None, err.code)
        except TimeoutError:
            return Attempt(None, "timeout")
        try:
            await self._read_some(response, deadline)
        finally:
            # Back to the pool if the answer was read to its end, else closed.
            response.release()
        return Attempt(response.status)

    async def _send(
        self, parsed: httpx.URL, addresses: list[str], body: bytes, headers: Mapping[str, str]
    ) -> aiohttp.ClientResponse:
        """The answer from the first checked address that takes the connection."""
        sent = {name: value for name, value in headers.items() if name.lower() != "host"}
        sent["Host"] = parsed.netloc.decode("ascii")
        server_hostname = None
        if parsed.scheme == "https" and _literal(parsed.host) is None:
            server_hostname = _ascii_host(parsed)
        for address in addresses:
            try:
                # The checked address itself, whatever DNS says next; the
                # request still names the host (Host, SNI, the certificate).
                response = await self._client().post(
                    str(parsed.copy_with(host=address)),
                    data=body,
                    headers=sent,
                    allow_redirects=False,
                    server_hostname=server_hostname,
                )
                return response
            except _PeerNotAllowed:
                raise _NoAnswer("address_not_allowed") from None
            except aiohttp.InvalidURL:
                raise _NoAnswer("url_invalid") from None
            except aiohttp.ClientConnectorError as err:
                if _is_tls_failure(err):
                    raise _NoAnswer("tls_failed") from None
                # Nothing was sent; the next address may be the one listening
                # (localhost is ::1 and 127.0.0.1, a server often binds one).
            except (aiohttp.ClientError, OSError) as err:
                if _is_tls_failure(err):
                    raise _NoAnswer("tls_failed") from None
                raise _NoAnswer("connection_failed") from None
        raise _NoAnswer("connection_failed")

    async def _read_some(self, response: aiohttp.ClientResponse, deadline: float) -> None:
        # The status is the answer; the body is read only so far, and only
        # until the deadline, so that an endless one cannot hold the attempt.
        read = 0
        with contextlib.suppress(TimeoutError, aiohttp.ClientError):
            async with asyncio.timeout_at(deadline):
                while read < self._max_response_bytes:
                    chunk = await response.content.read(self._max_response_bytes - read)
                    if not chunk:
                        break
                    read += len(chunk)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


def _is_tls_failure(err: BaseException) -> bool:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLError | aiohttp.ClientSSLError | ssl.CertificateError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False
