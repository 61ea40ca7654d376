"""The payment activities: one gateway call each, with an idempotency key
derived from the payment id and the step, so a retried activity never charges
twice. Gateway failures become the ``ApplicationError`` types of
:mod:`payments.retries`; the retry policy decides what happens next.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError, ApplicationErrorCategory

from payments import metrics, retries
from payments.gateway import (
    Authentication,
    CardDeclined,
    Gateway,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    PermanentGatewayError,
    TransientGatewayError,
)
from payments.ids import (
    AUTHORIZE_STEP,
    CANCEL_AUTHENTICATION_STEP,
    CAPTURE_STEP,
    VOID_STEP,
    idempotency_key,
    refund_step,
    step_of,
)
from payments.models import (
    AuthenticationInput,
    AuthenticationResult,
    AuthorizeInput,
    CaptureInput,
    CommittedOperation,
    CustomerAction,
    FindOperation,
    GatewayFailure,
    GatewayResult,
    GatewayStep,
    LookUpPayment,
    RefundInput,
    VoidInput,
)
from payments.names import Activities

T = TypeVar("T")


async def _heartbeating(call: Awaitable[T], details: Sequence[object] = ()) -> T:
    """Await ``call`` while telling Temporal this worker is alive, so a worker
    that dies mid-call is noticed within the heartbeat timeout, not after the
    whole start-to-close timeout, and the retry (same idempotency key) runs
    elsewhere at once. Each heartbeat repeats ``details`` as they are then:
    the next attempt reads the last heartbeat's. A local activity (the fast
    path's attempt) has no heartbeat: its workflow task is what keeps it."""
    if activity.info().is_local:
        return await call
    interval = (activity.info().heartbeat_timeout or timedelta(seconds=10)) / 3
    task = asyncio.ensure_future(call)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=interval.total_seconds())
            if done:
                return task.result()
            activity.heartbeat(*details)
    finally:
        task.cancel()


def _attempt(request: GatewayStep) -> int:
    """This attempt's number at the step, the fast path's local attempt counted."""
    return request.earlier_attempts + activity.info().attempt


async def _gateway_call(
    call: Awaitable[T],
    request: GatewayStep,
    heartbeat_details: Sequence[object] = (),
    *,
    operation: str | None = None,
) -> T:
    """The gateway call, timed (``payments_gateway_request_duration_seconds``:
    ``ok`` for any answer but a decline, ``error`` for none)."""
    started = time.perf_counter()
    outcome = "error"
    try:
        result = await _answer(call, request, heartbeat_details)
        outcome = "ok"
        return result
    except ApplicationError as err:
        if err.type == retries.CARD_DECLINED:
            outcome = "declined"
        elif err.type != retries.GATEWAY_UNAVAILABLE:
            outcome = "ok"  # the gateway answered: a refusal is an answer
        raise
    finally:
        activity.metric_meter().create_histogram_float(
            metrics.GATEWAY_DURATION, metrics.DESCRIPTIONS[metrics.GATEWAY_DURATION], "s"
        ).record(
            time.perf_counter() - started,
            {
                "operation": operation or metrics.operation_of(activity.info().activity_type),
                "outcome": outcome,
            },
        )


async def _answer(
    call: Awaitable[T], request: GatewayStep, heartbeat_details: Sequence[object]
) -> T:
    payment_id = request.payment_id
    attempt = _attempt(request)
    try:
        return await _heartbeating(call, heartbeat_details)
    except CardDeclined as err:
        declined = GatewayFailure(
            code=err.code, decline_code=err.decline_code, message=err.message, attempt=attempt
        )
        code = f"{err.code} ({err.decline_code})" if err.decline_code else err.code
        raise ApplicationError(
            err.message,
            declined.reported(),
            type=retries.CARD_DECLINED,
            non_retryable=True,
            category=_category(err, payment_id, code),
        ) from None
    except InvalidGatewayRequest as err:
        raise ApplicationError(
            err.message,
            GatewayFailure(code=err.code, message=err.message, attempt=attempt).reported(),
            type=retries.GATEWAY_REJECTED,
            non_retryable=True,
            category=_category(err, payment_id, err.code),
        ) from None
    except NotFound as err:
        raise ApplicationError(
            str(err),
            GatewayFailure(code="not_found", message=str(err), attempt=attempt).reported(),
            type=retries.GATEWAY_NOT_FOUND,
            non_retryable=True,
            category=_category(err, payment_id, "not_found"),
        ) from None
    except TransientGatewayError as err:
        activity.logger.warning("gateway unavailable (attempt %d): %s", attempt, err)
        raise ApplicationError(str(err), type=retries.GATEWAY_UNAVAILABLE) from None


