"""The payment's memo: how it is written and how it is read, in one place.

The memo is what a reader sees without replaying the workflow. It holds:

| key                   | written                          | holds                                 |
|-----------------------|----------------------------------|---------------------------------------|
| `payment`             | at start, on every domain event, | the payment as it stands              |
|                       | at continue-as-new               | (:class:`PaymentState`)               |
| `request_fingerprint` | at start, at continue-as-new     | the fingerprint of the create request |
| `event`               | on every domain event            | the :class:`DomainEvent` it records   |

A domain event is one memo upsert (``WorkflowPropertiesModified``) of `event`
and `payment` together, so the history holds each event beside the payment as
that event left it: the event log (``payments.events``) reads one, a waiting
caller (``payments.service``) the other.

No I/O of its own and nothing but ``temporalio`` types: the workflow sandbox
imports it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final, TypeVar

from temporalio.api.common.v1 import Payload
from temporalio.converter import DataConverter

from payments.models import DomainEvent, PaymentState

if TYPE_CHECKING:
    from temporalio.client import WorkflowExecution

PAYMENT: Final = "payment"
EVENT: Final = "event"
REQUEST_FINGERPRINT: Final = "request_fingerprint"

T = TypeVar("T")


def at_start(payment: PaymentState, request_fingerprint: str) -> dict[str, Any]:
    """The memo a run starts with: the first run, and each one continued as new."""
    return {PAYMENT: payment, REQUEST_FINGERPRINT: request_fingerprint}


def recording(event: DomainEvent, payment: PaymentState) -> dict[str, Any]:
    """The upsert that records one domain event and the payment it leaves."""
    return {EVENT: event, PAYMENT: payment}


async def payment_of(execution: WorkflowExecution) -> PaymentState | None:
    """The payment as the memo of a described or listed run holds it."""
    state: PaymentState | None = await execution.memo_value(PAYMENT, None, type_hint=PaymentState)
    return state


async def fingerprint_of(execution: WorkflowExecution) -> str | None:
    """The fingerprint of the request that created the payment, if the memo has one."""
    value = await execution.memo_value(REQUEST_FINGERPRINT, None)
    return value if isinstance(value, str) else None


def sealed_payment(fields: Mapping[str, Payload]) -> Payload:
    """The `payment` payload as Temporal stores it (still sealed by the codec)."""
    return fields[PAYMENT]


async def payment_in(
    fields: Mapping[str, Payload], converter: DataConverter
) -> PaymentState | None:
    """The payment an upsert's fields carry, if they carry one."""
    return await _decoded(fields, PAYMENT, PaymentState, converter)


async def event_in(fields: Mapping[str, Payload], converter: DataConverter) -> DomainEvent | None:
    """The domain event an upsert's fields record, if they record one."""
    return await _decoded(fields, EVENT, DomainEvent, converter)


async def _decoded(
    fields: Mapping[str, Payload], key: str, type_hint: type[T], converter: DataConverter
) -> T | None:
    if key not in fields:
        return None
    [value] = await converter.decode([fields[key]], [type_hint])
    result: T = value
    return result
