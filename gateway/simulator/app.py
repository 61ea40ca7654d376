"""The gateway simulator as an HTTP service: a PSP-like JSON API over a
:class:`~gateway.simulator.core.SimulatorLedger`, and the test controls of
CONTRACT §8 (``/_faults``, ``/_ledger``).

Customer action (CONTRACT §14): an authorize that needs the customer answers
``202`` with the pending authentication, whose ``url`` is this service's
challenge page (``GET /authenticate/{id}``: Approve / Fail, which ``POST`` the
form field ``result`` to the same URL, then go to the payment's
``return_url``). Each decision is told to the service as a signed webhook
(:mod:`gateway.simulator.notify`); ``GET /v1/authentications/{id}`` and
``POST …/cancel`` are the lookup and the cancel of the port.

Errors are ``{"error": {"type", "code", "message", ...}}``: declines ``402``
(``card_error``), refused requests ``400``/``409``/``422``
(``invalid_request_error``), unknown ids ``404``, injected outages ``503``.
"""

from __future__ import annotations

import html
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Annotated
from urllib.parse import parse_qs

from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException
from starlette.types import Receive, Scope, Send

from gateway.simulator.core import CONFLICT_CODES, Faults, ReplyDropped, SimulatorLedger
from gateway.simulator.notify import Notifier
from payments.currencies import format_amount
from payments.gateway import (
    Authentication,
    CardDeclined,
    GatewayError,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
)

# Strict, so that "12" or 12.5 is refused rather than quietly read as 12.
Amount = Annotated[int, Field(strict=True)]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AuthorizationRequest(_Body):
    reference: str
    amount: Amount
    currency: str
    payment_method: str
    # Where the challenge page sends the customer back to, when one is needed.
    return_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None


class AmountRequest(_Body):
    amount: Amount


class OperationList(BaseModel):
    data: list[GatewayOperation]


async def _idempotency_key(idempotency_key: Annotated[str | None, Header()] = None) -> str:
    # async: FastAPI would run a plain def in a worker thread, a hop per request.
    if idempotency_key is None:
        raise InvalidGatewayRequest(
            "idempotency_key_missing", "the Idempotency-Key header is required"
        )
    return idempotency_key


IdempotencyKey = Annotated[str, Depends(_idempotency_key)]


