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
older ``payment_method_types`` localstripe knows; and a test payment method
of Stripe's that a server refuses (localstripe knows few) is sent as its
stand-in from then on, with Stripe's decline for the name reported
(``gateway.localstripe``).

This module is the client and the steps; it composes three others:
``gateway.stripe_mapping`` (Stripe's objects and the pure functions between
them and the port's operations, statuses and amounts), ``gateway.stripe_errors``
(Stripe's answers as the port's exceptions, in one place: which are permanent,
which leave the outcome unknown) and ``gateway.localstripe`` (what the adapter
learns about a server short of Stripe's API, and where each of localstripe's
gaps is met).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import stripe

from gateway.localstripe import (
    STAND_INS,
    ServerSupport,
    as_stripe_declines,
    lacks_parameter,
    lacks_payment_method,
    lost_reference,
    refused,
    within,
)
from gateway.stripe_errors import answers
from gateway.stripe_mapping import (
    AUTHORIZATION_ID,
    CAPTURE_KEY,
    IDEMPOTENCY_KEY,
    PAYMENT_ID,
    REFUND_SEQUENCE,
    VOID_KEY,
    Intent,
    Refund,
    authentication_of,
    authorization_outcome,
    captured_amount,
    from_stripe,
    in_order,
    intent_operations,
    refund_operation,
    to_stripe,
)
from payments.gateway import (
    Authentication,
    CardDeclined,
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

_PAGE_SIZE = 100
STRIPE_API_HOST = "api.stripe.com"
# Lookups by reference start this long before the payment was requested, in
# case our clock runs ahead of Stripe's (see the module's docstring).
_CLOCK_SKEW = timedelta(minutes=5)
# Capture time is the balance transaction's; the charge alone dates the authorization.
_EXPAND = ["latest_charge.balance_transaction"]
_EXPAND_LIST = ["data.latest_charge.balance_transaction"]
# For a server that cannot expand every item's balance transaction: the charge
# alone (localstripe embeds it in each PaymentIntent without being asked).
_EXPAND_LIST_CHARGES = ["data.latest_charge"]


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
        self._server = ServerSupport()
        # Stripe's own API replays a key's first answer for 24 hours; a
        # Stripe-compatible server (localstripe) may ignore the header.
        self.replays_by_key = settings.stripe_api_base.host == STRIPE_API_HOST

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
        return_url: str | None = None,
    ) -> GatewayOperation | Authentication:
        try:
            return await self._authorize(
                reference=reference,
                amount=amount,
                currency=currency,
                payment_method=payment_method,
                idempotency_key=idempotency_key,
                since=since,
                first_attempt=first_attempt,
                authorization_id=authorization_id,
                remember=remember,
                return_url=return_url,
            )
        except CardDeclined as declined:
            reported = as_stripe_declines(payment_method, declined)
            if reported is declined:
                raise
            raise reported from declined

    async def _authorize(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        since: datetime | None,
        first_attempt: bool,
        authorization_id: str | None,
        remember: Callable[[str], None] | None,
        return_url: str | None,
    ) -> GatewayOperation | Authentication:
        _check_amount(amount)
        stripe_amount = to_stripe(amount, currency)
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
        authorization = authorization_outcome(intent)
        if authorization is not None:
            return authorization
        intent = await self._confirm(intent, payment_method, idempotency_key, return_url)
        authorization = authorization_outcome(intent)
        if authorization is None:
            raise TransientGatewayError(f"{intent.id} is still {intent.status} after confirming")
        return authorization

    async def _confirm(
        self, intent: Intent, payment_method: str, idempotency_key: str, return_url: str | None
    ) -> Intent:
        """Confirm the PaymentIntent; with ``return_url`` where the server takes
        one, so a card that needs 3-D Secure answers with the page to send the
        customer to (localstripe takes none, and answers without a page)."""
        params = _confirm_params(intent, self._server.payment_method(payment_method))
        if return_url is not None and self._server.confirm_return_url:
            params["return_url"] = return_url
        with answers("confirm PaymentIntent", intent_id=intent.id):
            try:
                confirmed = await self._stripe.v1.payment_intents.confirm_async(
                    intent.id,
                    params=params,
                    options={"idempotency_key": f"{idempotency_key}:confirm"},
                )
            except stripe.InvalidRequestError as err:
                # Refused while validating: nothing was confirmed, so asking again is safe.
                if "return_url" not in params or not lacks_parameter(err, "return_url"):
                    raise
                self._server.confirm_return_url = False
                return await self._confirm(intent, payment_method, idempotency_key, return_url)
            return Intent.model_validate(confirmed.to_dict())

    async def authentication(self, authentication_id: str) -> Authentication:
        # The authentication is the PaymentIntent's own state.
        return authentication_of(await self._retrieve(authentication_id))

    async def cancel_authentication(
        self, authentication_id: str, *, idempotency_key: str
    ) -> Authentication:
        intent = await self._retrieve(authentication_id)
        if intent.status == "requires_action":
            # Nothing is authorized yet, so nothing a void's key must tell apart.
            intent = await self._cancel_intent(intent, idempotency_key)
        return authentication_of(intent)

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        intent = await self._retrieve(authorization_id)
        if intent.status == "requires_capture":
            _check_amount(
                amount, from_stripe(intent.amount, intent.currency), "the authorized amount"
            )
            to_capture = to_stripe(amount, intent.currency)
            await self._mark(intent.id, CAPTURE_KEY, idempotency_key)
            with answers("capture PaymentIntent", intent_id=intent.id):
                captured = await self._stripe.v1.payment_intents.capture_async(
                    intent.id,
                    params={"amount_to_capture": to_capture, "expand": _EXPAND},
                    options={"idempotency_key": idempotency_key},
                )
                intent = Intent.model_validate(captured.to_dict())
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
            await self._mark(intent.id, VOID_KEY, idempotency_key)
            intent = await self._cancel_intent(intent, idempotency_key)
        elif intent.status == "succeeded":
            raise InvalidGatewayRequest(
                "already_captured", f"{intent.id} was captured; refund it instead"
            )
        elif intent.status != "canceled" or not intent.authorized:
            raise _not_authorized(intent)
        void = _find(intent_operations(intent, []), "void")
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
            if earlier.metadata.get(IDEMPOTENCY_KEY) == idempotency_key:
                # Made by an earlier attempt whose answer we never saw.
                if not earlier.live:
                    raise InvalidGatewayRequest(
                        "refund_failed", f"refund {earlier.id} of {intent.id} is {earlier.status}"
                    )
                operation = refund_operation(earlier)
                return _replay(
                    operation, idempotency_key, amount, "idempotency_key_reused", intent.id
                )
        ours = [r for r in refunds if r.ours]
        refunded = sum(r.amount for r in ours if r.live)
        captured = captured_amount(intent, refunds)
        # The payment's bookkeeping bounds refunds already; this bound is for
        # servers that accept over-refunds (localstripe does).
        left = from_stripe(captured - refunded, intent.currency)
        _check_amount(amount, left, "the amount left to refund")
        to_refund = to_stripe(amount, intent.currency)
        with answers("create Refund", intent_id=intent.id):
            created = await self._stripe.v1.refunds.create_async(
                params={
                    "payment_intent": intent.id,
                    "amount": to_refund,
                    "metadata": {
                        PAYMENT_ID: intent.metadata.get(PAYMENT_ID, ""),
                        IDEMPOTENCY_KEY: idempotency_key,
                        AUTHORIZATION_ID: intent.id,
                        REFUND_SEQUENCE: str(len(ours)),
                    },
                },
                options={"idempotency_key": idempotency_key},
            )
            operation = refund_operation(Refund.model_validate(created.to_dict()))
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
        for intent in await self._dated(await self._intents_for(reference, since)):
            operations.extend(await self._operations_of(intent))
        return in_order(operations)

    async def list_operations(self, *, since: datetime, until: datetime) -> list[GatewayOperation]:
        end = math.ceil(until.timestamp())
        listed = await self._list_intents(math.floor((since - self._lookback).timestamp()), end)
        # Those without our reference were not made by this service.
        intents = await self._dated([i for i in listed if PAYMENT_ID in i.metadata])
        refunds = await self._list_refunds((math.floor(since.timestamp()), end))
        by_charge: dict[str, list[Refund]] = {}
        for refund in refunds:
            by_charge.setdefault(refund.charge or "", []).append(refund)
        operations: list[GatewayOperation] = []
        for intent in intents:
            charge = intent.latest_charge.id if intent.latest_charge else ""
            operations.extend(intent_operations(intent, by_charge.get(charge, [])))
        operations.extend(op for r in refunds if (op := refund_operation(r)) is not None)
        return in_order(
            op for op in operations if since <= datetime.fromisoformat(op.created_at) < until
        )

    async def aclose(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]

    # -- reading Stripe -------------------------------------------------------

    async def _retrieve(self, intent_id: str) -> Intent:
        with answers("retrieve PaymentIntent", intent_id=intent_id):
            found = await self._stripe.v1.payment_intents.retrieve_async(
                intent_id, params={"expand": _EXPAND}
            )
            return Intent.model_validate(found.to_dict())

    async def _retrieve_ours(self, intent_id: str, reference: str) -> Intent | None:
        """The PaymentIntent a hint names, if it exists and is this reference's."""
        try:
            intent = await self._retrieve(intent_id)
        except NotFound:
            return None
        return intent if intent.metadata.get(PAYMENT_ID) == reference else None

    async def _intents_for(self, reference: str, since: datetime | None) -> list[Intent]:
        """The reference's PaymentIntents created since ``since`` (all when None)."""
        after = None if since is None else math.floor((since - _CLOCK_SKEW).timestamp())
        intents = await self._list_intents(after)
        return [intent for intent in intents if intent.metadata.get(PAYMENT_ID) == reference]

    async def _intent_for(
        self,
        reference: str,
        stripe_amount: int,
        currency: str,
        idempotency_key: str,
        since: datetime | None,
        known_id: str | None,
    ) -> Intent | None:
        """The PaymentIntent an earlier attempt made with this key, if any: the
        one it remembered, else the first the reference's lookup finds."""
        intent = None if known_id is None else await self._retrieve_ours(known_id, reference)
        if intent is None or intent.metadata.get(IDEMPOTENCY_KEY) != idempotency_key:
            # Another key of the same reference is another instance of the payment's.
            intent = next(
                (
                    found
                    for found in await self._intents_for(reference, since)
                    if found.metadata.get(IDEMPOTENCY_KEY) == idempotency_key
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

    async def _list_intents(self, since: int | None, until: int | None = None) -> list[Intent]:
        """PaymentIntents created from ``since`` to before ``until`` (seconds;
        unbounded where ``None``), oldest first. Their captures are dated only
        where the server expanded the balance transactions: see :meth:`_dated`."""
        window: tuple[int | None, int | None] = (since, until)
        while True:
            server = self._server
            expand = _EXPAND_LIST if server.expands_list_references else _EXPAND_LIST_CHARGES
            params: PaymentIntentListParams = {"limit": _PAGE_SIZE, "expand": expand}
            if since is not None and server.filters_by_created:
                params["created"] = {"gte": since} if until is None else {"gte": since, "lt": until}
            intents: list[Intent] = []
            with answers("list PaymentIntents"):
                try:
                    page = await self._stripe.v1.payment_intents.list_async(params)
                    async for item in page.auto_paging_iter():
                        intents.append(Intent.model_validate(item.to_dict()))
                except stripe.InvalidRequestError as err:
                    # Each refusal is learnt once, and the listing starts again without it.
                    if "created" in params and refused(err, "created"):
                        server.filters_by_created = False
                        continue
                    if server.expands_list_references and lost_reference(err):
                        server.expands_list_references = False
                        continue
                    raise
            return sorted(
                (i for i in intents if within(i.created, window)), key=lambda i: i.created
            )

    async def _dated(self, intents: list[Intent]) -> list[Intent]:
        """``intents``, each captured one with its balance transaction (which dates
        the capture), read one by one where the list left it an id: on a server
        that could not expand it in a list (localstripe, see
        ``gateway.localstripe``). Stripe's lists carry it: no request then."""
        dated: list[Intent] = []
        for intent in intents:
            charge = intent.latest_charge
            if (
                intent.status == "succeeded"
                and charge is not None
                and isinstance(charge.balance_transaction, str)
            ):
                with contextlib.suppress(NotFound):
                    # Lost too: the capture stays dated at its charge.
                    intent = await self._retrieve(intent.id)
            dated.append(intent)
        return dated

    async def _list_refunds(self, window: tuple[int, int]) -> list[Refund]:
        """Refunds on every PaymentIntent created in the ``window``, oldest first."""
        params: RefundListParams = {"limit": _PAGE_SIZE}
        # Asked after _list_intents, which has learnt whether the server filters.
        if self._server.filters_by_created:
            params["created"] = {"gte": window[0], "lt": window[1]}
        refunds: list[Refund] = []
        with answers("list Refunds"):
            page = await self._stripe.v1.refunds.list_async(params)
            async for item in page.auto_paging_iter():
                refunds.append(Refund.model_validate(item.to_dict()))
        return sorted((r for r in refunds if within(r.created, window)), key=lambda r: r.order)

    async def _refunds_of(self, intent: Intent) -> list[Refund]:
        if intent.latest_charge is None:
            return []  # never charged: nothing to refund (and localstripe fails the list)
        refunds: list[Refund] = []
        with answers("list Refunds", intent_id=intent.id):
            page = await self._stripe.v1.refunds.list_async(
                params={"payment_intent": intent.id, "limit": _PAGE_SIZE}
            )
            async for item in page.auto_paging_iter():
                refunds.append(Refund.model_validate(item.to_dict()))
        return sorted(refunds, key=lambda r: r.order)

    async def _operations_of(self, intent: Intent) -> list[GatewayOperation]:
        refunds = await self._refunds_of(intent) if intent.status == "succeeded" else []
        operations = intent_operations(intent, refunds)
        operations.extend(op for r in refunds if (op := refund_operation(r)) is not None)
        return in_order(operations)

    # -- writing Stripe -------------------------------------------------------

    async def _create_intent(
        self,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
    ) -> Intent:
        """A PaymentIntent for manual capture, unconfirmed: confirming is the next step."""
        params: PaymentIntentCreateParams = {
            "amount": amount,
            "currency": currency,
            "payment_method": self._server.payment_method(payment_method),
            "capture_method": "manual",
            "metadata": {PAYMENT_ID: reference, IDEMPOTENCY_KEY: idempotency_key},
            "expand": _EXPAND,
        }
        self._server.only_cards(params)
        with answers("create PaymentIntent"):
            try:
                created = await self._stripe.v1.payment_intents.create_async(
                    params, {"idempotency_key": idempotency_key}
                )
            except stripe.InvalidRequestError as err:
                # Refused while validating: nothing was created, so asking again is safe.
                server = self._server
                if server.allowed_types_param and refused(err, "allowed_payment_method_types"):
                    server.allowed_types_param = False
                elif lacks_payment_method(err):
                    if not server.knows_test_methods or payment_method not in STAND_INS:
                        raise InvalidGatewayRequest(
                            "resource_missing",
                            "create PaymentIntent: this Stripe server knows no payment "
                            f"method {payment_method!r}",
                        ) from err
                    server.knows_test_methods = False
                else:
                    raise
                return await self._create_intent(
                    reference, amount, currency, payment_method, idempotency_key
                )
            return Intent.model_validate(created.to_dict())

    async def _cancel_intent(self, intent: Intent, idempotency_key: str) -> Intent:
        with answers("cancel PaymentIntent", intent_id=intent.id):
            canceled = await self._stripe.v1.payment_intents.cancel_async(
                intent.id,
                params={"expand": _EXPAND},
                options={"idempotency_key": idempotency_key},
            )
            return Intent.model_validate(canceled.to_dict())

    async def _mark(self, intent_id: str, field: str, idempotency_key: str) -> None:
        """Record the key of the step about to act, so a retry can tell its own
        earlier outcome from someone else's (Stripe's capture and cancel take
        no metadata, localstripe's none at all)."""
        with answers("update PaymentIntent", intent_id=intent_id):
            await self._stripe.v1.payment_intents.update_async(
                intent_id,
                params={"metadata": {field: idempotency_key}},
                options={"idempotency_key": f"{idempotency_key}:mark"},
            )


# -- the adapter's rules ------------------------------------------------------


def _confirm_params(intent: Intent, payment_method: str) -> PaymentIntentConfirmParams:
    if intent.status == "requires_payment_method":
        # Stripe detaches the payment method when a confirmation fails.
        return {"payment_method": payment_method, "expand": _EXPAND}
    return {"expand": _EXPAND}


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


def _not_authorized(intent: Intent) -> InvalidGatewayRequest:
    return InvalidGatewayRequest(
        "not_authorized", f"{intent.id} is {intent.status}; it holds no authorization"
    )


def _check_amount(amount: int, limit: int | None = None, what: str = "") -> None:
    if amount < 1:
        raise InvalidGatewayRequest("amount_too_small", f"amount must be at least 1, not {amount}")
    if limit is not None and amount > limit:
        raise InvalidGatewayRequest(
            "amount_too_large", f"amount {amount} is more than {what} ({limit})"
        )