def _category(err: PermanentGatewayError, payment_id: str, code: str) -> ApplicationErrorCategory:
    """How the failed attempt is logged. A business outcome (the port's
    ``expected``: a decline, a refused capture) is one INFO line here, and
    BENIGN, which the SDK logs at DEBUG only instead of a warning with the
    traceback it gives any other failed attempt. Only the payment, the step and
    the gateway's code: the gateway's message may quote what the client sent."""
    if not err.expected:
        return ApplicationErrorCategory.UNSPECIFIED
    step = activity.info().activity_type
    activity.logger.info("payment %s: %s refused by the gateway: %s", payment_id, step, code)
    return ApplicationErrorCategory.BENIGN


def _result(operation: GatewayOperation, request: GatewayStep) -> GatewayResult:
    return GatewayResult(
        operation_id=operation.id, amount=operation.amount, attempt=_attempt(request)
    )


def _authentication_result(
    authentication: Authentication, request: GatewayStep
) -> AuthenticationResult:
    authorization = authentication.authorization
    if authentication.status == "succeeded" and authorization is None:
        # Approved, yet no authorization to show for it: ask again.
        raise ApplicationError(
            f"{authentication.id} succeeded without an authorization",
            type=retries.GATEWAY_UNAVAILABLE,
        )
    return AuthenticationResult(
        status=authentication.status,
        authorization=_result(authorization, request) if authorization is not None else None,
    )


