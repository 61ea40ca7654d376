"""The codec endpoint: Temporal's codec-server protocol over the service's keys.

``POST /codec/decode`` and ``POST /codec/encode`` take and give
``{"payloads": [...]}`` in proto3 JSON (bytes as base64), so the Temporal Web
UI (``--ui-codec-endpoint``) and CLI (``--codec-endpoint``) can show what
history holds in the clear, and the UI can seal what an operator types. The
browser calls it across origins, so it answers CORS for the UI's origin.

Decoding hands out plaintext, so it wants an operator key unless
``PAYMENTS_CODEC_ALLOW_ANONYMOUS`` is set (as `make run` does: the local UI has
no login to pass a key). A payload that does not open is returned as it came,
so one stray payload does not blank a whole page.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Depends, FastAPI, Request
from google.protobuf.json_format import MessageToDict, ParseDict, ParseError
from starlette.middleware.cors import CORSMiddleware
from temporalio.api.common.v1 import Payload, Payloads

from api import errors
from api.deps import operator
from api.errors import InvalidRequest
from payments.codec import DecryptionError
from payments.names import CODEC_PATH
from payments.settings import Settings
from payments.temporal import encryption_codec

log = logging.getLogger("api.codec")

MOUNT = CODEC_PATH


async def _payloads(request: Request) -> Payloads:
    try:
        body = await request.json()
        return ParseDict(body, Payloads(), ignore_unknown_fields=True)
    except (ValueError, ParseError, TypeError):
        raise InvalidRequest(
            400, "invalid_payloads", 'the body must be {"payloads": [...]} in proto3 JSON'
        ) from None


def _answer(payloads: list[Payload]) -> dict[str, Any]:
    return MessageToDict(Payloads(payloads=payloads))


def create_codec_app(settings: Settings) -> FastAPI:
    codec = encryption_codec(settings)
    guard = [] if settings.codec_allow_anonymous else [Depends(operator)]

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None, dependencies=guard)
    app.state.settings = settings
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.ui_origins(),
        allow_methods=["POST"],
        allow_headers=["Content-Type", "X-Namespace", "Authorization"],
        allow_credentials=True,
        max_age=600,
    )
    errors.install(app)

    @app.post("/encode")
    async def encode(request: Request) -> dict[str, Any]:
        payloads = list((await _payloads(request)).payloads)
        return _answer(await codec.encode(payloads) if codec else payloads)

    @app.post("/decode")
    async def decode(request: Request) -> dict[str, Any]:
        payloads = list((await _payloads(request)).payloads)
        if codec is None:
            return _answer(payloads)
        opened = []
        for payload in payloads:
            try:
                opened.append(codec.open(payload))
            except DecryptionError as err:
                log.warning("codec: %s", err)
                opened.append(payload)
        return _answer(opened)

    return app
