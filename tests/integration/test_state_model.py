"""A model of the payment state machine, checked against the real workflow.

Hypothesis drives the real ``PaymentWorkflow`` on the time-skipping test server
(a real worker, the real activities, the in-memory simulator as the gateway)
through random sequences of: creates (automatic and manual capture; cards that
succeed, decline, authorize and then refuse every capture, or need the
customer to authenticate first, 3-D Secure), the customer's answer (approve
or fail, with the gateway's webhook or found by the payment's own look), captures,
cancels and refunds (all, exactly what remains, part, too much), the same
create or refund sent again, operators' signals (well-formed and malformed),
jumps in time across the authorization and refund windows, and gateway faults
(an outage, lost replies, lost replies while lookups get no answer either),
each lasting either less or longer than the steps keep retrying.

After every step, for every payment of the run:

- captured ≤ authorized, refunded ≤ captured, a final status never changes and
  a closed workflow stays closed;
- a payment waiting on its customer holds nothing on the card and shows where
  to send them (``next_action``), and nothing else does;
- the gateway's ledger matches the payment: one authorization for the payment's
  amount, at most one capture and one void and never both, refunds within the
  capture, every refund the payment counts was paid out once, and an
  authorization left held is one the payment says it could not void;
- the events projected from the history (:mod:`payments.events`) fold back
  into the state the ``state`` query reports, and the memo the API reads is
  that state;
- no workflow task failed (no nondeterminism, no exception in the workflow);
- where the model knows the outcome exactly (what a validator refuses, which
  status and amounts a command leads to, which operations the gateway
  committed, which signals were refused, when the windows end), it is that
  outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import itertools
import logging
import uuid
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal, TypeVar

from hypothesis import Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)
from support import (
    TEST_SERVER,
    Stack,
    event_types,
    register_search_attributes,
    running_stack,
    skip_time,
)
from temporalio.api.enums.v1 import EventType, WorkflowTaskFailedCause
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from gateway.memory import InMemoryGateway
from gateway.simulator.core import Faults, GatewayUnavailable
from payments import events as history_events
from payments import memo as payment_memo
from payments.gateway import GatewayOperation
from payments.ids import idempotency_key
from payments.models import (
    CancelPayment,
    CapturePayment,
    Event,
    PaymentInput,
    PaymentState,
    Refund,
    RefundCommand,
)
from payments.refusals import Refused
from payments.status import FINAL, TRANSITIONS, PaymentStatus

S = PaymentStatus
T = TypeVar("T")

# Each example starts up to three payments and takes 15 steps. A step costs
# 0.05-0.3 s of real time; a fault that outlasts the retries 1-3 s (the server
# skips through a day or two of retries, every five minutes). 20 examples run
# in 10-30 s here, well inside the 90 s this test may take in `make test` on
# this 2-core machine, and still reach every rule in every run (runs of 100
# and 200 examples, up to 30 steps, found nothing these do not).
# No shrink phase: shrinking replays examples for minutes, past the test's
# timeout, and the printed steps of a failing example are short enough to
# read as they are. No example database: each run stands on its own, and a
# failure prints its steps and a @reproduce_failure blob to replay it with.
MODEL_SETTINGS = settings(
    max_examples=20,
    stateful_step_count=15,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
    print_blob=True,
)
MAX_PAYMENTS = 3
# No real call of the model should take this long; a hung one fails the step.
CALL_TIMEOUT = 60.0
# A skip of the server's clock (support.skip_time): within the call's own bound.
SKIP_TIMEOUT = timedelta(seconds=CALL_TIMEOUT - 5)

# No timer of the workflow may fire within MARGIN of a moment the model acts
# or looks, so that it knows on which side of a window's end it stands: jumps
# step over windows' ends by that much, and a step that creeps up on one
# (settling skips a few minutes at most) is moved past it.
MARGIN = timedelta(hours=1)
# Minutes skipped at most while settling: well inside MARGIN.
SETTLE_SKIPS = 30
SHORT_FAULT = timedelta(seconds=30)
# Longer than the steps try (authorize 10 minutes, capture, void, refund and
# the lookup a day each), shorter than the next step in line tries (the void
# after a failed capture, the second of two refunds): so the outcome is known.
LONG_FAULT = {
    "outage": timedelta(days=1, hours=1),
    "lost_replies": timedelta(days=1, hours=1),
    # The step gives up after a day, then the lookup after another day.
    "blackout": timedelta(days=2, hours=1),
}
FaultKind = Literal["outage", "lost_replies", "blackout"]

# A third of the payments on the plain test card, so that many live long
# enough to be captured, refunded and expired; a third on the card that needs
# the customer (3-D Secure), so that they answer, or not, often enough; the
# rest on every other kind of card.
CARDS = (
    st.just("pm_card_visa")
    | st.just("pm_card_threeDSecure2Required")
    | st.sampled_from(
        [
            "pm_card_mastercard",
            "tok_visa",
            "pm_card_captureFails",
            "pm_card_chargeDeclined",
            "pm_card_chargeDeclinedInsufficientFunds",
            "pm_card_chargeDeclinedExpiredCard",
        ]
    )
)
DECLINES = {
    "pm_card_chargeDeclined": ("card_declined", "generic_decline"),
    "pm_card_chargeDeclinedInsufficientFunds": ("card_declined", "insufficient_funds"),
    "pm_card_chargeDeclinedExpiredCard": ("expired_card", "expired_card"),
}
CAPTURE_REFUSED = "pm_card_captureFails"
THREE_D_SECURE = "pm_card_threeDSecure2Required"
# The model's action window: longer than MARGIN, so the customer has time to
# answer between steps; short enough that the payment's looks (every five
# minutes at most) stay few when time is skipped through it.
ACTION_WINDOW = timedelta(minutes=90)
JUMPS = [
    timedelta(hours=1),
    timedelta(days=1),
    timedelta(days=3),
    timedelta(days=6, hours=12),
    timedelta(days=8),
    timedelta(days=60),
    timedelta(days=181),
]

# How much to ask for, relative to what is available (capturable, refundable).
HowMuch = Literal["default", "exact", "part", "over"]
HOW_MUCH: st.SearchStrategy[HowMuch] = st.sampled_from(["default", "exact", "part", "over"])
PERCENT = st.integers(1, 99)
REASONS = st.sampled_from([None, "requested_by_customer", "duplicate"])

# What an operator may send with `temporal workflow signal`: (payload, well-formed).
NO_INPUT = "<no --input>"
NULL_INPUT = "<--input null>"
TWO_INPUTS = "<two inputs>"
CANCEL_SIGNALS: list[tuple[Any, bool]] = [
    (NO_INPUT, True),
    (NULL_INPUT, True),
    ({}, True),
    ({"reason": "ops: fraud"}, True),
    ({"reason": 42}, False),
    ({"reason": "ops", "extra": True}, False),
    ("cancel it", False),
    (["ops"], False),
    ({"reason": "r" * 501}, False),
    (TWO_INPUTS, False),
]
MALFORMED_REFUND_SIGNALS: list[Any] = [
    NO_INPUT,
    NULL_INPUT,
    {"amount": 0},
    {"amount": -5},
    {"amount": "a lot"},
    {"amount": 1.5},
    {"amount": True},
    {"amount": 100_000_000},
    {"amount": 10, "extra": 1},
    {"reason": "r" * 501},
    "refund",
    TWO_INPUTS,
]
SIGNAL_REFUSALS = ("payment.cancel_failed", "refund.failed")


def _reachable(start: PaymentStatus) -> set[PaymentStatus]:
    found: set[PaymentStatus] = set()
    todo = set(TRANSITIONS[start])
    while todo:
        status = todo.pop()
        found.add(status)
        todo |= TRANSITIONS[status] - found
    return found


REACHABLE = {status: _reachable(status) for status in S}


# -- the gateway ---------------------------------------------------------------


class ModelGateway(InMemoryGateway):
    """The in-memory simulator plus the one fault it lacks: lookups by
    reference that get no answer either, so an outcome can stay unknown."""

    lookups_fail = False

    async def find_by_reference(
        self,
        reference: str,
        *,
        since: datetime | None = None,
        authorization_id: str | None = None,
    ) -> list[GatewayOperation]:
        if self.lookups_fail:
            raise GatewayUnavailable("simulated outage of lookups: no answer")
        return await super().find_by_reference(
            reference, since=since, authorization_id=authorization_id
        )

    def inject(self, kind: FaultKind | None) -> None:
        self.ledger.faults = {
            None: Faults(),
            "outage": Faults(error_rate=1.0),
            "lost_replies": Faults(drop_reply_rate=1.0),
            "blackout": Faults(drop_reply_rate=1.0),
        }[kind]
        self.lookups_fail = kind == "blackout"


# -- what the model expects of one payment ---------------------------------------


@dataclass
class ExpectedRefund:
    id: str | None  # None for an operator's refund: the workflow names it
    amount: int
    reason: str | None
    status: str = "pending"
    # Failed without anyone knowing whether it was paid out: still reserved.
    unknown: bool = False


@dataclass
class Expected:
    """The payment as the model expects it once nothing is in flight."""

    id: str
    key: str
    request: dict[str, Any]
    expires_at: datetime
    status: PaymentStatus = S.PROCESSING
    captured: int = 0
    refunded: int = 0
    refunds: list[ExpectedRefund] = field(default_factory=list)
    ledger: list[str] = field(default_factory=list)
    failure: tuple[str, str] | None = None
    closed: bool = False
    # A capture or cancel was accepted: the authorization window no longer matters.
    decided: bool = False
    expired: bool = False
    window_ends_at: datetime | None = None
    # While it waits on its customer (3-D Secure): when it stops waiting.
    action_ends_at: datetime | None = None
    authenticated: bool = False
    # The expiry's void ran into a fault: whether the gateway voided is open.
    loose_void: bool = False
    refused_signals: list[tuple[str, str]] = field(default_factory=list)

    @property
    def amount(self) -> int:
        amount: int = self.request["amount"]
        return amount

    @property
    def card(self) -> str:
        card: str = self.request["payment_method"]
        return card

    @property
    def refundable(self) -> int:
        reserved = sum(r.amount for r in self.refunds if r.status == "pending" or r.unknown)
        return self.captured - self.refunded - reserved

    def capture_refusal(self, amount: int | None) -> str | None:
        if self.closed:
            return "payment_closed"
        if self.decided or self.status is not S.REQUIRES_CAPTURE:
            return "payment_not_capturable"
        if amount is not None and amount > self.amount:
            return "amount_too_large"
        return None

    def cancel_refusal(self) -> str | None:
        if self.closed:
            return "payment_closed"
        if self.decided or self.status not in (
            S.PROCESSING,
            S.REQUIRES_ACTION,
            S.REQUIRES_CAPTURE,
        ):
            return "payment_not_cancelable"
        return None

    def refund_refusal(self, amount: int | None) -> str | None:
        if self.closed:
            return "payment_closed"
        if self.status not in (S.SUCCEEDED, S.PARTIALLY_REFUNDED):
            return "payment_not_refundable"
        if self.refundable <= 0 or (amount is not None and amount > self.refundable):
            return "amount_too_large"
        return None

    def refund_ended(self, refund: ExpectedRefund, down: FaultKind | None) -> None:
        """What follows the refund step of ``refund`` (already listed, pending)."""
        if down == "outage":
            refund.status = "failed"
            return
        # Lost replies: the lookup finds the refund that was paid. Lookups down
        # too: paid, but nobody can tell, so its amount stays reserved.
        self.ledger.append("refund")
        if down == "blackout":
            refund.status, refund.unknown = "failed", True
            return
        refund.status = "succeeded"
        self.refunded += refund.amount
        self.status = S.REFUNDED if self.refunded == self.captured else S.PARTIALLY_REFUNDED
        # Nothing left to refund: the workflow ends.
        self.closed = self.status is S.REFUNDED

    def ended(self, status: PaymentStatus, failure: tuple[str, str] | None = None) -> None:
        self.status = status
        self.failure = failure or self.failure
        self.decided = True
        self.closed = True


def sized(how: HowMuch, available: int, percent: int) -> int | None:
    """An amount to ask for: the default (None), all that is available, part
    of it, or more than that. Never below 1, which the API itself refuses."""
    if how == "default":
        return None
    if how == "exact":
        return max(available, 1)
    if how == "part":
        return max(available * percent // 100, 1)
    return available + percent


# -- what the system shows ------------------------------------------------------


@dataclass
class Observed:
    state: PaymentState  # the workflow's `state` query
    memo: PaymentState  # what the API reads
    events: list[Event]
    ledger: list[GatewayOperation]
    closed: bool
    in_flight: bool
    task_failures: list[str]
    # The payment instance its gateway idempotency keys carry.
    instance: str | None


WORKFLOW_TASK_EVENTS = {
    EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED,
    EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT,
}
# Failures that mean a bug: the workflow raised, or it did not replay.
BUGGY_TASK_FAILURES = {
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_WORKFLOW_WORKER_UNHANDLED_FAILURE,
    WorkflowTaskFailedCause.WORKFLOW_TASK_FAILED_CAUSE_NON_DETERMINISTIC_ERROR,
}


def task_pending(history: WorkflowHistory) -> bool:
    """A workflow task is scheduled or running: a signal not yet handled,
    an activity's result not yet seen."""
    task_events = [e.event_type for e in history.events if e.event_type in WORKFLOW_TASK_EVENTS]
    return bool(task_events) and task_events[-1] in (
        EventType.EVENT_TYPE_WORKFLOW_TASK_SCHEDULED,
        EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED,
    )


