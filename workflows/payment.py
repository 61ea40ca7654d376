"""``PaymentWorkflow``: one payment, from request to the end of its refund window.

The saga (CONTRACT §5, §7): authorize (when the card needs 3-D Secure,
first waiting, durably, for the customer to authenticate, §14); then capture
at once (automatic) or wait for ``capture`` until the authorization window
ends (manual); a decline fails the payment, a refused capture voids the
authorization, a cancel voids it too. Once captured, refunds are served one
at a time until the refund window closes. Capture and cancel exclude each
other: the first one accepted is the decision.

Every domain event is written to the history as a memo upsert (key ``event``,
with the payment as it now stands under ``payment``), and every status change
is mirrored into the ``PaymentStatus`` search attribute. The event log of the
API is a projection of exactly those history events (:mod:`payments.events`).

When Temporal suggests it (a long wait for capture, a long refund window), the
workflow continues as new with its state and any decision not yet carried out.

The Temporal UI's own buttons mean what an operator means (CONTRACT §7):

- Request Cancellation is the ``cancel`` signal: the saga runs shielded from
  it, so a step in flight finishes; before capture the authorization is then
  voided and the payment ends ``canceled``; after capture it is recorded as
  ``payment.cancel_failed`` and the refund window stays open.
- Reset replays the run to a point and reapplies the signals and updates that
  came after it, which meet the validators as the payment stood there. A run
  that is not the payment's first (a reset, or a continue-as-new) therefore
  asks the gateway what it committed under the payment's keys when it reaches
  a decision and when it opens the refund window, and adopts what it does not
  know (events with ``"source": "gateway"``). Gateway keys are the same in
  every run, so what a reset carries out again is not paid twice.
"""

import asyncio
import bisect
from datetime import datetime, timedelta
from typing import Any, NoReturn

from pydantic import ValidationError
from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import (
    ActivityError,
    ApplicationError,
    ApplicationErrorCategory,
    FailureError,
)

from workflows import metrics as counters

with workflow.unsafe.imports_passed_through():
    from payments import memo, metrics, retries
    from payments.currencies import format_amount
    from payments.details import current_details, until
    from payments.ids import CAPTURE_STEP, VOID_STEP, refund_of_step, refund_step
    from payments.models import (
        AuthenticationInput,
        AuthenticationResult,
        AuthorizeInput,
        CancelCommand,
        CancelPayment,
        CaptureCommand,
        CaptureInput,
        CapturePayment,
        CommittedOperation,
        CustomerAction,
        DomainEvent,
        Failure,
        FindOperation,
        GatewayEvent,
        GatewayFailure,
        GatewayResult,
        GatewayStep,
        Keyed,
        LookUpPayment,
        NextAction,
        PaymentInput,
        PaymentState,
        ReceiptSent,
        RedirectToUrl,
        Refund,
        RefundCommand,
        RefundInput,
        RefundPayment,
        SendReceipt,
        VoidInput,
        WaitSettled,
    )
    from payments.names import (
        STATE_QUERY,
        STATUS,
        Activities,
        Signals,
        Updates,
        WebhookActivities,
    )
    from payments.refusals import (
        AMOUNT_TOO_LARGE,
        INVALID_SIGNAL,
        KEY_REUSED,
        OUTCOME_UNKNOWN,
        PAYMENT_CLOSED,
        PAYMENT_NOT_CANCELABLE,
        PAYMENT_NOT_CAPTURABLE,
        PAYMENT_NOT_REFUNDABLE,
        RESOURCE_MISSING,
        Refusal,
        rejection,
    )
    from payments.status import (
        PaymentStatus,
        can_cancel,
        can_capture,
        can_refund,
        cancel_settled,
        capture_settled,
        check_transition,
        is_settled,
        needs_customer,
        status_after_refund,
    )
    from payments.webhooks import Announcement, WebhooksOn

S = PaymentStatus

# workflow.patched ids: behaviour that histories recorded before it must not see.
OPERATOR_CANCEL = "temporal-cancel-is-the-cancel-signal"
# One id per place a later run re-learns: the SDK remembers a patch's first
# answer for the whole run, and a reset run answers the first place while it
# replays (no), then reaches the second one anew.
RELEARN_DECISION = "later-runs-relearn-the-decision"
RELEARN_REFUNDS = "later-runs-relearn-refunds"
CANCELED_IN_TEMPORAL = "canceled in Temporal"
# A failed payment ends its run failed, so the UI shows it red with the reason.
FAILED_PAYMENT_FAILS_RUN = "a-failed-payment-fails-its-run"
# Each gateway step tries first as a local activity (see _gateway).
FAST_PATH = "gateway-steps-try-a-local-activity-first"
ONE_ATTEMPT = RetryPolicy(maximum_attempts=1)
# Until the announcement goes out: it waits on Temporal, so it never gives up.
ANNOUNCE_RETRY = RetryPolicy(maximum_interval=timedelta(seconds=10))


def _with_source(data: dict[str, Any], source: str | None) -> dict[str, Any]:
    """An event's data, marked with who it came from when not the saga itself."""
    return data if source is None else {**data, "source": source}


class StepFailed(Exception):
    """A gateway step that ended without a result: the ``ApplicationError``
    type its last attempt failed with (:mod:`payments.retries`; None for a
    timeout) and what it reported."""

    def __init__(self, error_type: str | None, details: GatewayFailure) -> None:
        super().__init__(details.message)
        self.error_type = error_type
        self.details = details

    @classmethod
    def of(cls, err: FailureError) -> "StepFailed":
        """From a regular activity's ``ActivityError``, or what a local activity
        out of attempts raises: an ``ActivityError``, or its cause alone (an
        ``ApplicationError``, a ``TimeoutError``), by how the attempt ended and
        whether it is replayed from its marker."""
        cause = err.cause if isinstance(err, ActivityError) else err
        if isinstance(cause, ApplicationError):
            details = (
                cause.details[0] if cause.details and isinstance(cause.details[0], dict) else {}
            )
            return cls(
                cause.type, GatewayFailure.model_validate({"message": cause.message, **details})
            )
        return cls(None, GatewayFailure(message=str(cause or err)))