class PaymentActivities:
    """Built with a gateway adapter, so tests can hand in a fake or a real simulator."""

    def __init__(self, gateway: Gateway) -> None:
        self._gateway = gateway

    @activity.defn(name=Activities.AUTHORIZE)
    async def authorize(self, request: AuthorizeInput) -> GatewayResult:
        if activity.info().is_local and not self._gateway.replays_by_key:
            raise ApplicationError(
                "the gateway may not replay a repeated authorize: not as a local activity",
                type=retries.NOT_LOCAL,
                non_retryable=True,
                category=ApplicationErrorCategory.BENIGN,
            )
        # The authorization id an earlier attempt was given (see the port's
        # ``remember``), kept in this activity's heartbeat details.
        earlier = activity.info().heartbeat_details
        remembered: list[str] = [str(earlier[0])] if earlier else []

        def remember(authorization_id: str) -> None:
            remembered[:] = [authorization_id]
            if not activity.info().is_local:
                activity.heartbeat(authorization_id)

        operation = await _gateway_call(
            self._gateway.authorize(
                reference=request.payment_id,
                amount=request.amount,
                currency=request.currency,
                payment_method=request.payment_method,
                idempotency_key=idempotency_key(
                    request.payment_id, AUTHORIZE_STEP, request.instance
                ),
                since=request.created_at,
                # A local attempt may be a repeat (its worker died), which a
                # gateway that replays by key answers as the first.
                first_attempt=_attempt(request) == 1 and not request.rerun,
                authorization_id=remembered[0] if remembered else None,
                remember=remember,
                return_url=request.return_url,
            ),
            request,
            heartbeat_details=remembered,
        )
        if isinstance(operation, Authentication):
            # Nothing is authorized yet: the customer must authenticate first.
            return GatewayResult(
                operation_id=operation.id,
                amount=operation.amount,
                attempt=_attempt(request),
                action=CustomerAction(
                    authentication_id=operation.id, url=operation.url, status=operation.status
                ),
            )
        return _result(operation, request)

    @activity.defn(name=Activities.LOOK_UP_AUTHENTICATION)
    async def look_up_authentication(self, request: AuthenticationInput) -> AuthenticationResult:
        """Where the customer's authentication stands (the authorization, once approved)."""
        found = await _gateway_call(
            self._gateway.authentication(request.authentication_id),
            request,
            operation=metrics.LOOKUP,
        )
        return _authentication_result(found, request)

    @activity.defn(name=Activities.CANCEL_AUTHENTICATION)
    async def cancel_authentication(self, request: AuthenticationInput) -> AuthenticationResult:
        """End the customer's authentication unless they already decided: where it ended."""
        ended = await _gateway_call(
            self._gateway.cancel_authentication(
                request.authentication_id,
                idempotency_key=idempotency_key(
                    request.payment_id, CANCEL_AUTHENTICATION_STEP, request.instance
                ),
            ),
            request,
        )
        return _authentication_result(ended, request)

    @activity.defn(name=Activities.CAPTURE)
    async def capture(self, request: CaptureInput) -> GatewayResult:
        operation = await _gateway_call(
            self._gateway.capture(
                authorization_id=request.authorization_id,
                amount=request.amount,
                idempotency_key=idempotency_key(request.payment_id, CAPTURE_STEP, request.instance),
            ),
            request,
        )
        return _result(operation, request)

    @activity.defn(name=Activities.VOID)
    async def void(self, request: VoidInput) -> GatewayResult | None:
        """Void the authorization; ``None`` when the gateway never authorized."""
        authorization_id = request.authorization_id
        if authorization_id is None:
            # authorize's outcome is unknown: ask the gateway what it holds for
            # this payment instance (its authorize key), nobody else's.
            key = idempotency_key(request.payment_id, AUTHORIZE_STEP, request.instance)
            operations = await _gateway_call(
                self._gateway.find_by_reference(request.payment_id, since=request.created_at),
                request,
                operation=metrics.LOOKUP,
            )
            authorizations = [
                op for op in operations if op.kind == "authorization" and op.idempotency_key == key
            ]
            if not authorizations:
                return None
            authorization_id = authorizations[0].id
        operation = await _gateway_call(
            self._gateway.void(
                authorization_id=authorization_id,
                idempotency_key=idempotency_key(request.payment_id, VOID_STEP, request.instance),
            ),
            request,
        )
        return _result(operation, request)

    @activity.defn(name=Activities.REFUND)
    async def refund(self, request: RefundInput) -> GatewayResult:
        operation = await _gateway_call(
            self._gateway.refund(
                authorization_id=request.authorization_id,
                amount=request.amount,
                idempotency_key=idempotency_key(
                    request.payment_id, refund_step(request.refund_id), request.instance
                ),
            ),
            request,
        )
        return _result(operation, request)

    @activity.defn(name=Activities.FIND_OPERATION)
    async def find_operation(self, request: FindOperation) -> GatewayResult | None:
        """What the gateway committed for one step, when our calls got no answer."""
        key = idempotency_key(request.payment_id, request.step, request.instance)
        operations = await _gateway_call(
            self._gateway.find_by_reference(
                request.payment_id,
                since=request.created_at,
                authorization_id=request.authorization_id,
            ),
            request,
        )
        found = next((op for op in operations if op.idempotency_key == key), None)
        return _result(found, request) if found is not None else None

    @activity.defn(name=Activities.COMMITTED_OPERATIONS)
    async def committed_operations(self, request: LookUpPayment) -> list[CommittedOperation]:
        """Every capture, void and refund the gateway committed under this payment
        instance's keys, oldest first: what a run that an operator reset
        re-learns, since the updates a reset reapplies may have been refused."""
        operations = await _gateway_call(
            self._gateway.find_by_reference(
                request.payment_id,
                since=request.created_at,
                authorization_id=request.authorization_id,
            ),
            request,
        )
        committed = []
        for operation in operations:
            step = step_of(operation.idempotency_key, request.payment_id, request.instance)
            if step is not None and operation.kind != "authorization":
                committed.append(
                    CommittedOperation(
                        step=step, operation_id=operation.id, amount=operation.amount
                    )
                )
        return committed

    def all(self) -> list[Callable[..., Any]]:
        return [
            self.authorize,
            self.capture,
            self.void,
            self.refund,
            self.find_operation,
            self.committed_operations,
            self.look_up_authentication,
            self.cancel_authentication,
        ]
