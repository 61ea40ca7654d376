"""Outbound HTTP to merchants' webhook endpoints (CONTRACT §12), made safe.

- A URL is ``http`` or ``https``, with a host and no credentials; in
  production (``allow_private`` false) ``https`` only, and never an address
  that is loopback, private, link-local, CGNAT, multicast, reserved or
  unspecified (IPv4-mapped IPv6 included): :func:`check_url` (no DNS) and
  :func:`check_destination` (every address the name resolves to), at
  registration.
- A delivery resolves the name again, checks every address, and connects to
  the checked address itself (``Host`` and TLS SNI stay the name's, and the
  certificate is verified for it), so a second DNS answer cannot turn it on
  an internal service (DNS rebinding). The peer actually connected to is
  checked once more.
- 10 s for the whole attempt, redirects never followed, at most a few KiB of
  the answer read; any network trouble is an :class:`Attempt` with an error
  code, never an exception. Bodies and headers are never logged: they carry
  signatures.

    UnsafeUrl   a URL this service will not call (``code``: url_invalid,
                url_scheme, address_not_allowed)
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Final

import httpx

MAX_URL_LENGTH: Final = 2048
Resolver = Callable[[str, int], Awaitable[list[str]]]
_CGNAT = ipaddress.ip_network("100.64.0.0/10")


class UnsafeUrl(ValueError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def address_allowed(address: str) -> bool:
    """Whether a delivery may connect to ``address`` in production."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT:
        return False
    return ip.is_global and not (ip.is_multicast or ip.is_reserved or ip.is_unspecified)


def _parts(url: str, *, allow_private: bool) -> httpx.URL:
    text = url.strip()
    if not text or len(text) > MAX_URL_LENGTH:
        raise UnsafeUrl("url_invalid", "the URL is empty or too long")
    try:
        parsed = httpx.URL(text)
        port = parsed.port
    except (httpx.InvalidURL, ValueError):
        raise UnsafeUrl("url_invalid", "the URL is not valid") from None
    if parsed.scheme not in ("http", "https"):
        raise UnsafeUrl("url_invalid", "the URL must be http or https")
    if not allow_private and parsed.scheme != "https":
        raise UnsafeUrl("url_scheme", "the URL must be https")
    if not parsed.host or "://" not in text:
        raise UnsafeUrl("url_invalid", "the URL has no host")
    if parsed.userinfo:
        raise UnsafeUrl("url_invalid", "the URL must not carry credentials")
    if port is not None and not 0 < port < 65536:
        raise UnsafeUrl("url_invalid", "the URL's port is not valid")
    return parsed


def check_url(url: str, *, allow_private: bool) -> str:
    """The URL, stripped, if this service may call it as far as its text says
    (no DNS); :class:`UnsafeUrl` otherwise."""
    parsed = _parts(url, allow_private=allow_private)
    host = parsed.host
    if not allow_private:
        if host == "localhost" or host.endswith(".localhost"):
            raise UnsafeUrl("address_not_allowed", "the URL names this machine")
        if _is_ip(host) and not address_allowed(host):
            raise UnsafeUrl("address_not_allowed", "the URL's address is not a public one")
    return url.strip()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


async def system_resolve(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


async def _addresses(parsed: httpx.URL, *, allow_private: bool, resolve: Resolver) -> list[str]:
    host = parsed.host
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    if _is_ip(host):
        addresses = [host]
    else:
        try:
            addresses = await resolve(host, port)
        except OSError:
            raise UnsafeUrl("url_invalid", "the URL's host does not resolve") from None
        if not addresses:
            raise UnsafeUrl("url_invalid", "the URL's host does not resolve")
    if not allow_private and not all(address_allowed(a) for a in addresses):
        raise UnsafeUrl("address_not_allowed", "the URL's host resolves to a non-public address")
    return addresses


async def check_destination(
    url: str, *, allow_private: bool, resolve: Resolver = system_resolve
) -> None:
    """:func:`check_url`, then every address the host resolves to (registration)."""
    check_url(url, allow_private=allow_private)
    await _addresses(
        _parts(url, allow_private=allow_private), allow_private=allow_private, resolve=resolve
    )


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
        self._client = httpx.AsyncClient(
            follow_redirects=False, timeout=timeout, transport=transport, trust_env=False
        )

    async def post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        try:
            return await asyncio.wait_for(self._post(url, body, headers), self._timeout)
        except TimeoutError:
            return Attempt(None, "timeout")

    async def _post(self, url: str, body: bytes, headers: Mapping[str, str]) -> Attempt:
        try:
            check_url(url, allow_private=self._allow_private)
            parsed = _parts(url, allow_private=self._allow_private)
            addresses = await _addresses(
                parsed, allow_private=self._allow_private, resolve=self._resolve
            )
        except UnsafeUrl as err:
            return Attempt(None, err.code)
        address = addresses[0]
        # Connect to the address just checked, whatever DNS says next; the
        # request still names the host (Host header, SNI, certificate).
        target = parsed.copy_with(host=address)
        sent = {**headers, "host": parsed.netloc.decode("ascii")}
        extensions = {"sni_hostname": parsed.host} if parsed.scheme == "https" else {}
        request = self._client.build_request(
            "POST", target, content=body, headers=sent, extensions=extensions
        )
        try:
            response = await self._client.send(request, stream=True)
        except httpx.TimeoutException:
            return Attempt(None, "timeout")
        except httpx.ConnectError as err:
            tls = "SSL" in type(err.__cause__).__name__ or "certificate" in str(err).lower()
            return Attempt(None, "tls_failed" if tls else "connection_failed")
        except httpx.HTTPError:
            return Attempt(None, "connection_failed")
        try:
            if not self._allow_private and not address_allowed(_peer(response) or address):
                return Attempt(None, "address_not_allowed")
            read = 0
            async for chunk in response.aiter_raw():
                read += len(chunk)
                if read >= self._max_response_bytes:
                    break
        except httpx.HTTPError:
            pass  # the status came; what follows it is not ours to judge
        finally:
            await response.aclose()
        return Attempt(response.status_code)

    async def aclose(self) -> None:
        await self._client.aclose()


def _peer(response: httpx.Response) -> str | None:
    stream = response.extensions.get("network_stream")
    if stream is None:
        return None
    peer = stream.get_extra_info("server_addr")
    return str(peer[0]) if peer else None
