"""What webhooks cost (``make bench-webhooks``): throughput of ``Prefer: wait``
payments for a merchant with zero, one and five endpoints, and whether every
event reached every endpoint.

Starts the bench's stack (bench/stacks.py) with three merchants, gives the
second one endpoint and the third five, each a real HTTP receiver on loopback
in this process that answers 200 and keeps what it got. Then rounds: each
merchant in turn sends ``--payments`` payments, ``--concurrency`` at a time,
over HTTP, each waiting for its outcome; the order of the merchants rotates
from round to round, so a noisy spell of the shared machine does not fall on
one of them. A round ends once every event of its payments has reached every
endpoint, so one merchant's deliveries never run into the next merchant's
round. Two figures per merchant, each the median over the rounds and as a
ratio to the merchant without endpoints measured in the same run: payments
settled per second (what the API's callers see), and payments per second
with all their events delivered (what the merchant's backend sees).

When the load ends it waits, up to ``--drain-timeout``, for every event of
every payment (``GET …/events``) to be delivered to each of the merchant's
endpoints: *lost* counts those that never came, *repeats* those that came more
than once (allowed, delivery is at least once, but worth knowing). Writes
``bench/results/webhooks.json``; exits 1 when anything was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.compare import CARD, settle
from bench.measure import cpu_by_process
from bench.stacks import bench_stack
from workflows.webhooks import TELL_AGAIN_AFTER

RESULTS = Path(__file__).parent / "results"
ENDPOINTS = (0, 1, 5)


class Receiver:
    """One endpoint: keeps (payment id, seq) of every delivery, answers 200."""

    def __init__(self) -> None:
        self.received: Counter[tuple[str, int]] = Counter()
        self.by_payment: dict[str, set[int]] = {}

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        event = json.loads(body)
        self.received[(event["payment_id"], event["seq"])] += 1
        self.by_payment.setdefault(event["payment_id"], set()).add(event["seq"])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def past_the_tells() -> None:
    """Once the merchants' first endpoints have told their running payments.
    An endpoint that turns webhooks on tells them twice, the second time
    ``TELL_AGAIN_AFTER`` later (workflows/webhooks.py): a signal and a
    workflow task for every payment then running, once. Waited for before
    the first payment, so they tell none of the measured ones."""
    await asyncio.sleep(2 * TELL_AGAIN_AFTER.total_seconds())


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """An ASGI app served on a free loopback port, in this event loop; its URL."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="critical"))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{server.servers[0].sockets[0].getsockname()[1]}/"
    finally:
        server.should_exit = True
        await task


async def round_of(
    http: httpx.AsyncClient, payments: int, concurrency: int, receivers: list[Receiver]
) -> tuple[float, float, list[str]]:
    """Seconds until ``payments`` payments settled, and until the three
    events of each (requested, authorized, captured) reached every endpoint;
    their ids."""
    slots = asyncio.Semaphore(concurrency)
    ids: list[str] = []

    async def one() -> None:
        async with slots:
            answer = await http.post("/v1/payments", json=CARD, headers={"Prefer": "wait=30"})
            body = answer.json()
            if body.get("status") != "succeeded":
                raise RuntimeError(f"a payment did not succeed: {answer.status_code} {body}")
            ids.append(body["id"])

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(payments)))
    settled = time.monotonic() - began
    while not all(
        len(_seqs(receiver, payment_id)) >= EVENTS_PER_PAYMENT
        for receiver in receivers
        for payment_id in ids
    ):
        if time.monotonic() - began > DELIVERY_WAIT_S:
            break  # counted as lost at the end
        await asyncio.sleep(0.05)
    return settled, time.monotonic() - began, ids


EVENTS_PER_PAYMENT = 3
DELIVERY_WAIT_S = 300.0


def _seqs(receiver: Receiver, payment_id: str) -> set[int]:
    return receiver.by_payment.get(payment_id, set())


async def expected_events(http: httpx.AsyncClient, ids: list[str]) -> set[tuple[str, int]]:
    expected: set[tuple[str, int]] = set()
    for payment_id in ids:
        events = (await http.get(f"/v1/payments/{payment_id}/events")).json()["data"]
        expected.update((payment_id, event["seq"]) for event in events)
    return expected


