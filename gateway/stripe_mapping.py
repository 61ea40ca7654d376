"""Stripe's objects as the Stripe adapter reads them (PaymentIntent, Charge,
Refund) and the pure functions between them and the port: the metadata keys
the adapter writes, a PaymentIntent's status as an authorization or a refusal,
its and its Refunds' operations, and amounts both ways between Stripe's units
and our ISO minor units. No I/O: the client is
:class:`gateway.stripe_adapter.StripeGateway`.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from pydantic import BaseModel

from payments.currencies import NotRepresentable, from_gateway_units, to_gateway_units
from payments.gateway import (
    Authentication,
    AuthenticationStatus,
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    OperationKind,
    TransientGatewayError,
)

# Metadata keys the adapter writes on PaymentIntents and Refunds.
PAYMENT_ID = "payment_id"
IDEMPOTENCY_KEY = "idempotency_key"
CAPTURE_KEY = "capture_idempotency_key"
VOID_KEY = "void_idempotency_key"
AUTHORIZATION_ID = "authorization_id"
# How many of our refunds came before: orders refunds made within one second.
REFUND_SEQUENCE = "refund_sequence"

_RANK: dict[OperationKind, int] = {"authorization": 0, "capture": 1, "void": 2, "refund": 3}
# Refunds in these states moved no money.
_DEAD_REFUNDS = frozenset({"failed", "canceled"})


class _BalanceTransaction(BaseModel):
    id: str
    created: int


class _Charge(BaseModel):
    id: str
    amount: int
    created: int
    status: str
    amount_captured: int | None = None
    balance_transaction: _BalanceTransaction | str | None = None


class _PaymentError(BaseModel):
    code: str | None = None
    decline_code: str | None = None
    message: str | None = None


# Stripe's code for a payment whose customer failed 3-D Secure.
AUTHENTICATION_FAILURE = "payment_intent_authentication_failure"


class _RedirectToUrl(BaseModel):
    url: str | None = None
    return_url: str | None = None


class _NextAction(BaseModel):
    type: str
    redirect_to_url: _RedirectToUrl | None = None


class Intent(BaseModel):
    id: str
    amount: int
    currency: str
    status: str
    created: int
    metadata: dict[str, str] = {}
    latest_charge: _Charge | None = None
    # Absent on localstripe, which has neither field.
    amount_received: int | None = None
    canceled_at: int | None = None
    last_payment_error: _PaymentError | None = None
    next_action: _NextAction | None = None

    @property
    def authorized(self) -> bool:
        """The card was authorized, whatever happened after (capture, cancel)."""
        return self.latest_charge is not None and self.latest_charge.status == "succeeded"


class Refund(BaseModel):
    id: str
    amount: int
    currency: str
    created: int
    status: str | None = None
    charge: str | None = None
    payment_intent: str | None = None
    metadata: dict[str, str] = {}

    @property
    def ours(self) -> bool:
        """Made by this adapter (not, say, localstripe releasing an uncaptured rest)."""
        return IDEMPOTENCY_KEY in self.metadata

    @property
    def live(self) -> bool:
        return self.status not in _DEAD_REFUNDS

    @property
    def order(self) -> tuple[int, int]:
        sequence = self.metadata.get(REFUND_SEQUENCE, "")
        return self.created, int(sequence) if sequence.isdigit() else 0


# -- Stripe objects to operations ---------------------------------------------


def authorization_outcome(intent: Intent) -> GatewayOperation | Authentication | None:
    """The authorization the PaymentIntent holds, or the customer's
    authentication it waits on; ``None`` while it still needs confirming;
    raises when it will never hold one."""
    if intent.authorized:
        return intent_operations(intent, [])[0]
    match intent.status:
        case "requires_confirmation":
            return None
        case "requires_payment_method":
            error = intent.last_payment_error
            if error is None:
                return None
            # Declined before: answer the same again rather than charge again.
            raise CardDeclined(
                error.code or "card_declined",
                error.decline_code,
                error.message or "Your card was declined.",
            )
        case "requires_action":
            return authentication_of(intent)
        case "processing":
            raise TransientGatewayError(f"{intent.id} is still processing")
        case "canceled":
            raise InvalidGatewayRequest(
                "payment_intent_canceled", f"{intent.id} was canceled before it was authorized"
            )
    raise TransientGatewayError(f"{intent.id} is in an unexpected state: {intent.status}")


def authentication_of(intent: Intent) -> Authentication:
    """The PaymentIntent as the customer's authentication (3-D Secure): pending
    while it ``requires_action``; canceled once canceled (even if it had been
    authorized: the cancel voided that); succeeded once authorized; failed
    when the customer failed it. A card declined after the customer
    authenticated raises that decline."""
    redirect = intent.next_action.redirect_to_url if intent.next_action else None
    error = intent.last_payment_error
    status: AuthenticationStatus
    if intent.status == "canceled":
        status = "canceled"
    elif intent.authorized:
        status = "succeeded"
    elif intent.status == "requires_action":
        status = "pending"
    elif error is not None and error.code == AUTHENTICATION_FAILURE:
        status = "failed"
    elif intent.status == "requires_payment_method" and error is not None:
        raise CardDeclined(
            error.code or "card_declined",
            error.decline_code,
            error.message or "Your card was declined.",
        )
    else:
        raise TransientGatewayError(f"{intent.id} is {intent.status}: no authentication to read")
    return Authentication(
        id=intent.id,
        status=status,
        amount=from_stripe(intent.amount, intent.currency),
        currency=intent.currency,
        reference=intent.metadata.get(PAYMENT_ID, ""),
        url=redirect.url if redirect and status == "pending" else None,
        return_url=redirect.return_url if redirect else None,
        authorization=intent_operations(intent, [])[0] if status == "succeeded" else None,
    )


def intent_operations(intent: Intent, refunds: list[Refund]) -> list[GatewayOperation]:
    """Authorization, capture and void of one PaymentIntent; ``refunds`` are
    its charge's (needed on localstripe to tell the captured amount)."""
    charge = intent.latest_charge
    if charge is None or not intent.authorized:
        return []
    reference = intent.metadata.get(PAYMENT_ID, "")

    def operation(
        kind: OperationKind, id: str, amount: int, key: str, created: int
    ) -> GatewayOperation:
        return GatewayOperation(
            id=id,
            kind=kind,
            amount=from_stripe(amount, intent.currency),
            currency=intent.currency,
            reference=reference,
            idempotency_key=key,
            authorization_id=None if kind == "authorization" else intent.id,
            created_at=_iso(created),
        )

    operations = [
        operation(
            "authorization",
            intent.id,
            intent.amount,
            intent.metadata.get(IDEMPOTENCY_KEY, ""),
            charge.created,
        )
    ]
    if intent.status == "succeeded":
        captured_at = charge.created
        if isinstance(charge.balance_transaction, _BalanceTransaction):
            captured_at = charge.balance_transaction.created
        operations.append(
            operation(
                "capture",
                charge.id,
                captured_amount(intent, refunds),
                intent.metadata.get(CAPTURE_KEY, ""),
                captured_at,
            )
        )
    elif intent.status == "canceled":
        # localstripe records no cancellation time: date it at the authorization.
        operations.append(
            operation(
                "void",
                f"{intent.id}:void",
                intent.amount,
                intent.metadata.get(VOID_KEY, ""),
                intent.canceled_at or charge.created,
            )
        )
    return operations


