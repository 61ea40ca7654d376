"""Load held: steady payments for minutes while the gateway misbehaves and the
worker is SIGKILLed every two minutes. Nothing may be lost or charged twice.

``python -m bench.load_held [--minutes 10] [--rate 3] ...`` starts a stack of its
own (bench/stacks.py: :class:`devstack.Stack` on free ports, a temporary data
directory), makes the
simulator refuse and drop a share of the gateway calls, and sends payments
open-loop over HTTP at a fixed rate: mostly automatic capture, some manual ones
it then captures (fully or partly) or cancels, a few declined cards and a few
refunds. Meanwhile it kills the worker on a schedule; devstack restarts it.

When the load ends it waits, up to ``--settle-timeout``, for every payment to
reach the outcome its plan expects, then checks each one against the
simulator's ledger. Markdown goes to stdout, JSON to
``bench/results/load_held.json``. The exit code is 1 when any payment was lost,
charged twice, disagrees with the ledger, or did not end as planned; the JSON
then carries each such payment's events and ledger entries, and the stack's
output is kept in ``bench/results/load_held.log``.

Figures, and where they come from:

- *settle time*: from sending the create to the first ``GET`` that shows any
  status but ``processing`` (CONTRACT §5), polled at 0.1 s growing to 1 s
  (longer while so many payments are in flight that the bench would read more
  than 25 a second);
- *done time*: the same, up to the plan's last outcome (captured, canceled,
  refund settled);
- *faults*: the gateway failures the worker logged (``gateway unavailable``),
  by kind; attempts a killed worker was in the middle of are not among them;
- *double-charged*: more than one authorization or capture for a payment,
  captures above the authorization, or refunds above the capture.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.measure import cpu_seconds, machine_busy_seconds, percentile
from bench.stacks import bench_stack
from devstack import ROOT, Stack, StackError

RESULTS = Path(__file__).parent / "results"

POLL_FIRST = 0.1
POLL_GROWTH = 1.5
POLL_MAX = 1.0
# Reads a second across all payments, at most: a backlog after a kill must not
# be made worse by the bench asking about it ever faster.
POLL_BUDGET_PER_S = 25.0
CREATE_ATTEMPTS = 6
VERIFY_CONCURRENCY = 8
# Full events and ledger are kept for this many problem payments.
DETAILED_ANOMALIES = 25

Json = dict[str, Any]
# What must be zero: the exit code is 1 otherwise.
CHECKS = ("lost", "double_charged", "ledger_mismatch", "unfinished", "unexpected", "bench_error")
Check = Callable[[Json], bool]


# --- what each payment does ---------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    name: str
    weight: float
    capture_method: str
    payment_method: str
    # What the bench asks of the payment once it settled.
    then: str
    # Its status once all of that is done.
    expect: str


VISA = "pm_card_visa"
PLANS = (
    Plan("automatic", 0.60, "automatic", VISA, "nothing", "succeeded"),
    Plan("automatic_refunded", 0.05, "automatic", VISA, "refund_all", "refunded"),
    Plan("automatic_partly_refunded", 0.05, "automatic", VISA, "refund_half", "partially_refunded"),
    Plan("manual_captured", 0.15, "manual", VISA, "capture_all", "succeeded"),
    Plan("manual_partly_captured", 0.05, "manual", VISA, "capture_half", "succeeded"),
    Plan("manual_canceled", 0.05, "manual", VISA, "cancel", "canceled"),
    Plan(
        "declined",
        0.05,
        "automatic",
        "pm_card_chargeDeclinedInsufficientFunds",
        "nothing",
        "failed",
    ),
)
# The status a follow-up needs to start from.
FOLLOW_UP_FROM = {
    "capture_all": "requires_capture",
    "capture_half": "requires_capture",
    "cancel": "requires_capture",
    "refund_all": "succeeded",
    "refund_half": "succeeded",
}


@dataclass
class Payment:
    """One payment the bench started, and what it saw of it. Times are seconds
    on the event loop's clock."""

    index: int
    plan: Plan
    amount: int
    key: str
    scheduled_at: float
    sent_at: float = 0.0
    id: str | None = None
    stage: str = "creating"
    settled_after: float | None = None
    settled_status: str | None = None
    follow_up_sent_at: float | None = None
    follow_up_after: float | None = None
    done_after: float | None = None
    last_status: str | None = None
    not_found: int = 0
    bench_error: str | None = None
    notes: list[str] = field(default_factory=list)

    def note(self, text: str) -> None:
        if len(self.notes) < 20:
            self.notes.append(text)


def choose_plan(rng: random.Random) -> Plan:
    return rng.choices(PLANS, weights=[plan.weight for plan in PLANS])[0]


def settled(state: Json) -> bool:
    return bool(state["status"] != "processing")


def refunds_settled(state: Json) -> bool:
    refunds = state.get("refunds") or []
    return bool(refunds) and all(refund["status"] != "pending" for refund in refunds)