def task_failures(runs: list[WorkflowHistory]) -> list[str]:
    return [
        f"{e.event_id}: {e.workflow_task_failed_event_attributes.failure.message}"
        for history in runs
        for e in history.events
        if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED
        and e.workflow_task_failed_event_attributes.cause in BUGGY_TASK_FAILURES
    ]


def rebuild(events: list[Event]) -> dict[str, Any]:
    """The payment as its event log tells it, folded here without the workflow."""
    requested, *rest = events
    assert requested.type == "payment.requested", events
    manual = requested.data["capture_method"] == "manual"
    status = S.PROCESSING
    capturable = captured = refunded = 0
    authorization_id: str | None = None
    failure: tuple[str, str, str | None] | None = None
    refunds: dict[str, list[Any]] = {}
    cancel_requested = False
    for event in rest:
        data = event.data
        match event.type:
            case "payment.action_required":
                status = S.REQUIRES_ACTION
            case "payment.authenticated":
                status = S.PROCESSING
            case "payment.authentication_failed":
                failure = (data["type"], data["code"], data.get("decline_code"))
            case "payment.authorized":
                authorization_id = data["authorization_id"]
                capturable = data["amount"]
                if manual and not cancel_requested:
                    status = S.REQUIRES_CAPTURE
            case "payment.cancel_requested":
                cancel_requested = True
            case "payment.captured":
                captured, capturable, status = data["amount"], 0, S.SUCCEEDED
            case "payment.voided":
                capturable = 0
            case "payment.declined" | "payment.capture_failed":
                failure = (data["type"], data["code"], data.get("decline_code"))
            case "payment.failed":
                status = S.FAILED
                if data["failure"] is not None:
                    told = data["failure"]
                    failure = (told["type"], told["code"], told.get("decline_code"))
            case "payment.canceled":
                status = S.CANCELED
            case "refund.requested":
                refunds[data["refund_id"]] = [data["amount"], "pending", data["reason"]]
            case "refund.succeeded":
                refunds[data["refund_id"]][1] = "succeeded"
                refunded += data["amount"]
                status = S.REFUNDED if refunded >= captured else S.PARTIALLY_REFUNDED
            case "refund.failed" if data["refund_id"] in refunds:
                # An operator's refund refused on arrival was never requested.
                refunds[data["refund_id"]][1] = "failed"
    return {
        "status": status,
        "amount_capturable": capturable,
        "amount_captured": captured,
        "amount_refunded": refunded,
        "authorization_id": authorization_id,
        "failure": failure,
        "refunds": [(rid, *told) for rid, told in refunds.items()],
    }


