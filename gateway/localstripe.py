"""What the Stripe adapter does for Stripe-compatible servers that fall short
of Stripe's API: localstripe, which the tests and the local stack run. This
module owns what the adapter learns about the server (:class:`ServerSupport`,
told by :func:`refused`, :func:`lost_reference` and
:func:`lacks_payment_method`), the filtering done here for a server that will
not (:func:`within`), and the stand-ins for the test payment methods of
Stripe's that localstripe lacks (:data:`STAND_INS`, :func:`as_stripe_declines`).

The adapter is never told that it talks to localstripe, and never asks: it
learns each gap from the server's first refusal of it, a refusal Stripe itself
never gives (Stripe names the parameter or the missing object with a ``code``;
localstripe answers "Unexpected <parameter>", or a bare 404 or 400). Against
Stripe, nothing here changes a request.

**Stripe's test payment methods.** localstripe knows three: ``pm_card_visa``
(succeeds), ``pm_card_chargeCustomerFail`` (declined when charged:
``card_declined``, without a ``decline_code``) and ``pm_card_visa_chargeDeclined``
(declined only when attached to a customer, so a PaymentIntent authorizes).
Any other name it answers with a bare 404, a token with a bare 400 (a
PaymentIntent takes no token). Once it has refused a name of :data:`STAND_INS`,
the adapter creates PaymentIntents with that name's stand-in instead: the
card brands with ``pm_card_visa`` (localstripe calls every card "visa"
anyway), the declines with ``pm_card_chargeCustomerFail``, reporting the
decline Stripe reports for the name, since localstripe's carries no
``decline_code``. So the simulator's declines (``pm_card_chargeDeclined``,
``…InsufficientFunds``, ``…ExpiredCard``) decline with the same codes on both
gateways. Not stood in for, on purpose:

- ``pm_card_captureFails``, the simulator's own: neither Stripe nor localstripe
  has a card whose capture fails once it is authorized;
- tokens (``tok_…``): Stripe's PaymentIntents take PaymentMethods, not tokens,
  so a stand-in would make localstripe accept what Stripe refuses;
- any other ``pm_card_…``, which the simulator takes and Stripe does not know.

A name that localstripe lacks and that has no stand-in is refused as
``resource_missing``, naming it (``StripeGateway._create_intent``).

localstripe's other gaps are met where they bend the code, each with its reason:

- it keeps its store in ``/tmp/localstripe.pickle``, written on every change by
  every localstripe on the machine and loaded at start unless ``--from-scratch``:
  the local stack (``devstack.gateway``) and the tests always pass it;
- it expands a reference by looking the object up, and answers a whole list
  404 when one item refers to an object it no longer holds (a store loaded
  from a pickle another localstripe was writing): ``StripeGateway._list_intents``
  then lists expanding only the charge, which localstripe embeds in every
  PaymentIntent anyway, and ``StripeGateway._dated`` reads the balance
  transaction of each captured PaymentIntent it keeps, one by one;
- it ignores the ``Idempotency-Key`` header: every step reads the gateway's
  state first (``gateway.stripe_adapter``'s module docstring);
- its capture and cancel take no metadata: ``StripeGateway._mark`` records the
  step's key just before;
- it accepts over-refunds: ``StripeGateway.refund`` bounds the amount itself;
- it fails to list the Refunds of a PaymentIntent never charged:
  ``StripeGateway._refunds_of`` does not ask;
- it has neither ``amount_received`` nor ``canceled_at``, and releases the rest
  of a partial capture as a Refund without our metadata: ``Refund.ours``,
  ``captured_amount`` and ``intent_operations`` in ``gateway.stripe_mapping``;
- it answers a missing object with a bare 404: ``translate_error`` in
  ``gateway.stripe_errors``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from payments.gateway import CardDeclined

if TYPE_CHECKING:
    import stripe
    from stripe.params import PaymentIntentCreateParams


@dataclass(frozen=True)
class StandIn:
    """What localstripe is sent for a test payment method it lacks, and the
    decline Stripe reports for that method, when it declines."""

    payment_method: str
    # (code, decline_code, message), as Stripe reports them.
    decline: tuple[str, str, str] | None = None


_SUCCEEDS = StandIn("pm_card_visa")


def _declines(code: str, decline_code: str, message: str) -> StandIn:
    return StandIn("pm_card_chargeCustomerFail", (code, decline_code, message))


# Stripe's test PaymentMethods (docs.stripe.com/testing) that localstripe lacks.
STAND_INS: dict[str, StandIn] = {
    **{
        f"pm_card_{brand}": _SUCCEEDS
        for brand in (
            "visa_debit",
            "mastercard",
            "mastercard_debit",
            "mastercard_prepaid",
            "amex",
            "discover",
            "diners",
            "jcb",
            "unionpay",
        )
    },
    "pm_card_chargeDeclined": _declines(
        "card_declined", "generic_decline", "Your card was declined."
    ),
    "pm_card_chargeDeclinedInsufficientFunds": _declines(
        "card_declined", "insufficient_funds", "Your card has insufficient funds."
    ),
    "pm_card_chargeDeclinedExpiredCard": _declines(
        "expired_card", "expired_card", "Your card has expired."
    ),
}


@dataclass
class ServerSupport:
    """What the server understands, learnt on first refusal: localstripe
    neither filters lists by ``created`` nor knows the parameter
    ``allowed_payment_method_types`` of the SDK's API version; it may fail to
    expand references in a list; and it lacks most of Stripe's test
    payment methods."""

    filters_by_created: bool = True
    allowed_types_param: bool = True
    expands_list_references: bool = True
    knows_test_methods: bool = True
    # localstripe's confirm takes no return_url (nor any 3-D Secure page).
    confirm_return_url: bool = True

    def only_cards(self, params: PaymentIntentCreateParams) -> None:
        """Limit a PaymentIntent to cards: other types may redirect, which a
        server-side confirm cannot follow."""
        if self.allowed_types_param:
            params["allowed_payment_method_types"] = ["card"]
        else:
            # The older name, which localstripe knows; the SDK's types no longer do.
            cast(dict[str, object], params)["payment_method_types"] = ["card"]

    def payment_method(self, name: str) -> str:
        """What to send for the test payment method ``name``: its stand-in, on a
        server known to lack Stripe's test payment methods."""
        stand_in = STAND_INS.get(name)
        if self.knows_test_methods or stand_in is None:
            return name
        return stand_in.payment_method


