"""The ``Gateway`` port: what activities may ask of a payment gateway.

Every call carries an idempotency key; an adapter must make a repeated call
with the same key return the first call's outcome without committing again.
Amounts, both ways, are in the currency's ISO 4217 minor unit; an adapter whose
gateway counts otherwise converts (``payments.currencies``).

Lookups take hints, so an adapter that has to search for a payment need not
search the whole account: ``since`` (the payment was requested then; nothing
of it is older) and ``authorization_id`` (when the caller knows it already).
``authorize`` is told ``first_attempt`` when no earlier call with its key can
have reached the gateway, so an adapter that guards against servers ignoring
idempotency keys may skip looking for that earlier call's work. An adapter
that assigns the authorization's id before it is authorized may hand it to
``remember``; the caller passes it back as ``authorization_id`` on its next
attempt, so that attempt finds the earlier one's work without a search.

``replays_by_key`` says whether the gateway itself answers a repeated call
with the first one's outcome, authorize included, even when nothing of the
first call was kept on our side. Only then may authorize run as the fast
path's local attempt: a local activity has no heartbeat to carry an
authorization id, and one whose worker died runs again from nothing.

Customer action (3-D Secure, CONTRACT §14): ``authorize`` may answer with an
:class:`Authentication` instead of an operation: nothing is held yet, the
customer must first authenticate at its ``url``. ``authentication`` reads
where it stands (the authorization, once the customer approved, is one of the
payment's operations under the authorize key); ``cancel_authentication``
ends it if it is still pending and answers where it ended, so a payment that
stops waiting (its window closed, a cancel) never leaves the customer able
to authorize money nobody will capture.

Exceptions (the one place that says which gateway answers are which):

    GatewayError
    ├── PermanentGatewayError   retrying cannot help
    │   ├── CardDeclined        the issuer said no (code, decline_code), or the
    │   │                       card needs 3-D Secure, which we cannot perform
    │   │                       (authentication_required)
    │   ├── InvalidGatewayRequest  the gateway refused the request itself, or
    │   │                          our credentials (authentication_failed)
    │   └── NotFound            no such authorization / capture
    └── TransientGatewayError   timeouts, resets, 5xx, rate limits, a request
                                still in flight on the same key (Stripe's
                                409): retry

A permanent answer is ``expected`` when the payment's own facts explain it: a
decline, a capture the issuer refuses, an amount over what is left. Those are
business outcomes, and the worker logs each as one line. The rest are faults
of ours or the operator's that someone should look at, logged with their
traceback: ``NotFound`` (an authorization we hold that the gateway does not
know) and the ``InvalidGatewayRequest`` codes in ``OUR_FAULTS``.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal, Protocol

from pydantic import BaseModel


class GatewayError(Exception):
    """Base of all gateway failures."""


class PermanentGatewayError(GatewayError):
    """An answer that will be the same however often the call is retried."""

    expected = True


class CardDeclined(PermanentGatewayError):
    def __init__(self, code: str, decline_code: str | None, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.decline_code = decline_code
        self.message = message


# Refusals of a request that our code or configuration got wrong, whatever
# the payment: bad credentials, idempotency keys misused, a field left out.
OUR_FAULTS = frozenset(
    {
        "authentication_failed",
        "idempotency_key_reused",
        "idempotency_key_invalid",
        "parameter_missing",
    }
)


class InvalidGatewayRequest(PermanentGatewayError):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.expected = code not in OUR_FAULTS


class NotFound(PermanentGatewayError):
    """The referenced authorization or capture does not exist."""

    expected = False


class TransientGatewayError(GatewayError):
    """The outcome is unknown or the gateway is unavailable; retry with the same key."""


OperationKind = Literal["authorization", "capture", "void", "refund"]
AuthenticationStatus = Literal["pending", "succeeded", "failed", "canceled"]


class GatewayOperation(BaseModel):
    """One operation the gateway committed."""

    id: str
    kind: OperationKind
    amount: int
    currency: str
    reference: str
    idempotency_key: str
    authorization_id: str | None = None
    created_at: str


class Authentication(BaseModel):
    """A customer's authentication (3-D Secure) that an authorization waits on."""

    id: str
    status: AuthenticationStatus
    amount: int
    currency: str
    reference: str
    # Where the customer authenticates, while pending, and comes back to after.
    url: str | None = None
    return_url: str | None = None
    # Once succeeded: the authorization the gateway then made.
    authorization: GatewayOperation | None = None


class Gateway(Protocol):
    replays_by_key: bool

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
        """The authorization; or, when the card needs the customer to
        authenticate first, the pending :class:`Authentication` (the customer
        comes back to ``return_url`` when done)."""
        ...

    async def authentication(self, authentication_id: str) -> Authentication:
        """Where the customer's authentication stands."""
        ...

    async def cancel_authentication(
        self, authentication_id: str, *, idempotency_key: str
    ) -> Authentication:
        """End the authentication unless the customer already has: where it ended."""
        ...

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation: ...

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation: ...

    async def refund(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation: ...

    async def find_by_reference(
        self,
        reference: str,
        *,
        since: datetime | None = None,
        authorization_id: str | None = None,
    ) -> list[GatewayOperation]:
        """Every operation committed for our payment id, oldest first."""
        ...

    async def list_operations(self, *, since: datetime, until: datetime) -> list[GatewayOperation]:
        """Every operation committed in ``[since, until)``, oldest first (reconciliation)."""
        ...

    async def aclose(self) -> None: ...
