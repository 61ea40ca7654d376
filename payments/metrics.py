"""The service's own metric names and labels (CONTRACT §15), in one place: the
worker's code, the API's, the alert rules' and the dashboard's tests read them
here. No I/O: workflow code imports it.

Worker (through Temporal's metric meters, exported by the SDK's Prometheus
endpoint beside its own ``temporal_…`` metrics; counters from workflow code
do not count on replay):

    payments_created_total{capture_method}       a payment requested
    payments_settled_total{status}               its first outcome: succeeded,
                                                 requires_capture, failed, canceled
    payments_declines_total{decline_code}        the gateway declined the card
    payments_gateway_request_duration_seconds{operation,outcome}
                                                 one gateway call; outcome ok,
                                                 declined or error (no answer)
    payments_unknown_outcomes_total{step}        a step gave up not knowing
                                                 what the gateway did
    payments_refunds_total{status}               succeeded or failed
    payments_receipts_total{outcome}             a receipt e-mailed: sent or
                                                 failed (refused, or no server
                                                 for a day)
    payments_webhook_deliveries_total{outcome}   one attempt: delivered,
                                                 retrying or failed (given up);
                                                 dropped: its endpoint was
                                                 deleted or disabled
    payments_stuck{status,older_than}            running payments in processing
                                                 or requires_capture created
                                                 longer ago than 15m, 1h, 24h
    payments_archive_unarchived                  closed payments (and runs) the
                                                 archiver's last pass could not
                                                 archive; the next tries them first
    payments_archive_complete_pass_timestamp_seconds
                                                 when the archiver last ended a
                                                 pass that archived all it listed
                                                 (0 until then, from the worker's
                                                 start)
    payments_archive_lost_total                  payments (or runs) Temporal
                                                 deleted before they were archived

API (prometheus-client, at /metrics):

    payments_http_requests_total{route,method,status}
    payments_http_request_duration_seconds{route,method}
    payments_streams_open
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any, Final

from temporalio.common import MetricCounter, MetricGaugeFloat, MetricMeter

from payments import names

CREATED: Final = "payments_created_total"
SETTLED: Final = "payments_settled_total"
DECLINES: Final = "payments_declines_total"
GATEWAY_DURATION: Final = "payments_gateway_request_duration_seconds"
UNKNOWN_OUTCOMES: Final = "payments_unknown_outcomes_total"
REFUNDS: Final = "payments_refunds_total"
RECEIPTS: Final = "payments_receipts_total"
WEBHOOK_DELIVERIES: Final = "payments_webhook_deliveries_total"
STUCK: Final = "payments_stuck"
ARCHIVE_UNARCHIVED: Final = "payments_archive_unarchived"
ARCHIVE_COMPLETE_PASS: Final = "payments_archive_complete_pass_timestamp_seconds"
ARCHIVE_LOST: Final = "payments_archive_lost_total"

HTTP_REQUESTS: Final = "payments_http_requests_total"
HTTP_DURATION: Final = "payments_http_request_duration_seconds"
STREAMS_OPEN: Final = "payments_streams_open"

DESCRIPTIONS: Final = {
    CREATED: "Payments requested, by capture method.",
    SETTLED: "Payments' first outcome (succeeded, requires_capture, failed, canceled).",
    DECLINES: "Card declines from the gateway, by decline code.",
    GATEWAY_DURATION: "Gateway calls, by operation and outcome (ok, declined, error).",
    UNKNOWN_OUTCOMES: "Steps that gave up without knowing what the gateway did.",
    REFUNDS: "Refunds, by final status.",
    RECEIPTS: "Receipts e-mailed to customers, by outcome (sent, failed).",
    WEBHOOK_DELIVERIES: "Webhook deliveries, by outcome (delivered, retrying, failed, dropped).",
    STUCK: "Running payments in a status longer than expected, by status and age.",
    ARCHIVE_UNARCHIVED: "Closed payments and runs the archiver's last pass could not archive.",
    ARCHIVE_COMPLETE_PASS: "Unix time the archiver last ended a pass with nothing left unarchived.",
    ARCHIVE_LOST: "Payments and runs Temporal deleted before the archiver could archive them.",
    HTTP_REQUESTS: "HTTP requests to the API, by route template, method and status.",
    HTTP_DURATION: "HTTP request durations at the API, by route template and method.",
    STREAMS_OPEN: "Event streams (SSE and WebSocket) open at the API.",
}

WORKER_METRICS: Final = (
    CREATED,
    SETTLED,
    DECLINES,
    GATEWAY_DURATION,
    UNKNOWN_OUTCOMES,
    REFUNDS,
    RECEIPTS,
    WEBHOOK_DELIVERIES,
    STUCK,
    ARCHIVE_UNARCHIVED,
    ARCHIVE_COMPLETE_PASS,
    ARCHIVE_LOST,
)
API_METRICS: Final = (HTTP_REQUESTS, HTTP_DURATION, STREAMS_OPEN)

# Seconds; a gateway call is tens of milliseconds when well, seconds when not.
GATEWAY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# The stuck-payment gauge's ages (label older_than), and the statuses it watches.
STUCK_AGES: Final = {
    "15m": timedelta(minutes=15),
    "1h": timedelta(hours=1),
    "24h": timedelta(days=1),
}
STUCK_STATUSES: Final = ("processing", "requires_capture")

LOOKUP: Final = "lookup"
_STEPS: Final = frozenset({"authorize", "capture", "void", "refund"})


def operation_of(activity_type: str) -> str:
    """A gateway call's ``operation`` label: the step, or ``lookup`` for the
    activities that ask the gateway what it committed."""
    return activity_type if activity_type in _STEPS else LOOKUP


_BEFORE_OUTCOME: Final = frozenset({"processing", "requires_action"})
_OUTCOMES: Final = frozenset({"requires_capture", "succeeded", "failed", "canceled"})


def counted(
    event_type: str, data: dict[str, Any], before: str, after: str
) -> list[tuple[str, dict[str, str]]]:
    """The counters one recorded event moves, with their labels (the payment
    workflow adds 1 to each; payments_created_total it counts at its start).
    ``before`` and ``after``: the payment's status around the event."""
    found: list[tuple[str, dict[str, str]]] = []
    if event_type == "payment.declined":
        code = data.get("decline_code") or data.get("code") or "unknown"
        found.append((DECLINES, {"decline_code": str(code)}))
    elif event_type in ("refund.succeeded", "refund.failed"):
        found.append((REFUNDS, {"status": event_type.removeprefix("refund.")}))
    elif event_type in ("receipt.sent", "receipt.failed"):
        found.append((RECEIPTS, {"outcome": event_type.removeprefix("receipt.")}))
    if before in _BEFORE_OUTCOME and after in _OUTCOMES:
        found.append((SETTLED, {"status": after}))
    return found