class DroppedReply(Response):
    """A reply that is started and never finished: it promises a body by
    Content-Length and sends none, so the server closes the connection and the
    client sees it reset mid-reply, after the ledger has committed."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(b"content-type", b"application/json"), (b"content-length", b"512")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})


def create_app(
    ledger: SimulatorLedger | None = None,
    *,
    path: Path | None = None,
    notifier: Notifier | None = None,
) -> FastAPI:
    """The app over ``ledger``, or over a ledger of its own (kept in the SQLite
    file ``path`` if given), which it closes when it shuts down; ``notifier``
    tells the service of each authentication the customer decides."""
    book = ledger or SimulatorLedger(path=path)
    if notifier is not None:
        book.on_decided = notifier.send

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if notifier is not None:
            await notifier.aclose()
        if ledger is None:
            book.close()

    app = FastAPI(title="Gateway simulator", version="1", lifespan=lifespan)
    app.state.ledger = book

    @app.exception_handler(GatewayError)
    async def _gateway_error(request: Request, exc: GatewayError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid_body(request: Request, exc: RequestValidationError) -> Response:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])}: {error['msg']}"
            for error in exc.errors()
        )
        return _error(422, "invalid_request_error", "parameter_invalid", problems)

    @app.exception_handler(HTTPException)
    async def _http_error(request: Request, exc: HTTPException) -> Response:
        code = "resource_missing" if exc.status_code == 404 else "invalid_request"
        return _error(exc.status_code, "invalid_request_error", code, str(exc.detail))

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.post(
        "/v1/authorizations",
        response_model=GatewayOperation,
        responses={202: {"model": Authentication, "description": "the customer must act"}},
    )
    async def authorize(
        request: Request, body: AuthorizationRequest, key: IdempotencyKey
    ) -> Response:
        outcome = await book.run(
            lambda: book.authorize(
                reference=body.reference,
                amount=body.amount,
                currency=body.currency,
                payment_method=body.payment_method,
                idempotency_key=key,
                challenge_base=str(request.base_url),
                return_url=body.return_url,
            )
        )
        status = 202 if isinstance(outcome, Authentication) else 200
        return JSONResponse(outcome.model_dump(mode="json"), status_code=status)

    @app.get("/v1/authentications/{authentication_id}")
    async def read_authentication(authentication_id: str) -> Authentication:
        return book.authentication(authentication_id)

    @app.post("/v1/authentications/{authentication_id}/cancel")
    async def cancel_authentication(authentication_id: str, key: IdempotencyKey) -> Authentication:
        return await book.run(lambda: book.cancel_authentication(authentication_id))

    @app.get("/authenticate/{authentication_id}", response_class=HTMLResponse)
    async def challenge(authentication_id: str) -> Response:
        return _challenge_page(book.authentication(authentication_id))

    @app.post("/authenticate/{authentication_id}", response_class=HTMLResponse)
    async def decide(authentication_id: str, request: Request) -> Response:
        # A plain form post (no multipart parser needed): result=approve|fail.
        form = parse_qs((await request.body()).decode("utf-8", "replace"))
        result = (form.get("result") or [""])[0]
        if result not in ("approve", "fail"):
            return _error(
                422, "invalid_request_error", "parameter_invalid", "result: approve or fail"
            )
        decided = book.decide(authentication_id, approve=result == "approve")
        if decided.return_url:
            return RedirectResponse(decided.return_url, status_code=303)
        return _challenge_page(decided)

    @app.post("/v1/authorizations/{authorization_id}/capture")
    async def capture(
        authorization_id: str, body: AmountRequest, key: IdempotencyKey
    ) -> GatewayOperation:
        return await book.run(
            lambda: book.capture(
                authorization_id=authorization_id, amount=body.amount, idempotency_key=key
            )
        )

    @app.post("/v1/authorizations/{authorization_id}/void")
    async def void(authorization_id: str, key: IdempotencyKey) -> GatewayOperation:
        return await book.run(
            lambda: book.void(authorization_id=authorization_id, idempotency_key=key)
        )

    @app.post("/v1/authorizations/{authorization_id}/refunds")
    async def refund(
        authorization_id: str, body: AmountRequest, key: IdempotencyKey
    ) -> GatewayOperation:
        return await book.run(
            lambda: book.refund(
                authorization_id=authorization_id, amount=body.amount, idempotency_key=key
            )
        )

    @app.get("/v1/operations")
    async def list_operations(
        reference: str | None = None,
        since: AwareDatetime | None = None,
        until: AwareDatetime | None = None,
    ) -> OperationList:
        return OperationList(
            data=book.list_operations(reference=reference, since=since, until=until)
        )

    @app.get("/_ledger")
    async def read_ledger(reference: str | None = None) -> OperationList:
        return OperationList(data=book.ledger(reference))

    @app.get("/_faults")
    async def read_faults() -> Faults:
        return book.faults

    @app.put(
        "/_faults",
        openapi_extra={
            "requestBody": {"content": {"application/json": {"schema": Faults.model_json_schema()}}}
        },
    )
    async def set_faults(request: Request) -> Faults:
        # Read as JSON whatever the Content-Type: `curl -d '{...}'` must just work.
        try:
            faults = Faults.model_validate_json(await request.body())
        except ValidationError as err:
            raise RequestValidationError(err.errors(include_input=False)) from None
        book.faults = faults
        return faults

    @app.delete("/_faults")
    async def clear_faults() -> Faults:
        book.faults = Faults()
        return book.faults

    return app


def _challenge_page(authentication: Authentication) -> HTMLResponse:
    """The bank's page: what the customer confirms, and Approve / Fail while pending."""
    amount = format_amount(authentication.amount, authentication.currency)
    if authentication.status == "pending":
        body = (
            '<form method="post">'
            '<button name="result" value="approve" id="approve">Approve</button> '
            '<button name="result" value="fail" id="fail">Fail</button>'
            "</form>"
        )
    else:
        body = f'<p id="outcome">Authentication {html.escape(authentication.status)}.</p>'
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        "<title>Confirm with your bank</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:1rem 1.5rem}"
        "h1{font-size:1.1rem}button{font:inherit;padding:.4rem 1rem;margin-right:.5rem}</style>"
        "</head><body>"
        "<h1>Simulated bank: 3-D Secure</h1>"
        f"<p>Confirm the payment of {html.escape(amount)} "
        f"for {html.escape(authentication.reference)}.</p>"
        f"{body}</body></html>"
    )
    return HTMLResponse(page)


def _error_response(exc: GatewayError) -> Response:
    match exc:
        case ReplyDropped():
            return DroppedReply()
        case CardDeclined():
            return _error(402, "card_error", exc.code, exc.message, decline_code=exc.decline_code)
        case InvalidGatewayRequest():
            status = 409 if exc.code in CONFLICT_CODES else 400
            return _error(status, "invalid_request_error", exc.code, exc.message)
        case NotFound():
            return _error(404, "invalid_request_error", "resource_missing", str(exc))
        case _:
            return _error(503, "api_error", "service_unavailable", str(exc))


def _error(
    status: int, kind: str, code: str, message: str, *, decline_code: str | None = None
) -> JSONResponse:
    error: dict[str, str | None] = {"type": kind, "code": code, "message": message}
    if kind == "card_error":
        error["decline_code"] = decline_code
    return JSONResponse({"error": error}, status_code=status)
