"""``SimulatorGateway``: the ``Gateway`` port over HTTP to the gateway
simulator (:mod:`gateway.simulator.app`), one ``httpx.AsyncClient`` per adapter.

Answers map onto the port's exceptions: ``402`` is ``CardDeclined``; ``400``,
``409``, ``422`` and other refusals are ``InvalidGatewayRequest``; ``404`` is
``NotFound``; ``429``, ``5xx``, timeouts, connection and protocol errors are
``TransientGatewayError``, whose message says which. An authorize answered
``202`` is the customer's pending authentication (3-D Secure).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from payments.gateway import (
    Authentication,
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)

Reply = TypeVar("Reply", bound=BaseModel)
Pending = TypeVar("Pending", bound=BaseModel)


class _ErrorDetail(BaseModel):
    code: str = "unknown"
    message: str = ""
    decline_code: str | None = None


class _ErrorBody(BaseModel):
    error: _ErrorDetail


class _OperationList(BaseModel):
    data: list[GatewayOperation]


class SimulatorGateway:
    # The simulator keeps every key's first outcome (in its ledger file).
    replays_by_key = True

    def __init__(self, base_url: str, timeout: float) -> None:
        self._timeout = timeout
        self._client = httpx.AsyncClient(base_url=base_url, timeout=timeout)

    async def authorize(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        since: datetime | None = None,
        first_attempt: bool = False,
        authorization_id: str | None = None,
        remember: Callable[[str], None] | None = None,
        return_url: str | None = None,
    ) -> GatewayOperation | Authentication:
        # It honours idempotency keys and indexes by reference: the hints change nothing.
        body: dict[str, object] = {
            "reference": reference,
            "amount": amount,
            "currency": currency,
            "payment_method": payment_method,
        }
        if return_url is not None:
            # Only when there is one: a simulator from before 3-D Secure refuses the field.
            body["return_url"] = return_url
        request = self._keyed("/v1/authorizations", idempotency_key, body)
        return await self._send(request, GatewayOperation, pending=Authentication)

    async def authentication(self, authentication_id: str) -> Authentication:
        request = self._client.build_request(
            "GET", f"/v1/authentications/{quote(authentication_id, safe='')}"
        )
        return await self._send(request, Authentication)

    async def cancel_authentication(
        self, authentication_id: str, *, idempotency_key: str
    ) -> Authentication:
        path = f"/v1/authentications/{quote(authentication_id, safe='')}/cancel"
        return await self._send(self._keyed(path, idempotency_key, None), Authentication)

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        path = _on(authorization_id, "capture")
        return await self._post(path, idempotency_key, {"amount": amount})

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation:
        return await self._post(_on(authorization_id, "void"), idempotency_key, None)

    async def refund(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        path = _on(authorization_id, "refunds")
        return await self._post(path, idempotency_key, {"amount": amount})

    async def find_by_reference(
        self,
        reference: str,
        *,
        since: datetime | None = None,
        authorization_id: str | None = None,
    ) -> list[GatewayOperation]:
        request = self._client.build_request(
            "GET", "/v1/operations", params={"reference": reference}
        )
        return (await self._send(request, _OperationList)).data

    async def list_operations(self, *, since: datetime, until: datetime) -> list[GatewayOperation]:
        params = {"since": since.isoformat(), "until": until.isoformat()}
        request = self._client.build_request("GET", "/v1/operations", params=params)
        return (await self._send(request, _OperationList)).data

    async def aclose(self) -> None:
        await self._client.aclose()

    async def _post(
        self, path: str, idempotency_key: str, body: dict[str, object] | None
    ) -> GatewayOperation:
        return await self._send(self._keyed(path, idempotency_key, body), GatewayOperation)

    def _keyed(
        self, path: str, idempotency_key: str, body: dict[str, object] | None
    ) -> httpx.Request:
        """A POST under the idempotency key."""
        return self._client.build_request(
            "POST", path, json=body, headers={"Idempotency-Key": idempotency_key}
        )

    async def _send(
        self,
        request: httpx.Request,
        reply: type[Reply],
        *,
        pending: type[Pending] | None = None,
    ) -> Reply | Pending:
        """The reply; a ``202`` read as ``pending`` when given."""
        what = f"{request.method} {request.url.path}"
        try:
            response = await self._client.send(request)
        except httpx.TimeoutException as exc:
            raise TransientGatewayError(
                f"{what}: no answer within {self._timeout}s ({type(exc).__name__}); "
                "the outcome is unknown"
            ) from exc
        except httpx.TransportError as exc:
            raise TransientGatewayError(
                f"{what}: the connection failed ({type(exc).__name__}: {exc}); "
                "the outcome is unknown"
            ) from exc
        if not response.is_success:
            raise _refusal(what, response)
        try:
            if pending is not None and response.status_code == 202:
                return pending.model_validate_json(response.content)
            return reply.model_validate_json(response.content)
        except ValidationError as exc:
            # A 2xx we cannot read leaves the outcome as unknown as a reset does.
            raise TransientGatewayError(f"{what}: unreadable reply: {exc}") from exc


def _on(authorization_id: str, action: str) -> str:
    return f"/v1/authorizations/{quote(authorization_id, safe='')}/{action}"


def _refusal(what: str, response: httpx.Response) -> Exception:
    status = response.status_code
    try:
        error = _ErrorBody.model_validate_json(response.content).error
    except ValidationError:
        error = _ErrorDetail(message=response.text[:200])
    if status == 429 or status >= 500:
        return TransientGatewayError(f"{what}: HTTP {status} {error.code}: {error.message}")
    if status == 402:
        return CardDeclined(error.code, error.decline_code, error.message)
    if status == 404:
        return NotFound(f"{what}: {error.message}")
    return InvalidGatewayRequest(error.code, error.message)