def as_reported(state: PaymentState) -> dict[str, Any]:
    """The same fields as :func:`rebuild`, from the `state` query."""
    failure = state.failure
    return {
        "status": state.status,
        "amount_capturable": state.amount_capturable,
        "amount_captured": state.amount_captured,
        "amount_refunded": state.amount_refunded,
        "authorization_id": state.authorization_id,
        "failure": (failure.type, failure.code, failure.decline_code) if failure else None,
        "refunds": [(r.id, r.amount, r.status, r.reason) for r in state.refunds],
    }


def differences(one: PaymentState, other: PaymentState) -> dict[str, Any]:
    theirs = other.model_dump()
    return {k: (v, theirs[k]) for k, v in one.model_dump().items() if v != theirs[k]}


def unknown_outcome(refund: Refund) -> bool:
    failure = refund.failure
    return refund.status == "failed" and failure is not None and failure.code == "outcome_unknown"


def check_invariants(o: Observed, seen: list[PaymentStatus], was_closed: bool) -> None:
    """What holds of any payment at any moment, whatever the model expects."""
    state, pid = o.state, o.state.id
    types = [e.type for e in o.events]
    assert not o.task_failures, o.task_failures

    # The event log and the workflow tell one story; the API reads the same one.
    assert rebuild(o.events) == as_reported(state)
    memo_lag = differences(o.memo, state)
    assert not memo_lag, memo_lag
    seqs = [e.seq for e in o.events]
    assert seqs == sorted(set(seqs)), seqs

    # Statuses only move forward; a final one never changes; closed stays closed.
    if seen:
        assert state.status == seen[-1] or state.status in REACHABLE[seen[-1]], (seen, state)
        if seen[-1] in FINAL:
            assert state.status == seen[-1]
    assert o.closed or not was_closed, "a closed payment reopened"

    # Amounts: captured ≤ authorized, refunded ≤ captured, reservations included.
    assert 0 <= state.amount_capturable <= state.amount
    assert 0 <= state.amount_captured <= state.amount
    succeeded = [r for r in state.refunds if r.status == "succeeded"]
    assert state.amount_refunded == sum(r.amount for r in succeeded)
    assert 0 <= state.amount_refunded <= state.amount_captured
    assert state.refundable_amount >= 0, state
    if state.amount_captured:
        assert state.amount_capturable == 0
    # Only a payment waiting on its customer says where to send them.
    assert (state.next_action is not None) == (state.status is S.REQUIRES_ACTION), state
    match state.status:
        case S.REQUIRES_ACTION:
            assert state.amount_capturable == 0 and state.amount_captured == 0
        case S.REQUIRES_CAPTURE:
            assert state.amount_capturable == state.amount and state.amount_captured == 0
        case S.SUCCEEDED:
            assert state.amount_captured > 0 and state.amount_refunded == 0
        case S.PARTIALLY_REFUNDED:
            assert 0 < state.amount_refunded < state.amount_captured
        case S.REFUNDED:
            assert 0 < state.amount_refunded == state.amount_captured
        case S.FAILED | S.CANCELED:
            assert state.amount_captured == 0 and not state.refunds

    # The ledger: what the gateway committed for this payment.
    ops = o.ledger
    kinds = [op.kind for op in ops]
    auths = [op for op in ops if op.kind == "authorization"]
    captures = [op for op in ops if op.kind == "capture"]
    refunds = [op for op in ops if op.kind == "refund"]
    assert all(op.reference == pid for op in ops)
    assert len({op.idempotency_key for op in ops}) == len(ops), kinds
    assert kinds.count("authorization") <= 1 and kinds.count("capture") <= 1, kinds
    assert kinds.count("void") <= 1 and not ("capture" in kinds and "void" in kinds), kinds
    if auths:
        assert auths[0].amount == state.amount, (auths, state)
        assert state.authorization_id in (None, auths[0].id)
    else:
        assert kinds == [] and state.authorization_id is None, (kinds, state)
    captured_there = captures[0].amount if captures else 0
    assert captured_there <= (auths[0].amount if auths else 0)
    assert sum(op.amount for op in refunds) <= captured_there, kinds
    # The payment never counts money the gateway did not move.
    if state.amount_captured:
        assert captured_there == state.amount_captured, (captures, state)
    by_key = {op.idempotency_key: op for op in refunds}
    refund_keys = {idempotency_key(pid, f"refund:{r.id}", o.instance): r for r in state.refunds}
    for r in succeeded:
        paid = by_key.get(idempotency_key(pid, f"refund:{r.id}", o.instance))
        assert paid is not None and paid.amount == r.amount, (r, refunds)
    for key, op in by_key.items():
        # Paid out once, for a refund the payment knows, and for its amount.
        asked = refund_keys.get(key)
        assert asked is not None and asked.amount == op.amount, (op, state.refunds)
        if asked.status == "failed":
            assert unknown_outcome(asked), (op, asked)

    if o.in_flight:
        return
    # Nothing in flight: the payment and the ledger have caught up with each other.
    assert all(r.status != "pending" for r in state.refunds), state.refunds
    assert state.status is not S.PROCESSING
    if captures and not state.amount_captured:
        # Committed, but nobody could tell the workflow: it says so.
        assert state.failure is not None and state.failure.code == "outcome_unknown", state
    if state.status is S.REQUIRES_CAPTURE:
        assert kinds == ["authorization"], kinds
    if state.status is S.REQUIRES_ACTION:
        # Nothing is held on the card before the customer approved.
        assert kinds == [], kinds
    if "payment.authenticated" in types:
        # Approved by the customer first: the authorization came after.
        assert types.index("payment.action_required") < types.index("payment.authenticated")
    if "payment.voided" in types:
        assert "void" in kinds, kinds
    held = auths and not captures and "void" not in kinds
    if held and state.status in (S.FAILED, S.CANCELED):
        # An authorization left held is one the payment says it could not void.
        assert "payment.void_failed" in types, (kinds, types)