def captured_amount(intent: Intent, refunds: list[Refund]) -> int:
    charge = intent.latest_charge
    if intent.status != "succeeded" or charge is None:
        return 0
    if intent.amount_received is not None:
        return intent.amount_received
    if charge.amount_captured is not None:
        return charge.amount_captured
    # localstripe: a partial capture releases the rest as a refund without our metadata.
    released = sum(r.amount for r in refunds if r.charge == charge.id and not r.ours)
    return charge.amount - released


def refund_operation(refund: Refund) -> GatewayOperation | None:
    """A refund this service made and that moved money; ``None`` otherwise."""
    if not refund.ours or not refund.live:
        return None
    return GatewayOperation(
        id=refund.id,
        kind="refund",
        amount=from_stripe(refund.amount, refund.currency),
        currency=refund.currency,
        reference=refund.metadata.get(PAYMENT_ID, ""),
        idempotency_key=refund.metadata[IDEMPOTENCY_KEY],
        authorization_id=refund.payment_intent or refund.metadata.get(AUTHORIZATION_ID),
        created_at=_iso(refund.created),
    )


def in_order(operations: Iterable[GatewayOperation]) -> list[GatewayOperation]:
    # Stripe dates to the second: within one, the steps' own order decides.
    return sorted(operations, key=lambda op: (op.created_at, _RANK[op.kind]))


def _iso(timestamp: int) -> str:
    at = datetime.fromtimestamp(timestamp, UTC)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


# -- amounts --------------------------------------------------------------------


def to_stripe(amount: int, currency: str) -> int:
    """Our ISO minor units in Stripe's (the API refused the rest already)."""
    try:
        return to_gateway_units(amount, currency, "stripe")
    except NotRepresentable as err:
        raise InvalidGatewayRequest("amount_not_representable", str(err)) from None


def from_stripe(amount: int, currency: str) -> int:
    """An amount Stripe reports, in our ISO minor units."""
    try:
        return from_gateway_units(amount, currency, "stripe")
    except NotRepresentable as err:
        raise InvalidGatewayRequest("amount_not_representable", str(err)) from None
