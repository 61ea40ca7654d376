"""Which gateway failures are retried, and how: written down once.

Activities turn gateway answers into ``ApplicationError`` types below; the
workflow's retry policies name the permanent ones as non-retryable. A
transient failure (timeout, reset, 5xx, rate limit) is retried with the same
idempotency key, so a retry replays the gateway's first outcome instead of
charging again.

| gateway answer                     | error type          | retried |
|------------------------------------|---------------------|---------|
| card declined                      | CardDeclined        | no      |
| request refused (invalid, too much)| GatewayRejected     | no      |
| unknown authorization / capture    | GatewayNotFound     | no      |
| timeout, reset, 5xx, 429           | GatewayUnavailable  | yes     |

Receipts by e-mail (not the gateway's, never on the payment's way):

| mail server answer                 | error type          | retried |
|------------------------------------|---------------------|---------|
| 5xx refusal of sender, recipient,  | ReceiptRefused      | no      |
| or message                         |                     |         |
| unreachable, timeout, 4xx, TLS or  | MailUnavailable     | yes     |
| login trouble (ours to fix)        |                     |         |

The fast path: a step with a ``fast_attempt`` tries first as a local activity
(one attempt, within that budget); a refusal there is final, anything else
hands the step to the regular activity and the policy below.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio.common import RetryPolicy

CARD_DECLINED = "CardDeclined"
GATEWAY_REJECTED = "GatewayRejected"
GATEWAY_NOT_FOUND = "GatewayNotFound"
GATEWAY_UNAVAILABLE = "GatewayUnavailable"

PERMANENT_ERROR_TYPES = (CARD_DECLINED, GATEWAY_REJECTED, GATEWAY_NOT_FOUND)
# A local attempt the activity declines before calling the gateway (see
# ``Gateway.replays_by_key``): the regular activity makes the first attempt.
NOT_LOCAL = "NotALocalStep"


@dataclass(frozen=True)
class StepPolicy:
    """Timeouts and retries of one gateway step."""

    start_to_close: timedelta
    # How long we keep trying before the step counts as failed.
    schedule_to_close: timedelta
    retry: RetryPolicy
    # Activities heartbeat while they wait on the gateway: a dead worker's
    # attempt is retried elsewhere after this long.
    heartbeat: timedelta = timedelta(seconds=5)
    # The fast path: the step's first attempt runs as a local activity, in
    # the workflow task, for at most this long; no answer by then (or an
    # error that is not a refusal) and the regular activity above takes over.
    # None: the step always runs as a regular activity.
    fast_attempt: timedelta | None = None


def _retry(maximum_interval: timedelta) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=2.0,
        maximum_interval=maximum_interval,
        non_retryable_error_types=list(PERMANENT_ERROR_TYPES),
    )


# A gateway's usual answer comes well within a second. Past that the payment is
# better off as a regular activity: it holds no workflow task, the UI shows it
# pending with its attempts, and an update (a cancel) reaches the run at once.
FAST_ATTEMPT = timedelta(seconds=1)

# A customer may be waiting on authorize: give up after minutes, then void by
# reference in case the gateway did authorize. Capture, void and refund move
# money we already promised: keep trying for a day.
_DAY = timedelta(days=1)
AUTHORIZE = StepPolicy(
    timedelta(seconds=30),
    timedelta(minutes=10),
    _retry(timedelta(seconds=30)),
    fast_attempt=FAST_ATTEMPT,
)
CAPTURE = StepPolicy(
    timedelta(seconds=30), _DAY, _retry(timedelta(minutes=5)), fast_attempt=FAST_ATTEMPT
)
VOID = StepPolicy(
    timedelta(seconds=30), _DAY, _retry(timedelta(minutes=5)), fast_attempt=FAST_ATTEMPT
)
REFUND = StepPolicy(
    timedelta(seconds=30), _DAY, _retry(timedelta(minutes=5)), fast_attempt=FAST_ATTEMPT
)
# Asking what happened after a step gave up, or what a reset run must re-learn:
# a read on a path that is already slow or unusual, shown in the UI as it runs;
# retried for a day too.
FIND = StepPolicy(timedelta(seconds=30), _DAY, _retry(timedelta(minutes=5)))

# The customer's authentication (3-D Secure, CONTRACT §14). The payment waits
# for the gateway's word (a webhook) and also looks it up itself after each of
# these pauses, the last one repeated until the action window closes, so a
# lost webhook delays the outcome by minutes at most and never strands it.
AUTHENTICATION_LOOKUPS = tuple(timedelta(seconds=seconds) for seconds in (10, 20, 40, 80, 160, 300))
# One look: no answer is no news, and the next pause brings the next look.
LOOK_UP_AUTHENTICATION = StepPolicy(
    timedelta(seconds=10),
    timedelta(minutes=1),
    _retry(timedelta(seconds=10)),
    fast_attempt=FAST_ATTEMPT,
)
# Ending it when the payment stops waiting: for as long as a void, since until
# the gateway says it ended, the customer could still authorize money nobody
# would capture; if it never answers, the payment voids by reference whatever
# the customer authorized by then, and reconciliation reports anything later.
CANCEL_AUTHENTICATION = StepPolicy(
    timedelta(seconds=30), _DAY, _retry(timedelta(minutes=5)), fast_attempt=FAST_ATTEMPT
)

# The customer's receipt by e-mail (CONTRACT §16), retried like a gateway call
# for a day; the saga never waits for it. A refusal, or a day without an
# answer, becomes ``receipt.failed``.
RECEIPT_REFUSED = "ReceiptRefused"
MAIL_UNAVAILABLE = "MailUnavailable"
RECEIPT = StepPolicy(
    timedelta(seconds=60),
    _DAY,
    RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=5),
        non_retryable_error_types=[RECEIPT_REFUSED],
    ),
)
