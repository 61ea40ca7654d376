"""Webhooks to merchants (CONTRACT §12): endpoints, deliveries, the retry schedule.

Where things live, and why:

- A merchant's endpoints are the state of one entity workflow,
  ``WebhookEndpointsWorkflow`` (id :func:`endpoints_workflow_id`): Temporal is
  the only store this service has, an update's validator refuses a bad change
  before anything is written, the history is the audit trail of every change
  (who rotated which secret when), and a lease is a durable timer. The
  secrets are in that history only inside payloads, which the codec seals.
- First attempts are one ``WebhookDispatchWorkflow`` per merchant (id
  :func:`dispatch_workflow_id`), started by the first announcement. It takes
  the announcements that arrived since its last batch, and one local
  activity reads those payments' events and sends each to every endpoint
  that receives it: per payment and endpoint in ``seq`` order, stopping at
  the first that fails. One workflow task and one marker serve many
  payments, which is what keeps webhooks cheap: a workflow per payment cost
  a merchant with one endpoint two thirds of its throughput. A batch lasts
  at least ``BATCH_WINDOW`` (activities/webhooks.py): while its task is open
  the next announcements gather on the server. Its state keeps
  the newest successes per endpoint (:data:`RECENT_DELIVERIES`), which the
  API lists with a query.
- What a first attempt did not deliver is handed on (:class:`HandOff`) to
  the payment's ``WebhookDeliveryWorkflow`` (id :func:`deliveries_workflow_id`):
  a child workflow the dispatch workflow starts, or a signal if it runs
  already, commands recorded after the attempt's result, so a crash can
  neither lose the hand-off nor repeat it. That workflow owns the retry
  schedule and redeliveries; while it runs, the payment's later events go to
  it (order per payment and endpoint holds). Its memo holds its
  deliveries' log, which the API lists from visibility
  (``WebhookEndpointIds`` says which endpoints a run delivered to). An
  endpoint that timed out is tried only through these workflows for a while
  (:data:`SLOW_ENDPOINT_PAUSE`), so it cannot hold up its merchant's others.
- A merchant with no endpoint starts neither.

A payment's events are the history's (payments/events.py); the payment
workflow announces how many it has recorded (:class:`Announcement`), and the
activities read them from the history itself, with their ``seq``.

The retry schedule (:func:`next_attempt_delay`): after a failed attempt, 5 s,
5 min, 30 min, 2 h, 5 h, 10 h, 10 h, then every 12 h, until 3 days after the
first attempt; then the delivery is ``failed``.
"""

from __future__ import annotations

import base64
import re
import secrets
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any, Final

from pydantic import BaseModel, ConfigDict, Field, field_validator

from payments.events import TYPES
from payments.ids import random_id

ENDPOINT_PREFIX: Final = "we_"
EVENT_PREFIX: Final = "evt_"
SECRET_PREFIX: Final = "whsec_"
ALL_EVENTS: Final = "*"
MAX_URL_LENGTH = 2048
MAX_DESCRIPTION_LENGTH = 500
MIN_LEASE_SECONDS = 30
MAX_LEASE_SECONDS = 86_400
# The old secret keeps signing this long after a rotation.
ROTATION_OVERLAP = timedelta(hours=24)
# How long a worker trusts what it last read of a merchant's endpoints
# (activities/webhooks.py). The API answers a change of them only after this
# long (payments/webhook_service.py), so no attempt after the answer misses it.
ENDPOINTS_CACHE_SECONDS = 1.0
# A merchant's endpoints: enough for every environment of every integration.
MAX_ENDPOINTS = 16

RETRY_DELAYS: Final = (
    timedelta(seconds=5),
    timedelta(minutes=5),
    timedelta(minutes=30),
    timedelta(hours=2),
    timedelta(hours=5),
    timedelta(hours=10),
    timedelta(hours=10),
)
LATER_RETRY_DELAY: Final = timedelta(hours=12)
DELIVERY_WINDOW: Final = timedelta(days=3)
# The dispatch workflow's log: this many newest deliveries per endpoint.
RECENT_DELIVERIES: Final = 100
# An endpoint whose first attempt timed out gets its deliveries through the
# payments' delivery workflows only, for this long.
SLOW_ENDPOINT_PAUSE: Final = timedelta(minutes=10)


