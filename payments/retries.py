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


def _retry(maximum_interval: timedelta) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(milliseconds=500),
        backoff_coefficient=2.0,
        maximum_interval=maximum_interval,
        non_retryable_error_types=list(PERMANENT_ERROR_TYPES),
    )


# A customer may be waiting on authorize: give up after minutes, then void by
# reference in case the gateway did authorize. Capture, void and refund move
# money we already promised: keep trying for a day.
AUTHORIZE = StepPolicy(timedelta(seconds=30), timedelta(minutes=10), _retry(timedelta(seconds=30)))
CAPTURE = StepPolicy(timedelta(seconds=30), timedelta(days=1), _retry(timedelta(minutes=5)))
VOID = StepPolicy(timedelta(seconds=30), timedelta(days=1), _retry(timedelta(minutes=5)))
REFUND = StepPolicy(timedelta(seconds=30), timedelta(days=1), _retry(timedelta(minutes=5)))
# Asking what happened after a step gave up: a read, retried for a day too.
FIND = StepPolicy(timedelta(seconds=30), timedelta(days=1), _retry(timedelta(minutes=5)))