def _run_failed(state: PaymentState) -> ApplicationError:
    """How a failed payment ends its run: failed, with the payment's failure
    as the reason the UI shows. Benign: an expected outcome, which the SDK
    neither logs as an error nor counts as a workflow failure in its metrics."""
    failure = state.failure
    code = failure.code if failure else "payment_failed"
    reason = f"{code} ({failure.decline_code})" if failure and failure.decline_code else code
    message = failure.message if failure else "the payment failed"
    return ApplicationError(
        f"payment failed: {reason}: {message}",
        type=code,
        non_retryable=True,
        category=ApplicationErrorCategory.BENIGN,
    )


# Operators' signals take whatever they are sent: a wrong count of inputs is
# refused as an event rather than a TypeError that would fail every task.
_TOO_MANY = object()
_ONE_INPUT = Refusal(INVALID_SIGNAL, "send one JSON object as --input")


def _one_input(payloads: tuple[Any, ...]) -> Any:
    if len(payloads) > 1:
        return _TOO_MANY
    return payloads[0] if payloads else None


def _invalid_signal(err: ValidationError) -> Refusal:
    first = err.errors(include_input=False)[0]
    where = ".".join(str(part) for part in first.get("loc", ()))
    message = str(first.get("msg", "invalid")).removeprefix("Value error, ")
    return Refusal(INVALID_SIGNAL, f"{where}: {message}" if where else message)