def next_attempt_delay(
    attempts: int, first_attempt_at: datetime, now: datetime
) -> timedelta | None:
    """How long after ``now`` to try again, ``attempts`` having failed; None
    once the next attempt would fall beyond the delivery window."""
    delay = RETRY_DELAYS[attempts - 1] if attempts <= len(RETRY_DELAYS) else LATER_RETRY_DELAY
    if now + delay > first_attempt_at + DELIVERY_WINDOW:
        return None
    return delay


def endpoints_workflow_id(merchant_id: str) -> str:
    return f"webhook-endpoints-{merchant_id}"


def deliveries_workflow_id(payment_id: str) -> str:
    return f"{payment_id}-webhooks"


def dispatch_workflow_id(merchant_id: str) -> str:
    return f"webhook-dispatch-{merchant_id}"


def new_endpoint_id() -> str:
    return random_id(ENDPOINT_PREFIX)


def new_secret() -> str:
    """``whsec_`` and the base64 of 32 random bytes: the Standard Webhooks form."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def event_id(payment_id: str, seq: int) -> str:
    """The event's id, the same on every attempt (``webhook-id``): the payment and
    the ``seq`` name the event once and for all."""
    return f"{EVENT_PREFIX}{payment_id.removeprefix('pay_')}_{seq}"


_EVENT_ID = re.compile(r"^evt_([a-z0-9]{1,64})_([0-9]{1,12})$")


def parse_event_id(text: str) -> tuple[str, int] | None:
    """(payment id, seq) of an event id, if ``text`` is one."""
    found = _EVENT_ID.match(text)
    if found is None:
        return None
    return f"pay_{found.group(1)}", int(found.group(2))


class EndpointStatus(StrEnum):
    ENABLED = "enabled"
    DISABLED = "disabled"


def _check_events(events: list[str]) -> list[str]:
    if not events:
        raise ValueError("name at least one event type, or '*'")
    for name in events:
        if name != ALL_EVENTS and name not in TYPES:
            raise ValueError(f"unknown event type: {name!r}")
    if ALL_EVENTS in events and len(events) > 1:
        raise ValueError("'*' stands alone")
    return list(dict.fromkeys(events))


class CreateEndpoint(BaseModel):
    """``POST /v1/webhook_endpoints``. The URL's safety is checked by the
    service (payments/outbound.py), which resolves it."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=MAX_URL_LENGTH)
    enabled_events: list[str] = Field(min_length=1, max_length=len(TYPES) + 1)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    # Ours: the service removes an endpoint not renewed within this long
    # (`payments listen`, which may be killed without a chance to clean up).
    lease_seconds: int | None = Field(default=None, ge=MIN_LEASE_SECONDS, le=MAX_LEASE_SECONDS)

    _events = field_validator("enabled_events")(_check_events)


class UpdateEndpoint(BaseModel):
    """``POST /v1/webhook_endpoints/{id}``: what is sent changes, the rest stays."""

    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(default=None, max_length=MAX_URL_LENGTH)
    enabled_events: list[str] | None = Field(default=None, min_length=1, max_length=len(TYPES) + 1)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_LENGTH)
    status: EndpointStatus | None = None
    lease_seconds: int | None = Field(default=None, ge=MIN_LEASE_SECONDS, le=MAX_LEASE_SECONDS)

    @field_validator("enabled_events")
    @classmethod
    def _events(cls, events: list[str] | None) -> list[str] | None:
        return None if events is None else _check_events(events)


class Endpoint(BaseModel):
    """An endpoint as the merchant sees it (CONTRACT §12), secrets aside."""

    id: str
    url: str
    enabled_events: list[str]
    description: str | None = None
    status: EndpointStatus = EndpointStatus.ENABLED
    created_at: datetime
    expires_at: datetime | None = None

    def wants(self, event_type: str) -> bool:
        return ALL_EVENTS in self.enabled_events or event_type in self.enabled_events

    def receives(self, event_type: str, at: datetime) -> bool:
        """Whether an event of this type, recorded at ``at``, goes to this endpoint:
        enabled, subscribed, and registered by then (Stripe's rule: an endpoint
        gets the events that happen after it exists)."""
        return (
            self.status is EndpointStatus.ENABLED
            and self.wants(event_type)
            and self.created_at <= at
        )

    def view(self) -> dict[str, Any]:
        return {"object": "webhook_endpoint", **self.model_dump(mode="json")}