def refused(err: stripe.InvalidRequestError, parameter: str) -> bool:
    """Whether the server refused a parameter it does not know: Stripe names
    it in ``param``, localstripe answers "Unexpected <parameter>"."""
    return err.param == parameter or f"Unexpected {parameter}" in (err.user_message or "")


def lacks_parameter(err: stripe.InvalidRequestError, parameter: str) -> bool:
    """Whether the server refused a parameter because it does not know it at
    all, as localstripe says it ("Unexpected <parameter>"). Stripe names a
    parameter it refuses for its value too (``param``): that is the request's
    fault, not a gap to learn from."""
    return f"Unexpected {parameter}" in (err.user_message or "")


def lost_reference(err: stripe.InvalidRequestError) -> bool:
    """Whether a list was refused because the server could not expand what an
    item refers to: a list's URL exists, so its 404 can mean nothing else."""
    return err.http_status == 404


def lacks_payment_method(err: stripe.InvalidRequestError) -> bool:
    """Whether creating a PaymentIntent was refused as localstripe refuses a
    payment method it does not know: a bare 404 (a ``pm_…``) or 400 (a
    ``tok_…``), no ``code``, no ``param``. Stripe names ``payment_method``."""
    message = err.user_message or ""
    return (
        err.http_status in (400, 404)
        and err.code is None
        and not err.param
        and not message.startswith("Unexpected")
    )


def as_stripe_declines(payment_method: str, declined: CardDeclined) -> CardDeclined:
    """The decline Stripe reports for ``payment_method``, for localstripe's
    decline of its stand-in, which has no ``decline_code``. A decline that has
    one (any of Stripe's) is the gateway's own word, and is kept."""
    stand_in = STAND_INS.get(payment_method)
    if declined.decline_code is not None or stand_in is None or stand_in.decline is None:
        return declined
    return CardDeclined(*stand_in.decline)


def within(created: int, window: tuple[int | None, int | None]) -> bool:
    """Whether ``created`` falls in the ``window`` (seconds; unbounded where
    ``None``): the ``created`` filter, applied here for a server that refuses it."""
    since, until = window
    return (since is None or since <= created) and (until is None or created < until)