# Counters a worker exports at 0 from its start, under the labels the SDK puts
# on what its workflows count (with ``namespace`` and ``task_queue``), so that
# each is one series from 0: a rate or an alert on increase() sees the first
# event. Labels with open-ended values (decline codes) wait for their first.
_PAYMENT: Final = names.WORKFLOW_TYPE
_DELIVERY: Final = names.WEBHOOK_DELIVERY_WORKFLOW_TYPE
ZERO_SERIES: Final = (
    *((CREATED, _PAYMENT, {"capture_method": m}) for m in ("automatic", "manual")),
    *((SETTLED, _PAYMENT, {"status": s}) for s in sorted(_OUTCOMES)),
    *((UNKNOWN_OUTCOMES, _PAYMENT, {"step": s}) for s in sorted(_STEPS)),
    *((REFUNDS, _PAYMENT, {"status": s}) for s in ("succeeded", "failed")),
    *((RECEIPTS, _PAYMENT, {"outcome": o}) for o in ("sent", "failed")),
    *(
        (WEBHOOK_DELIVERIES, _DELIVERY, {"outcome": o})
        for o in ("delivered", "retrying", "failed", "dropped")
    ),
)


def zero_series(meter: MetricMeter, namespace: str, task_queue: str) -> None:
    """Every counter of :data:`ZERO_SERIES` at 0 on ``meter`` (the runtime's),
    and the archiver's lost records and last complete pass at 0 (never),
    under the labels its activity sets them with: a worker none of whose
    passes ever ends shows it."""
    for name, workflow_type, labels in ZERO_SERIES:
        meter.create_counter(name, DESCRIPTIONS[name]).add(
            0,
            {
                **labels,
                "namespace": namespace,
                "task_queue": task_queue,
                "workflow_type": workflow_type,
            },
        )
    archiver = {
        "namespace": namespace,
        "task_queue": task_queue,
        "activity_type": names.ARCHIVE_ACTIVITY,
    }
    archive_lost_counter(meter).add(0, archiver)
    complete_pass_gauge(meter).set(0.0, archiver)


def archive_lost_counter(meter: MetricMeter) -> MetricCounter:
    """The archiver's :data:`ARCHIVE_LOST` on ``meter``."""
    return meter.create_counter(ARCHIVE_LOST, DESCRIPTIONS[ARCHIVE_LOST])


def complete_pass_gauge(meter: MetricMeter) -> MetricGaugeFloat:
    """The archiver's :data:`ARCHIVE_COMPLETE_PASS` on ``meter``, in seconds."""
    return meter.create_gauge_float(ARCHIVE_COMPLETE_PASS, DESCRIPTIONS[ARCHIVE_COMPLETE_PASS], "s")
