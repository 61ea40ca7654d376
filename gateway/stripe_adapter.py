"""``StripeGateway``: the ``Gateway`` port on Stripe's PaymentIntents through the
official ``stripe`` SDK (its async methods over httpx), one client per adapter.

How the port maps onto Stripe:

- an authorization is a PaymentIntent with ``capture_method=manual`` (its id is
  the authorization id), created unconfirmed and then confirmed as a separate,
  state-checked step;
- a capture is its capture (partial: ``amount_to_capture``), a void is its
  cancellation, a refund is a Refund on it;
- every PaymentIntent carries ``metadata.payment_id`` (our reference) and
  ``metadata.idempotency_key``; capture and void record their key in its
  metadata just before they act; every Refund carries
  ``metadata.idempotency_key``.

Every call sends an ``Idempotency-Key`` (Stripe honours them for 24 hours), but
nothing here relies on it, because Stripe-compatible servers such as localstripe
ignore the header. Instead each step reads the gateway's state first: a retried
authorize finds the PaymentIntent an earlier attempt made and confirms it only
if it still needs it; capture and void act only on ``requires_capture`` and
replay their own earlier outcome; refund looks for a Refund already made with
its key. So a retried activity never charges, captures or refunds twice. The
SDK's own retries are off (``max_network_retries=0``): retrying is the
activity's job, and each retry starts with that read.

Amounts are converted both ways by Stripe's currency table
(``payments.currencies``, the table the API refuses by): every amount sent
(authorize, capture, refund, the over-refund bound) and every amount read back
(operations, lookups, ``list_operations``), so the service and reconciliation
only ever see ISO minor units. An amount with no exact Stripe equivalent is
``InvalidGatewayRequest("amount_not_representable")``; the API refuses those
before anything starts.

Finding a payment's PaymentIntent costs a flat number of requests, however
large the account:

- ``authorize`` on its ``first_attempt`` creates at once: no earlier call with
  its key reached Stripe, so there is nothing to look for. It hands the new
  PaymentIntent's id to ``remember`` before confirming; the authorize activity
  turns that into an activity heartbeat with details, and its next attempt
  passes it back as ``authorization_id``, so a retry after a failed or
  unanswered confirm retrieves that PaymentIntent (one request) instead of
  searching. (A callback keeps Temporal out of this module: the port is the
  boundary.)
- ``find_by_reference`` with ``authorization_id`` retrieves that PaymentIntent
  and lists its refunds (two requests).
- Without an id (a retry after create's own reply was lost, a void by
  reference after authorize gave up, reconciliation of a payment that never
  got an authorization), PaymentIntents are listed and filtered on
  ``metadata.payment_id`` here, bounded by ``created[gte]`` = ``since`` minus
  five minutes (our clock may run ahead of Stripe's; missing our own
  PaymentIntent would mean a second authorization hold on the card): one
  request per 100 PaymentIntents the account created since the payment was.
  A server that refuses the ``created`` filter (localstripe) is listed whole,
  oldest first, and filtered here; only this path ever lists the account.
  Stripe's search API is not used: it is eventually consistent, so a miss
  proves nothing about the PaymentIntent created seconds ago, which is exactly
  the one a retry looks for, and the listing would still be needed after it.

Of a reference's PaymentIntents, an authorize retry takes the one made with
its own idempotency key: another key is another instance of the payment
(``payments.ids``), not a duplicate. ``list_operations`` lists PaymentIntents
and Refunds with ``created`` filters; a server that refuses them is listed
whole and filtered here.
Likewise PaymentIntents are limited to cards with the SDK's
``allowed_payment_method_types``, or, once a server refuses that, with the
older ``payment_method_types`` localstripe knows.

Gateway answers map onto the port's exceptions in :func:`translate_error`, the
one place: card errors are ``CardDeclined``; 429, 5xx, 409, connection errors
and timeouts are ``TransientGatewayError``; authentication and permission
errors, and other invalid requests, are ``InvalidGatewayRequest`` (a missing
PaymentIntent is ``NotFound``). A PaymentIntent that needs 3-D Secure, which a
server-side integration cannot perform, is ``CardDeclined`` with
``authentication_required``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

import stripe
from pydantic import BaseModel, ValidationError

from payments.currencies import NotRepresentable, from_gateway_units, to_gateway_units
from payments.gateway import (
    CardDeclined,
    GatewayError,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    OperationKind,
    TransientGatewayError,
)
from payments.settings import Settings

if TYPE_CHECKING:
    from stripe.params import (
        PaymentIntentConfirmParams,
        PaymentIntentCreateParams,
        PaymentIntentListParams,
        RefundListParams,
    )

_PAYMENT_ID = "payment_id"
_KEY = "idempotency_key"
_CAPTURE_KEY = "capture_idempotency_key"
_VOID_KEY = "void_idempotency_key"
_AUTHORIZATION_ID = "authorization_id"
# How many of our refunds came before: orders refunds made within one second.
_SEQUENCE = "refund_sequence"

_PAGE_SIZE = 100
# Lookups by reference start this long before the payment was requested, in
# case our clock runs ahead of Stripe's (see the module's docstring).
_CLOCK_SKEW = timedelta(minutes=5)
# Capture time is the balance transaction's; the charge alone dates the authorization.
_EXPAND = ["latest_charge.balance_transaction"]
_EXPAND_LIST = ["data.latest_charge.balance_transaction"]
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


class _Intent(BaseModel):
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

    @property
    def authorized(self) -> bool:
        """The card was authorized, whatever happened after (capture, cancel)."""
        return self.latest_charge is not None and self.latest_charge.status == "succeeded"


class _Refund(BaseModel):
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
        return _KEY in self.metadata

    @property
    def live(self) -> bool:
        return self.status not in _DEAD_REFUNDS

    @property
    def order(self) -> tuple[int, int]:
        sequence = self.metadata.get(_SEQUENCE, "")
        return self.created, int(sequence) if sequence.isdigit() else 0


class _HTTPXClient(stripe.HTTPXClient):
    """The SDK's httpx client, sending the form body as ``content=``: the SDK
    passes it as ``data=<str>``, which httpx deprecates with a warning on every
    POST (and the warning, under ``-W error``, becomes a connection error)."""

    def _get_request_args_kwargs(
        self, method: str, url: str, headers: Mapping[str, str], post_data: object
    ) -> Any:
        args, kwargs = super()._get_request_args_kwargs(method, url, headers, post_data)
        body = kwargs.pop("data", None)
        if body:
            kwargs["content"] = body
        return [args, kwargs]


class StripeGateway:
    def __init__(self, settings: Settings) -> None:
        self._http = _HTTPXClient(timeout=settings.gateway_timeout_seconds)
        self._stripe = stripe.StripeClient(
            settings.stripe_api_key.get_secret_value(),
            base_addresses={"api": str(settings.stripe_api_base).rstrip("/")},
            http_client=self._http,
            max_network_retries=0,
        )
        # Captures and voids come up to an authorization window after the
        # PaymentIntent was created: list_operations looks back that far.
        self._lookback = settings.authorization_window
        # What the server understands, learnt on first refusal: localstripe
        # neither filters lists by ``created`` nor knows the parameter
        # ``allowed_payment_method_types`` of the SDK's API version.
        self._filters_by_created = True
        self._allowed_types_param = True

    # -- the port -------------------------------------------------------------

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
    ) -> GatewayOperation:
        _check_amount(amount)
        stripe_amount = _to_stripe(amount, currency)
        intent = None
        if not first_attempt:
            # An earlier attempt may have created it, its reply lost or its confirm failed.
            intent = await self._intent_for(
                reference, stripe_amount, currency, idempotency_key, since, authorization_id
            )
        if intent is None:
            intent = await self._create_intent(
                reference, stripe_amount, currency, payment_method, idempotency_key
            )
        if remember is not None:
            remember(intent.id)
        authorization = _authorization_outcome(intent)
        if authorization is not None:
            return authorization
        with _answers("confirm PaymentIntent", intent_id=intent.id):
            confirmed = await self._stripe.v1.payment_intents.confirm_async(
                intent.id,
                params=_confirm_params(intent, payment_method),
                options={"idempotency_key": f"{idempotency_key}:confirm"},
            )
            intent = _Intent.model_validate(confirmed.to_dict())
        authorization = _authorization_outcome(intent)
        if authorization is None:
            raise TransientGatewayError(f"{intent.id} is still {intent.status} after confirming")
        return authorization

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        intent = await self._retrieve(authorization_id)
        if intent.status == "requires_capture":
            _check_amount(
                amount, _from_stripe(intent.amount, intent.currency), "the authorized amount"
            )
            to_capture = _to_stripe(amount, intent.currency)
            await self._mark(intent.id, _CAPTURE_KEY, idempotency_key)
            with _answers("capture PaymentIntent", intent_id=intent.id):
                captured = await self._stripe.v1.payment_intents.capture_async(
                    intent.id,
                    params={"amount_to_capture": to_capture, "expand": _EXPAND},
                    options={"idempotency_key": idempotency_key},
                )
                intent = _Intent.model_validate(captured.to_dict())
        elif intent.status == "canceled":
            raise InvalidGatewayRequest(
                "authorization_voided", f"{intent.id} was voided; it cannot be captured"
            )
        elif intent.status != "succeeded":
            raise _not_authorized(intent)
        capture = _find(await self._operations_of(intent), "capture")
        return _replay(capture, idempotency_key, amount, "already_captured", intent.id)

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation:
        intent = await self._retrieve(authorization_id)
        if intent.status == "requires_capture":
            await self._mark(intent.id, _VOID_KEY, idempotency_key)
            with _answers("cancel PaymentIntent", intent_id=intent.id):
                canceled = await self._stripe.v1.payment_intents.cancel_async(
                    intent.id,
                    params={"expand": _EXPAND},
                    options={"idempotency_key": idempotency_key},
                )
                intent = _Intent.model_validate(canceled.to_dict())
        elif intent.status == "succeeded":
            raise InvalidGatewayRequest(
                "already_captured", f"{intent.id} was captured; refund it instead"
            )
        elif intent.status != "canceled" or not intent.authorized:
            raise _not_authorized(intent)
        void = _find(_intent_operations(intent, []), "void")
        return _replay(void, idempotency_key, None, "already_voided", intent.id)

    async def refund(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        intent = await self._retrieve(authorization_id)
        if intent.status != "succeeded":
            raise InvalidGatewayRequest(
                "not_captured", f"{intent.id} is {intent.status}, not captured; nothing to refund"
            )
        refunds = await self._refunds_of(intent)
        for earlier in refunds:
            if earlier.metadata.get(_KEY) == idempotency_key:
                # Made by an earlier attempt whose answer we never saw.
                if not earlier.live:
                    raise InvalidGatewayRequest(
                        "refund_failed", f"refund {earlier.id} of {intent.id} is {earlier.status}"
                    )
                operation = _refund_operation(earlier)
                return _replay(
                    operation, idempotency_key, amount, "idempotency_key_reused", intent.id
                )
        ours = [r for r in refunds if r.ours]
        refunded = sum(r.amount for r in ours if r.live)
        captured = _captured_amount(intent, refunds)
        # The payment's bookkeeping bounds refunds already; this bound is for
        # servers that accept over-refunds (localstripe does).
        left = _from_stripe(captured - refunded, intent.currency)
        _check_amount(amount, left, "the amount left to refund")
        to_refund = _to_stripe(amount, intent.currency)
        with _answers("create Refund", intent_id=intent.id):
            created = await self._stripe.v1.refunds.create_async(
                params={
                    "payment_intent": intent.id,
                    "amount": to_refund,
                    "metadata": {
                        _PAYMENT_ID: intent.metadata.get(_PAYMENT_ID, ""),
                        _KEY: idempotency_key,
                        _AUTHORIZATION_ID: intent.id,
                        _SEQUENCE: str(len(ours)),
                    },
                },
                options={"idempotency_key": idempotency_key},
            )
            operation = _refund_operation(_Refund.model_validate(created.to_dict()))
        if operation is None:
            raise TransientGatewayError(f"refund of {intent.id}: the reply is not a live refund")
        return operation

    async def find_by_reference(
        self,
        reference: str,
        *,
        since: datetime | None = None,
        authorization_id: str | None = None,
    ) -> list[GatewayOperation]:
        if authorization_id is not None:
            known = await self._retrieve_ours(authorization_id, reference)
            if known is not None:
                return await self._operations_of(known)
        operations: list[GatewayOperation] = []
        for intent in await self._intents_for(reference, since):
            operations.extend(await self._operations_of(intent))
        return _in_order(operations)

    async def list_operations(self, *, since: datetime, until: datetime) -> list[GatewayOperation]:
        end = math.ceil(until.timestamp())
        intents = await self._list_intents(math.floor((since - self._lookback).timestamp()), end)
        refunds = await self._list_refunds((math.floor(since.timestamp()), end))
        by_charge: dict[str, list[_Refund]] = {}
        for refund in refunds:
            by_charge.setdefault(refund.charge or "", []).append(refund)
        operations: list[GatewayOperation] = []
        for intent in intents:
            if _PAYMENT_ID not in intent.metadata:
                continue  # not made by this service
            charge = intent.latest_charge.id if intent.latest_charge else ""
            operations.extend(_intent_operations(intent, by_charge.get(charge, [])))
        operations.extend(op for r in refunds if (op := _refund_operation(r)) is not None)
        return _in_order(
            op for op in operations if since <= datetime.fromisoformat(op.created_at) < until
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- reading Stripe -------------------------------------------------------

    async def _retrieve(self, intent_id: str) -> _Intent:
        with _answers("retrieve PaymentIntent", intent_id=intent_id):
            found = await self._stripe.v1.payment_intents.retrieve_async(
                intent_id, params={"expand": _EXPAND}
            )
            return _Intent.model_validate(found.to_dict())

    async def _retrieve_ours(self, intent_id: str, reference: str) -> _Intent | None:
        """The PaymentIntent a hint names, if it exists and is this reference's."""
        try:
            intent = await self._retrieve(intent_id)
        except NotFound:
            return None
        return intent if intent.metadata.get(_PAYMENT_ID) == reference else None

    async def _intents_for(self, reference: str, since: datetime | None) -> list[_Intent]:
        """The reference's PaymentIntents created since ``since`` (all when None)."""
        after = None if since is None else math.floor((since - _CLOCK_SKEW).timestamp())
        intents = await self._list_intents(after)
        return [intent for intent in intents if intent.metadata.get(_PAYMENT_ID) == reference]

    async def _intent_for(
        self,
        reference: str,
        stripe_amount: int,
        currency: str,
        idempotency_key: str,
        since: datetime | None,
        known_id: str | None,
    ) -> _Intent | None:
        """The PaymentIntent an earlier attempt made with this key, if any: the
        one it remembered, else the first the reference's lookup finds."""
        intent = None if known_id is None else await self._retrieve_ours(known_id, reference)
        if intent is None or intent.metadata.get(_KEY) != idempotency_key:
            # Another key of the same reference is another instance of the payment's.
            intent = next(
                (
                    found
                    for found in await self._intents_for(reference, since)
                    if found.metadata.get(_KEY) == idempotency_key
                ),
                None,
            )
        if intent is None:
            return None
        if (intent.amount, intent.currency) != (stripe_amount, currency):
            raise InvalidGatewayRequest(
                "idempotency_key_reused",
                f"idempotency key {idempotency_key!r} was already used for a different request",
            )
        return intent

    async def _list_intents(self, since: int | None, until: int | None = None) -> list[_Intent]:
        """PaymentIntents created from ``since`` to before ``until`` (seconds;
        unbounded where ``None``), oldest first."""
        params: PaymentIntentListParams = {"limit": _PAGE_SIZE, "expand": _EXPAND_LIST}
        window: tuple[int | None, int | None] = (since, until)
        if since is not None and self._filters_by_created:
            params["created"] = {"gte": since} if until is None else {"gte": since, "lt": until}
        intents: list[_Intent] = []
        with _answers("list PaymentIntents"):
            try:
                page = await self._stripe.v1.payment_intents.list_async(params)
            except stripe.InvalidRequestError as err:
                if "created" not in params or not _refused(err, "created"):
                    raise
                self._filters_by_created = False
                del params["created"]
                page = await self._stripe.v1.payment_intents.list_async(params)
            async for item in page.auto_paging_iter():
                intents.append(_Intent.model_validate(item.to_dict()))
        return sorted((i for i in intents if _within(i.created, window)), key=lambda i: i.created)

    async def _list_refunds(self, window: tuple[int, int]) -> list[_Refund]:
        """Refunds on every PaymentIntent created in the ``window``, oldest first."""
        params: RefundListParams = {"limit": _PAGE_SIZE}
        # Asked after _list_intents, which has learnt whether the server filters.
        if self._filters_by_created:
            params["created"] = {"gte": window[0], "lt": window[1]}
        refunds: list[_Refund] = []
        with _answers("list Refunds"):
            page = await self._stripe.v1.refunds.list_async(params)
            async for item in page.auto_paging_iter():
                refunds.append(_Refund.model_validate(item.to_dict()))
        return sorted((r for r in refunds if _within(r.created, window)), key=lambda r: r.order)

    async def _refunds_of(self, intent: _Intent) -> list[_Refund]:
        if intent.latest_charge is None:
            return []  # never charged: nothing to refund (and localstripe fails the list)
        refunds: list[_Refund] = []
        with _answers("list Refunds", intent_id=intent.id):
            page = await self._stripe.v1.refunds.list_async(
                params={"payment_intent": intent.id, "limit": _PAGE_SIZE}
            )
            async for item in page.auto_paging_iter():
                refunds.append(_Refund.model_validate(item.to_dict()))
        return sorted(refunds, key=lambda r: r.order)

    async def _operations_of(self, intent: _Intent) -> list[GatewayOperation]:
        refunds = await self._refunds_of(intent) if intent.status == "succeeded" else []
        operations = _intent_operations(intent, refunds)
        operations.extend(op for r in refunds if (op := _refund_operation(r)) is not None)
        return _in_order(operations)

    # -- writing Stripe -------------------------------------------------------

    async def _create_intent(
        self,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> _Intent:
        """A PaymentIntent for manual capture, unconfirmed: confirming is the next step."""
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": currency,
            "payment_method": payment_method,
            "capture_method": "manual",
            "metadata": {_PAYMENT_ID: reference, _KEY: idempotency_key},
            "expand": _EXPAND,
        }
        # Cards only: other types may redirect, which a server-side confirm cannot follow.
        if self._allowed_types_param:
            params["allowed_payment_method_types"] = ["card"]
        else:
            # The older name, which localstripe knows; the SDK's types no longer do.
            cast(dict[str, object], params)["payment_method_types"] = ["card"]
        with _answers("create PaymentIntent"):
            try:
                created = await self._stripe.v1.payment_intents.create_async(
                    params, {"idempotency_key": idempotency_key}
                )
            except stripe.InvalidRequestError as err:
                if not self._allowed_types_param or not _refused(
                    err, "allowed_payment_method_types"
                ):
                    raise
                # Refused while validating: nothing was created, so asking again is safe.
                self._allowed_types_param = False
                return await self._create_intent(
                    reference, amount, currency, payment_method, idempotency_key
                )
            return _Intent.model_validate(created.to_dict())

    async def _mark(self, intent_id: str, field: str, idempotency_key: str) -> None:
        """Record the key of the step about to act, so a retry can tell its own
        earlier outcome from someone else's (Stripe's capture and cancel take
        no metadata, localstripe's none at all)."""
        with _answers("update PaymentIntent", intent_id=intent_id):
            await self._stripe.v1.payment_intents.update_async(
                intent_id,
                params={"metadata": {field: idempotency_key}},
                options={"idempotency_key": f"{idempotency_key}:mark"},
            )