# --- talking to the API -------------------------------------------------------------


class Driver:
    """Walks payments through their plans over the public API, open-loop."""

    def __init__(self, http: httpx.AsyncClient, loop: asyncio.AbstractEventLoop) -> None:
        self.http = http
        self.loop = loop
        self.answers: Counter[str] = Counter()
        self.in_flight = 0

    def now(self) -> float:
        return self.loop.time()

    async def drive(self, payment: Payment) -> None:
        self.in_flight += 1
        try:
            await self._drive(payment)
        except Exception as exc:
            # A bug of the bench, not of the service: kept apart in the figures.
            payment.bench_error = repr(exc)
            raise
        finally:
            self.in_flight -= 1

    async def _drive(self, payment: Payment) -> None:
        payment.sent_at = self.now()
        payment.id = await self._create(payment)
        if payment.id is None:
            payment.stage = "create_failed"
            return
        payment.stage = "settling"
        state = await self._poll(payment, settled)
        payment.settled_after = self.now() - payment.sent_at
        payment.settled_status = state["status"]
        then = payment.plan.then
        if then == "nothing" or state["status"] != FOLLOW_UP_FROM[then]:
            payment.done_after = payment.settled_after
            payment.stage = "done"
            return
        payment.stage = f"following_up:{then}"
        payment.follow_up_sent_at = self.now()
        await self._follow_up(payment, state)
        payment.follow_up_after = self.now() - payment.follow_up_sent_at
        payment.done_after = self.now() - payment.sent_at
        payment.stage = "done"

    async def _follow_up(self, payment: Payment, state: Json) -> None:
        assert payment.id is not None
        base = f"/v1/payments/{payment.id}"
        then = payment.plan.then
        if then in ("capture_all", "capture_half"):
            capture: Json = {} if then == "capture_all" else {"amount": payment.amount // 2}

            def capturing(s: Json) -> bool:
                return bool(s["status"] == "requires_capture")

            await self._decide(payment, f"{base}/capture", capture, capturing)
            await self._poll(payment, lambda s: not capturing(s))
        elif then == "cancel":

            def cancelable(s: Json) -> bool:
                return s["status"] in ("processing", "requires_capture")

            await self._decide(payment, f"{base}/cancel", {"reason": "bench"}, cancelable)
            await self._poll(payment, lambda s: not cancelable(s))
        else:
            captured = int(state["amount_captured"])
            amount = captured if then == "refund_all" else max(1, captured // 2)
            body: Json = {"amount": amount, "reason": "requested_by_customer"}

            def not_asked(s: Json) -> bool:
                return not s.get("refunds")

            # One key for every attempt: a retried refund is the same refund.
            key = f"{payment.key}-refund"
            await self._decide(payment, f"{base}/refunds", body, not_asked, key)
            await self._poll(payment, refunds_settled)

    async def _create(self, payment: Payment) -> str | None:
        body = {
            "amount": payment.amount,
            "currency": "usd",
            "payment_method": payment.plan.payment_method,
            "capture_method": payment.plan.capture_method,
            "customer_id": f"cus_load_{payment.index % 50}",
            "description": f"load_held {payment.index}",
            "metadata": {"bench": "load_held", "plan": payment.plan.name},
        }
        # The same Idempotency-Key on every attempt: an unanswered create that did
        # start a payment is found again instead of starting a second one.
        headers = {"Idempotency-Key": payment.key}
        for attempt in range(CREATE_ATTEMPTS):
            response = await self._send("POST", "/v1/payments", payment, body, headers)
            if response is not None:
                if response.status_code in (200, 202):
                    payment_id: str = response.json()["id"]
                    return payment_id
                if response.status_code < 500 and response.status_code != 429:
                    return None  # refused: nothing was started
            await asyncio.sleep(min(2.0**attempt, 10.0))
        return None

    async def _decide(
        self,
        payment: Payment,
        path: str,
        body: Json,
        still_undecided: Check,
        key: str | None = None,
    ) -> None:
        """Ask for a capture, cancel or refund until the API took it, or the
        payment shows it was taken, or the API says why not (the poll that
        follows sees where the payment went)."""
        headers = {"Idempotency-Key": key} if key else {}
        for attempt in range(CREATE_ATTEMPTS):
            response = await self._send("POST", path, payment, body, headers)
            if response is not None and response.status_code < 500:
                if response.status_code != 429:
                    return
            else:
                # No answer, or a 5xx: the request may still have landed.
                state = await self.read(payment)
                if state is not None and not still_undecided(state):
                    return
            await asyncio.sleep(min(2.0**attempt, 10.0))

    async def _poll(self, payment: Payment, done: Check) -> Json:
        # No read at once: the answer to the request just sent says it is pending.
        delay = POLL_FIRST
        while True:
            await asyncio.sleep(delay)
            state = await self.read(payment)
            if state is not None and done(state):
                return state
            longest = max(POLL_MAX, self.in_flight / POLL_BUDGET_PER_S)
            delay = min(delay * POLL_GROWTH, longest)

    async def read(self, payment: Payment) -> Json | None:
        response = await self._send("GET", f"/v1/payments/{payment.id}", payment)
        if response is None:
            return None
        if response.status_code == 404:
            payment.not_found += 1
            return None
        if response.status_code != 200:
            return None
        state: Json = response.json()
        payment.last_status = state["status"]
        return state

    async def _send(
        self,
        method: str,
        path: str,
        payment: Payment,
        body: Json | None = None,
        headers: dict[str, str] | None = None,
    ) -> httpx.Response | None:
        """One request; None when no answer came. Unexpected answers are noted on
        the payment, and a 429 is waited out here."""
        what = f"{method} {path.replace(payment.id or '~', '{id}')}"
        try:
            response = await self.http.request(method, path, json=body, headers=headers)
        except httpx.HTTPError as exc:
            self.answers[f"{what} -> {type(exc).__name__}"] += 1
            payment.note(f"{what}: no answer ({type(exc).__name__})")
            return None
        status = response.status_code
        self.answers[f"{what} -> {status}"] += 1
        if status == 429:
            await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
        elif status >= 300 and not (status == 404 and method == "GET"):
            payment.note(f"{what}: HTTP {status} {response.text[:300]}")
        return response


# --- the schedule -------------------------------------------------------------------


@dataclass
class Kill:
    at_s: float
    old_pid: int | None
    new_pid: int | None = None
    back_after_s: float | None = None
    in_flight: int = 0


async def worker_back(stack: Stack, within: float) -> bool:
    """Whether the restarted worker is ready within ``within`` seconds. Waits in
    one-second slices so that a cancelled bench is not held up by a thread."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            await asyncio.to_thread(stack.wait_ready, "worker", 1.0)
            return True
        except StackError:
            continue
    return False


async def kill_worker_on_schedule(
    stack: Stack,
    every: float,
    until: float,
    began: float,
    kills: list[Kill],
    in_flight: Callable[[], int],
) -> None:
    loop = asyncio.get_running_loop()
    number = 1
    while every > 0 and number * every < until:
        await asyncio.sleep(max(0.0, began + number * every - loop.time()))
        kill = Kill(at_s=round(loop.time() - began, 1), old_pid=stack.pid("worker"))
        kill.in_flight = in_flight()
        kills.append(kill)
        await asyncio.to_thread(stack.kill, "worker", signal.SIGKILL)
        if await worker_back(stack, 120.0):
            kill.back_after_s = round(loop.time() - began - kill.at_s, 1)
        kill.new_pid = stack.pid("worker")
        number += 1


class CpuMeter:
    """CPU time of this bench and its stack against the whole machine's, from
    /proc (Linux; elsewhere it reads nothing). Other people's work on a shared
    machine shows up as the difference."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self._ours: dict[int, float] = {}
        self._machine = machine_busy_seconds()
        # CPU seconds by process name, over the samples ("bench" is this process).
        self.by_process: defaultdict[str, float] = defaultdict(float)

    def _pids(self) -> list[tuple[str, int]]:
        pids = [("bench", os.getpid())]
        for name in self.stack.processes:
            pid = self.stack.pid(name)
            if pid is not None:
                pids.append((name, pid))
        return pids

    def sample(self) -> tuple[float | None, float | None]:
        """(CPU seconds used by us, by the whole machine) since the last sample."""
        ours = 0.0
        seen: dict[int, float] = {}
        for name, pid in self._pids():
            used = cpu_seconds(pid)
            if used is not None:
                seen[pid] = used
                # A restarted child is a new pid, counted from its start.
                delta = used - self._ours.get(pid, 0.0)
                self.by_process[name] += delta
                ours += delta
        self._ours = seen
        machine, self._machine = self._machine, machine_busy_seconds()
        if machine is None or self._machine is None:
            return None, None
        return ours, self._machine - machine


async def watch(
    payments: list[Payment],
    kills: list[Kill],
    began: float,
    meter: CpuMeter,
    timeline: list[Json],
    every: float = 10.0,
) -> None:
    """Every ``every`` seconds: a progress line on stderr and a timeline sample."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(every)
        started = sum(1 for p in payments if p.id is not None)
        done = sum(1 for p in payments if p.stage == "done")
        ours, machine = meter.sample()
        sample: Json = {
            "t_s": round(loop.time() - began),
            "sent": len(payments),
            "in_flight": len(payments) - done,
            "load_1m": round(os.getloadavg()[0], 2),
            "cpu_cores_ours": None if ours is None else round(ours / every, 2),
            "cpu_cores_others": (
                None
                if ours is None or machine is None
                else round(max(0.0, machine - ours) / every, 2)
            ),
        }
        timeline.append(sample)
        sys.stderr.write(
            f"load_held t={sample['t_s']:4d}s sent={len(payments)} started={started} "
            f"done={done} in flight={sample['in_flight']} worker kills={len(kills)} "
            f"cpu ours={sample['cpu_cores_ours']} others={sample['cpu_cores_others']} "
            f"load={sample['load_1m']}\n"
        )
        sys.stderr.flush()


def per_window(
    payments: list[Payment], kills: list[Kill], timeline: list[Json], width: float
) -> list[Json]:
    """Settle times by when the payment was sent, with the kills and CPU of each window."""
    windows: list[Json] = []
    end = max((p.scheduled_at for p in payments), default=0.0)
    start = 0.0
    while start <= end:
        stop = start + width
        times = [
            p.settled_after
            for p in payments
            if start <= p.scheduled_at < stop and p.settled_after is not None
        ]
        samples = [s for s in timeline if start < s["t_s"] <= stop]
        others = [s["cpu_cores_others"] for s in samples if s["cpu_cores_others"] is not None]
        ours = [s["cpu_cores_ours"] for s in samples if s["cpu_cores_ours"] is not None]
        windows.append(
            {
                "from_s": round(start),
                "sent": sum(1 for p in payments if start <= p.scheduled_at < stop),
                "settled": len(times),
                "settle_p50_s": seconds_at(times, 0.5),
                "settle_p99_s": seconds_at(times, 0.99),
                "settle_max_s": round(max(times), 3) if times else None,
                "worker_kills": sum(1 for k in kills if start <= k.at_s < stop),
                "cpu_cores_ours": round(statistics.fmean(ours), 2) if ours else None,
                "cpu_cores_others": round(statistics.fmean(others), 2) if others else None,
            }
        )
        start = stop
    return windows


# --- checking against the ledger ----------------------------------------------------


def ledger_problems(state: Json, entries: list[Json]) -> tuple[list[str], list[str]]:
    """(double charges, other disagreements) between a payment and what the
    gateway committed for it."""
    kinds = Counter(entry["kind"] for entry in entries)
    amounts: dict[str, int] = defaultdict(int)
    for entry in entries:
        amounts[entry["kind"]] += int(entry["amount"])
    doubled: list[str] = []
    if kinds["authorization"] > 1:
        doubled.append(f"{kinds['authorization']} authorizations")
    if kinds["capture"] > 1:
        doubled.append(f"{kinds['capture']} captures")
    if amounts["capture"] > amounts["authorization"]:
        doubled.append(f"captured {amounts['capture']} of {amounts['authorization']} authorized")
    if amounts["refund"] > amounts["capture"]:
        doubled.append(f"refunded {amounts['refund']} of {amounts['capture']} captured")
    disagree: list[str] = []
    status = state["status"]
    if amounts["capture"] != state["amount_captured"]:
        disagree.append(
            f"ledger captured {amounts['capture']}, payment says {state['amount_captured']}"
        )
    if amounts["refund"] != state["amount_refunded"]:
        disagree.append(
            f"ledger refunded {amounts['refund']}, payment says {state['amount_refunded']}"
        )
    if kinds["void"] > 1:
        disagree.append(f"{kinds['void']} voids")
    if status in ("failed", "canceled") and kinds["authorization"] and not kinds["void"]:
        disagree.append(f"{status}, but its authorization was never voided")
    if status in ("succeeded", "partially_refunded", "refunded") and kinds["void"]:
        disagree.append(f"{status}, but the ledger holds a void")
    return doubled, disagree


async def verify(
    http: httpx.AsyncClient,
    simulator: httpx.AsyncClient,
    driver: Driver,
    payments: list[Payment],
) -> Json:
    ledger: list[Json] = (await simulator.get("/_ledger")).json()["data"]
    by_payment: dict[str, list[Json]] = defaultdict(list)
    for entry in ledger:
        by_payment[entry["reference"]].append(entry)
    gate = asyncio.Semaphore(VERIFY_CONCURRENCY)

    async def final_state(payment: Payment) -> Json | None:
        async with gate:
            for _ in range(3):
                missing = payment.not_found
                state = await driver.read(payment)
                if state is not None or payment.not_found > missing:
                    return state
                await asyncio.sleep(1)
            return None

    started = [p for p in payments if p.id is not None]
    finals = await asyncio.gather(*(final_state(p) for p in started))
    problems: dict[str, list[Payment]] = defaultdict(list)
    reasons: dict[str, list[str]] = defaultdict(list)
    outcomes: Counter[str] = Counter()
    for payment, state in zip(started, finals, strict=True):
        assert payment.id is not None
        if state is None:
            problems["lost"].append(payment)
            reasons[payment.id].append(f"vanished (GET answered 404 {payment.not_found}x)")
            continue
        outcomes[state["status"]] += 1
        if payment.bench_error is not None:
            problems["bench_error"].append(payment)
            reasons[payment.id].append(f"the bench failed on it: {payment.bench_error}")
        if state["status"] == "processing":
            problems["lost"].append(payment)
            reasons[payment.id].append("never settled: still processing")
        elif payment.settled_after is None or payment.stage != "done":
            problems["unfinished"].append(payment)
            reasons[payment.id].append(
                f"{payment.stage} not finished by the deadline: {state['status']}"
            )
        elif state["status"] != payment.plan.expect:
            problems["unexpected"].append(payment)
            reasons[payment.id].append(f"ended {state['status']}, expected {payment.plan.expect}")
        doubled, disagree = ledger_problems(state, by_payment.get(payment.id, []))
        if doubled:
            problems["double_charged"].append(payment)
            reasons[payment.id] += doubled
        if disagree:
            problems["ledger_mismatch"].append(payment)
            reasons[payment.id] += disagree
    ours = {p.id for p in started}
    orphans = sorted({ref for ref in by_payment if ref not in ours})
    flagged = list({p.id: p for group in problems.values() for p in group}.values())
    details = [
        await anomaly(http, p, reasons[p.id or ""], by_payment.get(p.id or "", []))
        for p in flagged[:DETAILED_ANOMALIES]
    ]
    return {
        "ledger_operations": dict(Counter(entry["kind"] for entry in ledger)),
        "outcomes": dict(sorted(outcomes.items())),
        "problems": {name: [p.id for p in group] for name, group in problems.items()},
        "orphan_references": orphans,
        "anomalies": details,
    }


async def anomaly(
    http: httpx.AsyncClient, payment: Payment, reasons: list[str], entries: list[Json]
) -> Json:
    """Everything needed to reproduce one problem payment by hand."""
    events: Any
    try:
        response = await http.get(f"/v1/payments/{payment.id}/events")
        events = response.json().get("data", response.json())
    except (httpx.HTTPError, ValueError) as exc:
        events = f"unreadable: {exc!r}"
    return {
        "payment_id": payment.id,
        "plan": payment.plan.name,
        "reasons": reasons,
        "stage": payment.stage,
        "last_status_seen": payment.last_status,
        "settled_after_s": payment.settled_after,
        "notes": payment.notes,
        "ledger": entries,
        "events": events,
    }


# --- the fault tally from the worker's log -------------------------------------------

_GATEWAY_FAILURE = re.compile(r"gateway unavailable \(attempt \d+\): (\w+) (\S+): (.*)")


def fault_kind(message: str) -> str:
    if "HTTP 503" in message:
        return "refused_503"
    if "RemoteProtocolError" in message or "ReadError" in message:
        return "reply_dropped"
    if "no answer within" in message:
        return "timed_out"
    if "the connection failed" in message:
        return "connection_failed"
    return "other"


def gateway_step(method: str, path: str) -> str:
    if path.endswith("/capture"):
        return "capture"
    if path.endswith("/void"):
        return "void"
    if path.endswith("/refunds"):
        return "refund"
    if path.startswith("/v1/operations"):
        return "lookup"
    return "authorize" if method == "POST" else "other"


def tally_faults(lines: Iterable[str]) -> Json:
    by_kind: Counter[str] = Counter()
    by_step: Counter[str] = Counter()
    for line in lines:
        if not line.startswith("[worker]"):
            continue
        match = _GATEWAY_FAILURE.search(line)
        if match is None:
            continue
        method, path, message = match.groups()
        by_kind[fault_kind(message)] += 1
        by_step[gateway_step(method, path)] += 1
    return {"by_kind": dict(by_kind), "by_step": dict(by_step), "total": sum(by_kind.values())}


# --- figures ------------------------------------------------------------------------


def seconds_at(values: list[float], share: float) -> float | None:
    """The ``share`` percentile (nearest rank) in seconds, to the ms; None for no values."""
    return round(percentile(values, share), 3) if values else None


def distribution(values: list[float]) -> Json:
    return {
        "count": len(values),
        "p50_s": seconds_at(values, 0.50),
        "p90_s": seconds_at(values, 0.90),
        "p99_s": seconds_at(values, 0.99),
        "max_s": round(max(values), 3) if values else None,
        "mean_s": round(statistics.fmean(values), 3) if values else None,
    }


@dataclass(frozen=True)
class Options:
    minutes: float
    rate: float
    kill_every: float
    error_rate: float
    drop_rate: float
    latency_ms: int
    settle_timeout: float
    seed: int
    output: Path
    stack_log: Path
    always_keep_log: bool = False

    @property
    def seconds(self) -> float:
        return self.minutes * 60


def simulator_faults(options: Options) -> Json:
    # The simulator draws the drop only for calls it did not already refuse, so
    # its drop rate is scaled up to make ``drop_rate`` a share of all calls.
    drop = options.drop_rate / (1 - options.error_rate) if options.error_rate < 1 else 0.0
    return {
        "error_rate": options.error_rate,
        "drop_reply_rate": round(min(drop, 1.0), 4),
        "latency_ms": options.latency_ms,
    }


async def run_load(stack: Stack, options: Options, output: list[str]) -> Json:
    loop = asyncio.get_running_loop()
    rng = random.Random(options.seed)
    run_id = uuid.uuid4().hex[:8]
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    # httpcore scans its whole pool on every request: keep the pool small.
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    async with (
        httpx.AsyncClient(
            base_url=stack.api_url, headers=headers, timeout=30, limits=limits, trust_env=False
        ) as http,
        httpx.AsyncClient(base_url=stack.simulator_url, timeout=30, trust_env=False) as simulator,
    ):
        faults = (await simulator.put("/_faults", json=simulator_faults(options))).json()
        driver = Driver(http, loop)
        payments: list[Payment] = []
        tasks: list[asyncio.Task[None]] = []
        kills: list[Kill] = []
        lag: list[float] = []
        began = loop.time()

        def in_flight() -> int:
            return sum(1 for p in payments if p.stage != "done")

        killer = asyncio.create_task(
            kill_worker_on_schedule(
                stack, options.kill_every, options.seconds, began, kills, in_flight
            )
        )
        timeline: list[Json] = []
        meter = CpuMeter(stack)
        progress = asyncio.create_task(watch(payments, kills, began, meter, timeline))
        try:
            for index in range(round(options.seconds * options.rate)):
                at = began + index / options.rate
                await asyncio.sleep(max(0.0, at - loop.time()))
                lag.append(loop.time() - at)
                plan = choose_plan(rng)
                payment = Payment(
                    index=index,
                    plan=plan,
                    amount=rng.randrange(100, 50_000),
                    key=f"load-{run_id}-{index}",
                    scheduled_at=at - began,
                )
                payments.append(payment)
                tasks.append(asyncio.create_task(driver.drive(payment)))
            load_ended = loop.time()
            await killer
            pending: set[asyncio.Task[None]] = set()
            if tasks:
                _, pending = await asyncio.wait(tasks, timeout=options.settle_timeout)
            settle_wait = loop.time() - load_ended
        finally:
            for task in (killer, progress, *tasks):
                task.cancel()
            await asyncio.gather(killer, progress, *tasks, return_exceptions=True)
        checked = await verify(http, simulator, driver, payments)
        faults_after = (await simulator.get("/_faults")).json()

    restarts = {name: child.restarts for name, child in stack.processes.items()}
    problems = checked["problems"]
    counts = {
        "sent": len(payments),
        "started": sum(1 for p in payments if p.id is not None),
        "create_failed": sum(1 for p in payments if p.id is None),
        "settled": sum(1 for p in payments if p.settled_after is not None),
        "done": sum(1 for p in payments if p.stage == "done"),
        "still_pending_at_deadline": len(pending),
        **{name: len(problems.get(name, [])) for name in CHECKS},
        "bench_error": sum(1 for p in payments if p.bench_error is not None),
    }
    follow_ups: dict[str, list[float]] = defaultdict(list)
    for payment in payments:
        if payment.follow_up_after is not None:
            follow_ups[payment.plan.then].append(payment.follow_up_after)
    return {
        "config": {
            "minutes": options.minutes,
            "rate_per_s": options.rate,
            "kill_worker_every_s": options.kill_every,
            "settle_timeout_s": options.settle_timeout,
            "poll_s": {"first": POLL_FIRST, "max": POLL_MAX, "budget_per_s": POLL_BUDGET_PER_S},
            "seed": options.seed,
            "faults_requested": {
                "error_rate": options.error_rate,
                "drop_rate": options.drop_rate,
                "latency_ms": options.latency_ms,
            },
            "simulator_faults": faults,
            "simulator_faults_at_end": faults_after,
            "plans": {plan.name: plan.weight for plan in PLANS},
            "plans_sent": dict(Counter(p.plan.name for p in payments)),
        },
        "counts": counts,
        "settle_time": distribution(
            [p.settled_after for p in payments if p.settled_after is not None]
        ),
        "done_time": distribution([p.done_after for p in payments if p.done_after is not None]),
        "follow_up_time": {then: distribution(times) for then, times in follow_ups.items()},
        "send_lag": distribution(lag),
        "settle_wait_s": round(settle_wait, 1),
        "per_window": per_window(
            payments, kills, timeline, 60.0 if options.seconds >= 180 else 15.0
        ),
        "timeline": timeline,
        "cpu_seconds_by_process": {
            name: round(seconds, 1)
            for name, seconds in sorted(meter.by_process.items(), key=lambda kv: -kv[1])
        },
        "worker_kills": [vars(kill) for kill in kills],
        "restarts": restarts,
        "faults_seen_by_worker": tally_faults(output),
        "api_answers": dict(sorted(driver.answers.items())),
        **checked,
    }


# --- report -------------------------------------------------------------------------


def _s(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def failed_checks(result: Json) -> list[str]:
    counts = result["counts"]
    failed = [f"{name}={counts[name]}" for name in CHECKS if counts[name]]
    if result["orphan_references"]:
        failed.append(f"orphan ledger references={len(result['orphan_references'])}")
    others = {name: n for name, n in result["restarts"].items() if name != "worker" and n}
    if others:
        failed.append(f"unplanned restarts={others}")
    return failed


def report(result: Json) -> str:
    config, counts = result["config"], result["counts"]
    faults = config["faults_requested"]
    settle, done = result["settle_time"], result["done_time"]
    kills = result["worker_kills"]
    back = [k["back_after_s"] for k in kills if k["back_after_s"] is not None]
    seen = result["faults_seen_by_worker"]
    kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(seen["by_kind"].items())) or "none"
    steps = ", ".join(f"{step} {n}" for step, n in sorted(seen["by_step"].items())) or "none"
    ops = ", ".join(f"{kind} {n}" for kind, n in sorted(result["ledger_operations"].items()))
    outcomes = ", ".join(f"{status} {n}" for status, n in result["outcomes"].items())
    follow = "; ".join(
        f"{then} p50 {_s(d['p50_s'])} / p99 {_s(d['p99_s'])} s (n={d['count']})"
        for then, d in sorted(result["follow_up_time"].items())
    )
    machine = result["machine"]
    cpu = [(t["cpu_cores_ours"], t["cpu_cores_others"]) for t in result["timeline"]]
    ours = [o for o, _ in cpu if o is not None]
    others = [x for _, x in cpu if x is not None]
    cpu_text = (
        f"; CPU cores used on average by this bench and its stack {statistics.fmean(ours):.2f}, "
        f"by everything else {statistics.fmean(others):.2f} (max {max(others):.2f})"
        if ours and others
        else ""
    )
    rows = [
        ("payments sent / started", f"{counts['sent']} / {counts['started']}"),
        ("settled (any status but processing)", counts["settled"]),
        ("done as planned (capture, cancel, refund included)", counts["done"]),
        ("**lost** (never settled, or vanished)", f"**{counts['lost']}**"),
        ("**double-charged** (ledger)", f"**{counts['double_charged']}**"),
        ("ledger disagrees with the payment", counts["ledger_mismatch"]),
        (
            "follow-up never finished / unexpected final status",
            (f"{counts['unfinished']} / {counts['unexpected']}"),
        ),
        ("create refused or unanswered", counts["create_failed"]),
        ("payments the bench itself failed on", counts["bench_error"]),
        (
            "settle time p50 / p90 / p99 / max",
            f"{_s(settle['p50_s'])} / {_s(settle['p90_s'])} / {_s(settle['p99_s'])} / "
            f"{_s(settle['max_s'])} s",
        ),
        (
            "done time p50 / p99 / max",
            f"{_s(done['p50_s'])} / {_s(done['p99_s'])} / {_s(done['max_s'])} s",
        ),
        ("follow-up time", follow or "-"),
        (
            "worker kills (devstack restarts)",
            f"{len(kills)} ({result['restarts'].get('worker', 0)}); back after "
            + (", ".join(f"{b:g}" for b in back) + " s" if back else "-"),
        ),
        ("gateway faults seen by the worker", f"{seen['total']}: {kinds}"),
        ("... by step", steps),
        ("gateway operations committed", ops or "-"),
        ("final statuses", outcomes or "-"),
        (
            "send lag p99 / max",
            f"{_s(result['send_lag']['p99_s'])} / {_s(result['send_lag']['max_s'])} s",
        ),
        ("waited after the load for stragglers", f"{result['settle_wait_s']} s"),
        (
            "machine",
            f"{machine['cpus']} CPUs, load average {machine['load_before']} before, "
            f"{machine['load_after']} after{cpu_text}",
        ),
    ]
    title = (
        f"## Load held: {config['minutes']:g} min at {config['rate_per_s']:g} payments/s, "
        f"worker SIGKILLed every {config['kill_worker_every_s']:g} s, gateway "
        f"{faults['error_rate']:.0%} refused + {faults['drop_rate']:.0%} replies dropped, "
        f"{faults['latency_ms']} ms latency"
    )
    by_process = result.get("cpu_seconds_by_process") or {}
    rows.append(
        (
            "CPU seconds by process",
            ", ".join(f"{name} {seconds:g}" for name, seconds in by_process.items()) or "-",
        )
    )
    lines = [title, "", "| figure | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    lines += [
        "",
        "| sent from (s) | sent | settled | settle p50 / p99 / max (s) | worker kills "
        "| CPU cores ours / others |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {w['from_s']} | {w['sent']} | {w['settled']} | {_s(w['settle_p50_s'])} / "
        f"{_s(w['settle_p99_s'])} / {_s(w['settle_max_s'])} | {w['worker_kills']} | "
        f"{_s(w['cpu_cores_ours'])} / {_s(w['cpu_cores_others'])} |"
        for w in result["per_window"]
    ]
    failed = failed_checks(result)
    lines += ["", f"FAILED: {', '.join(failed)}" if failed else "Nothing lost, nothing doubled."]
    return "\n".join(lines)


# --- entry point --------------------------------------------------------------------


def parse_options(argv: list[str] | None) -> Options:
    parser = argparse.ArgumentParser(
        prog="python -m bench.load_held",
        description="Steady payments under gateway faults and worker kills; "
        "reports lost and double-charged payments and settle times.",
    )
    parser.add_argument("--minutes", type=float, default=10.0, help="load duration (10)")
    # 3/s leaves the stack headroom on a shared 2-core machine; at 5/s with these
    # faults it needs about 1.5 cores and a kill's backlog no longer drains.
    parser.add_argument("--rate", type=float, default=3.0, help="payments created per second (3)")
    parser.add_argument(
        "--kill-every", type=float, default=120.0, help="seconds between worker SIGKILLs (120)"
    )
    parser.add_argument(
        "--error-rate", type=float, default=0.10, help="share of gateway calls refused (0.10)"
    )
    parser.add_argument(
        "--drop-rate",
        type=float,
        default=0.10,
        help="share of gateway calls committed with the reply dropped (0.10)",
    )
    parser.add_argument("--latency-ms", type=int, default=100, help="gateway latency (100)")
    parser.add_argument(
        "--settle-timeout",
        type=float,
        default=300.0,
        help="seconds to wait after the load for every payment to finish (300)",
    )
    parser.add_argument("--seed", type=int, default=20261127, help="seed of the payment mix")
    parser.add_argument("--output", type=Path, default=RESULTS / "load_held.json")
    parser.add_argument(
        "--stack-log",
        type=Path,
        default=None,
        help="write the stack's output here (default: bench/results/load_held.log, "
        "and only when a check fails)",
    )
    args = parser.parse_args(argv)
    if args.rate <= 0 or args.minutes <= 0:
        parser.error("--rate and --minutes must be positive")
    if not (0 <= args.error_rate < 1 and 0 <= args.drop_rate <= 1 - args.error_rate):
        parser.error("need 0 <= --error-rate < 1 and --error-rate + --drop-rate <= 1")
    return Options(
        minutes=args.minutes,
        rate=args.rate,
        kill_every=args.kill_every,
        error_rate=args.error_rate,
        drop_rate=args.drop_rate,
        latency_ms=args.latency_ms,
        settle_timeout=args.settle_timeout,
        seed=args.seed,
        output=args.output,
        stack_log=args.stack_log or RESULTS / "load_held.log",
        always_keep_log=args.stack_log is not None,
    )


def code_under_test() -> Json:
    """The commit measured, and the files that differed from it: others may be
    editing the working tree while the bench runs."""

    def git(*args: str) -> str:
        try:
            done = subprocess.run(
                ["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout

    # Porcelain lines are "XY path": the two status columns may be blanks.
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line[3:]]
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "changed_files": changed}


def main(argv: list[str] | None = None) -> int:
    options = parse_options(argv)
    # SIGTERM stops the bench like Ctrl-C: through the same clean-up.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    output: list[str] = []
    load_before = os.getloadavg()
    code = code_under_test()
    result: Json | None = None
    failure: BaseException | None = None
    try:
        # Started on the way in (what it started is stopped if that fails or is
        # interrupted), stopped on the way out, before the log below is written.
        with bench_stack(output=output.append, prefix="load-held-") as (stack, _):
            sys.stderr.write(
                f"load_held: stack up (API {stack.api_url}, Temporal {stack.temporal_address}); "
                f"{options.minutes:g} min at {options.rate:g}/s\n"
            )
            result = asyncio.run(run_load(stack, options, output))
    except KeyboardInterrupt:
        sys.stderr.write("load_held: interrupted; stopping the stack\n")
        return 130
    except Exception as exc:
        failure = exc
    finally:
        broken = result is not None and bool(failed_checks(result))
        if options.always_keep_log or failure is not None or broken:
            options.stack_log.parent.mkdir(parents=True, exist_ok=True)
            options.stack_log.write_text("\n".join(output) + "\n")
    if failure is not None or result is None:
        sys.stderr.write(f"load_held: failed: {failure!r}; stack output in {options.stack_log}\n")
        return 2
    result["machine"] = {
        "cpus": os.cpu_count(),
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in os.getloadavg()],
    }
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    result["code"] = code
    options.output.parent.mkdir(parents=True, exist_ok=True)
    options.output.write_text(json.dumps(result, indent=2) + "\n")
    print(report(result))
    failed = failed_checks(result)
    if failed:
        sys.stderr.write(
            f"load_held: details in {options.output}, stack output in {options.stack_log}\n"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
