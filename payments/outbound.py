"""Outbound HTTP to merchants' webhook endpoints (CONTRACT §12), made safe.

Which URLs may be called (:func:`check_url` on the text, :func:`check_destination`
with DNS, at registration), and the POST of a delivery (:class:`Outbound`): it
resolves the name once, checks every address, connects to a checked address
itself and so cannot be turned on an internal service by a second DNS answer
(DNS rebinding), follows no redirect, reads a few KiB of the answer at most,
and ends within its timeout. Network trouble is an :class:`Attempt`, never an
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

import httpx

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


class Outbound:
    """The one HTTP client of a process's deliveries."""

    def __init__(
        self,
        *,
        allow_private: bool,
        timeout: float = 10.0,
        max_response_bytes: int = 4096,
        resolve: Resolver = system_resolve,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._allow_private = allow_private
        self._timeout = timeout
        self._max_response_bytes = max_response_bytes
        self._resolve = resolve
        mounts: dict[str, httpx.AsyncBaseTransport | None] | None = None
        if transport is None:
            # The pool knows a connection by its address, not by the name: kept
            # open, one name's TLS connection would carry another name's
            # deliveries that share the address, unverified for that name.
            fresh = httpx.Limits(max_keepalive_connections=0)
            tls = httpx.AsyncHTTPTransport(limits=fresh, trust_env=False)
            mounts = {"https://": tls}
        self._client = httpx.AsyncClient(
            follow_redirects=False,
            timeout=timeout,
            trust_env=False,
            transport=transport,
            mounts=mounts,
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        deadline = asyncio.get_running_loop().time() + self._timeout
        try:
            async with asyncio.timeout_at(deadline):
                parsed = _checked(url, allow_private=self._allow_private)
                addresses = await _addresses(
                    parsed, allow_private=self._allow_private, resolve=self._resolve
                )
                address, response = await self._send(parsed, addresses, body, headers)
        except UnsafeUrl as err:
            return Attempt(None, err.code)
        except _NoAnswer as err:
            return Attempt(None, err.code)
        except TimeoutError:
            return Attempt(None, "timeout")
        try:
            peer = _peer(response) or address
            if not self._allow_private and not address_allowed(peer):
                return Attempt(None, "address_not_allowed")
            await self._read_some(response, deadline)
        finally:
            await response.aclose()
        return Attempt(response.status_code)

    async def _send(
        self, parsed: httpx.URL, addresses: list[str], body: bytes, headers: Mapping[str, str]
    ) -> tuple[str, httpx.Response]:
        """The answer from the first checked address that takes the connection."""
        sent = httpx.Headers(headers)
        sent["host"] = parsed.netloc.decode("ascii")
        extensions = {}
        if parsed.scheme == "https" and _literal(parsed.host) is None:
            extensions["sni_hostname"] = _ascii_host(parsed)
        for address in addresses:
            try:
                # The checked address itself, whatever DNS says next; the
                # request still names the host (Host, SNI, the certificate).
                request = self._client.build_request(
                    "POST",
                    parsed.copy_with(host=address),
                    content=body,
                    headers=sent,
                    extensions=extensions,
                )
                return address, await self._client.send(request, stream=True)
            except httpx.InvalidURL:
                raise _NoAnswer("url_invalid") from None
            except httpx.TimeoutException:
                raise _NoAnswer("timeout") from None
            except httpx.ConnectError as err:
                if _is_tls_failure(err):
                    raise _NoAnswer("tls_failed") from None
                # Nothing was sent; the next address may be the one listening
                # (localhost is ::1 and 127.0.0.1, a server often binds one).
            except httpx.HTTPError:
                raise _NoAnswer("connection_failed") from None
        raise _NoAnswer("connection_failed")

    async def _read_some(self, response: httpx.Response, deadline: float) -> None:
        # The status is the answer; the body is read only so far, and only
        # until the deadline, so that an endless one cannot hold the attempt.
        read = 0
        with contextlib.suppress(TimeoutError, httpx.HTTPError):
            async with asyncio.timeout_at(deadline):
                async for chunk in response.aiter_raw():
                    read += len(chunk)
                    if read >= self._max_response_bytes:
                        break

    @property
    def http_client(self) -> httpx.AsyncClient:
        """Its client, for what must leave it alone (tracing: payments/tracing.py)."""
        return self._client

    async def aclose(self) -> None:
        await self._client.aclose()


def _is_tls_failure(err: BaseException) -> bool:
    cause: BaseException | None = err
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return True
        cause = cause.__cause__ or cause.__context__
    return False


def _peer(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    peer = stream.get_extra_info("server_addr")
    return str(peer[0]) if peer else None
