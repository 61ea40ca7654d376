"""Names the service and Temporal agree on (CONTRACT §7): workflow types,
updates, signals, activities, search attributes (the memo's keys and layout
are payments/memo.py's). No I/O and no client imports, so the workflow
sandbox can import it."""

from __future__ import annotations

from typing import Final

from temporalio.common import SearchAttributeKey

WORKFLOW_TYPE = "PaymentWorkflow"


class Updates:
    """The API's updates to a payment (CONTRACT §7). Running payments know
    them by these names: never rename one."""

    CAPTURE: Final = "capture"
    CANCEL: Final = "cancel"
    REFUND: Final = "refund"
    WAIT_SETTLED: Final = "wait_settled"


class Signals:
    """Operators' signals, and the API's forwarding of gateway webhooks."""

    CANCEL: Final = "cancel"
    REFUND: Final = "refund"
    GATEWAY_EVENT: Final = "gateway_event"
    # From the merchant's endpoints workflow, when its first endpoint appears.
    WEBHOOKS_ON: Final = "webhooks_on"


STATE_QUERY: Final = "state"


class Activities:
    """The payment activities, one gateway call each but the receipt (the
    archiver's is below)."""

    AUTHORIZE: Final = "authorize"
    CAPTURE: Final = "capture"
    VOID: Final = "void"
    REFUND: Final = "refund"
    FIND_OPERATION: Final = "find_operation"
    COMMITTED_OPERATIONS: Final = "committed_operations"
    # The customer's authentication (3-D Secure) an authorize waits on.
    LOOK_UP_AUTHENTICATION: Final = "look_up_authentication"
    CANCEL_AUTHENTICATION: Final = "cancel_authentication"
    # Not the gateway's: the customer's receipt by e-mail (CONTRACT §16).
    SEND_RECEIPT: Final = "send_receipt"


STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
MERCHANT = SearchAttributeKey.for_keyword("MerchantId")
CUSTOMER = SearchAttributeKey.for_keyword("CustomerId")
AMOUNT = SearchAttributeKey.for_int("PaymentAmount")
CURRENCY = SearchAttributeKey.for_keyword("PaymentCurrency")
# When the API started the payment, to the millisecond: lists walk back over it.
CREATED_AT = SearchAttributeKey.for_datetime("PaymentCreatedAt")
RECONCILIATION_MISMATCHES = SearchAttributeKey.for_int("ReconciliationMismatches")

# Webhooks to merchants (payments/webhooks.py): never rename one of these.
WEBHOOK_ENDPOINTS_WORKFLOW_TYPE = "WebhookEndpointsWorkflow"
WEBHOOK_DELIVERY_WORKFLOW_TYPE = "WebhookDeliveryWorkflow"
WEBHOOK_DISPATCH_WORKFLOW_TYPE = "WebhookDispatchWorkflow"


class EndpointUpdates:
    """A merchant's endpoints workflow: the API's changes to its endpoints."""

    ADD: Final = "add_endpoint"
    CHANGE: Final = "change_endpoint"
    DELETE: Final = "delete_endpoint"
    ROTATE: Final = "rotate_secret"


class EndpointQueries:
    # For the API: no secrets.
    ENDPOINTS: Final = "endpoints"
    # For the worker, which signs.
    STORED: Final = "stored_endpoints"


DELIVERIES_QUERY: Final = "deliveries"


class DeliverySignals:
    ANNOUNCE: Final = "announce"
    # Several payments' announcements at once (the worker groups them).
    ANNOUNCE_ALL: Final = "announce_all"
    REDELIVER: Final = "redeliver"
    # First attempts the dispatch workflow made, handed on for their retries.
    HAND_OFF: Final = "hand_off"


class WebhookActivities:
    ANNOUNCE: Final = "announce_events"
    NEW_DELIVERIES: Final = "new_deliveries"
    REDELIVERY: Final = "redelivery"
    DELIVER: Final = "deliver_webhook"
    FIRST_ATTEMPTS: Final = "deliver_first_attempts"
    TELL_PAYMENTS: Final = "tell_payments_of_webhooks"


# On delivery workflows: the endpoints a run delivers to, for the deliveries list.
WEBHOOK_ENDPOINT_IDS = SearchAttributeKey.for_keyword_list("WebhookEndpointIds")
# A delivery workflow's memo key: its deliveries, as the list shows them.
DELIVERIES_MEMO: Final = "deliveries"

RECONCILIATION_WORKFLOW_TYPE = "ReconciliationWorkflow"
RECONCILIATION_SCHEDULE_ID = "payments-reconciliation"
# Counts running payments stuck in a status, every minute (payments_stuck).
STUCK_WORKFLOW_TYPE = "StuckPaymentsWorkflow"
STUCK_SCHEDULE_ID = "payments-stuck-count"
STUCK_ACTIVITY = "count_stuck_payments"
ARCHIVE_WORKFLOW_TYPE = "ArchiveWorkflow"
ARCHIVE_WORKFLOW_ID = "payments-archiver"
ARCHIVE_ACTIVITY = "archive_closed_payments"

# name -> type as `temporal server start-dev --search-attribute` and
# `temporal operator search-attribute create` spell it.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "PaymentStatus": "Keyword",
    "MerchantId": "Keyword",
    "CustomerId": "Keyword",
    "PaymentAmount": "Int",
    "PaymentCurrency": "Keyword",
    "PaymentCreatedAt": "Datetime",
    # Not on payments: on reconciliation runs, so runs that found something filter out.
    "ReconciliationMismatches": "Int",
    # Not on payments: on their webhook delivery workflows.
    "WebhookEndpointIds": "KeywordList",
}

# Memo keys and the memo's layout: payments/memo.py.

# Where the API serves Temporal's codec-server protocol (api/codec.py); the UI and
# CLI are pointed at it (`--ui-codec-endpoint`, `--codec-endpoint`).
CODEC_PATH = "/codec"