# -- Stripe objects to operations ---------------------------------------------


def _authorization_outcome(intent: _Intent) -> GatewayOperation | None:
    """The authorization the PaymentIntent holds; ``None`` while it still needs
    confirming; raises when it will never hold one."""
    if intent.authorized:
        return _intent_operations(intent, [])[0]
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
            raise CardDeclined(
                "authentication_required",
                "authentication_required",
                "The card requires authentication (3-D Secure), "
                "which this server-side integration cannot perform.",
            )
        case "processing":
            raise TransientGatewayError(f"{intent.id} is still processing")
        case "canceled":
            raise InvalidGatewayRequest(
                "payment_intent_canceled", f"{intent.id} was canceled before it was authorized"
            )
    raise TransientGatewayError(f"{intent.id} is in an unexpected state: {intent.status}")


def _confirm_params(intent: _Intent, payment_method: str) -> PaymentIntentConfirmParams:
    if intent.status == "requires_payment_method":
        # Stripe detaches the payment method when a confirmation fails.
        return {"payment_method": payment_method, "expand": _EXPAND}
    return {"expand": _EXPAND}


def _intent_operations(intent: _Intent, refunds: list[_Refund]) -> list[GatewayOperation]:
    """Authorization, capture and void of one PaymentIntent; ``refunds`` are
    its charge's (needed on localstripe to tell the captured amount)."""
    charge = intent.latest_charge
    if charge is None or not intent.authorized:
        return []
    reference = intent.metadata.get(_PAYMENT_ID, "")

    def operation(
        kind: OperationKind, id: str, amount: int, key: str, created: int
    ) -> GatewayOperation:
        return GatewayOperation(
            id=id,
            kind=kind,
            amount=_from_stripe(amount, intent.currency),
            currency=intent.currency,
            reference=reference,
            idempotency_key=key,
            authorization_id=None if kind == "authorization" else intent.id,
            created_at=_iso(created),
        )

    operations = [
        operation(
            "authorization", intent.id, intent.amount, intent.metadata.get(_KEY, ""), charge.created
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
                _captured_amount(intent, refunds),
                intent.metadata.get(_CAPTURE_KEY, ""),
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
                intent.metadata.get(_VOID_KEY, ""),
                intent.canceled_at or charge.created,
            )
        )
    return operations


