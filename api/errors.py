"""The contract's error body, everywhere, and the handlers that make it: the
one place the service's domain errors (``payments.refusals.Refused``,
``payments.currencies.NotRepresentable``, a reconciliation run's
``RunFailed``, a card number refused by a request model) become HTTP answers.

    ApiError
    ├── InvalidRequest      400 / 404 / 409 / 413 / 422, ``invalid_request_error``
    ├── AuthenticationFailed  401, ``authentication_error``
    ├── IdempotencyConflict   409, ``idempotency_error``
    ├── RateLimited           429, ``rate_limit_error``, with ``Retry-After``
    │   └── TooManyStreams    429 for an event stream over its caps
    └── ServiceUnavailable    503, ``api_error``

No handler ever puts a stack trace, an input value or a card number in a body.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException
from temporalio.client import WorkflowUpdateRPCTimeoutOrCancelledError
from temporalio.service import RPCError, RPCStatusCode

from payments import refusals
from payments.currencies import NotRepresentable
from payments.models import CardDataRefused
from payments.reconciliation_service import RunFailed
from payments.refusals import Refusal, Refused

log = logging.getLogger("api")


class ApiError(Exception):
    status_code = 500
    type = "api_error"

    def __init__(self, code: str, message: str, param: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.param = param
        self.extra = extra

    def body(self) -> dict[str, Any]:
        return {
            "error": {
                "type": self.type,
                "code": self.code,
                "message": self.message,
                "param": self.param,
                **self.extra,
            }
        }

    def headers(self) -> dict[str, str] | None:
        return None


class InvalidRequest(ApiError):
    type = "invalid_request_error"

    def __init__(self, status_code: int, code: str, message: str, param: str | None = None):
        super().__init__(code, message, param)
        self.status_code = status_code


class AuthenticationFailed(ApiError):
    status_code = 401
    type = "authentication_error"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class IdempotencyConflict(ApiError):
    status_code = 409
    type = "idempotency_error"


class RateLimited(ApiError):
    status_code = 429
    type = "rate_limit_error"

    def __init__(self, retry_after: int, what: str = "requests for this merchant") -> None:
        super().__init__("rate_limited", f"too many {what}; retry in {retry_after} s")
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class TooManyStreams(RateLimited):
    # A slot frees when some stream ends: soon, or not for a while.
    RETRY_AFTER_SECONDS = 5

    def __init__(self, scope: str) -> None:
        super().__init__(retry_after=self.RETRY_AFTER_SECONDS)
        self.code = "too_many_streams"
        self.message = (
            f"too many event streams are open for this {scope}; close one, or retry in "
            f"{self.retry_after} s"
        )


class ServiceUnavailable(ApiError):
    status_code = 503

    def __init__(self, code: str, message: str, retry_after: int | None = None) -> None:
        super().__init__(code, message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str] | None:
        return None if self.retry_after is None else {"Retry-After": str(self.retry_after)}


# A payment's refusals (payments/refusals.py) as HTTP answers: the one table.
# Every code not named here is a conflict with the payment's state (409).
_REFUSAL_STATUS = {
    refusals.RESOURCE_MISSING: 404,
    refusals.URL_INVALID: 422,
    refusals.URL_NOT_ALLOWED: 422,
}


def refused(refusal: Refusal) -> ApiError:
    """The answer to a request the payment refused."""
    if refusal.code == refusals.IDEMPOTENCY_KEY_REUSED:
        return IdempotencyConflict(refusal.code, refusal.message)
    status = _REFUSAL_STATUS.get(refusal.code, 409)
    return InvalidRequest(status, refusal.code, refusal.message, refusal.param)


def not_found(what: str = "payment") -> InvalidRequest:
    return InvalidRequest(404, refusals.RESOURCE_MISSING, f"no such {what}", "id")


def unrepresentable(err: NotRepresentable) -> InvalidRequest:
    """An amount the configured gateway cannot hold exactly: nothing started."""
    return InvalidRequest(422, "amount_not_representable", str(err), "amount")


def card_refused(param: str | None) -> InvalidRequest:
    """A card number in a request: refused before anything is logged or
    started; the digits are not echoed."""
    return InvalidRequest(
        422,
        "card_number_refused",
        "card numbers must never be sent to this API; use a payment method token",
        param or None,
    )


def from_validation_error(err: ValidationError | RequestValidationError) -> InvalidRequest:
    """The first problem of a validation failure, without echoing the input."""
    first = err.errors()[0]
    cause = first.get("ctx", {}).get("error")
    if isinstance(cause, CardDataRefused):
        return card_refused(cause.param)
    loc = [str(part) for part in first.get("loc", ()) if part not in ("body", "query", "header")]
    param = ".".join(loc) or None
    kind = first.get("type", "")
    if kind == "json_invalid":
        return InvalidRequest(400, "invalid_json", "the request body is not valid JSON")
    if kind == "extra_forbidden":
        return InvalidRequest(422, "parameter_unknown", f"unknown parameter: {param}", param)
    if kind == "missing":
        return InvalidRequest(
            422, "parameter_missing", f"missing required parameter: {param}", param
        )
    message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
    return InvalidRequest(
        422, "parameter_invalid", f"{param}: {message}" if param else message, param
    )


def answer(exc: Exception) -> ApiError | None:
    """The HTTP answer to an error of the API or the service; None for any other."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, Refused):
        return refused(exc.refusal)
    if isinstance(exc, NotRepresentable):
        return unrepresentable(exc)
    if isinstance(exc, RunFailed):
        return ApiError("reconciliation_failed", str(exc))
    return None


