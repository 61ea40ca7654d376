"""The domain models: one pydantic model per idea, shared by the API, the
workflow and the activities through the pydantic data converter.

Commands are imperative (``CreatePayment``, ``RefundPayment``); the payment is
``PaymentState``; money is an ``int`` in the currency's minor unit.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from payments import currencies
from payments.cards import find_card_number
from payments.gateway import AuthenticationStatus
from payments.mail import MAX_ADDRESS_LENGTH, is_email_address
from payments.personal import looks_like_email
from payments.refusals import OUTCOME_UNKNOWN
from payments.status import PaymentStatus

MAX_AMOUNT = 99_999_999
MAX_METADATA_KEYS = 50
MAX_METADATA_KEY_LENGTH = 40
MAX_METADATA_VALUE_LENGTH = 500

# Validation context of a request as a client sends it (``model_validate(...,
# context=NEW_REQUEST)``): rules that hold for new requests but must not stop
# a recorded one from decoding.
NEW_REQUEST_KEY = "new_request"
NEW_REQUEST = {NEW_REQUEST_KEY: True}

Amount = Annotated[int, Field(ge=1, le=MAX_AMOUNT, strict=True)]
Reason = Annotated[str, Field(max_length=500)]


class CardDataRefused(ValueError):
    """A request carried something that looks like a card number."""

    def __init__(self, param: str | None) -> None:
        super().__init__("card numbers must never be sent to this API; use a payment method token")
        self.param = param


class RefusesCardNumbers(BaseModel):
    """A request from outside: the one place a request is scanned for card
    numbers (``payments.cards``), before any other rule of the model."""

    # hide_input_in_errors: a refused card number must not ride along in an error text.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    @model_validator(mode="before")
    @classmethod
    def _no_card_numbers(cls, data: Any) -> Any:
        param = find_card_number(data)
        if param is not None:
            raise CardDataRefused(param)
        return data


class _Command(RefusesCardNumbers):
    model_config = ConfigDict(frozen=True)


class CreatePayment(_Command):
    # Left out of the request's fingerprint while unset (payments.ids.fingerprint).
    ADDED_LATER: ClassVar[tuple[str, ...]] = ("return_url", "receipt_email")

    amount: Amount
    currency: Annotated[str, Field(min_length=3, max_length=3)]
    payment_method: Annotated[
        str, Field(min_length=4, max_length=255, pattern=r"^(pm|tok)_[A-Za-z0-9_]+$")
    ]
    capture_method: Literal["automatic", "manual"] = "automatic"
    customer_id: Annotated[str, Field(max_length=255, pattern=r"^[A-Za-z0-9_.:@-]+$")] | None = None
    description: Annotated[str, Field(max_length=1000)] | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Where the customer comes back to after authenticating (3-D Secure).
    return_url: Annotated[str, Field(max_length=2048, pattern=r"^https?://")] | None = None
    # Where the customer's receipts go (CONTRACT §16). Personal data: sealed
    # in history by the codec, never in a search attribute or a log line.
    receipt_email: Annotated[str, Field(max_length=MAX_ADDRESS_LENGTH)] | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        if value != value.lower() or not currencies.is_known(value):
            raise ValueError("must be a lowercase ISO 4217 code this service supports")
        return value

    @field_validator("customer_id")
    @classmethod
    def _not_an_email_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        # New requests only: a payment made before this rule, decoded again from
        # its history (every replay, every continue-as-new), must still decode.
        if not (info.context or {}).get(NEW_REQUEST_KEY):
            return value
        if value is not None and looks_like_email(value):
            raise ValueError(
                "must not be an e-mail address: it is indexed in Temporal as a search "
                "attribute, which is no place for personal data; send your own customer "
                "reference, such as cus_42"
            )
        return value

    @field_validator("return_url")
    @classmethod
    def _a_web_address(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if any(ord(char) <= 0x20 or ord(char) == 0x7F for char in value):
            raise ValueError("must not hold spaces or control characters")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http or https URL with a host")
        if parts.username is not None or parts.password is not None:
            # It is shown to the customer's browser and kept in the history.
            raise ValueError("must not carry a user name or password")
        return value

    @field_validator("receipt_email")
    @classmethod
    def _an_email_address(cls, value: str | None, info: ValidationInfo) -> str | None:
        # New requests only: a recorded one must decode under a later
        # email-validator's rules too.
        if not (info.context or {}).get(NEW_REQUEST_KEY):
            return value
        if value is not None and not is_email_address(value):
            # Not email-validator's reason: it quotes parts of the address.
            raise ValueError(
                f"must be an e-mail address mail can be delivered to, at most "
                f"{MAX_ADDRESS_LENGTH} characters"
            )
        return value

    @field_validator("metadata")
    @classmethod
    def _metadata_limits(cls, value: dict[str, str]) -> dict[str, str]:
        if len(value) > MAX_METADATA_KEYS:
            raise ValueError(f"at most {MAX_METADATA_KEYS} keys")
        for key, item in value.items():
            if not key or len(key) > MAX_METADATA_KEY_LENGTH:
                raise ValueError(f"keys must be 1-{MAX_METADATA_KEY_LENGTH} characters")
            if len(item) > MAX_METADATA_VALUE_LENGTH:
                raise ValueError(f"values must be at most {MAX_METADATA_VALUE_LENGTH} characters")
        return value


class CapturePayment(_Command):
    amount: Amount | None = None


class CancelPayment(_Command):
    reason: Reason | None = None


class RefundPayment(_Command):
    """A refund as the API and operators ask for it; ``amount`` defaults to all that remains."""

    amount: Amount | None = None
    reason: Reason | None = None


class Keyed(BaseModel):
    """What the API sends along with an update that came with an Idempotency-Key:
    the key's digest for this command on this payment (never the key itself) and
    the request's fingerprint, so the workflow can tell a retry from a key reused
    with another request, in any run of the payment."""

    key: str
    fingerprint: str


class CaptureCommand(BaseModel):
    """A capture as the workflow receives it from the API."""

    amount: Amount | None = None
    idempotency: Keyed | None = None


class CancelCommand(BaseModel):
    """A cancel as the workflow receives it from the API."""

    reason: Reason | None = None
    idempotency: Keyed | None = None


class RefundCommand(BaseModel):
    """A refund as the workflow receives it from the API: with its id already
    chosen (from the Idempotency-Key, when there is one)."""

    refund_id: str
    amount: Amount | None = None
    reason: Reason | None = None
    # The request's fingerprint, when the id comes from an Idempotency-Key.
    fingerprint: str | None = None


class WaitSettled(BaseModel):
    """What a caller of the ``wait_settled`` update waits for."""

    # From a create: the payment must be the one this request asked for.
    request_fingerprint: str | None = None
    # Wait for this refund rather than for the payment.
    refund_id: str | None = None


class GatewayEvent(BaseModel):
    """A gateway's webhook event, as the API hands it to the payment's workflow."""

    id: str
    type: str
    created: int | None = None
    object_id: str | None = None
    payment_id: str | None = None


class Failure(BaseModel):
    type: Literal["card_error", "api_error"]
    code: str
    decline_code: str | None = None
    message: str


class Refund(BaseModel):
    id: str
    status: Literal["pending", "succeeded", "failed"]
    amount: int
    reason: str | None = None
    created_at: datetime
    failure: Failure | None = None

    @property
    def settled(self) -> bool:
        """The refund's outcome is known (it may still be ``outcome_unknown``)."""
        return self.status != "pending"