def _captured_amount(intent: _Intent, refunds: list[_Refund]) -> int:
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


def _refund_operation(refund: _Refund) -> GatewayOperation | None:
    """A refund this service made and that moved money; ``None`` otherwise."""
    if not refund.ours or not refund.live:
        return None
    return GatewayOperation(
        id=refund.id,
        kind="refund",
        amount=_from_stripe(refund.amount, refund.currency),
        currency=refund.currency,
        reference=refund.metadata.get(_PAYMENT_ID, ""),
        idempotency_key=refund.metadata[_KEY],
        authorization_id=refund.payment_intent or refund.metadata.get(_AUTHORIZATION_ID),
        created_at=_iso(refund.created),
    )


def _find(operations: list[GatewayOperation], kind: OperationKind) -> GatewayOperation | None:
    return next((op for op in operations if op.kind == kind), None)


def _replay(
    operation: GatewayOperation | None,
    idempotency_key: str,
    amount: int | None,
    conflict: str,
    intent_id: str,
) -> GatewayOperation:
    """The earlier outcome of this same request, or the refusal the simulator gives."""
    if operation is None:
        raise TransientGatewayError(f"{intent_id}: the gateway's state does not show the outcome")
    if operation.idempotency_key != idempotency_key:
        raise InvalidGatewayRequest(
            conflict, f"{intent_id} was already {operation.kind}d under another idempotency key"
        )
    if amount is not None and operation.amount != amount:
        raise InvalidGatewayRequest(
            "idempotency_key_reused",
            f"idempotency key {idempotency_key!r} was already used for a different request",
        )
    return operation


