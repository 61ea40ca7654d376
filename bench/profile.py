"""Where the time goes: one path under load, profiled (``make bench-profile``).

``python -m bench.profile --path async --seconds 30`` starts the bench's stack
(as `make run` has it, plus the dev server's Prometheus metrics: bench/stacks.py), drives one
path (``floor``, ``baseline``, ``async`` or ``sync``) at saturation, or open-loop with
``--rate``, and meanwhile

- samples the worker and the API with py-spy, 200 times a second, into
  collapsed stacks (``bench/results/profile-<path>-<process>.txt``, one line
  per stack, as flame graph tools read them);
- counts Temporal's requests by operation and divides by the payments made,
  so a change that saves a round trip shows as a smaller number;
- reads each process's CPU per payment, as ``make bench`` does.

It prints all of that as JSON, with the hottest functions of each profiled
process (their own share of the samples, and the share they were on the stack).
CPU per payment is steadier at a fixed ``--rate`` than at saturation, where
how much Temporal batches changes from run to run.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import subprocess
import sys
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import httpx

from bench import compare, webhooks
from bench.baseline import READY
from bench.measure import cpu_by_process
from bench.stacks import API_WORKER_ENV, bench_stack
from devstack import Stack

RESULTS = Path(__file__).parent / "results"


def hottest(collapsed: Path, top: int) -> tuple[list[tuple[str, float]], list[tuple[str, float]]]:
    """(own, inclusive) shares of samples by function, from py-spy's raw output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        samples = int(count)
        frames = [frame.split(" (")[0] + " " + _where(frame) for frame in stack.split(";")]
        total += samples
        own[frames[-1]] += samples
        for frame in set(frames):
            inclusive[frame] += samples
    if not total:
        return [], []

    def share(counter: collections.Counter[str]) -> list[tuple[str, float]]:
        return [(name, round(100 * n / total, 1)) for name, n in counter.most_common(top)]

    return share(own), share(inclusive)