async def run(args: argparse.Namespace) -> int:
    counts: tuple[int, ...] = tuple(int(n) for n in args.endpoints.split(","))
    if counts[0] != 0:
        raise SystemExit("--endpoints starts with 0: the others are measured against it")
    keys = {f"sk_bench_{n}": f"bench-{n}-endpoints" for n in counts}
    env = {"PAYMENTS_API_KEYS": json.dumps(keys)}
    with bench_stack(env=env) as (stack, _):
        async with AsyncExitStack() as exits:
            clients: dict[int, httpx.AsyncClient] = {}
            receivers: dict[int, list[Receiver]] = {}
            for key, merchant in keys.items():
                count = int(merchant.split("-")[1])
                http = await exits.enter_async_context(
                    httpx.AsyncClient(
                        base_url=stack.api_url,
                        headers={"Authorization": f"Bearer {key}"},
                        timeout=60,
                        limits=httpx.Limits(max_connections=args.concurrency + 4),
                    )
                )
                clients[count] = http
                receivers[count] = []
                for _ in range(count):
                    receiver = Receiver()
                    url = await exits.enter_async_context(serving(receiver))
                    made = await http.post(
                        "/v1/webhook_endpoints", json={"url": url, "enabled_events": ["*"]}
                    )
                    made.raise_for_status()
                    receivers[count].append(receiver)
            await past_the_tells()
            # Warm up every merchant's path (connections, caches, the sandbox).
            for count in counts:
                await round_of(clients[count], args.concurrency, args.concurrency, receivers[count])

            seconds: dict[int, list[float]] = {count: [] for count in counts}
            pids = {name: stack.pid(name) for name in ("temporal", "worker", "api", "simulator")}
            pids["bench"] = os.getpid()
            cpu: dict[int, dict[str, float]] = {count: {} for count in counts}
            delivered_in: dict[int, list[float]] = {count: [] for count in counts}
            paid: dict[int, list[str]] = {count: [] for count in counts}
            for number in range(args.rounds):
                turn = number % len(counts)
                order = counts[turn:] + counts[:turn]
                for count in order:
                    await settle(pids, 2.0)
                    before = cpu_by_process(pids)
                    took, all_in, ids = await round_of(
                        clients[count], args.payments, args.concurrency, receivers[count]
                    )
                    await settle(pids, args.settle, at_most=args.settle + 60)
                    after = cpu_by_process(pids)
                    for name in pids:
                        cpu[count][name] = cpu[count].get(name, 0.0) + after[name] - before[name]
                    seconds[count].append(took)
                    delivered_in[count].append(all_in)
                    paid[count].extend(ids)
                    sys.stderr.write(
                        f"round {number + 1}: {count} endpoint(s) "
                        f"{args.payments / took:.1f} payments/s settled, "
                        f"{args.payments / all_in:.1f}/s with every event delivered\n"
                    )

            delivery: dict[int, dict[str, int]] = {}
            deadline = time.monotonic() + args.drain_timeout
            for count in counts[1:]:
                expected = await expected_events(clients[count], paid[count])
                while True:
                    missing = any(expected - set(r.received) for r in receivers[count])
                    if not missing or time.monotonic() > deadline:
                        break
                    await asyncio.sleep(0.5)
                delivery[count] = {
                    "events_expected_per_endpoint": len(expected),
                    "lost": sum(len(expected - set(r.received)) for r in receivers[count]),
                    "repeats": sum(
                        n - 1 for r in receivers[count] for n in r.received.values() if n > 1
                    ),
                }

    throughput = {count: args.payments / statistics.median(seconds[count]) for count in counts}
    with_deliveries = {
        count: args.payments / statistics.median(delivered_in[count]) for count in counts
    }
    report = {
        "payments_per_round": args.payments,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "throughput_per_s": {str(c): round(t, 2) for c, t in throughput.items()},
        "throughput_ratio_to_none": {
            str(c): round(t / throughput[0], 3) for c, t in throughput.items()
        },
        # Payments a second until each round's events had all reached every
        # endpoint: what a merchant's backend sees.
        "delivered_throughput_per_s": {str(c): round(t, 2) for c, t in with_deliveries.items()},
        "delivered_ratio_to_none": {
            str(c): round(t / with_deliveries[0], 3) for c, t in with_deliveries.items()
        },
        "delivery": {str(c): figures for c, figures in delivery.items()},
        # CPU milliseconds per payment, by process, from a round's start until
        # its deliveries and their lingering had settled; "bench" holds the
        # receivers and the load.
        "cpu_ms_per_payment": {
            str(c): {
                name: round(1000 * seconds_ / (args.payments * args.rounds), 1)
                for name, seconds_ in by_name.items()
            }
            for c, by_name in cpu.items()
        },
        "target": "none lost; one endpoint costs under 15% throughput (ratio >= 0.85)",
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "webhooks.json").write_text(json.dumps(report, indent=2) + "\n")
    print(
        "| endpoints | settled/s | ratio to none | delivered/s | ratio to none "
        "| events lost | repeats |"
    )
    print("|---|---|---|---|---|---|---|")
    for count in counts:
        figures = delivery.get(count, {"lost": "-", "repeats": "-"})
        print(
            f"| {count} | {throughput[count]:.1f} | {throughput[count] / throughput[0]:.2f}x "
            f"| {with_deliveries[count]:.1f} | {with_deliveries[count] / with_deliveries[0]:.2f}x "
            f"| {figures['lost']} | {figures['repeats']} |"
        )
    return 1 if any(figures["lost"] for figures in delivery.values()) else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--drain-timeout", type=float, default=120.0)
    parser.add_argument(
        "--settle",
        type=float,
        default=15.0,
        help="seconds after a round before its CPU is read (a delivery workflow lingers 1 min)",
    )
    parser.add_argument(
        "--endpoints", default=",".join(map(str, ENDPOINTS)), help="endpoint counts, 0 first"
    )
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