# -- the async side ----------------------------------------------------------------


class Harness:
    """One time-skipping server and one worker, on the test's event loop. The
    state machine runs in a thread of its own and calls in through ``run``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        env: WorkflowEnvironment,
        stack: Stack,
        gateway: ModelGateway,
    ) -> None:
        self.loop = loop
        self.env = env
        self.stack = stack
        self.gateway = gateway

    async def skip(self, duration: timedelta) -> None:
        await skip_time(self.env, duration, SKIP_TIMEOUT)

    def run(self, call: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(call, self.loop)
        try:
            return future.result(timeout=CALL_TIMEOUT)
        finally:
            future.cancel()  # a no-op once done; stops a call that timed out

    async def create(self, key: str, request: dict[str, Any]) -> tuple[PaymentState, datetime]:
        """Create as the API does; and when, on the server's clock, it expires.

        The API stamps ``created_at`` with the wall clock and the workflow
        waits until ``created_at`` + the window on Temporal's clock. Here the
        two clocks part as soon as time is skipped, so the window is widened
        by the server's lead: the payment expires 7 days of server time after
        it was created, as it does where both clocks agree.
        """
        now = await self.env.get_current_time()
        lead = now - datetime.now(now.tzinfo)
        window = self.stack.settings.authorization_window
        settings = self.stack.settings.model_copy(
            update={
                "authorization_window": window + lead,
                "action_window_seconds": ACTION_WINDOW.total_seconds(),
            }
        )
        state = await dataclasses.replace(self.stack, settings=settings).create(
            idempotency_key=key, **request
        )
        return state, now + window

    async def observe(self, pid: str) -> Observed:
        client = self.stack.client
        handle = client.get_workflow_handle(pid)
        for _ in range(50):
            runs = await history_events.fetch_runs(client, pid)
            state, description = await asyncio.gather(self.stack.query(pid), handle.describe())
            latest = await handle.fetch_history()
            # Nothing happened between reading the history and the query: they agree.
            if latest.run_id == runs[-1].run_id and len(latest.events) == len(runs[-1].events):
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"{pid} never held still long enough to be read")
        memo = await payment_memo.payment_of(description)
        started = runs[0].events[0].workflow_execution_started_event_attributes
        [first_input] = await client.data_converter.decode(
            [started.input.payloads[0]], [PaymentInput]
        )
        running = description.status == WorkflowExecutionStatus.RUNNING
        return Observed(
            state=state,
            memo=memo,
            events=await history_events.project(pid, runs, client.data_converter),
            ledger=self.gateway.ledger.ledger(pid),
            closed=not running,
            in_flight=running
            and (bool(description.raw_description.pending_activities) or task_pending(latest)),
            task_failures=task_failures(runs),
            instance=first_input.instance,
        )

    async def ledger_kinds(self, pid: str) -> list[str]:
        return [op.kind for op in self.gateway.ledger.ledger(pid)]

    async def in_flight(self, pid: str) -> bool:
        handle = self.stack.client.get_workflow_handle(pid)
        description = await handle.describe()
        if description.status != WorkflowExecutionStatus.RUNNING:
            return False
        if description.raw_description.pending_activities:
            return True
        history = await handle.fetch_history()
        if failures := task_failures([history]):
            raise AssertionError(f"{pid}: workflow task failed: {failures}")
        return task_pending(history)

    async def settle(self, pids: list[str]) -> None:
        """Until no payment has work in flight. An activity waiting out its
        retry backoff (five minutes at most) is waited for by skipping a
        minute at a time; half an hour of that, or half a minute of real
        time, and something is stuck."""
        deadline = self.loop.time() + 30
        for attempt in itertools.count(1):
            busy = [pid for pid in pids if await self.in_flight(pid)]
            if not busy:
                return
            if attempt // 10 > SETTLE_SKIPS or self.loop.time() > deadline:
                raise AssertionError(f"still in flight: {busy}")
            if attempt % 10 == 0:
                await self.skip(timedelta(minutes=1))
            else:
                await asyncio.sleep(0.02)

    async def signal(self, pid: str, name: str, payload: Any) -> None:
        handle = self.stack.client.get_workflow_handle(pid)
        if payload == NO_INPUT:
            await handle.signal(name)
        elif payload == NULL_INPUT:
            await handle.signal(name, None)
        elif payload == TWO_INPUTS:
            await handle.signal(name, args=[{}, {}])
        else:
            await handle.signal(name, payload)

    async def close(self, pids: list[str]) -> None:
        """End what an example left open, so that later ones do not wake it.

        Only once nothing is in flight: the test server's clock stops skipping
        for good when a workflow is terminated with an activity just scheduled.
        """
        self.gateway.inject(None)
        try:
            await self.settle(pids)
        except AssertionError:
            return  # the example failed mid-flight: leave them be
        for pid in pids:
            with contextlib.suppress(RPCError):
                await self.stack.client.get_workflow_handle(pid).terminate("model run over")


# -- the model -------------------------------------------------------------------------


class PaymentModel(RuleBasedStateMachine):
    payments = Bundle("payments")

    def __init__(self, harness: Harness) -> None:
        super().__init__()
        self.h = harness
        self.stack = harness.stack
        self.expected: dict[str, Expected] = {}
        self.seen: dict[str, list[PaymentStatus]] = {}
        self.was_closed: dict[str, bool] = {}
        self.closed_ledger: dict[str, list[str]] = {}
        self.refund_count = 0

    # -- plumbing ------------------------------------------------------------

    def now(self) -> datetime:
        return self.h.run(self.h.env.get_current_time())

    def boundaries(self) -> list[datetime]:
        """When a timer of some payment fires: its authorization or refund window ends."""
        ends = []
        for e in self.expected.values():
            if e.closed:
                continue
            if e.status is S.REQUIRES_CAPTURE and not e.decided:
                ends.append(e.expires_at)
            elif e.status is S.REQUIRES_ACTION and e.action_ends_at is not None:
                ends.append(e.action_ends_at)
            elif e.window_ends_at is not None:
                ends.append(e.window_ends_at)
        return ends

    def advance(self, duration: timedelta) -> None:
        """Skip ``duration`` on the server's clock, stepping over any window's end."""
        now = self.now()
        target = now + duration
        moved = True
        while moved:
            moved = False
            for end in self.boundaries():
                if target - MARGIN < end < target + MARGIN:
                    target, moved = end + MARGIN, True
        self.h.run(self.h.skip(target - now))

    def settle(self, fault_window: tuple[datetime, datetime] | None = None) -> None:
        """Let the payments finish what is in flight, then apply the windows
        that ended; ``fault_window``: when the gateway was failing."""
        while True:
            self.h.run(self.h.settle([p for p, closed in self.was_closed.items() if not closed]))
            now = self.now()
            for e in self.expected.values():
                self.windows_ended(e, now, fault_window)
            near = [end for end in self.boundaries() if end <= now + MARGIN]
            if not near:
                return
            # Settling crept up on a window's end: go past it, in the clear.
            self.h.run(self.h.skip(max(near) + MARGIN - now))
            fault_window = None

    def windows_ended(
        self, e: Expected, now: datetime, fault_window: tuple[datetime, datetime] | None
    ) -> None:
        if e.closed:
            return
        if e.status is S.REQUIRES_ACTION and e.action_ends_at and e.action_ends_at <= now:
            # Nobody answered in time: the payment ended the authentication, holding nothing.
            e.ended(S.FAILED, ("card_error", "authentication_timeout"))
        elif e.status is S.REQUIRES_CAPTURE and not e.decided and e.expires_at <= now:
            e.expired = True
            e.ended(S.CANCELED)
            e.ledger.append("void")
            # The void after expiry met the fault: it went through, or not.
            e.loose_void = fault_window is not None and e.expires_at <= fault_window[1]
        elif e.window_ends_at is not None and e.window_ends_at <= now:
            e.closed = True

    def refusal_of(self, call: Coroutine[Any, Any, Any]) -> str | None:
        """Run an API call; the error code it was refused with, if it was."""
        try:
            self.h.run(call)
        except Refused as refused:
            return refused.code
        return None

    def next_refund_id(self) -> str:
        self.refund_count += 1
        return f"re_model_{self.refund_count}"

    # -- commands, shared by the plain rules and the faulty ones ------------------
    # ``down``: the fault that outlasts the retries of this command, if any; a
    # fault that ends before the retries do changes nothing the model sees.

    def do_create(
        self, request: dict[str, Any], down: FaultKind | None, *, then_cancel: bool = False
    ) -> str:
        key = f"model-{uuid.uuid4()}"
        state, expires_at = self.h.run(self.h.create(key, request))
        e = Expected(id=state.id, key=key, request=request, expires_at=expires_at)
        self.expected[e.id] = e
        self.seen[e.id] = []
        self.was_closed[e.id] = False
        if then_cancel:
            # Authorize is held up by the fault: the payment is processing,
            # neither capturable nor refundable, but cancelable; the cancel is
            # honoured once authorize returns, if it ever authorized.
            capture = self.stack.update(e.id, "capture", CapturePayment(), PaymentState)
            assert self.refusal_of(capture) == "payment_not_capturable"
            refund = self.stack.update(e.id, "refund", RefundCommand(refund_id="re_x"), Refund)
            assert self.refusal_of(refund) == "payment_not_refundable"
            cancel = self.stack.update(e.id, "cancel", CancelPayment(), PaymentState)
            assert self.refusal_of(cancel) is None
            if down is None and e.card == THREE_D_SECURE:
                # The customer is never asked: the authentication ends at once.
                e.ended(S.CANCELED)
                return e.id
            if down is None and e.card not in DECLINES:
                e.ledger += ["authorization", "void"]
                e.ended(S.CANCELED)
                return e.id
        self.authorized(e, down)
        return e.id

    def authorized(self, e: Expected, down: FaultKind | None) -> None:
        """What follows the authorize step, once it ends."""
        if down is not None:
            # authorize gave up; the workflow voids by reference what the
            # gateway may hold: nothing after an outage, or a declined card,
            # or a card still waiting for its customer; else an authorization
            # whose void is committed but unanswered (lost replies), or never
            # sent (lookups down too).
            if e.card not in (*DECLINES, THREE_D_SECURE) and down != "outage":
                e.ledger.append("authorization")
                if down == "lost_replies":
                    e.ledger.append("void")
            e.ended(S.FAILED, ("api_error", "gateway_unavailable"))
        elif e.card in DECLINES:
            e.ended(S.FAILED, ("card_error", DECLINES[e.card][0]))
        elif e.card == THREE_D_SECURE and not e.authenticated:
            e.status = S.REQUIRES_ACTION
            e.action_ends_at = (
                e.expires_at - self.stack.settings.authorization_window + ACTION_WINDOW
            )
        else:
            e.ledger.append("authorization")
            if e.request["capture_method"] == "manual":
                e.status = S.REQUIRES_CAPTURE
            else:
                self.captured(e, e.amount, None)

    def captured(self, e: Expected, amount: int, down: FaultKind | None) -> None:
        """What follows the capture step, once it ends."""
        e.decided = True
        refused = e.card == CAPTURE_REFUSED
        if down == "blackout":
            # Neither the capture nor the lookup ever answered: unknown. The
            # void that follows commits unless the capture did.
            e.ledger.append("void" if refused else "capture")
            e.ended(S.FAILED, ("api_error", "outcome_unknown"))
        elif down == "outage" or (down == "lost_replies" and refused):
            e.ledger.append("void")
            e.ended(S.FAILED, ("api_error", "capture_failed"))
        elif refused:
            e.ledger.append("void")
            e.ended(S.FAILED, ("api_error", "capture_refused"))
        else:
            # Lost replies: the lookup finds the capture that did happen.
            e.ledger.append("capture")
            e.status, e.captured = S.SUCCEEDED, amount

    def canceled(self, e: Expected, down: FaultKind | None) -> None:
        if e.status is S.REQUIRES_ACTION:
            # Nothing held: the authentication ends (or, with no answer, a
            # void by reference finds nothing to void).
            e.ended(S.CANCELED)
            return
        # A void has no lookup: once its retries run out it is void_failed,
        # committed or not.
        if down != "outage":
            e.ledger.append("void")
        e.ended(S.CANCELED)

    def do_capture(self, e: Expected, amount: int | None, down: FaultKind | None) -> None:
        expected = e.capture_refusal(amount)
        refused = self.refusal_of(
            self.stack.update(e.id, "capture", CapturePayment(amount=amount), PaymentState)
        )
        assert refused == expected, f"capture {amount}: refused {refused}, expected {expected}"
        if refused is None:
            self.captured(e, amount or e.amount, down)

    def do_cancel(self, e: Expected, down: FaultKind | None, reason: str | None = None) -> None:
        expected = e.cancel_refusal()
        refused = self.refusal_of(
            self.stack.update(e.id, "cancel", CancelPayment(reason=reason), PaymentState)
        )
        assert refused == expected, f"cancel: refused {refused}, expected {expected}"
        if refused is None:
            self.canceled(e, down)

    def do_refund(
        self, e: Expected, amount: int | None, reason: str | None, down: FaultKind | None
    ) -> ExpectedRefund | None:
        expected = e.refund_refusal(amount)
        refund_id = self.next_refund_id()
        command = RefundCommand(refund_id=refund_id, amount=amount, reason=reason)
        try:
            refund = self.h.run(self.stack.update(e.id, "refund", command, Refund))
        except Refused as refused:
            assert refused.code == expected, f"refund {amount}: refused {refused.code}"
            return None
        assert expected is None, f"refund {amount} accepted, expected {expected}"
        assert (refund.id, refund.amount, refund.reason) == (
            refund_id,
            amount or e.refundable,
            reason,
        )
        asked = ExpectedRefund(refund_id, refund.amount, reason)
        e.refunds.append(asked)  # pending: its amount is reserved meanwhile
        return asked

    # -- rules ------------------------------------------------------------------

    @initialize(
        target=payments,
        card=CARDS,
        capture_method=st.sampled_from(["automatic", "manual"]),
        amount=st.integers(1, 100_000),
    )
    def first_payment(self, card: str, capture_method: str, amount: int) -> str:
        return self.created(card, capture_method, amount)

    @precondition(lambda self: len(self.expected) < MAX_PAYMENTS)
    @rule(
        target=payments,
        card=CARDS,
        capture_method=st.sampled_from(["automatic", "manual"]),
        amount=st.integers(1, 100_000),
    )
    def create(self, card: str, capture_method: str, amount: int) -> str:
        return self.created(card, capture_method, amount)

    def created(self, card: str, capture_method: str, amount: int) -> str:
        request = {"amount": amount, "payment_method": card, "capture_method": capture_method}
        pid = self.do_create(request, None)
        self.settle()
        return pid

    @rule(payment=payments, same=st.booleans())
    def create_again(self, payment: str, same: bool) -> None:
        """The same Idempotency-Key: the same payment, or a conflict; never a second one."""
        e = self.expected[payment]
        request = e.request if same else {**e.request, "amount": e.amount + 1}
        try:
            again, _ = self.h.run(self.h.create(e.key, request))
        except Refused as refused:
            assert refused.code == "idempotency_key_reused"
            assert not same
        else:
            assert same and again.id == e.id
        self.settle()

    @rule(payment=payments, how=HOW_MUCH, percent=PERCENT)
    def capture(self, payment: str, how: HowMuch, percent: int) -> None:
        e = self.expected[payment]
        self.do_capture(e, sized(how, e.amount, percent), None)
        self.settle()

    @rule(payment=payments, reason=REASONS)
    def cancel(self, payment: str, reason: str | None) -> None:
        self.do_cancel(self.expected[payment], None, reason)
        self.settle()

    @rule(payment=payments, how=HOW_MUCH, percent=PERCENT, reason=REASONS)
    def refund(self, payment: str, how: HowMuch, percent: int, reason: str | None) -> None:
        e = self.expected[payment]
        refund = self.do_refund(e, sized(how, e.refundable, percent), reason, None)
        if refund is not None:
            e.refund_ended(refund, None)
        self.settle()

    @precondition(lambda self: any(r.id for e in self.expected.values() for r in e.refunds))
    @rule(variant=st.sampled_from(["same", "without amount", "other amount"]), data=st.data())
    def refund_again(self, variant: str, data: st.DataObject) -> None:
        """The same refund id again: the same refund, or a conflict; never paid twice."""
        asked = [(e, r) for e in self.expected.values() for r in e.refunds if r.id]
        e, r = data.draw(st.sampled_from(asked), label="refund")
        assert r.id is not None
        amount = {"same": r.amount, "without amount": None, "other amount": r.amount + 1}[variant]
        command = RefundCommand(refund_id=r.id, amount=amount, reason=r.reason)
        try:
            again = self.h.run(self.stack.update(e.id, "refund", command, Refund))
        except Refused as refused:
            expected = "payment_closed" if e.closed else "idempotency_key_reused"
            assert refused.code == expected and (e.closed or variant == "other amount")
        else:
            assert not e.closed and variant != "other amount"
            assert (again.id, again.amount, again.status) == (r.id, r.amount, r.status)
        self.settle()

    @rule(payment=payments, signal=st.sampled_from(CANCEL_SIGNALS))
    def operator_cancels(self, payment: str, signal: tuple[Any, bool]) -> None:
        e = self.expected[payment]
        payload, well_formed = signal
        if self.signal_to_closed(e, "cancel", payload):
            return
        if not well_formed:
            e.refused_signals.append(("payment.cancel_failed", "invalid_signal"))
        elif refusal := e.cancel_refusal():
            e.refused_signals.append(("payment.cancel_failed", refusal))
        else:
            self.canceled(e, None)
        self.settle()

    @rule(
        payment=payments,
        how=HOW_MUCH,
        percent=PERCENT,
        malformed=st.none() | st.sampled_from(MALFORMED_REFUND_SIGNALS),
    )
    def operator_refunds(self, payment: str, how: HowMuch, percent: int, malformed: Any) -> None:
        e = self.expected[payment]
        amount = sized(how, e.refundable, percent)
        payload = malformed if malformed is not None else {"amount": amount, "reason": "ops"}
        if amount is None and malformed is None:
            payload = {"reason": "ops"}  # {} and no amount: all that remains
        if self.signal_to_closed(e, "refund", payload):
            return
        if malformed is not None:
            e.refused_signals.append(("refund.failed", "invalid_signal"))
        elif refusal := e.refund_refusal(amount):
            e.refused_signals.append(("refund.failed", refusal))
        else:
            refund = ExpectedRefund(None, amount or e.refundable, "ops")
            e.refunds.append(refund)
            e.refund_ended(refund, None)
        self.settle()

    def signal_to_closed(self, e: Expected, name: str, payload: Any) -> bool:
        """Send the signal; True when it could not be sent because the payment closed."""
        try:
            self.h.run(self.h.signal(e.id, name, payload))
        except RPCError as err:
            assert e.closed and err.status == RPCStatusCode.NOT_FOUND, err
            return True
        assert not e.closed, "a signal reached a payment that should have closed"
        return False

    @precondition(
        lambda self: any(
            e.status is S.REQUIRES_ACTION and not e.closed for e in self.expected.values()
        )
    )
    @rule(approve=st.booleans(), ring=st.booleans(), data=st.data())
    def customer_answers(self, approve: bool, ring: bool, data: st.DataObject) -> None:
        """The customer approves or fails at their bank; the gateway's webhook
        reaches the payment, or it is lost and the payment's own look finds it."""
        waiting = [e for e in self.expected.values() if e.status is S.REQUIRES_ACTION]
        e = data.draw(st.sampled_from(waiting), label="payment")
        [required] = [
            ev for ev in self.h.run(self.stack.events(e.id)) if ev.type == "payment.action_required"
        ]
        self.h.gateway.ledger.decide(str(required.data["authentication_id"]), approve=approve)
        e.action_ends_at = None
        if approve:
            e.status, e.authenticated = S.PROCESSING, True
            self.authorized(e, None)
        else:
            e.ended(S.FAILED, ("card_error", "authentication_failed"))
        if ring:
            self.h.run(self.stack.ring(e.id, f"evt_{uuid.uuid4().hex}"))
        else:
            # Past the payment's next look (five minutes apart at most).
            self.h.run(self.h.skip(timedelta(minutes=6)))
        self.settle()

    @rule(duration=st.sampled_from(JUMPS))
    def time_passes(self, duration: timedelta) -> None:
        self.advance(duration)
        self.settle()

    @rule(
        target=payments,
        payment=payments,
        kind=st.sampled_from(["outage", "lost_replies", "blackout"]),
        outlasts_retries=st.booleans(),
        action=st.sampled_from(
            [
                "nothing",
                "create",
                "create then cancel",
                "capture",
                "cancel",
                "refund",
                "refund twice",
            ]
        ),
        data=st.data(),
    )
    def gateway_fails(
        self,
        payment: str,
        kind: FaultKind,
        outlasts_retries: bool,
        action: str,
        data: st.DataObject,
    ) -> Any:
        """A command while the gateway fails, then time passes; the fault ends
        before its retries do (nothing shows), or after (each command's known
        outcome under that fault)."""
        e = self.expected[payment]
        down = kind if outlasts_retries else None
        created = None
        started = self.now()
        self.h.gateway.inject(kind)
        try:
            if action.startswith("create") and len(self.expected) < MAX_PAYMENTS:
                request = {
                    "amount": data.draw(st.integers(1, 100_000), label="amount"),
                    "payment_method": data.draw(CARDS, label="card"),
                    "capture_method": data.draw(
                        st.sampled_from(["automatic", "manual"]), label="capture_method"
                    ),
                }
                created = self.do_create(request, down, then_cancel=action == "create then cancel")
            elif action == "capture":
                how = data.draw(HOW_MUCH, label="how")
                percent = data.draw(PERCENT, label="percent")
                self.do_capture(e, sized(how, e.amount, percent), down)
            elif action == "cancel":
                self.do_cancel(e, down)
            elif action.startswith("refund"):
                accepted = []
                for _ in range(2 if action == "refund twice" else 1):
                    how = data.draw(HOW_MUCH, label="how")
                    amount = sized(how, e.refundable, data.draw(PERCENT, label="percent"))
                    if (refund := self.do_refund(e, amount, None, down)) is not None:
                        accepted.append(refund)
                # Refunds run one at a time: only the first meets the whole
                # fault; the second starts once the first ended, and runs on
                # past the fault's end.
                for index, refund in enumerate(accepted):
                    e.refund_ended(refund, down if index == 0 else None)
            if outlasts_retries:
                self.advance(LONG_FAULT[kind])
            else:
                self.h.run(self.h.skip(SHORT_FAULT))
            # Mid-flight, whatever is in flight: the invariants hold all the same.
            self.check_all(expectations=False)
        finally:
            self.h.gateway.inject(None)
        healed = self.now()
        self.settle(fault_window=(started, healed) if outlasts_retries else None)
        return multiple(created) if created else multiple()

    # -- after every step ------------------------------------------------------------

    @invariant()
    def payments_hold_together(self) -> None:
        self.check_all(expectations=True)

    def check_all(self, *, expectations: bool) -> None:
        for e in self.expected.values():
            if self.was_closed[e.id]:
                # A closed workflow's history cannot change; its money must not either.
                assert self.h.run(self.h.ledger_kinds(e.id)) == self.closed_ledger[e.id]
                continue
            o = self.h.run(self.h.observe(e.id))
            check_invariants(o, self.seen[e.id], self.was_closed[e.id])
            self.seen[e.id].append(o.state.status)
            if not expectations:
                continue  # mid-flight: the model's expectations are for afterwards
            assert not o.in_flight, f"{e.id} still in flight after the step settled"
            self.check_expected(e, o)
            if o.closed:
                self.was_closed[e.id] = True
                self.closed_ledger[e.id] = [op.kind for op in o.ledger]

    def check_expected(self, e: Expected, o: Observed) -> None:
        state = o.state
        kinds: list[str] = [op.kind for op in o.ledger]
        if e.loose_void:
            # Voided or not, as the fault allowed; from here on, as it is.
            assert [k for k in kinds if k != "void"] == [k for k in e.ledger if k != "void"]
            e.ledger, e.loose_void = kinds, False
        observed = {
            "status": state.status,
            "closed": o.closed,
            "captured": state.amount_captured,
            "refunded": state.amount_refunded,
            "refunds": [(r.amount, r.status, r.reason, unknown_outcome(r)) for r in state.refunds],
            "ledger": kinds,
            "expired": "payment.expired" in [ev.type for ev in o.events],
            "refused signals": [
                (ev.type, ev.data["code"])
                for ev in o.events
                if ev.type in SIGNAL_REFUSALS and ev.data.get("source") == "signal"
            ],
        }
        expected = {
            "status": e.status,
            "closed": e.closed,
            "captured": e.captured,
            "refunded": e.refunded,
            "refunds": [(r.amount, r.status, r.reason, r.unknown) for r in e.refunds],
            "ledger": e.ledger,
            "expired": e.expired,
            "refused signals": e.refused_signals,
        }
        assert observed == expected, e.id
        for told, asked in zip(state.refunds, e.refunds, strict=True):
            assert asked.id in (None, told.id)
        if e.failure is not None:
            assert state.failure is not None
            assert (state.failure.type, state.failure.code) == e.failure
        if e.captured and e.window_ends_at is None:
            [captured] = [ev for ev in o.events if ev.type == "payment.captured"]
            e.window_ends_at = captured.at + self.stack.settings.refund_window

    def teardown(self) -> None:
        self.h.gateway.inject(None)
        self.h.run(self.h.close([pid for pid, closed in self.was_closed.items() if not closed]))