def _not_authorized(intent: _Intent) -> InvalidGatewayRequest:
    return InvalidGatewayRequest(
        "not_authorized", f"{intent.id} is {intent.status}; it holds no authorization"
    )


def _in_order(operations: Iterable[GatewayOperation]) -> list[GatewayOperation]:
    # Stripe dates to the second: within one, the steps' own order decides.
    return sorted(operations, key=lambda op: (op.created_at, _RANK[op.kind]))


def _iso(timestamp: int) -> str:
    at = datetime.fromtimestamp(timestamp, UTC)
    return at.isoformat(timespec="microseconds").replace("+00:00", "Z")


def _within(created: int, window: tuple[int | None, int | None]) -> bool:
    since, until = window
    return (since is None or since <= created) and (until is None or created < until)


def _to_stripe(amount: int, currency: str) -> int:
    """Our ISO minor units in Stripe's (the API refused the rest already)."""
    try:
        return to_gateway_units(amount, currency, "stripe")
    except NotRepresentable as err:
        raise InvalidGatewayRequest("amount_not_representable", str(err)) from None


def _from_stripe(amount: int, currency: str) -> int:
    """An amount Stripe reports, in our ISO minor units."""
    try:
        return from_gateway_units(amount, currency, "stripe")
    except NotRepresentable as err:
        raise InvalidGatewayRequest("amount_not_representable", str(err)) from None


