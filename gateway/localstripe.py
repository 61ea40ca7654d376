"""What the Stripe adapter does for Stripe-compatible servers that fall short
of Stripe's API: localstripe, which the tests and the local stack run. This
module owns what the adapter learns about the server (:class:`ServerSupport`,
told by :func:`refused`) and the filtering done here for a server that will
not (:func:`within`).

localstripe's other gaps are met where they bend the code, each with its reason:

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

import stripe

if TYPE_CHECKING:
    from stripe.params import PaymentIntentCreateParams


@dataclass
class ServerSupport:
    """What the server understands, learnt on first refusal: localstripe
    neither filters lists by ``created`` nor knows the parameter
    ``allowed_payment_method_types`` of the SDK's API version."""

    filters_by_created: bool = True
    allowed_types_param: bool = True

    def only_cards(self, params: PaymentIntentCreateParams) -> None:
        """Limit a PaymentIntent to cards: other types may redirect, which a
        server-side confirm cannot follow."""
        if self.allowed_types_param:
            params["allowed_payment_method_types"] = ["card"]
        else:
            # The older name, which localstripe knows; the SDK's types no longer do.
            cast(dict[str, object], params)["payment_method_types"] = ["card"]


def refused(err: stripe.InvalidRequestError, parameter: str) -> bool:
    """Whether the server refused a parameter it does not know: Stripe names
    it in ``param``, localstripe answers "Unexpected <parameter>"."""
    return err.param == parameter or f"Unexpected {parameter}" in (err.user_message or "")


def within(created: int, window: tuple[int | None, int | None]) -> bool:
    """Whether ``created`` falls in the ``window`` (seconds; unbounded where
    ``None``): the ``created`` filter, applied here for a server that refuses it."""
    since, until = window
    return (since is None or since <= created) and (until is None or created < until)