@contextlib.contextmanager
def quiet_retries() -> Iterator[None]:
    """Thousands of retries are the point here; their warnings are not news."""
    logger = logging.getLogger("temporalio.activity")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


async def test_random_sequences_keep_every_invariant(task_queue: str) -> None:
    # A server of its own: the model skips years of time, which no other test
    # should inherit.
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    try:
        await register_search_attributes(env.client)
        gateway = ModelGateway()
        # No workflow cache: every task replays the history, so a change that
        # breaks determinism on some path fails here too.
        async with running_stack(env.client, task_queue, gateway, max_cached_workflows=0) as stack:
            harness = Harness(asyncio.get_running_loop(), env, stack, gateway)

            # To replay a failure, decorate this with the @reproduce_failure(...)
            # that hypothesis prints.
            def model() -> PaymentModel:
                return PaymentModel(harness)

            with quiet_retries():
                # The machine is synchronous: it runs in a thread and calls
                # into this loop, where the worker keeps running meanwhile.
                await asyncio.to_thread(run_state_machine_as_test, model, settings=MODEL_SETTINGS)
    finally:
        await env.shutdown()


class HeldVoids(InMemoryGateway):
    """Voids wait until the test lets them through."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation:
        await self.release.wait()
        return await super().void(
            authorization_id=authorization_id, idempotency_key=idempotency_key
        )


async def test_the_api_reads_the_failure_as_soon_as_the_capture_failed(
    dev_client: Client, task_queue: str
) -> None:
    gateway = HeldVoids()
    async with running_stack(dev_client, task_queue, gateway) as stack:
        try:
            created = await stack.create(payment_method="pm_card_captureFails")
            for _ in range(400):
                if "payment.capture_failed" in event_types(await stack.events(created.id)):
                    break
                await asyncio.sleep(0.05)
            # The void after the refused capture is held: the payment stands
            # as the capture_failed event left it.
            told = await stack.query(created.id)
            read = await stack.get(created.id)
            assert told.failure is not None and told.failure.code == "capture_refused"
            assert read.failure == told.failure
        finally:
            gateway.release.set()
        await stack.wait_status(created.id, "failed")
