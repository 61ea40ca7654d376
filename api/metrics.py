"""The API's Prometheus metrics (CONTRACT §15, names in payments/metrics.py):
requests by route template, method and status, their durations, and the
event streams open. A registry per app, so that tests build apps freely.

Served at ``GET /metrics`` on the API's port, unless
``PAYMENTS_API_METRICS_ADDRESS`` gives them an address of their own (always in
production: the public port never serves them).
"""

from __future__ import annotations

import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.limits import StreamSlots
from payments import metrics

# A path no route matched: one label value, never the path itself.
UNMATCHED = "unmatched"


class ApiMetrics:
    def __init__(self, streams: StreamSlots) -> None:
        self.registry = CollectorRegistry()
        # prometheus-client adds "_total" to a counter's name itself.
        self.requests = Counter(
            metrics.HTTP_REQUESTS.removesuffix("_total"),
            metrics.DESCRIPTIONS[metrics.HTTP_REQUESTS],
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            metrics.HTTP_DURATION,
            metrics.DESCRIPTIONS[metrics.HTTP_DURATION],
            ["route", "method"],
            registry=self.registry,
        )
        open_streams = Gauge(
            metrics.STREAMS_OPEN, metrics.DESCRIPTIONS[metrics.STREAMS_OPEN], registry=self.registry
        )
        open_streams.set_function(lambda: streams.count())

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.requests.labels(route, method, str(status)).inc()
        self.duration.labels(route, method).observe(seconds)


class RequestMetrics:
    """ASGI middleware: each HTTP request counted once it has answered, under
    the template of the route that took it (``/v1/payments/{payment_id}``)."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sent(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            seconds = time.perf_counter() - started
            self.metrics.observe(_route(scope), _method(scope), status, seconds)


def _route(scope: Scope) -> str:
    """The template of the route that took the request, under the mount it
    sits in (``/codec/encode``); ``unmatched`` when none did."""
    route = scope.get("route")
    path = getattr(route, "path", None)
    return scope.get("root_path", "") + path if isinstance(path, str) else UNMATCHED


# Methods a client may invent (h11 takes any token): each would be a series.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _method(scope: Scope) -> str:
    method: str = scope["method"]
    return method if method in METHODS else "other"
