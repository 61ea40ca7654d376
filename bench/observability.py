"""What observability costs (``make bench-observability``): throughput of
``Prefer: wait`` payments on three stacks side by side, the same but for what
they export: *bare* (the worker serves no metrics, no traces), *metrics* (as
`make run` has it: the worker's Prometheus endpoint, Temporal's SDK metrics
and ours), and *traced* (metrics, and every span sent over OTLP/HTTP to a
collector on loopback in this process that takes and drops them). The API's
request metrics are on in all three (they cannot be turned off).

Rounds: each stack in turn takes ``--payments`` payments, ``--concurrency`` at
a time; the order rotates from round to round, so a noisy spell of the shared
machine does not fall on one of them. Figures are medians over the rounds and
ratios to *bare* measured in the same run. Writes
``bench/results/observability.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from contextlib import AsyncExitStack, ExitStack
from pathlib import Path
from typing import Any

import httpx

from bench.compare import CARD
from bench.stacks import bench_stack
from bench.webhooks import serving

RESULTS = Path(__file__).parent / "results"
SETUPS = ("bare", "metrics", "traced")


class Collector:
    """An OTLP/HTTP collector that takes every export and keeps only its count."""

    def __init__(self) -> None:
        self.exports = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        while (await receive()).get("more_body"):
            pass
        self.exports += 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def round_of(http: httpx.AsyncClient, payments: int, concurrency: int) -> float:
    """Seconds until ``payments`` payments settled."""
    slots = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with slots:
            answer = await http.post("/v1/payments", json=CARD, headers={"Prefer": "wait=30"})
            if answer.json().get("status") != "succeeded":
                raise RuntimeError(f"a payment did not succeed: {answer.text}")

    began = time.monotonic()
    await asyncio.gather(*(one() for _ in range(payments)))
    return time.monotonic() - began


async def run(args: argparse.Namespace) -> int:
    collector = Collector()
    async with AsyncExitStack() as exits:
        collector_url = await exits.enter_async_context(serving(collector))
        setups = {
            "bare": ({}, {"worker_metrics_address": ""}),
            "metrics": ({}, {}),
            "traced": ({"OTEL_EXPORTER_OTLP_ENDPOINT": collector_url}, {}),
        }
        with ExitStack() as stacks:
            clients: dict[str, httpx.AsyncClient] = {}
            for name, (env, changes) in setups.items():
                stack, _ = stacks.enter_context(
                    bench_stack(env=env, config_changes=changes, prefix=f"payments-bench-{name}-")
                )
                clients[name] = await exits.enter_async_context(
                    httpx.AsyncClient(
                        base_url=stack.api_url,
                        headers={"Authorization": f"Bearer {stack.api_key}"},
                        timeout=60,
                        limits=httpx.Limits(max_connections=args.concurrency + 4),
                    )
                )
            for name in SETUPS:  # warm up: connections, caches, the sandbox
                await round_of(clients[name], args.concurrency * 2, args.concurrency)
            seconds: dict[str, list[float]] = {name: [] for name in SETUPS}
            for number in range(args.rounds):
                turn = number % len(SETUPS)
                for name in SETUPS[turn:] + SETUPS[:turn]:
                    took = await round_of(clients[name], args.payments, args.concurrency)
                    seconds[name].append(took)
                    sys.stderr.write(
                        f"round {number + 1}: {name} {args.payments / took:.1f} payments/s\n"
                    )
    throughput = {name: args.payments / statistics.median(seconds[name]) for name in SETUPS}
    report = {
        "payments_per_round": args.payments,
        "rounds": args.rounds,
        "concurrency": args.concurrency,
        "throughput_per_s": {n: round(t, 2) for n, t in throughput.items()},
        "ratio_to_bare": {n: round(t / throughput["bare"], 3) for n, t in throughput.items()},
        "otlp_exports_received": collector.exports,
    }
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "observability.json").write_text(json.dumps(report, indent=2) + "\n")
    print("| setup | payments/s | ratio to bare |")
    print("|---|---|---|")
    for name in SETUPS:
        print(f"| {name} | {throughput[name]:.1f} | {throughput[name] / throughput['bare']:.2f}x |")
    print(f"OTLP exports received from the traced stack: {collector.exports}")
    return 0 if collector.exports else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=16)
    raise SystemExit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