class RedirectToUrl(BaseModel):
    url: str | None
    return_url: str | None = None


class NextAction(BaseModel):
    """What the customer must do before the gateway decides (CONTRACT §14)."""

    type: Literal["redirect_to_url"] = "redirect_to_url"
    redirect_to_url: RedirectToUrl


class PaymentState(BaseModel):
    """The payment as the workflow knows it: the payment object without the
    API-only fields (``client_secret``, ``links``) plus internal bookkeeping."""

    id: str
    object: Literal["payment"] = "payment"
    status: PaymentStatus = PaymentStatus.PROCESSING
    amount: int
    currency: str
    amount_capturable: int = 0
    amount_captured: int = 0
    amount_refunded: int = 0
    capture_method: Literal["automatic", "manual"]
    payment_method: str
    customer_id: str | None = None
    description: str | None = None
    metadata: dict[str, str] = Field(default_factory=dict)
    # Shown to the merchant only (payments.rendering), never to a client secret.
    receipt_email: str | None = None
    failure: Failure | None = None
    # Set while the payment requires_action.
    next_action: NextAction | None = None
    refunds: list[Refund] = Field(default_factory=list)
    created_at: datetime
    updated_at: datetime
    # When the closed payment's record reached the archive (CONTRACT §10). Set
    # by whoever reads the payment; the workflow itself never knows it.
    archived_at: datetime | None = None
    # Internal: never shown to API clients.
    merchant_id: str
    authorization_id: str | None = None
    # Webhook events already recorded, so a redelivery is recorded once.
    gateway_event_ids: list[str] = Field(default_factory=list)
    # Idempotency-Key digest (``Keyed.key``, or a refund's id) -> the fingerprint
    # of the request first sent under it.
    request_fingerprints: dict[str, str] = Field(default_factory=dict)

    @property
    def refund_reserved(self) -> int:
        """Refunds that may still pay out: pending ones, and failed ones whose
        outcome the gateway never told us (code ``outcome_unknown``)."""
        return sum(
            r.amount
            for r in self.refunds
            if r.status == "pending"
            or (r.status == "failed" and r.failure and r.failure.code == OUTCOME_UNKNOWN)
        )

    @property
    def refundable_amount(self) -> int:
        """What may still be refunded: never money that may already be on its way back."""
        return self.amount_captured - self.amount_refunded - self.refund_reserved