class SigningSecret(BaseModel):
    secret: str
    # None: signs until the next rotation.
    expires_at: datetime | None = None


class StoredEndpoint(BaseModel):
    """An endpoint with its secrets, as its merchant's workflow keeps it."""

    endpoint: Endpoint
    # Newest first; an old one signs until it expires.
    secrets: list[SigningSecret]
    lease_seconds: int | None = None
    # When it was last enabled again after being disabled; None: never disabled
    # since it was created.
    enabled_at: datetime | None = None

    def receives(self, event_type: str, at: datetime) -> bool:
        """:meth:`Endpoint.receives`, and not an event recorded before the
        endpoint was last enabled: what happened while it was disabled is
        never delivered, also when it is enabled again."""
        return self.endpoint.receives(event_type, at) and (
            self.enabled_at is None or self.enabled_at <= at
        )

    def signing_secrets(self, now: datetime) -> list[str]:
        return [s.secret for s in self.secrets if s.expires_at is None or s.expires_at > now]


# Update inputs of WebhookEndpointsWorkflow. The API draws ids and secrets, so
# that nothing a history could reproduce (the workflow's seeded random) makes them.


class AddEndpoint(BaseModel):
    endpoint_id: str
    secret: str
    request: CreateEndpoint


class ChangeEndpoint(BaseModel):
    endpoint_id: str
    request: UpdateEndpoint


class EndpointRef(BaseModel):
    endpoint_id: str


class RotateSecret(BaseModel):
    endpoint_id: str
    secret: str


class EndpointsInput(BaseModel):
    merchant_id: str
    # Carried across continue-as-new.
    endpoints: list[StoredEndpoint] = Field(default_factory=list)
    tell_since: datetime | None = None


class EndpointWithSecret(BaseModel):
    """What create and rotate answer: the one time the secret is shown."""

    endpoint: Endpoint
    secret: str


# Deliveries.


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


class Announcement(BaseModel):
    """The payment workflow's word that run ``run_id`` has recorded its events
    ``first`` to ``end`` (exclusive, counted from the run's first event, the
    first run's ``payment.requested`` being 0) and their types."""

    payment_id: str
    merchant_id: str
    run_id: str
    first: int
    end: int
    types: list[str]
    # A run after continue-as-new: its first events are not the payment's.
    continued: bool = False


class WebhooksOn(BaseModel):
    """The ``webhooks_on`` signal: the merchant's first endpoint, registered at ``since``."""

    since: datetime


class TellPayments(BaseModel):
    """The activity that sends ``webhooks_on`` to the merchant's running payments."""

    merchant_id: str
    since: datetime


class Redeliver(BaseModel):
    """``POST …/deliveries/{event_id}/retry``."""

    endpoint_id: str
    seq: int


class RedeliveryLookup(BaseModel):
    """The event a redelivery sends, to be read from the payment's history."""

    payment_id: str
    merchant_id: str
    endpoint_id: str
    seq: int


class RedeliveryAccepted(BaseModel):
    """The answer to a redelivery: it is on its way."""

    endpoint_id: str
    event_id: str
    payment_id: str
    seq: int
    status: DeliveryStatus = DeliveryStatus.PENDING

    def view(self) -> dict[str, Any]:
        return {"object": "webhook_delivery", **self.model_dump(mode="json")}


class DeliveriesInput(BaseModel):
    payment_id: str
    merchant_id: str
    # Started by the dispatch workflow: what its first attempts left, or an
    # announcement for a payment whose deliveries this workflow carries.
    handoff: HandOff | None = None
    announcement: Announcement | None = None


