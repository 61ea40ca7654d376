"""The FastAPI application factory: one Temporal client per process, made in
the lifespan (or handed in by tests), the routes, and the error handlers."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from temporalio.client import Client

from api import demo, errors, reconciliation, routes, streaming, webhooks
from api.codec import MOUNT as CODEC_MOUNT
from api.codec import create_codec_app
from api.limits import BodySizeLimit, RateLimiter
from payments.settings import Settings
from payments.temporal import connect


def create_app(settings: Settings | None = None, client: Client | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Lazy: the API starts (and /healthz answers 503) while Temporal is down.
        app.state.temporal_client = client or await connect(settings, lazy=True)
        yield

    app = FastAPI(
        title="Payments",
        version="1",
        summary="Event-sourced payments: every payment a durable Temporal workflow.",
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.rate_limiter = RateLimiter(settings.rate_limit_per_second, settings.rate_limit_burst)
    app.add_middleware(BodySizeLimit)
    errors.install(app)
    app.include_router(routes.router)
    app.include_router(streaming.router)
    app.include_router(reconciliation.router)
    app.include_router(webhooks.router)
    app.include_router(demo.router)
    app.mount(CODEC_MOUNT, create_codec_app(settings))
    return app


class _RedactSecrets(logging.Filter):
    """Access logs show request lines; a client secret in a query must not reach them."""

    _SECRET = re.compile(r"(client_secret=)[^&\s\"]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args and isinstance(record.args, tuple):
            record.args = tuple(
                self._SECRET.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        return True


def main() -> None:
    import uvicorn

    settings = Settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn.access").addFilter(_RedactSecrets())
    uvicorn.run(
        create_app(settings),
        host=settings.api_host,
        port=settings.api_port,
        log_level=settings.log_level.lower(),
    )