def _check_amount(amount: int, limit: int | None = None, what: str = "") -> None:
    if amount < 1:
        raise InvalidGatewayRequest("amount_too_small", f"amount must be at least 1, not {amount}")
    if limit is not None and amount > limit:
        raise InvalidGatewayRequest(
            "amount_too_large", f"amount {amount} is more than {what} ({limit})"
        )


# -- errors ---------------------------------------------------------------------


def _refused(err: stripe.InvalidRequestError, parameter: str) -> bool:
    """Whether the server refused a parameter it does not know: Stripe names
    it in ``param``, localstripe answers "Unexpected <parameter>"."""
    return err.param == parameter or f"Unexpected {parameter}" in (err.user_message or "")


def translate_error(
    what: str, err: stripe.StripeError, *, intent_id: str | None = None
) -> GatewayError:
    """The port's exception for a Stripe error; ``intent_id`` names the
    PaymentIntent the call addressed, whose absence is ``NotFound``."""
    status = err.http_status
    code = err.code
    message = f"{what}: {err.user_message or type(err).__name__}"
    if isinstance(err, stripe.CardError):
        decline_code = err.error.decline_code if err.error is not None else None
        return CardDeclined(code or "card_declined", decline_code, err.user_message or message)
    if isinstance(err, stripe.RateLimitError | stripe.APIConnectionError):
        return TransientGatewayError(f"{message} ({type(err).__name__}); the outcome is unknown")
    if isinstance(err, stripe.AuthenticationError | stripe.PermissionError):
        # A configuration problem (wrong or restricted key): retrying cannot help.
        return InvalidGatewayRequest("authentication_failed", message)
    if isinstance(err, stripe.IdempotencyError):
        return InvalidGatewayRequest("idempotency_key_reused", message)
    if isinstance(err, stripe.InvalidRequestError):
        if intent_id is not None and (status == 404 or code == "resource_missing"):
            return NotFound(f"{what}: no such PaymentIntent: {intent_id!r}")
        # localstripe answers a missing object with a bare 404, Stripe with this code.
        missing = "resource_missing" if status == 404 else "invalid_request"
        return InvalidGatewayRequest(code or missing, message)
    # APIError and anything newer: 409 is a concurrent request on the same
    # key, a 2xx the SDK could not read leaves the outcome unknown.
    if status is None or status < 300 or status in (409, 429) or status >= 500:
        return TransientGatewayError(f"{message} (HTTP {status}); the outcome is unknown")
    return InvalidGatewayRequest(code or f"http_{status}", message)


@contextmanager
def _answers(what: str, *, intent_id: str | None = None) -> Iterator[None]:
    """Turn the SDK's exceptions, and replies we cannot read, into the port's."""
    try:
        yield
    except stripe.StripeError as err:
        raise translate_error(what, err, intent_id=intent_id) from err
    except ValidationError as err:
        raise TransientGatewayError(f"{what}: unreadable reply: {err}") from err
