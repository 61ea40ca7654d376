"""The simulator's ledger: a PSP-like book of authorizations, captures, voids
and refunds, honouring idempotency keys, with faults that can be switched on.
Pure asyncio: :mod:`gateway.simulator.app` puts HTTP in front of it and
:mod:`gateway.memory` calls it directly.

It answers from memory. Given a file (:mod:`.store`), it starts from what the
file holds and writes every outcome there before answering, so a restart
forgets nothing; without one (the in-process tests) it lives in memory only.
The faults are never written: a restarted simulator starts with none.

Test payment methods are Stripe's (``pm_card_visa`` and any other ``pm_card_*``
or ``tok_*`` succeed; ``..._chargeDeclined``, ``..._chargeDeclinedInsufficientFunds``
and ``..._chargeDeclinedExpiredCard`` decline) plus one of ours,
``pm_card_captureFails``: it authorizes, then every capture is refused.
``pm_card_threeDSecure2Required`` needs the customer to authenticate (3-D
Secure, CONTRACT §14): authorize answers with a pending
:class:`~payments.gateway.Authentication`, and nothing is authorized until the
customer approves it (:meth:`SimulatorLedger.decide`), which commits the
authorization under the authorize call's idempotency key; a failed or
canceled authentication commits nothing.

Exceptions, besides the port's (:mod:`payments.gateway`):

    TransientGatewayError
    ├── GatewayUnavailable   a fault: refused with a 503, nothing committed
    └── ReplyDropped         a fault: the call was processed, the reply lost
"""

from __future__ import annotations

import asyncio
import random
import re
import secrets
import weakref
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, Field

from gateway.simulator.store import LedgerFile
from payments.cards import contains_card_number
from payments.gateway import (
    Authentication,
    AuthenticationStatus,
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    OperationKind,
    PermanentGatewayError,
    TransientGatewayError,
)

MAX_AMOUNT = 99_999_999
MAX_KEY_LENGTH = 255

# Declining test payment methods, by their name after ``pm_card_`` / ``tok_``:
# (code, decline_code, message) as Stripe reports them.
_DECLINES: dict[str, tuple[str, str, str]] = {
    "chargeDeclined": ("card_declined", "generic_decline", "Your card was declined."),
    "chargeDeclinedInsufficientFunds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "chargeDeclinedExpiredCard": ("expired_card", "expired_card", "Your card has expired."),
}
_CAPTURE_FAILS = "captureFails"
_THREE_D_SECURE = "threeDSecure2Required"

# Refusals caused by the state of the book rather than the shape of the
# request; the HTTP app answers them with 409 instead of 400.
CONFLICT_CODES = frozenset(
    {
        "idempotency_key_reused",
        "already_captured",
        "already_voided",
        "authorization_voided",
        "not_captured",
        "capture_refused",
        "authentication_closed",
    }
)

_PREFIXES: dict[OperationKind, str] = {
    "authorization": "auth",
    "capture": "cap",
    "void": "void",
    "refund": "re",
}


Answer = TypeVar("Answer")


class GatewayUnavailable(TransientGatewayError):
    """Injected by ``error_rate``: the call was refused before committing."""


class ReplyDropped(TransientGatewayError):
    """Injected by ``drop_reply_rate``: the call was processed, its reply lost."""


class Faults(BaseModel):
    """Faults injected into the PSP calls (not into lookups, which are how a
    caller recovers from them). The default injects none."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    error_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    drop_reply_rate: float = Field(default=0.0, ge=0.0, le=1.0)
    latency_ms: int = Field(default=0, ge=0, le=600_000)


class Fault(Enum):
    NONE = "none"
    UNAVAILABLE = "unavailable"
    DROP_REPLY = "drop_reply"


@dataclass
class _Authentication:
    """A customer's authentication and what approving it authorizes with."""

    authentication: Authentication
    # The authorize call's: the authorization, if approved, is committed under it.
    idempotency_key: str
    payment_method: str


@dataclass
class _Authorization:
    operation: GatewayOperation
    payment_method: str
    captured: int = 0
    voided: bool = False
    refunded: int = 0


@dataclass(frozen=True)
class _Reply:
    """The first outcome for an idempotency key and the request that made it."""

    request: tuple[object, ...]
    outcome: GatewayOperation | CardDeclined | Authentication