class WebhookEvent(BaseModel):
    """One event as it is delivered: the body's fields, from the history."""

    id: str
    type: str
    created_at: datetime
    payment_id: str
    seq: int
    # {"object": <the payment object after the event>, "event": <its data>}
    data: dict[str, Any]

    def body(self) -> dict[str, Any]:
        return {"object": "event", **self.model_dump(mode="json")}


class NewDeliveries(BaseModel):
    """What the delivery workflow learns from an announcement: the events and,
    for each, the endpoints that receive it."""

    events: list[WebhookEvent]
    endpoints: dict[int, list[str]] = Field(default_factory=dict)
    # A redelivery's: the delivery as the dispatch workflow's first attempt
    # left it, whose attempts the redelivery goes on counting.
    earlier: list[Delivery] = Field(default_factory=list)


class Delivery(BaseModel):
    """One event to one endpoint (CONTRACT §12's deliveries list)."""

    endpoint_id: str
    event_id: str
    type: str
    payment_id: str
    seq: int
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    # Why the last attempt did not deliver, when no status code says it.
    last_error: str | None = None
    next_attempt_at: datetime | None = None
    first_attempt_at: datetime | None = None
    created_at: datetime

    @classmethod
    def of(cls, event: WebhookEvent, endpoint_id: str, at: datetime | None) -> Delivery:
        """The event's delivery to the endpoint, not yet attempted, due ``at``."""
        return cls(
            endpoint_id=endpoint_id,
            event_id=event.id,
            type=event.type,
            payment_id=event.payment_id,
            seq=event.seq,
            next_attempt_at=at,
            created_at=event.created_at,
        )

    def view(self) -> dict[str, Any]:
        return {
            "object": "webhook_delivery",
            **self.model_dump(mode="json", exclude={"first_attempt_at"}),
        }


class DeliveryRequest(BaseModel):
    """The delivery activity's input: one attempt of one event to one endpoint."""

    merchant_id: str
    endpoint_id: str
    event: WebhookEvent
    attempt: int


class DeliveryOutcome(BaseModel):
    delivered: bool
    status_code: int | None = None
    # "timeout", "connection_failed", "address_not_allowed", ... or, when the
    # endpoint is no more: "endpoint_deleted", "endpoint_disabled".
    error: str | None = None

    @property
    def endpoint_gone(self) -> bool:
        return self.error in (ENDPOINT_DELETED, ENDPOINT_DISABLED)


ENDPOINT_DELETED: Final = "endpoint_deleted"
ENDPOINT_DISABLED: Final = "endpoint_disabled"


class HandOff(BaseModel):
    """Deliveries of one payment that the dispatch workflow's first attempt did
    not deliver (attempted once, or waiting behind one that was), with their
    events, for the payment's delivery workflow to carry on."""

    payment_id: str
    deliveries: list[Delivery]
    events: list[WebhookEvent]


class FirstAttempts(BaseModel):
    """The dispatch activity's input: announcements of the merchant's payments,
    in the order they came; endpoints to leave to the delivery workflows."""

    merchant_id: str
    announcements: list[Announcement]
    skip_endpoints: list[str] = Field(default_factory=list)


class FirstAttemptsDone(BaseModel):
    """What a batch of first attempts did. Times are the dispatch workflow's
    to set (its clock is the one the delivery workflows compare with)."""

    # Every delivery the batch made or queued: succeeded, or pending (attempted
    # once and refused, or not tried) for the payment's delivery workflow.
    deliveries: list[Delivery] = Field(default_factory=list)
    # The events of the pending ones, which the hand-off carries.
    pending_events: list[WebhookEvent] = Field(default_factory=list)
    # Announcements left to the payment's delivery workflow whole: its events
    # could not be read, or it runs already (it may be retrying an earlier
    # event, which the later ones wait behind).
    forward: list[Announcement] = Field(default_factory=list)
    # Endpoints whose attempt timed out.
    slow: list[str] = Field(default_factory=list)


class DispatchInput(BaseModel):
    merchant_id: str
    # Carried across continue-as-new.
    recent: list[Delivery] = Field(default_factory=list)
    slow_until: dict[str, datetime] = Field(default_factory=dict)
    inbox: list[Announcement] = Field(default_factory=list)