# Personal data the merchant gave us: on the payment object the merchant
# reads, not in events (which a client secret reads too) nor for a client secret.
MERCHANT_ONLY_FIELDS = frozenset({"receipt_email"})

INTERNAL_FIELDS = frozenset(
    {
        "merchant_id",
        "authorization_id",
        "gateway_event_ids",
        "request_fingerprints",
    }
)


class PaymentInput(BaseModel):
    """The workflow's one input; new fields need defaults so old histories replay."""

    payment_id: str
    merchant_id: str
    request: CreatePayment
    request_fingerprint: str
    # Chosen by the API when it accepted the request.
    created_at: datetime
    authorization_window_seconds: float
    refund_window_seconds: float
    # Set when the workflow continues as new: the state it had.
    carried_state: PaymentState | None = None
    refund_window_ends_at: datetime | None = None
    pending_capture: CapturePayment | None = None
    pending_cancel: CancelPayment | None = None
    # Drawn by the API at start (payments.ids.instance_id); gateway idempotency
    # keys carry it. None in payments started before it existed.
    instance: str | None = None
    # The merchant has webhook endpoints: the run announces its events to them
    # (workflows/payment.py, _announce). False in payments started before.
    webhooks: bool = False
    # How long the customer has to authenticate (3-D Secure), CONTRACT §14.
    action_window_seconds: float = 3600.0

    def first_state(self) -> PaymentState:
        """The payment as this run starts: as it was carried over from the run
        before, or, in the first run, as it stands the moment it is requested
        (what the API answers ``202`` with and the start memo holds)."""
        if self.carried_state is not None:
            return self.carried_state
        request = self.request
        return PaymentState(
            id=self.payment_id,
            merchant_id=self.merchant_id,
            amount=request.amount,
            currency=request.currency,
            capture_method=request.capture_method,
            payment_method=request.payment_method,
            customer_id=request.customer_id,
            description=request.description,
            metadata=request.metadata,
            receipt_email=request.receipt_email,
            created_at=self.created_at,
            updated_at=self.created_at,
        )


# Activity inputs and results.