@workflow.defn(name="PaymentWorkflow")
class PaymentWorkflow:
    @workflow.init
    def __init__(self, input: PaymentInput) -> None:
        self._input = input
        self._state = input.first_state()
        # The decision on an authorization, carried across continue-as-new.
        self._capture: CapturePayment | None = input.pending_capture
        self._cancel: CancelPayment | None = input.pending_cancel
        self._refund_window_ends_at = input.refund_window_ends_at
        # No new refunds once the workflow is on its way out.
        self._closing = False
        # Waiters let go when the payment moves to its next run.
        self._handing_over = False
        # What the run waits for now, as the UI's current details say it.
        self._waiting_for = "the workflow to start"
        # The events this run has recorded (its first run's first is the
        # request), their types and times, and how many went to the webhooks.
        # Only while the merchant has endpoints (see _announce).
        first_run = input.carried_state is None
        self._recorded_types = ["payment.requested"] if first_run else []
        self._recorded_at = [input.created_at] if first_run else []
        self._announced = 0
        self._announcing = input.webhooks
        # A gateway step's local attempt is in flight: what this workflow task
        # records is announced once, after it.
        self._local_step = False
        self._announcer: asyncio.Task[None] | None = None
        # The gateway rang (a webhook while the customer authenticates): look now.
        self._gateway_rang = False
        # Receipts by e-mail on their way (see _send_receipt).
        self._receipts: list[asyncio.Task[None]] = []

    # -- the saga ---------------------------------------------------------

    @workflow.run
    async def run(self, input: PaymentInput) -> PaymentState:
        """The saga, shielded from Temporal's cancellation, which becomes the
        operator's cancel instead of stopping whatever the saga awaits."""
        if input.carried_state is None:  # payment.requested: this run's first event
            counters.add(metrics.CREATED, {"capture_method": self._state.capture_method})
        # Runs as long as the run, and does nothing while the merchant has no endpoint.
        self._announcer = asyncio.ensure_future(self._announce())
        saga = asyncio.ensure_future(self._saga(input))
        while True:
            try:
                state = await asyncio.shield(saga)
                break
            except asyncio.CancelledError:
                if not workflow.patched(OPERATOR_CANCEL):
                    # As recorded before: the cancellation reaches the saga.
                    saga.cancel()
                    return await saga
                task = asyncio.current_task()
                if task is not None:
                    task.uncancel()
                self._cancel_from_temporal()
        await self._all_announced()
        if state.status is S.FAILED and workflow.patched(FAILED_PAYMENT_FAILS_RUN):
            raise _run_failed(state)
        return state

    async def _saga(self, input: PaymentInput) -> PaymentState:
        state = self._state
        self._show()
        authorized = input.carried_state is None and await self._authorize()
        if authorized or state.status is S.REQUIRES_CAPTURE:
            await self._relearn_decision()
        if authorized and state.status is S.PROCESSING and state.capture_method == "automatic":
            self._capture = CapturePayment()
            await self._capture_amount(state.amount)
        if state.status is S.REQUIRES_CAPTURE and await self._await_decision():
            await self._hand_over()
        if can_refund(state.status):
            await self._relearn_refunds()
        if can_refund(state.status) and await self._serve_refunds():
            await self._hand_over()
        return await self._finish()

    def _cancel_from_temporal(self) -> None:
        """Request Cancellation in the Temporal UI (or ``temporal workflow
        cancel``): exactly the ``cancel`` signal, with the request's reason."""
        reason = workflow.cancellation_reason() or CANCELED_IN_TEMPORAL
        try:
            request = CancelPayment.model_validate({"reason": reason})
        except ValidationError:
            request = CancelPayment(reason=CANCELED_IN_TEMPORAL)
        problem = self._cancel_problem()
        if problem:
            self._refused("payment.cancel_failed", problem, {"reason": request.reason}, "temporal")
            return
        self._request_cancel(request, source="temporal")

    # -- re-learning what the gateway committed -----------------------------

    async def _committed_here(self, patch: str) -> list[CommittedOperation] | None:
        """In a run that is not the payment's first: what the gateway committed
        under this payment's keys. None in a first run (nothing to re-learn),
        and in histories recorded before runs re-learned (``patch``)."""
        info = workflow.info()
        if info.run_id == info.first_execution_run_id or not workflow.patched(patch):
            return None
        state = self._state
        try:
            committed: list[CommittedOperation] = await self._gateway(
                Activities.COMMITTED_OPERATIONS,
                LookUpPayment(
                    payment_id=state.id,
                    instance=self._input.instance,
                    created_at=state.created_at,
                    authorization_id=state.authorization_id,
                ),
                result_type=list[CommittedOperation],
                policy=retries.FIND,
                summary="look up what the gateway committed",
            )
        except StepFailed as err:
            # The run goes on with what it knows; reconciliation reports a gap.
            self._emit("payment.lookup_failed", err.details.reported())
            return None
        return committed

    async def _relearn_decision(self) -> None:
        """An authorized payment in a later run: a capture or void the gateway
        already committed under our keys is the decision, taken again here."""
        committed = await self._committed_here(RELEARN_DECISION)
        if not committed:
            return
        state = self._state
        capture = next((op for op in committed if op.step == CAPTURE_STEP), None)
        void = next((op for op in committed if op.step == VOID_STEP), None)
        if capture is not None:
            self._capture = self._capture or CapturePayment(amount=capture.amount)
            self._captured(capture.operation_id, capture.amount, attempt=None, source="gateway")
        elif void is not None:
            state.amount_capturable = 0
            self._cancel = self._cancel or CancelPayment(reason="voided before a reset")
            self._emit("payment.voided", {"void_id": void.operation_id, "source": "gateway"})
            self._emit("payment.canceled", {"reason": self._cancel.reason}, status=S.CANCELED)

    async def _relearn_refunds(self) -> None:
        """Opening the refund window in a later run: refunds the gateway paid
        under our keys that this run does not know (a reset reapplied their
        requests where they were refused) are recorded as paid."""
        committed = await self._committed_here(RELEARN_REFUNDS)
        state = self._state
        for op in committed or []:
            refund_id = refund_of_step(op.step)
            if refund_id is None or self._find_refund(refund_id) is not None:
                continue
            paid = Refund(
                id=refund_id, status="succeeded", amount=op.amount, created_at=workflow.now()
            )
            state.refunds.append(paid)
            self._refunded(refund_id, op.amount, op.operation_id, attempt=None, source="gateway")

    async def _authorize(self) -> bool:
        """Authorize; True when the payment goes on to capture."""
        state = self._state
        try:
            authorization = await self._gateway(
                Activities.AUTHORIZE,
                AuthorizeInput(
                    payment_id=state.id,
                    amount=state.amount,
                    currency=state.currency,
                    payment_method=state.payment_method,
                    instance=self._input.instance,
                    created_at=state.created_at,
                    # A reset run has a run id of its own; continue-as-new
                    # never gets here (it carries the state).
                    rerun=workflow.info().run_id != workflow.info().first_execution_run_id,
                    return_url=self._input.request.return_url,
                ),
                result_type=GatewayResult,
                policy=retries.AUTHORIZE,
                summary=f"authorize {self._money(state.amount)}",
            )
        except StepFailed as err:
            await self._authorize_failed(err)
            return False
        if authorization.action is not None:
            authenticated = await self._authenticate(authorization.action)
            if authenticated is None:
                return False
            authorization = authenticated
        state.authorization_id = authorization.operation_id
        state.amount_capturable = authorization.amount
        manual = state.capture_method == "manual"
        self._emit(
            "payment.authorized",
            {
                "authorization_id": authorization.operation_id,
                "amount": authorization.amount,
                "attempt": authorization.attempt,
            },
            status=S.REQUIRES_CAPTURE if manual and self._cancel is None else None,
        )
        if self._cancel is not None:
            # Canceled while authorize was in flight: honoured now that it returned.
            await self._void_then(S.CANCELED, reason=self._cancel.reason)
            return False
        return True

    async def _authenticate(self, action: CustomerAction) -> GatewayResult | None:
        """The customer must authenticate (3-D Secure) before the gateway
        decides: wait for them, durably, until the action window closes. The
        gateway's webhook wakes the wait; the payment also looks the outcome
        up itself after each pause of ``retries.AUTHENTICATION_LOOKUPS``, so a
        lost webhook never strands it. Either way the outcome is what the
        gateway answers, never what a webhook says. A cancel, or the window's
        end, ends the authentication at the gateway first. The authorization
        when the customer approved; None when the payment ended here."""
        state = self._state
        state.next_action = NextAction(
            redirect_to_url=RedirectToUrl(url=action.url, return_url=self._input.request.return_url)
        )
        self._emit(
            "payment.action_required",
            {
                "authentication_id": action.authentication_id,
                "next_action": state.next_action.model_dump(mode="json"),
            },
            status=S.REQUIRES_ACTION,
        )
        # From when the customer is asked, on the workflow's own clock.
        deadline = workflow.now() + timedelta(seconds=self._input.action_window_seconds)
        waiting = f"the customer to authenticate (3-D Secure), until {until(deadline)}"
        self._wait_for(waiting)
        try:
            outcome = await self._customer_outcome(action, deadline, waiting)
            if outcome is None or outcome.status == "pending":
                # Canceled, or the window closed: nobody may authorize from now on.
                outcome = await self._authentication_step(
                    Activities.CANCEL_AUTHENTICATION,
                    action,
                    retries.CANCEL_AUTHENTICATION,
                    "end the customer's authentication",
                )
        except StepFailed as declined:
            # The customer authenticated, then the issuer declined the card.
            self._authenticated(action)
            await self._authorize_failed(declined)
            return None
        if outcome is None:
            # No answer from the gateway: void whatever it may have authorized.
            await self._void(by_reference=True)
        if outcome is not None and outcome.status == "succeeded":
            self._authenticated(action)
            return outcome.authorization
        if self._cancel is not None and (outcome is None or outcome.status == "canceled"):
            self._emit("payment.canceled", {"reason": self._cancel.reason}, status=S.CANCELED)
            return None
        failed = outcome is not None and outcome.status == "failed"
        code = "authentication_failed" if failed else "authentication_timeout"
        failure = Failure(
            type="card_error",
            code=code,
            message=(
                "The customer failed to authenticate the payment (3-D Secure)."
                if failed
                else "The customer did not authenticate the payment within "
                f"{self._input.action_window_seconds:g} seconds (3-D Secure)."
            ),
        )
        self._emit(
            "payment.authentication_failed",
            {"authentication_id": action.authentication_id, **failure.model_dump()},
        )
        state.failure = failure
        self._emit("payment.failed", {"failure": failure.model_dump()}, status=S.FAILED)
        return None

    def _authenticated(self, action: CustomerAction) -> None:
        """The customer did their part: the gateway decides from here."""
        self._emit(
            "payment.authenticated",
            {"authentication_id": action.authentication_id},
            status=S.PROCESSING,
        )

    async def _customer_outcome(
        self, action: CustomerAction, deadline: datetime, waiting: str
    ) -> AuthenticationResult | None:
        """The customer's decision, as the gateway tells it; None when the
        payment stopped waiting first (a cancel, the window's end)."""
        if action.status != "pending" and self._cancel is None:
            # Already decided (a repeated authorize, after a reset): look at once.
            decided = await self._look(action, waiting)
            if decided is not None:
                return decided
        pauses = iter(retries.AUTHENTICATION_LOOKUPS)
        pause = next(pauses)
        while self._cancel is None:
            remaining = deadline - workflow.now()
            if remaining <= timedelta(0):
                return None
            try:
                await workflow.wait_condition(
                    lambda: self._gateway_rang or self._cancel is not None,
                    timeout=min(pause, remaining),
                    timeout_summary="look up the customer's authentication",
                )
            except TimeoutError:
                pause = next(pauses, pause)
            if self._cancel is not None:
                return None
            decided = await self._look(action, waiting)
            if decided is not None:
                return decided
        return None

    async def _look(self, action: CustomerAction, waiting: str) -> AuthenticationResult | None:
        """One look at the authentication: its outcome once decided, else None."""
        self._gateway_rang = False
        outcome = await self._authentication_step(
            Activities.LOOK_UP_AUTHENTICATION,
            action,
            retries.LOOK_UP_AUTHENTICATION,
            "look up the customer's authentication",
        )
        self._wait_for(waiting)
        return outcome if outcome is not None and outcome.status != "pending" else None

    async def _authentication_step(
        self,
        activity: str,
        action: CustomerAction,
        policy: retries.StepPolicy,
        summary: str,
    ) -> AuthenticationResult | None:
        """A look at (or the end of) the authentication; None without an answer."""
        try:
            result: AuthenticationResult = await self._gateway(
                activity,
                AuthenticationInput(
                    payment_id=self._state.id,
                    instance=self._input.instance,
                    authentication_id=action.authentication_id,
                ),
                result_type=AuthenticationResult,
                policy=policy,
                summary=summary,
            )
        except StepFailed as err:
            if err.error_type == retries.CARD_DECLINED:
                raise  # the gateway's last word: declined once authenticated
            return None
        return result

    async def _authorize_failed(self, err: StepFailed) -> None:
        error_type, details = err.error_type, err.details
        if error_type == retries.CARD_DECLINED:
            failure = Failure(
                type="card_error",
                code=details.code or "card_declined",
                decline_code=details.decline_code,
                message=details.message,
            )
            self._emit("payment.declined", {**failure.model_dump(), "attempt": details.attempt})
            self._state.failure = failure
            self._emit("payment.failed", {"failure": failure.model_dump()}, status=S.FAILED)
            return
        # We gave up without knowing whether the gateway authorized: void
        # whatever it may hold under our reference before failing (the void
        # counts an unknown outcome if even that gets no answer).
        await self._void(by_reference=True)
        failure = Failure(
            type="api_error",
            code=details.code or "gateway_unavailable",
            message=f"the gateway did not authorize the payment: {details.message}",
        )
        self._state.failure = failure
        self._emit("payment.failed", {"failure": failure.model_dump()}, status=S.FAILED)

    async def _await_decision(self) -> bool:
        """Wait for capture or cancel until the authorization window ends; True
        to continue as new first."""
        state = self._state
        expires_at = state.created_at + timedelta(seconds=self._input.authorization_window_seconds)
        self._wait_for(
            f"capture or cancel, until {until(expires_at)} (then the authorization is voided)"
        )
        try:
            await workflow.wait_condition(
                lambda: (
                    self._capture is not None
                    or self._cancel is not None
                    or workflow.info().is_continue_as_new_suggested()
                ),
                timeout=max(expires_at - workflow.now(), timedelta(seconds=1)),
                timeout_summary="authorization window",
            )
        except TimeoutError:
            # Expiry is the decision: a capture or cancel arriving now is refused.
            self._cancel = CancelPayment(reason="authorization window ended")
            self._emit("payment.expired", {"expired_at": workflow.now().isoformat()})
            await self._void_then(S.CANCELED, reason=self._cancel.reason)
            return False
        if self._cancel is not None:
            await self._void_then(S.CANCELED, reason=self._cancel.reason)
        elif self._capture is not None:
            await self._capture_amount(self._capture.amount or state.amount)
        else:
            return True
        return False

    async def _capture_amount(self, amount: int) -> None:
        state = self._state
        assert state.authorization_id is not None
        try:
            capture = await self._gateway(
                Activities.CAPTURE,
                CaptureInput(
                    payment_id=state.id,
                    authorization_id=state.authorization_id,
                    amount=amount,
                    instance=self._input.instance,
                ),
                result_type=GatewayResult,
                policy=retries.CAPTURE,
                summary=f"capture {self._money(amount)}",
            )
        except StepFailed as err:
            error_type, details = err.error_type, err.details
            # Retries ran out without an answer: the capture may have happened.
            found, known = await self._committed(CAPTURE_STEP, error_type)
            if found is not None:
                capture = found
            else:
                # Unknown: the void that follows is refused by the gateway if the
                # capture did happen, and reconciliation then reports it.
                code = (details.code or "capture_failed") if known else OUTCOME_UNKNOWN
                if not known:
                    counters.add(metrics.UNKNOWN_OUTCOMES, {"step": "capture"})
                failure = Failure(
                    type="card_error" if error_type == retries.CARD_DECLINED else "api_error",
                    code=code,
                    decline_code=details.decline_code,
                    message=details.message,
                )
                # Failure first: the event's memo is what the API reads until the
                # void below ends, possibly a day later.
                state.failure = failure
                self._emit("payment.capture_failed", {**failure.model_dump(), "amount": amount})
                await self._void_then(S.FAILED)
                return
        self._captured(capture.operation_id, capture.amount, attempt=capture.attempt)

    def _captured(
        self, capture_id: str, amount: int, *, attempt: int | None, source: str | None = None
    ) -> None:
        state = self._state
        state.amount_capturable = 0
        state.amount_captured = amount
        self._refund_window_ends_at = workflow.now() + timedelta(
            seconds=self._input.refund_window_seconds
        )
        data: dict[str, Any] = {"capture_id": capture_id, "amount": amount, "attempt": attempt}
        self._emit("payment.captured", _with_source(data, source), status=S.SUCCEEDED)
        self._send_receipt()

    async def _committed(
        self, step: str, error_type: str | None
    ) -> tuple[GatewayResult | None, bool]:
        """After a step failed: (what the gateway committed for it, whether we know).

        A permanent refusal committed nothing. Otherwise the step gave up
        without an answer (timeouts, resets, 5xx for as long as it tried), so
        ask the gateway before deciding it failed; if even that gets no
        answer, the outcome stays unknown.
        """
        if error_type in retries.PERMANENT_ERROR_TYPES:
            return None, True
        try:
            found: GatewayResult | None = await self._gateway(
                Activities.FIND_OPERATION,
                FindOperation(
                    payment_id=self._state.id,
                    step=step,
                    instance=self._input.instance,
                    created_at=self._state.created_at,
                    authorization_id=self._state.authorization_id,
                ),
                result_type=GatewayResult | None,
                policy=retries.FIND,
                summary=f"look up {step}",
            )
        except StepFailed:
            return None, False
        return found, True

    async def _void(self, *, by_reference: bool = False) -> None:
        state = self._state
        try:
            void = await self._gateway(
                Activities.VOID,
                VoidInput(
                    payment_id=state.id,
                    authorization_id=None if by_reference else state.authorization_id,
                    instance=self._input.instance,
                    created_at=state.created_at,
                ),
                result_type=GatewayResult | None,
                policy=retries.VOID,
                summary=f"void {self._money(state.amount)}",
            )
        except StepFailed as err:
            # Nothing more the workflow can do; the event tells an operator.
            if err.error_type not in retries.PERMANENT_ERROR_TYPES:
                counters.add(metrics.UNKNOWN_OUTCOMES, {"step": "void"})
            self._emit("payment.void_failed", err.details.reported())
            return
        state.amount_capturable = 0
        if void is not None:
            self._emit("payment.voided", {"void_id": void.operation_id, "attempt": void.attempt})

    async def _void_then(self, final: PaymentStatus, *, reason: str | None = None) -> None:
        await self._void()
        if final is S.CANCELED:
            self._emit("payment.canceled", {"reason": reason}, status=S.CANCELED)
        else:
            failure = self._state.failure.model_dump() if self._state.failure else None
            self._emit("payment.failed", {"failure": failure}, status=S.FAILED)

    async def _serve_refunds(self) -> bool:
        """Process refunds until the window closes; True to continue as new."""
        assert self._refund_window_ends_at is not None
        while True:
            pending = self._next_pending_refund()
            if pending is not None:
                await self._refund(pending)
                continue
            if self._state.status is S.REFUNDED:
                return False
            if self._ready_to_hand_over():
                return True
            remaining = self._refund_window_ends_at - workflow.now()
            if remaining <= timedelta(0):
                return False
            self._wait_for(f"refunds, until {until(self._refund_window_ends_at)}")
            try:
                await workflow.wait_condition(
                    lambda: self._next_pending_refund() is not None or self._ready_to_hand_over(),
                    timeout=remaining,
                    timeout_summary="refund window",
                )
            except TimeoutError:
                return False

    def _ready_to_hand_over(self) -> bool:
        """Temporal suggests continue-as-new, and no receipt is on its way: a
        mail server that is down delays the next run, never a refund."""
        return workflow.info().is_continue_as_new_suggested() and self._receipts_mailed()

    def _next_pending_refund(self) -> Refund | None:
        return next((r for r in self._state.refunds if not r.settled), None)

    async def _refund(self, refund: Refund) -> None:
        state = self._state
        assert state.authorization_id is not None
        try:
            result = await self._gateway(
                Activities.REFUND,
                RefundInput(
                    payment_id=state.id,
                    authorization_id=state.authorization_id,
                    refund_id=refund.id,
                    amount=refund.amount,
                    instance=self._input.instance,
                ),
                result_type=GatewayResult,
                policy=retries.REFUND,
                summary=f"refund {self._money(refund.amount)}",
            )
        except StepFailed as err:
            error_type, details = err.error_type, err.details
            found, known = await self._committed(refund_step(refund.id), error_type)
            if found is None:
                if not known:
                    counters.add(metrics.UNKNOWN_OUTCOMES, {"step": "refund"})
                refund.status = "failed"
                refund.failure = Failure(
                    type="api_error",
                    # An unknown outcome keeps its amount reserved (see
                    # PaymentState.refundable_amount): it may have been paid out.
                    code=(details.code or "refund_failed") if known else OUTCOME_UNKNOWN,
                    message=details.message,
                )
                self._emit(
                    "refund.failed",
                    {"refund_id": refund.id, "amount": refund.amount, **details.reported()},
                )
                return
            result = found
        refund.status = "succeeded"
        self._refunded(refund.id, result.amount, result.operation_id, attempt=result.attempt)

    def _refunded(
        self,
        refund_id: str,
        amount: int,
        gateway_refund_id: str,
        *,
        attempt: int | None,
        source: str | None = None,
    ) -> None:
        state = self._state
        state.amount_refunded += amount
        data: dict[str, Any] = {
            "refund_id": refund_id,
            "amount": amount,
            "gateway_refund_id": gateway_refund_id,
            "attempt": attempt,
        }
        self._emit(
            "refund.succeeded",
            _with_source(data, source),
            status=status_after_refund(state.amount_captured, state.amount_refunded),
        )
        self._send_receipt(refund_id, amount)

    # -- receipts by e-mail (CONTRACT §16) ----------------------------------

    def _send_receipt(self, refund_id: str | None = None, refund_amount: int | None = None) -> None:
        """E-mail the customer a receipt, when the payment has their address:
        as a task of its own, so nothing the saga does waits on mail, and a
        mail server's trouble ends as ``receipt.failed``, never in the payment."""
        state = self._state
        if state.receipt_email is None:
            return
        receipt = SendReceipt(
            payment_id=state.id,
            merchant_id=state.merchant_id,
            to=state.receipt_email,
            currency=state.currency,
            amount_captured=state.amount_captured,
            remaining=state.amount_captured - state.amount_refunded,
            description=state.description,
            at=workflow.now(),
            refund_id=refund_id,
            refund_amount=refund_amount,
        )
        self._receipts.append(asyncio.ensure_future(self._mail(receipt)))

    async def _mail(self, receipt: SendReceipt) -> None:
        which: dict[str, Any] = (
            {"receipt": "payment"}
            if receipt.refund_id is None
            else {"receipt": "refund", "refund_id": receipt.refund_id}
        )
        policy = retries.RECEIPT
        try:
            sent: ReceiptSent = await workflow.execute_activity(
                Activities.SEND_RECEIPT,
                receipt,
                result_type=ReceiptSent,
                start_to_close_timeout=policy.start_to_close,
                schedule_to_close_timeout=policy.schedule_to_close,
                retry_policy=policy.retry,
                summary=f"e-mail the {which['receipt']} receipt",
            )
        except ActivityError as err:
            cause = err.cause
            if isinstance(cause, ApplicationError) and cause.type == retries.RECEIPT_REFUSED:
                failed = {"code": "receipt_refused", "message": cause.message}
            else:
                # A day of attempts ran out: say what the last one met.
                last = cause.cause if isinstance(cause, FailureError) and cause.cause else cause
                failed = {
                    "code": "mail_unavailable",
                    "message": f"no mail server took the receipt within a day: {last}",
                }
            self._emit("receipt.failed", {**which, **failed})
            return
        self._emit("receipt.sent", {**which, "message_id": sent.message_id})

    async def _all_receipts_mailed(self) -> None:
        """Before the run ends or hands over: no receipt left on its way."""
        if not self._receipts_mailed():
            self._wait_for("the customer's receipt to be e-mailed")
            await workflow.wait_condition(self._receipts_mailed)

    def _receipts_mailed(self) -> bool:
        return all(task.done() for task in self._receipts)

    async def _finish(self) -> PaymentState:
        """Refuse new refunds, carry out the ones already accepted, and end."""
        self._closing = True
        while (pending := self._next_pending_refund()) is not None:
            await self._refund(pending)
        await self._all_receipts_mailed()
        self._wait_for("nothing: the payment is closed")
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self._state

    async def _hand_over(self) -> NoReturn:
        """Continue as new with everything this run knows."""
        self._handing_over = True
        self._wait_for("its next run (continue-as-new)")
        await workflow.wait_condition(workflow.all_handlers_finished)
        await self._all_receipts_mailed()
        await self._all_announced()
        workflow.continue_as_new(
            self._input.model_copy(
                update={
                    "carried_state": self._state,
                    "refund_window_ends_at": self._refund_window_ends_at,
                    "pending_capture": self._capture,
                    "pending_cancel": self._cancel,
                    "webhooks": self._announcing,
                }
            ),
            memo=memo.at_start(self._state, self._input.request_fingerprint),
            search_attributes=workflow.info().typed_search_attributes,
        )

    # -- the API's updates ------------------------------------------------
    # Each completes as soon as the request is recorded: the API answers 202
    # and the saga carries it out. One sent with an Idempotency-Key is
    # remembered by the key's digest: the same request again (in this run or a
    # later one) is answered as it stands, another request under the key is
    # refused, as create does.

    @workflow.update(name=Updates.CAPTURE)
    async def capture(self, request: CaptureCommand) -> PaymentState:
        if self._replayed(request.idempotency):
            return self._state
        self._capture = CapturePayment(amount=request.amount)
        self._emit("payment.capture_requested", {"amount": request.amount or self._state.amount})
        return self._state

    @capture.validator
    def _validate_capture(self, request: CaptureCommand) -> None:
        if self._check_key(request.idempotency):
            return
        state = self._state
        if self._cancel is not None:
            raise rejection(Refusal(PAYMENT_NOT_CAPTURABLE, "the payment is being canceled"))
        if capture_settled(state.status) and state.amount_captured:
            raise rejection(Refusal(PAYMENT_NOT_CAPTURABLE, "this payment is already captured"))
        if self._capture is not None:
            raise rejection(Refusal(PAYMENT_NOT_CAPTURABLE, "a capture is already under way"))
        if not can_capture(state.status):
            raise rejection(
                Refusal(PAYMENT_NOT_CAPTURABLE, f"a {state.status} payment cannot be captured")
            )
        if request.amount is not None and request.amount > state.amount_capturable:
            raise rejection(
                Refusal(
                    AMOUNT_TOO_LARGE,
                    f"amount {request.amount} exceeds the authorized {state.amount_capturable}",
                )
            )

    @workflow.update(name=Updates.CANCEL)
    async def cancel(self, request: CancelCommand) -> PaymentState:
        if self._replayed(request.idempotency):
            return self._state
        self._request_cancel(CancelPayment(reason=request.reason), source="api")
        return self._state

    @cancel.validator
    def _validate_cancel(self, request: CancelCommand) -> None:
        if self._check_key(request.idempotency):
            return
        problem = self._cancel_problem()
        if problem:
            raise rejection(problem)

    @workflow.update(name=Updates.REFUND)
    async def refund(self, command: RefundCommand) -> Refund:
        refund = self._find_refund(command.refund_id)
        if refund is None:
            if command.fingerprint is not None:
                self._state.request_fingerprints[command.refund_id] = command.fingerprint
            refund = self._add_refund(command.refund_id, command.amount, command.reason, "api")
        return refund

    @refund.validator
    def _validate_refund(self, command: RefundCommand) -> None:
        existing = self._find_refund(command.refund_id)
        if existing is not None:
            first = self._state.request_fingerprints.get(command.refund_id)
            if first is not None and command.fingerprint is not None:
                same = first == command.fingerprint
            else:
                # Requested before fingerprints were kept: compare what it holds.
                same_amount = command.amount is None or command.amount == existing.amount
                same = same_amount and command.reason == existing.reason
            if not same:
                raise rejection(KEY_REUSED)
            return
        problem = self._refund_problem(command.amount)
        if problem:
            raise rejection(problem)

    @workflow.update(name=Updates.WAIT_SETTLED)
    async def wait_settled(self, wait: WaitSettled | None = None) -> PaymentState:
        """Returns once nothing asked of the payment is still under way (or the
        payment moves to its next run: the caller then reads it again)."""
        refund_id = wait.refund_id if wait else None
        await workflow.wait_condition(lambda: self._is_settled(refund_id) or self._handing_over)
        return self._state

    @wait_settled.validator
    def _validate_wait_settled(self, wait: WaitSettled | None = None) -> None:
        if wait is None:
            return
        fingerprint = wait.request_fingerprint
        if fingerprint is not None and fingerprint != self._input.request_fingerprint:
            raise rejection(KEY_REUSED)
        if wait.refund_id is not None and self._find_refund(wait.refund_id) is None:
            raise rejection(Refusal(RESOURCE_MISSING, "no such refund"))

    def _is_settled(self, refund_id: str | None) -> bool:
        if refund_id is not None:
            refund = self._find_refund(refund_id)
            return refund is None or refund.settled
        status = self._state.status
        capturing = self._capture is not None and not capture_settled(status)
        canceling = self._cancel is not None and not cancel_settled(status)
        # Waiting on the customer, the answer for now is where to send them.
        outcome_known = is_settled(status) or needs_customer(status)
        return outcome_known and not capturing and not canceling

    # -- operators' signals: never fail the workflow ----------------------
    # They take plain JSON (what `temporal workflow signal --input` sends) and
    # check it here, so a malformed one becomes an event instead of vanishing.

    @workflow.signal(name=Signals.CANCEL)
    def cancel_signal(self, *payloads: Any) -> None:
        payload = _one_input(payloads)
        if payload is _TOO_MANY:
            self._signal_refused("payment.cancel_failed", _ONE_INPUT, {})
            return
        # No --input at all is a plain cancel.
        try:
            request = CancelPayment.model_validate(payload or {})
        except ValidationError as err:
            self._signal_refused("payment.cancel_failed", _invalid_signal(err), {})
            return
        problem = self._cancel_problem()
        if problem:
            self._signal_refused("payment.cancel_failed", problem, {"reason": request.reason})
            return
        self._request_cancel(request, source="signal")

    @workflow.signal(name=Signals.REFUND)
    def refund_signal(self, *payloads: Any) -> None:
        # Drawn from the run's seeded random: a reset that reapplies the signal
        # draws the same id, so the refund keeps its gateway key.
        refund_id = f"re_{workflow.uuid4().hex[:24]}"
        payload = _one_input(payloads)
        if payload is _TOO_MANY:
            self._signal_refused("refund.failed", _ONE_INPUT, {"refund_id": refund_id})
            return
        if payload is None:
            # Money moves only when asked for explicitly ({} refunds all that remains).
            needs_input = Refusal(INVALID_SIGNAL, 'a refund needs --input, e.g. {"amount": 500}')
            self._signal_refused("refund.failed", needs_input, {"refund_id": refund_id})
            return
        try:
            request = RefundPayment.model_validate(payload)
        except ValidationError as err:
            self._signal_refused("refund.failed", _invalid_signal(err), {"refund_id": refund_id})
            return
        problem = self._refund_problem(request.amount)
        if problem:
            details = {"refund_id": refund_id, "amount": request.amount, "reason": request.reason}
            self._signal_refused("refund.failed", problem, details)
            return
        self._add_refund(refund_id, request.amount, request.reason, "signal")

    def _signal_refused(self, event_type: str, problem: Refusal, details: dict[str, Any]) -> None:
        self._refused(event_type, problem, details, "signal")

    def _refused(
        self, event_type: str, problem: Refusal, details: dict[str, Any], source: str
    ) -> None:
        data = {**details, "code": problem.code, "message": problem.message, "source": source}
        self._emit(event_type, data)

    @workflow.signal(name=Signals.GATEWAY_EVENT)
    def gateway_event(self, *payloads: Any) -> None:
        """A webhook from the gateway (verified by the API), recorded once per event id."""
        try:
            event = GatewayEvent.model_validate(_one_input(payloads))
        except ValidationError:
            return  # only the API sends these, and it sends them well-formed
        if event.id in self._state.gateway_event_ids:
            return
        if needs_customer(self._state.status):
            # A doorbell only: the payment asks the gateway what was decided.
            self._gateway_rang = True
        # Redeliveries come within days; the last hundred ids are plenty to
        # recognise them, and the memo stays small.
        self._state.gateway_event_ids = [*self._state.gateway_event_ids[-99:], event.id]
        self._emit(
            "payment.gateway_event",
            {"event_id": event.id, "type": event.type, "object_id": event.object_id},
        )

    @workflow.query(name=STATE_QUERY)
    def state(self) -> PaymentState:
        return self._state

    # -- helpers ----------------------------------------------------------

    def _check_key(self, keyed: Keyed | None) -> bool:
        """Validators: True for a request sent again under its key (accepted as
        it stands); a different request under a used key is refused."""
        if keyed is None:
            return False
        first = self._state.request_fingerprints.get(keyed.key)
        if first is None:
            return False
        if first != keyed.fingerprint:
            raise rejection(KEY_REUSED)
        return True

    def _replayed(self, keyed: Keyed | None) -> bool:
        """Handlers: True for a request already carried out under its key;
        otherwise the key is remembered with this request."""
        if keyed is None:
            return False
        if keyed.key in self._state.request_fingerprints:
            return True
        self._state.request_fingerprints[keyed.key] = keyed.fingerprint
        return False

    def _cancel_problem(self) -> Refusal | None:
        if self._cancel is not None:
            return None  # a repeated cancel is harmless: it is already under way
        if not can_cancel(self._state.status):
            return Refusal(
                PAYMENT_NOT_CANCELABLE,
                f"a {self._state.status} payment cannot be canceled; refund it instead",
            )
        if self._capture is not None:
            return Refusal(
                PAYMENT_NOT_CANCELABLE, "the payment is being captured; refund it instead"
            )
        return None

    def _request_cancel(self, request: CancelPayment, *, source: str) -> None:
        if self._cancel is None:
            self._cancel = request
            self._emit("payment.cancel_requested", {"reason": request.reason, "source": source})

    def _refund_problem(self, amount: int | None) -> Refusal | None:
        state = self._state
        if self._closing:
            return Refusal(PAYMENT_CLOSED, "the refund window has closed")
        if not can_refund(state.status):
            return Refusal(PAYMENT_NOT_REFUNDABLE, f"a {state.status} payment cannot be refunded")
        refundable = state.refundable_amount
        if refundable <= 0:
            return Refusal(AMOUNT_TOO_LARGE, "nothing remains to refund")
        if amount is not None and amount > refundable:
            return Refusal(
                AMOUNT_TOO_LARGE,
                f"amount {amount} exceeds the {refundable} that remains refundable",
            )
        return None

    def _find_refund(self, refund_id: str) -> Refund | None:
        return next((r for r in self._state.refunds if r.id == refund_id), None)

    def _add_refund(
        self, refund_id: str, amount: int | None, reason: str | None, source: str
    ) -> Refund:
        refund = Refund(
            id=refund_id,
            status="pending",
            amount=amount or self._state.refundable_amount,
            reason=reason,
            created_at=workflow.now(),
        )
        self._state.refunds.append(refund)
        self._emit(
            "refund.requested",
            {"refund_id": refund.id, "amount": refund.amount, "reason": reason, "source": source},
        )
        return refund

    def _emit(
        self, event_type: str, data: dict[str, Any], *, status: PaymentStatus | None = None
    ) -> None:
        """Record one domain event in the history, and the status change it brings."""
        state = self._state
        changed = status is not None and status is not state.status
        before = state.status
        if status is not None:
            state.status = check_transition(state.status, status)
        if state.status is not S.REQUIRES_ACTION:
            # Where to send the customer, only while the payment waits on them.
            state.next_action = None
        for name, labels in metrics.counted(event_type, data, before.value, state.status.value):
            counters.add(name, labels)
        state.updated_at = workflow.now()
        workflow.upsert_memo(memo.recording(DomainEvent(type=event_type, data=data), state))
        self._recorded_types.append(event_type)
        self._recorded_at.append(state.updated_at)
        if changed:
            workflow.upsert_search_attributes([STATUS.value_set(state.status.value)])
        self._show()

    async def _announce(self) -> None:
        """Tell the webhooks, after each workflow task that recorded events,
        which ones: a local activity, in the same task (the delivery workflow
        reads the events themselves from this history). Only while the
        merchant has endpoints: the API says so at the start, and the
        merchant's first endpoint tells every running payment
        (``webhooks_on``); a merchant without endpoints pays nothing. The
        local attempts of a fast path's steps come first, so that a payment
        authorized and captured in one task announces its events once."""
        info = workflow.info()
        while True:
            await workflow.wait_condition(
                lambda: (
                    self._announcing
                    and not self._local_step
                    and self._announced < len(self._recorded_types)
                )
            )
            first, end = self._announced, len(self._recorded_types)
            await workflow.execute_local_activity(
                WebhookActivities.ANNOUNCE,
                Announcement(
                    payment_id=self._state.id,
                    merchant_id=self._state.merchant_id,
                    run_id=info.run_id,
                    continued=info.continued_run_id is not None,
                    first=first,
                    end=end,
                    types=self._recorded_types[first:end],
                ),
                result_type=bool,
                start_to_close_timeout=timedelta(seconds=10),
                retry_policy=ANNOUNCE_RETRY,
                summary="announce events to webhooks",
            )
            self._announced = end

    async def _all_announced(self) -> None:
        """Before the run ends: no event it recorded is left unannounced."""
        await workflow.wait_condition(
            lambda: not self._announcing or self._announced == len(self._recorded_types)
        )

    @workflow.signal(name=Signals.WEBHOOKS_ON)
    def webhooks_on(self, turned_on: WebhooksOn) -> None:
        """The merchant registered its first endpoint: announce from now on,
        and the events of this run recorded since it did."""
        if self._announcing:
            return
        self._announced = bisect.bisect_left(self._recorded_at, turned_on.since)
        self._announcing = True

    def _money(self, amount: int) -> str:
        return format_amount(amount, self._state.currency)

    async def _gateway(
        self,
        activity: str,
        arg: GatewayStep,
        *,
        result_type: Any,
        policy: retries.StepPolicy,
        summary: str,
    ) -> Any:
        """One gateway step under its retry policy; the UI says the run waits on it.

        The fast path: the step's first attempt runs as a local activity, in
        the workflow task that reached the step, so a payment whose gateway
        answers at once settles in one workflow task instead of a round trip to
        the server for each step. A gateway's refusal is its answer. Anything
        else (no answer within ``policy.fast_attempt``, a timeout, a 5xx) hands
        the step to the regular activity, with today's retries and heartbeats,
        the same idempotency key, and the local attempt counted: from then on
        the UI shows it pending, and the run takes updates while it waits.
        """
        self._wait_for(f"the gateway: {summary}")
        try:
            if policy.fast_attempt is not None and workflow.patched(FAST_PATH):
                self._local_step = True
                try:
                    return await workflow.execute_local_activity(
                        activity,
                        arg,
                        result_type=result_type,
                        schedule_to_close_timeout=policy.fast_attempt,
                        retry_policy=ONE_ATTEMPT,
                        summary=summary,
                    )
                except FailureError as err:
                    error_type = StepFailed.of(err).error_type
                    if error_type in retries.PERMANENT_ERROR_TYPES:
                        raise
                    if error_type != retries.NOT_LOCAL:
                        arg = arg.model_copy(update={"earlier_attempts": arg.earlier_attempts + 1})
                finally:
                    self._local_step = False
            return await workflow.execute_activity(
                activity,
                arg,
                result_type=result_type,
                start_to_close_timeout=policy.start_to_close,
                schedule_to_close_timeout=policy.schedule_to_close,
                heartbeat_timeout=policy.heartbeat,
                retry_policy=policy.retry,
                summary=summary,
            )
        except FailureError as err:
            raise StepFailed.of(err) from err

    def _wait_for(self, what: str) -> None:
        self._waiting_for = what
        self._show()

    def _show(self) -> None:
        """The UI's current details: the payment as it stands, what the run waits for."""
        workflow.set_current_details(current_details(self._state, self._waiting_for))