def _where(frame: str) -> str:
    found = re.search(r"\(([^)]*)\)", frame)
    if not found:
        return ""
    path = found[1]
    for marker in ("site-packages/", "/work/", "python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"({path})"


async def run(
    path: str,
    seconds: float,
    concurrency: int,
    rate: float,
    top: int,
    server_args: list[str],
    endpoints: int = 0,
    api_worker: bool = False,
) -> dict[str, Any]:
    env = API_WORKER_ENV if api_worker else None
    with bench_stack(server_args, env=env) as (stack, metrics_url):
        async with AsyncExitStack() as exits:
            # The merchant's webhook endpoints: receivers in this process.
            if endpoints:
                http = await exits.enter_async_context(
                    httpx.AsyncClient(
                        base_url=stack.api_url,
                        headers={"Authorization": f"Bearer {stack.api_key}"},
                        timeout=60,
                    )
                )
            for _ in range(endpoints):
                url = await exits.enter_async_context(webhooks.serving(webhooks.Receiver()))
                made = await http.post(
                    "/v1/webhook_endpoints", json={"url": url, "enabled_events": ["*"]}
                )
                made.raise_for_status()
            if endpoints:
                await webhooks.past_the_tells()
            result = await _profile(stack, metrics_url, path, seconds, concurrency, rate, top)
            return {"endpoints": endpoints, "api_worker": api_worker, **result}


async def _profile(
    stack: Stack,
    metrics_url: str,
    path: str,
    seconds: float,
    concurrency: int,
    rate: float,
    top: int,
) -> dict[str, Any]:
    async with compare.drivers(stack) as (paths, baseline_worker):
        op = {
            "floor": paths.floor,
            "baseline": paths.baseline,
            "async": paths.ours_async,
            "sync": paths.ours_sync,
        }[path]
        with compare.processes(baseline_worker, stack.env, 1, READY) as children:
            pids = {name: stack.pid(name) for name in ("temporal", "worker", "api", "simulator")}
            pids["baseline worker"] = children[0].pid
            pids["bench client"] = os.getpid()
            for _ in range(10):
                await op()
            RESULTS.mkdir(exist_ok=True)
            profiled = {"worker": pids["worker"], "api": pids["api"]}
            if path in ("floor", "baseline"):
                profiled = {"baseline worker": pids["baseline worker"]}
            spies = {
                name: _spy(pid, RESULTS / f"profile-{path}-{name.replace(' ', '_')}", seconds)
                for name, pid in profiled.items()
            }
            try:
                scraped_before = compare.scrape(metrics_url)
                cpu_before = cpu_by_process(pids)
                progress = compare.Progress(seconds)
                if rate:
                    progress.phase(f"{path} at {rate}/s", seconds)
                    loaded = await compare.open_loop(op, rate, seconds, progress)
                else:
                    progress.phase(f"{path} at saturation", seconds)
                    loaded = await compare.closed_loop(op, concurrency, seconds, progress)
                progress.close()
                cpu_after = cpu_by_process(pids)
                scraped_after = compare.scrape(metrics_url)
                for spy in spies.values():
                    spy.wait(timeout=120)
            finally:
                for spy in spies.values():
                    if spy.poll() is None:
                        spy.kill()
                        spy.wait()
    done = max(1, len(loaded.ok))
    requests = compare.per_payment(
        compare.frontend_requests(scraped_before), compare.frontend_requests(scraped_after), done
    )
    result: dict[str, Any] = {
        "path": path,
        "payments": len(loaded.ok),
        "payments_per_s": round(loaded.throughput, 1),
        "latency_ms": loaded.latency(),
        "cpu_ms_per_payment": {
            name: round(1000 * (cpu_after[name] - cpu_before[name]) / done, 1) for name in pids
        },
        "temporal_requests_per_payment": requests,
        # Over the whole run, the server's side of each of those requests.
        "temporal_mean_latency_ms": compare.mean_latency_ms(
            scraped_before, scraped_after, requests
        ),
        "hottest": {},
    }
    for name in profiled:
        collapsed = RESULTS / f"profile-{path}-{name.replace(' ', '_')}.txt"
        if not collapsed.exists():
            # py-spy attaches with ptrace: root, or kernel.yama.ptrace_scope 0.
            result["hottest"][name] = "py-spy wrote no samples (is ptrace allowed here?)"
            continue
        own, inclusive = hottest(collapsed, top)
        result["hottest"][name] = {"own_percent": own, "inclusive_percent": inclusive}
    return result


def _spy(pid: int | None, stem: Path, seconds: float) -> subprocess.Popen[bytes]:
    """py-spy sampling ``pid`` for ``seconds``: collapsed stacks to ``stem``.txt."""
    command = [
        str(Path(sys.executable).parent / "py-spy"),
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        f"{stem}.txt",
    ]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--path", choices=("floor", "baseline", "async", "sync"), default="async")
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--concurrency", type=int, default=compare.FULL.concurrency)
    parser.add_argument(
        "--rate", type=float, default=0, help="payments/s, open loop (default: saturation)"
    )
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument(
        "--endpoints",
        type=int,
        default=0,
        help="webhook endpoints of the paying merchant, each a receiver in this process",
    )
    parser.add_argument(
        "--dev-server-arg",
        action="append",
        default=[],
        help="extra argument for the dev server, repeatable; e.g. "
        "--dev-server-arg=--sqlite-pragma --dev-server-arg=synchronous=normal",
    )
    parser.add_argument(
        "--api-worker",
        action="store_true",
        help="PAYMENTS_API_WORKER: the API runs a worker too and starts payments eagerly on it",
    )
    args = parser.parse_args()
    result = asyncio.run(
        run(
            args.path,
            args.seconds,
            args.concurrency,
            args.rate,
            args.top,
            args.dev_server_arg,
            args.endpoints,
            args.api_worker,
        )
    )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