class GatewayStep(BaseModel):
    """What every gateway activity's input carries."""

    payment_id: str
    # The payment instance its idempotency key belongs to (None: a payment from
    # before instances).
    instance: str | None = None
    # Attempts at this step before this activity was scheduled: the fast
    # path's local attempt when it got no answer (see PaymentWorkflow._gateway).
    # Counted in the attempts a result or a failure reports.
    earlier_attempts: int = 0


class AuthorizeInput(GatewayStep):
    amount: int
    currency: str
    payment_method: str
    # When the payment was requested: a lookup for an earlier attempt's work
    # need not look further back.
    created_at: datetime | None = None
    # This run redoes the payment from its start (an operator's reset): an
    # earlier authorize with the same key may have reached the gateway.
    rerun: bool = False
    # Where the customer comes back to, if the card needs 3-D Secure.
    return_url: str | None = None


class AuthenticationInput(GatewayStep):
    """Look up, or end, the customer's authentication an authorize waits on."""

    authentication_id: str


class CaptureInput(GatewayStep):
    authorization_id: str
    amount: int


class VoidInput(GatewayStep):
    # None when authorize's outcome is unknown: look the payment up by reference.
    authorization_id: str | None
    created_at: datetime | None = None


class RefundInput(GatewayStep):
    authorization_id: str
    refund_id: str
    amount: int


class FindOperation(GatewayStep):
    """Ask the gateway whether one step of a payment was committed after all."""

    step: str  # "capture", "refund:<refund id>": the idempotency key's step
    # Hints that keep the gateway's search small.
    created_at: datetime | None = None
    authorization_id: str | None = None


class LookUpPayment(GatewayStep):
    """Ask the gateway what it committed for one payment instance, every step."""

    created_at: datetime | None = None
    authorization_id: str | None = None


class CommittedOperation(BaseModel):
    """One operation the gateway committed under one of the instance's keys."""

    step: str  # the idempotency key's step: "capture", "void", "refund:<refund id>"
    operation_id: str
    amount: int


class GatewayFailure(BaseModel):
    """Why a gateway step failed: the details of the activity's
    ``ApplicationError`` (its type is in :mod:`payments.retries`), as the
    workflow reads them."""

    message: str
    code: str | None = None
    decline_code: str | None = None
    attempt: int | None = None

    def reported(self) -> dict[str, Any]:
        """As the activity reported it, and events carry it: the fields it set."""
        return self.model_dump(exclude_unset=True)


class CustomerAction(BaseModel):
    """An authorize that waits on the customer (3-D Secure): where they
    authenticate, and how it stands."""

    authentication_id: str
    url: str | None = None
    status: AuthenticationStatus = "pending"


class GatewayResult(BaseModel):
    """What a gateway call committed, and how many attempts it took; for an
    authorize whose customer must act first, nothing yet (``operation_id``
    names the authentication) and the ``action``."""

    operation_id: str
    amount: int
    attempt: int
    action: CustomerAction | None = None


class AuthenticationResult(BaseModel):
    """Where the customer's authentication stands; once it succeeded, the
    authorization it made."""

    status: AuthenticationStatus
    authorization: GatewayResult | None = None


class SendReceipt(BaseModel):
    """One receipt to e-mail (CONTRACT §16): for the payment once it
    succeeded, or for one of its refunds (``refund_id``). Everything the
    message says is here, so every attempt sends the same message."""

    payment_id: str
    merchant_id: str
    to: str
    currency: str
    # What was charged, and, after a refund, what of it remains.
    amount_captured: int
    remaining: int
    description: str | None = None
    # When the payment succeeded, or the refund did: the message's Date.
    at: datetime
    refund_id: str | None = None
    refund_amount: int | None = None


class ReceiptSent(BaseModel):
    message_id: str


class DomainEvent(BaseModel):
    """What the workflow writes for one event; the history adds when and where."""

    type: str
    data: dict[str, Any] = Field(default_factory=dict)


class Event(BaseModel):
    """One entry of the event log (CONTRACT §6)."""

    seq: int
    type: str
    at: datetime
    payment_id: str
    data: dict[str, Any] = Field(default_factory=dict)