def respond(error: ApiError) -> JSONResponse:
    return JSONResponse(error.body(), status_code=error.status_code, headers=error.headers())


def install(app: FastAPI) -> None:
    async def _domain(_: Request, exc: Exception) -> JSONResponse:
        error = answer(exc)
        assert error is not None, exc
        return respond(error)

    for domain_error in (ApiError, Refused, NotRepresentable, RunFailed):
        app.add_exception_handler(domain_error, _domain)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(from_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "resource_missing", 405: "method_not_allowed", 413: "body_too_large"}
        code = codes.get(exc.status_code, "invalid_request")
        message = "no such endpoint" if exc.status_code == 404 else str(exc.detail)
        error = InvalidRequest(exc.status_code, code, message)
        return JSONResponse(error.body(), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RPCError)
    async def _temporal(_: Request, exc: RPCError) -> JSONResponse:
        if exc.status in (RPCStatusCode.UNAVAILABLE, RPCStatusCode.DEADLINE_EXCEEDED):
            log.warning("Temporal unreachable: %s", exc.message)
            error: ApiError = ServiceUnavailable(
                "temporal_unavailable", "the payment engine is unreachable; retry shortly"
            )
        elif exc.status == RPCStatusCode.RESOURCE_EXHAUSTED:
            # A limit of Temporal's: its rate limits, or more than 10 updates in
            # flight on one payment. Both pass; the client should come back.
            log.warning("Temporal busy: %s", exc.message)
            error = ServiceUnavailable(
                "temporal_busy", "the payment engine is busy; retry shortly", retry_after=1
            )
        else:
            log.error("Temporal call failed: %s %s", exc.status, exc.message)
            error = ApiError("internal_error", "an internal error occurred")
        return respond(error)

    @app.exception_handler(WorkflowUpdateRPCTimeoutOrCancelledError)
    async def _update_timeout(_: Request, exc: Exception) -> JSONResponse:
        return respond(
            ServiceUnavailable(
                "temporal_timeout", "the payment engine did not answer in time; retry shortly"
            )
        )

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Card numbers are refused before anything else runs, so a traceback
        # here cannot quote one.
        log.exception("unhandled %s", type(exc).__name__)
        error = ApiError("internal_error", "an internal error occurred")
        return JSONResponse(error.body(), status_code=500)