class SimulatorLedger:
    """The simulated PSP. Operations commit at most once per idempotency key.

    With ``path``, the book is that SQLite file's (created if missing): call
    :meth:`close` when done with it."""

    def __init__(
        self,
        *,
        rng: random.Random | None = None,
        clock: Callable[[], datetime] | None = None,
        path: Path | None = None,
    ) -> None:
        self.faults = Faults()
        self._rng = rng or random.Random()
        self._clock = clock or (lambda: datetime.now(UTC))
        self._entries: list[tuple[datetime, GatewayOperation]] = []
        self._authorizations: dict[str, _Authorization] = {}
        self._replies: dict[str, _Reply] = {}
        self._authentications: dict[str, _Authentication] = {}
        # Told of each authentication the customer decided (the HTTP app sends
        # the service a webhook).
        self.on_decided: Callable[[Authentication], None] | None = None
        # Weak, so a key's lock lives only while some call holds it.
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._file = LedgerFile(path) if path is not None else None
        if self._file is not None:
            self._load(self._file)

    def close(self) -> None:
        if self._file is not None:
            self._file.close()

    # -- the PSP calls ------------------------------------------------------

    async def authorize(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        challenge_base: str = "simulator:",
        return_url: str | None = None,
    ) -> GatewayOperation | Authentication:
        """The authorization, or the customer's authentication it waits on,
        whose page is ``<challenge_base>/authenticate/<id>``."""
        request = ("authorize", reference, amount, currency, payment_method)
        return await self._once(
            idempotency_key,
            request,
            lambda: self._authorize(
                reference,
                amount,
                currency,
                payment_method,
                idempotency_key,
                challenge_base,
                return_url,
            ),
            payment_method=payment_method,
        )

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        request = ("capture", authorization_id, amount)
        return _operation_only(
            await self._once(
                idempotency_key,
                request,
                lambda: self._capture(authorization_id, amount, idempotency_key),
            )
        )

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation:
        request = ("void", authorization_id)
        return _operation_only(
            await self._once(
                idempotency_key, request, lambda: self._void(authorization_id, idempotency_key)
            )
        )

    async def refund(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        request = ("refund", authorization_id, amount)
        return _operation_only(
            await self._once(
                idempotency_key,
                request,
                lambda: self._refund(authorization_id, amount, idempotency_key),
            )
        )

    async def cancel_authentication(self, authentication_id: str) -> Authentication:
        """End a pending authentication (the payment stopped waiting): where it
        ended. Idempotent by nature: a decided one is answered as it stands."""
        found = self.authentication(authentication_id)
        if found.status != "pending":
            return found
        return self._settle(found, "canceled", None)

    # -- the customer ---------------------------------------------------------

    def decide(self, authentication_id: str, *, approve: bool) -> Authentication:
        """The customer's answer on the challenge page: approving authorizes
        the payment (committed under the authorize call's key), failing
        commits nothing. Only a pending authentication can be decided."""
        found = self.authentication(authentication_id)
        if found.status != "pending":
            raise InvalidGatewayRequest(
                "authentication_closed",
                f"{authentication_id} is {found.status}; it can no longer be decided",
            )
        authorization = None
        if approve:
            key = self._authentications[authentication_id].idempotency_key
            authorization = self._operation(
                "authorization", found.amount, found.currency, found.reference, key
            )
        decided = self._settle(found, "succeeded" if approve else "failed", authorization)
        if self.on_decided is not None:
            self.on_decided(decided)
        return decided

    # -- lookups --------------------------------------------------------------

    def authentication(self, authentication_id: str) -> Authentication:
        try:
            return self._authentications[authentication_id].authentication
        except KeyError:
            raise NotFound(f"no such authentication: {authentication_id!r}") from None

    def list_operations(
        self,
        *,
        reference: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[GatewayOperation]:
        """Committed operations, oldest first, optionally for one reference and
        committed in ``[since, until)`` (timezone-aware datetimes)."""
        return [
            operation
            for at, operation in self._entries
            if (reference is None or operation.reference == reference)
            and (since is None or at >= since)
            and (until is None or at < until)
        ]

    def find_by_reference(self, reference: str) -> list[GatewayOperation]:
        return self.list_operations(reference=reference)

    def ledger(self, reference: str | None = None) -> list[GatewayOperation]:
        """What tests read: every committed operation, or one payment's."""
        return self.list_operations(reference=reference)

    # -- faults ---------------------------------------------------------------

    def roll(self) -> Fault:
        """Decide one call's fault under the current :attr:`faults`."""
        # Both numbers are drawn on every call so that a seeded Random gives
        # the same sequence of draws whatever the rates are.
        fail, drop = self._rng.random(), self._rng.random()
        if fail < self.faults.error_rate:
            return Fault.UNAVAILABLE
        if drop < self.faults.drop_reply_rate:
            return Fault.DROP_REPLY
        return Fault.NONE

    async def run(self, call: Callable[[], Awaitable[Answer]]) -> Answer:
        """Make one PSP call under the current faults: refuse it before
        committing, or process it and drop the reply, and answer after
        ``latency_ms`` either way."""
        fault = self.roll()
        latency = self.faults.latency_ms / 1000
        if fault is Fault.UNAVAILABLE:
            await asyncio.sleep(latency)
            raise GatewayUnavailable("simulated outage (error_rate): nothing was committed")
        outcome: Answer | PermanentGatewayError
        try:
            outcome = await call()
        except PermanentGatewayError as refusal:
            outcome = refusal
        # The wait comes after the commit, so a caller that gives up early is
        # left with an unknown outcome to resolve, as with a real PSP.
        await asyncio.sleep(latency)
        if fault is Fault.DROP_REPLY:
            raise ReplyDropped("simulated lost reply (drop_reply_rate): the call was processed")
        if isinstance(outcome, PermanentGatewayError):
            raise outcome
        return outcome

    # -- internals ------------------------------------------------------------

    async def _once(
        self,
        key: str,
        request: tuple[object, ...],
        decide: Callable[[], GatewayOperation | Authentication],
        *,
        payment_method: str | None = None,
    ) -> GatewayOperation | Authentication:
        if not key or len(key) > MAX_KEY_LENGTH:
            raise InvalidGatewayRequest(
                "idempotency_key_invalid",
                f"the idempotency key must be 1 to {MAX_KEY_LENGTH} characters",
            )
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            reply = self._replies.get(key)
            if reply is None:
                # Stands for the issuer round-trip. It is a suspension point,
                # which is why the replay check and the commit need the lock.
                await asyncio.sleep(0)
                outcome: GatewayOperation | CardDeclined | Authentication
                try:
                    outcome = decide()
                except CardDeclined as decline:
                    # A decline is an outcome: the same key replays it.
                    outcome = decline
                reply = _Reply(request, outcome)
                # Between decide() and the commit there is no await, so no
                # other call can change the authorization decide() checked:
                # that is why the file is written here, blocking the loop
                # for the few hundred microseconds a WAL commit takes,
                # rather than from a thread.
                if self._file is not None:
                    self._file.commit(key, request, outcome, payment_method)
                if isinstance(outcome, GatewayOperation):
                    self._apply(outcome, payment_method)
                elif isinstance(outcome, Authentication):
                    assert payment_method is not None
                    self._open(outcome, key, payment_method)
                self._replies[key] = reply
            elif reply.request != request:
                raise InvalidGatewayRequest(
                    "idempotency_key_reused",
                    f"idempotency key {key!r} was already used for a different request",
                )
        if isinstance(reply.outcome, CardDeclined):
            first = reply.outcome
            raise CardDeclined(first.code, first.decline_code, first.message)
        if isinstance(reply.outcome, Authentication):
            # Where it stands now: a repeated authorize learns the customer's answer.
            return self._authentications[reply.outcome.id].authentication
        return reply.outcome

    def _authorize(
        self,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        key: str,
        challenge_base: str,
        return_url: str | None,
    ) -> GatewayOperation | Authentication:
        if not reference:
            raise InvalidGatewayRequest("parameter_missing", "reference is required")
        _check_amount(amount, MAX_AMOUNT, "the largest amount")
        if not re.fullmatch(r"[a-z]{3}", currency):
            raise InvalidGatewayRequest(
                "invalid_currency", f"currency must be 3 lowercase letters, not {currency!r}"
            )
        if contains_card_number(payment_method):
            # Never echoed, and never written to the ledger's file.
            raise InvalidGatewayRequest(
                "resource_missing", "no such payment method: card numbers are not accepted"
            )
        if not payment_method.startswith(("pm_card_", "tok_")):
            raise InvalidGatewayRequest(
                "resource_missing", f"no such payment method: {payment_method!r}"
            )
        decline = _DECLINES.get(_test_card(payment_method))
        if decline is not None:
            raise CardDeclined(*decline)
        if _test_card(payment_method) == _THREE_D_SECURE:
            authentication_id = f"authn_{secrets.token_hex(12)}"
            return Authentication(
                id=authentication_id,
                status="pending",
                amount=amount,
                currency=currency,
                reference=reference,
                url=f"{challenge_base.rstrip('/')}/authenticate/{authentication_id}",
                return_url=return_url,
            )
        return self._operation("authorization", amount, currency, reference, key)

    def _capture(self, authorization_id: str, amount: int, key: str) -> GatewayOperation:
        authorization = self._authorization(authorization_id)
        if authorization.voided:
            raise InvalidGatewayRequest(
                "authorization_voided", f"{authorization_id} was voided; it cannot be captured"
            )
        if authorization.captured:
            raise InvalidGatewayRequest(
                "already_captured", f"{authorization_id} was already captured"
            )
        _check_amount(amount, authorization.operation.amount, "the authorized amount")
        if _test_card(authorization.payment_method) == _CAPTURE_FAILS:
            raise InvalidGatewayRequest(
                "capture_refused", f"the issuer refuses every capture of {authorization_id}"
            )
        return self._operation_on(authorization, "capture", amount, key)

    def _void(self, authorization_id: str, key: str) -> GatewayOperation:
        authorization = self._authorization(authorization_id)
        if authorization.captured:
            raise InvalidGatewayRequest(
                "already_captured", f"{authorization_id} was captured; refund it instead"
            )
        if authorization.voided:
            raise InvalidGatewayRequest("already_voided", f"{authorization_id} was already voided")
        return self._operation_on(authorization, "void", authorization.operation.amount, key)

    def _refund(self, authorization_id: str, amount: int, key: str) -> GatewayOperation:
        authorization = self._authorization(authorization_id)
        if not authorization.captured:
            raise InvalidGatewayRequest(
                "not_captured", f"{authorization_id} was not captured; nothing to refund"
            )
        remaining = authorization.captured - authorization.refunded
        _check_amount(amount, remaining, "the amount left to refund")
        return self._operation_on(authorization, "refund", amount, key)

    def _authorization(self, authorization_id: str) -> _Authorization:
        try:
            return self._authorizations[authorization_id]
        except KeyError:
            raise NotFound(f"no such authorization: {authorization_id!r}") from None

    def _operation_on(
        self, authorization: _Authorization, kind: OperationKind, amount: int, key: str
    ) -> GatewayOperation:
        basis = authorization.operation
        return self._operation(kind, amount, basis.currency, basis.reference, key, basis.id)

    def _operation(
        self,
        kind: OperationKind,
        amount: int,
        currency: str,
        reference: str,
        key: str,
        authorization_id: str | None = None,
    ) -> GatewayOperation:
        """The operation a call would commit; :meth:`_apply` commits it."""
        now = self._clock().astimezone(UTC)
        return GatewayOperation(
            id=f"{_PREFIXES[kind]}_{secrets.token_hex(12)}",
            kind=kind,
            amount=amount,
            currency=currency,
            reference=reference,
            idempotency_key=key,
            authorization_id=authorization_id,
            created_at=now.isoformat(timespec="microseconds").replace("+00:00", "Z"),
        )

    def _apply(self, operation: GatewayOperation, payment_method: str | None) -> None:
        """Enter a committed operation in the book: the one place its state changes."""
        if operation.kind == "authorization":
            assert payment_method is not None
            self._authorizations[operation.id] = _Authorization(operation, payment_method)
        else:
            assert operation.authorization_id is not None
            authorization = self._authorizations[operation.authorization_id]
            if operation.kind == "capture":
                authorization.captured = operation.amount
            elif operation.kind == "void":
                authorization.voided = True
            else:
                authorization.refunded += operation.amount
        self._entries.append((datetime.fromisoformat(operation.created_at), operation))

    def _open(self, authentication: Authentication, key: str, payment_method: str) -> None:
        """Enter a pending authentication, which authorizes under ``key`` if approved."""
        self._authentications[authentication.id] = _Authentication(
            authentication, key, payment_method
        )

    def _settle(
        self,
        authentication: Authentication,
        status: AuthenticationStatus,
        authorization: GatewayOperation | None,
    ) -> Authentication:
        """The one place an authentication is decided: written, then applied."""
        settled = authentication.model_copy(
            update={"status": status, "authorization": authorization, "url": None}
        )
        entry = self._authentications[authentication.id]
        if self._file is not None:
            self._file.settle(settled, entry.payment_method)
        if authorization is not None:
            self._apply(authorization, entry.payment_method)
        entry.authentication = settled
        return settled

    def _load(self, file: LedgerFile) -> None:
        for stored in file.operations():
            self._apply(stored.operation, stored.payment_method)
        committed = {operation.id: operation for _, operation in self._entries}
        for opened in file.authentications():
            authentication = opened.authentication
            if authentication.authorization is not None:
                authentication = authentication.model_copy(
                    update={"authorization": committed[authentication.authorization.id]}
                )
            self._open(authentication, opened.idempotency_key, opened.payment_method)
        for reply in file.replies():
            first = reply.outcome
            outcome: GatewayOperation | CardDeclined | Authentication
            if isinstance(first, str):
                outcome = committed[first]
            elif isinstance(first, Authentication):
                outcome = self._authentications[first.id].authentication
            else:
                outcome = first
            self._replies[reply.idempotency_key] = _Reply(reply.request, outcome)


def _operation_only(outcome: GatewayOperation | Authentication) -> GatewayOperation:
    # Only authorize answers with an authentication.
    assert isinstance(outcome, GatewayOperation)
    return outcome


def _test_card(payment_method: str) -> str:
    return payment_method.removeprefix("pm_card_").removeprefix("tok_")


def _check_amount(amount: int, limit: int, what: str) -> None:
    if amount < 1:
        raise InvalidGatewayRequest("amount_too_small", f"amount must be at least 1, not {amount}")
    if amount > limit:
        raise InvalidGatewayRequest(
            "amount_too_large", f"amount {amount} is more than {what} ({limit})"
        )
