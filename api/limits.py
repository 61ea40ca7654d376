"""What one caller may ask of the service.

A body over 64 KiB is refused with ``413`` before the app reads it into memory,
whether it announces its length or streams it. Each merchant draws from a token
bucket (``PAYMENTS_RATE_LIMIT_PER_SECOND``, ``PAYMENTS_RATE_LIMIT_BURST``);
an empty bucket answers ``429`` with ``Retry-After`` before Temporal is asked
anything, so one merchant cannot flood the engine the others share. A request
refused ``401`` draws from its address's bucket first (api/deps.py).
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import InvalidRequest, RateLimited

MAX_BODY_BYTES = 64 * 1024
# Deeper JSON than any request of ours needs is refused (and never recursed into).
MAX_JSON_DEPTH = 16


def too_large() -> InvalidRequest:
    return InvalidRequest(
        413, "body_too_large", f"request bodies are at most {MAX_BODY_BYTES} bytes"
    )


class BodySizeLimit:
    def __init__(self, app: ASGIApp, limit: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length and (not length.isdigit() or len(length) > 12 or int(length) > self.limit):
            error = too_large()
            body = json.dumps(error.body()).encode()
            await send(
                {
                    "type": "http.response.start",
                    "status": 413,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"content-length", str(len(body)).encode()),
                        (b"connection", b"close"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": body})
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    # Raised inside the app's read: its error handler answers 413.
                    raise too_large()
            return message

        await self.app(scope, counted, send)


def json_depth(value: object, limit: int = MAX_JSON_DEPTH) -> int:
    """How deep ``value`` nests, counting no further than ``limit + 1``."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [
            child
            for item in level
            if isinstance(item, dict | list)
            for child in (item.values() if isinstance(item, dict) else item)
            if isinstance(child, dict | list)
        ]
    return depth


class RateLimiter:
    """One token bucket per merchant, in this process: ``rate`` tokens a second,
    holding at most ``burst``. With several API processes behind a balancer the
    service-wide limit is their sum.

    Refused callers have buckets too, one per address, so there can be as many
    buckets as a stranger has addresses. A bucket that has filled up again is
    the same as none, so those are dropped whenever the count doubles."""

    def __init__(
        self,
        rate: float,
        burst: int,
        clock: Callable[[], float] = time.monotonic,
        forget_after: int = 10_000,
    ) -> None:
        self.rate = rate
        self.burst = burst
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}
        self._forget_after = forget_after
        self._forget_at = forget_after

    def __len__(self) -> int:
        return len(self._buckets)

    def _forget_full(self, now: float) -> None:
        self._buckets = {
            name: (tokens, then)
            for name, (tokens, then) in self._buckets.items()
            if tokens + (now - then) * self.rate < self.burst
        }
        self._forget_at = max(self._forget_after, 2 * len(self._buckets))

    def take(self, merchant_id: str) -> None:
        """Spend one token of ``merchant_id``'s bucket, or raise :class:`RateLimited`."""
        now = self._clock()
        if len(self._buckets) >= self._forget_at:
            self._forget_full(now)
        tokens, then = self._buckets.get(merchant_id, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[merchant_id] = (tokens, now)
            raise RateLimited(retry_after=max(1, math.ceil((1.0 - tokens) / self.rate)))
        self._buckets[merchant_id] = (tokens - 1.0, now)
