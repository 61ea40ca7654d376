"""Why a payment refuses a request: one table of codes, shared by the workflow
(its update validators and its refused signals) and the API, which turns each
into an HTTP answer in one place (``api/errors.py``). A refusal travels from a
validator to the service as an ``ApplicationError`` whose type is the code;
the service raises it as :class:`Refused`.

| code                    | the request                                         |
|-------------------------|-----------------------------------------------------|
| payment_not_capturable  | capture of a payment that is not waiting for one    |
| payment_not_cancelable  | cancel after capture (refund instead), or mid-capture |
| payment_not_refundable  | refund of a payment not captured                    |
| payment_closed          | anything once the refund window has closed          |
| amount_too_large        | more than is authorized, or than remains refundable |
| idempotency_key_reused  | a key sent again with another request               |
| resource_missing        | names something the payment does not have           |
| invalid_signal          | an operator's signal whose input does not parse     |
| url_invalid             | a webhook URL that is not one (422)                 |
| url_not_allowed         | a webhook URL this service will not call (422)      |
| endpoint_limit_reached  | a webhook endpoint beyond the merchant's limit      |
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from temporalio.exceptions import ApplicationError

PAYMENT_NOT_CAPTURABLE: Final = "payment_not_capturable"
PAYMENT_NOT_CANCELABLE: Final = "payment_not_cancelable"
PAYMENT_NOT_REFUNDABLE: Final = "payment_not_refundable"
PAYMENT_CLOSED: Final = "payment_closed"
AMOUNT_TOO_LARGE: Final = "amount_too_large"
IDEMPOTENCY_KEY_REUSED: Final = "idempotency_key_reused"
RESOURCE_MISSING: Final = "resource_missing"
INVALID_SIGNAL: Final = "invalid_signal"
URL_INVALID: Final = "url_invalid"
URL_NOT_ALLOWED: Final = "url_not_allowed"
ENDPOINT_LIMIT_REACHED: Final = "endpoint_limit_reached"

# Not a refusal: the failure code of a step whose outcome stayed unknown.
OUTCOME_UNKNOWN: Final = "outcome_unknown"


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str
    # The request's field the refusal is about, if one is.
    param: str | None = None


class Refused(Exception):
    """The service's answer to a request it refuses (``payments.service``):
    the workflow's validators said no, or the payment is not the caller's."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.message)
        self.refusal = refusal

    @property
    def code(self) -> str:
        return self.refusal.code

    @property
    def message(self) -> str:
        return self.refusal.message


def rejection(refusal: Refusal) -> ApplicationError:
    """How a validator refuses an update: the error's type is the refusal's code."""
    return ApplicationError(refusal.message, type=refusal.code, non_retryable=True)


def refusal_of(rejected: ApplicationError) -> Refusal:
    """The refusal a validator's :func:`rejection` carries back to the caller."""
    return Refusal(rejected.type or "request_conflict", rejected.message)


KEY_REUSED = Refusal(
    IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was already used with a different request"
)
# Another merchant's payment answers exactly like one that does not exist.
NO_SUCH_PAYMENT = Refusal(RESOURCE_MISSING, "no such payment", "id")
NO_SUCH_ENDPOINT = Refusal(RESOURCE_MISSING, "no such webhook endpoint", "id")
CLOSED = Refusal(PAYMENT_CLOSED, "this payment is closed and accepts no more changes")
