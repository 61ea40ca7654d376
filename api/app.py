"""The FastAPI application factory: one Temporal client per process, made in
the lifespan (or handed in by tests), the routes, and the error handlers."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from urllib.parse import unquote_plus

from fastapi import FastAPI, Response
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from prometheus_client import start_http_server
from temporalio.client import Client

from api import demo, errors, reconciliation, routes, streaming, webhook_endpoints, webhooks
from api.codec import MOUNT as CODEC_MOUNT
from api.codec import create_codec_app
from api.limits import BodySizeLimit, RateLimiter, StreamSlots
from api.metrics import ApiMetrics, RequestMetrics
from api.openapi import install_docs
from archive import build_archive
from payments.archive import Archive
from payments.cards import redact_card_numbers
from payments.ids import TOKEN_TAG
from payments.production import load_settings
from payments.settings import Settings
from payments.temporal import connect
from payments.tracing import API_SERVICE, Tracing, payment_in_path
from payments.webhook_service import EndpointDirectory

log = logging.getLogger("api")


def create_app(
    settings: Settings | None = None,
    client: Client | None = None,
    archive: Archive | None = None,
    tracing: Tracing | None = None,
) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with AsyncExitStack() as stack:
            if settings.api_worker:
                await host_worker(app, stack, settings, client, tracing)
            else:
                # Lazy: the API starts (and /healthz answers 503) while Temporal is down.
                app.state.temporal_client = client or await connect(
                    settings,
                    lazy=True,
                    interceptors=tracing.temporal_interceptors() if tracing else [],
                )
            app.state.webhook_endpoints = EndpointDirectory(app.state.temporal_client)
            if settings.demo_merchant:
                registering = asyncio.create_task(demo.keep_demo_endpoint(app))
                stack.callback(registering.cancel)
            yield

    app = FastAPI(
        title="Payments",
        version="1",
        summary="Event-sourced payments: every payment a durable Temporal workflow.",
        lifespan=lifespan,
        # Served by install_docs with local files, not from a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.settings = settings
    # Where closed payments are read from once Temporal has forgotten them.
    app.state.archive = archive or build_archive(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.state.stream_slots = StreamSlots(
        settings.streams_per_payment, settings.streams_per_merchant
    )
    app.state.metrics = ApiMetrics(app.state.stream_slots)
    app.add_middleware(BodySizeLimit)
    # Outermost: a request the size limit refuses is counted too.
    app.add_middleware(RequestMetrics, metrics=app.state.metrics)
    errors.install(app)
    if serves_metrics_on_its_port(settings):

        @app.get("/metrics", include_in_schema=False)
        def metrics() -> Response:
            body, content_type = app.state.metrics.exposition()
            return Response(body, media_type=content_type)

    app.include_router(routes.router)
    app.include_router(streaming.router)
    app.include_router(reconciliation.router)
    app.include_router(webhooks.router)
    app.include_router(webhook_endpoints.router)
    app.include_router(demo.router)
    codec_app = create_codec_app(settings)
    # The operator key it asks for is checked (and its refusals charged) there.
    codec_app.state.rate_limiter = app.state.rate_limiter
    app.mount(CODEC_MOUNT, codec_app)
    install_docs(app)
    if tracing is not None:
        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=tracing.provider,
            excluded_urls="healthz,metrics",
            server_request_hook=payment_in_path,
        )
    return app


async def host_worker(
    app: FastAPI,
    stack: AsyncExitStack,
    settings: Settings,
    client: Client | None,
    tracing: Tracing | None,
) -> None:
    """``PAYMENTS_API_WORKER``: worker.py's worker in this process, on the API's
    own client, which eager start needs; so that client connects at startup
    (the API waits for Temporal) and its runtime serves the worker's metrics.
    Shut down gracefully, like worker.py's, when the API stops."""
    # Imported here: an API without a worker loads no workflow or gateway code.
    from worker import serving, worker_client

    if client is None:
        client = await worker_client(
            settings,
            settings.api_worker_metrics_address,
            tracing,
            "PAYMENTS_API_WORKER_METRICS_ADDRESS",
        )
    app.state.temporal_client = client
    await stack.enter_async_context(serving(client, settings, tracing))
    app.state.hosts_worker = True
    log.info("API runs a worker on task queue %r; payments start eagerly", settings.task_queue)


def serves_metrics_on_its_port(settings: Settings) -> bool:
    """``GET /metrics`` on the API's own port: in development, unless the
    metrics have an address of their own; never in production."""
    return not settings.api_metrics_address and settings.env != "production"


def serve_metrics_apart(app: FastAPI, address: str) -> None:
    """The metrics on ``address`` (host:port), in a thread of this process."""
    host, _, port = address.rpartition(":")
    registry = app.state.metrics.registry
    start_http_server(int(port), addr=host.strip("[]") or "0.0.0.0", registry=registry)


# Query parameters whose value is a secret, by the name the route reads.
SECRET_PARAMETERS = frozenset({"client_secret", "demo_token"})
# One ``name=value`` of a query string, as a request line quotes it.
_PARAMETER = re.compile(r"(?P<lead>[?&](?P<name>[^=&\s\"?]+)=)(?P<value>[^&\s\"]*)")


def redact_secrets(text: str) -> str:
    """``text`` without the values of secret query parameters, however their
    name is spelled: the server decodes ``client%5Fsecret`` and
    ``client_secre%74`` to ``client_secret``, and a name in another case is
    still somebody's secret. Client secrets quoted anywhere else go too."""

    def parameter(match: re.Match[str]) -> str:
        name = unquote_plus(match["name"]).strip().lower()
        return match["lead"] + "[redacted]" if name in SECRET_PARAMETERS else match[0]

    return TOKEN_TAG.sub(r"\1[redacted]", _PARAMETER.sub(parameter, text))


class _RedactSecrets(logging.Filter):
    """Log lines quote request lines, client addresses and ids: no client secret
    (in a query) and no card number (wherever a client put one) may reach them."""

    def _clean(self, text: str) -> str:
        return redact_card_numbers(redact_secrets(text))

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = self._clean(record.msg)
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                self._clean(arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


def main() -> None:
    import uvicorn

    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    redact = _RedactSecrets()
    # uvicorn's loggers have handlers of their own (the WebSocket lines come from
    # uvicorn.error); every other logger's records reach the root's handlers.
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(redact)
    for handler in logging.getLogger().handlers:
        handler.addFilter(redact)
    tracing = Tracing.from_environment(API_SERVICE)
    app = create_app(settings, tracing=tracing)
    if settings.api_metrics_address:
        serve_metrics_apart(app, settings.api_metrics_address)
    elif not serves_metrics_on_its_port(settings):
        logging.getLogger("api").warning(
            "no metrics served: set PAYMENTS_API_METRICS_ADDRESS (host:port) to serve them "
            "apart from the public port"
        )
    uvicorn.run(
        app,
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )
    if tracing is not None:
        tracing.shutdown()  # what is still buffered goes out
