"""Why a payment refuses a request: one table of codes, shared by the workflow
(its update validators and its refused signals) and the API, which turns each
into an HTTP answer in one place (``api/errors.py``). A refusal travels from a
validator to the API as an ``ApplicationError`` whose type is the code.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

PAYMENT_NOT_CAPTURABLE: Final = "payment_not_capturable"
PAYMENT_NOT_CANCELABLE: Final = "payment_not_cancelable"
PAYMENT_NOT_REFUNDABLE: Final = "payment_not_refundable"
PAYMENT_CLOSED: Final = "payment_closed"
AMOUNT_TOO_LARGE: Final = "amount_too_large"
IDEMPOTENCY_KEY_REUSED: Final = "idempotency_key_reused"
RESOURCE_MISSING: Final = "resource_missing"
INVALID_SIGNAL: Final = "invalid_signal"

# Not a refusal: the failure code of a step whose outcome stayed unknown.
OUTCOME_UNKNOWN: Final = "outcome_unknown"


@dataclass(frozen=True)
class Refusal:
    code: str
    message: str


KEY_REUSED = Refusal(
    IDEMPOTENCY_KEY_REUSED, "this Idempotency-Key was already used with a different request"
)
