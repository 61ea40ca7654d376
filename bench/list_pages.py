"""What a page of ``GET /v1/payments`` costs as a merchant's history grows
(``make bench-list``).

Starts the bench's stack (as `make run` has it, plus the dev server's
Prometheus metrics: bench/stacks.py), gives one merchant 1,000 payments, then 10,000, and at
each size reads the first page, the one in the middle and the last, with
``limit`` 10 and 100, over HTTP as a merchant would. For each: the wall time
of a page (p50 of ``--repeats``, nearest rank) and Temporal's requests per page by
operation, counted by the dev server's frontend; every figure also as a ratio
to the first page of the same ``limit`` at 10,000. Each page is checked
against the ids the bench started, so a fast wrong answer cannot pass.

The payments are started as the API starts them (``engine.start_payment``:
same memo, same search attributes) on a task queue no worker polls: a list
reads only visibility and memos, and this way 10,000 payments take a couple
of minutes instead of 10,000 sagas. Writes ``bench/results/list_pages.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client

from bench import compare
from bench.measure import percentile
from bench.stacks import bench_stack
from payments.models import CreatePayment, PaymentState
from payments.service import PaymentService
from payments.settings import Settings

RESULTS = Path(__file__).parent / "results"
SIZES = (1_000, 10_000)
LIMITS = (10, 100)
# What a list asks Temporal; the stack's worker polls meanwhile, and those are not the list's.
LIST_OPERATIONS = (
    "CountWorkflowExecutions",
    "ListWorkflowExecutions",
    "DescribeWorkflowExecution",
)
# The dev server's counters reach its metrics endpoint up to a second late.
METRICS_LAG_S = 1.5


async def start_payments(
    client: Client, merchant: str, count: int, concurrency: int = 48
) -> list[PaymentState]:
    """``count`` payments of ``merchant``, started as the API starts them, never run."""
    settings = Settings(task_queue=f"bench-list-nobody-{uuid.uuid4().hex[:8]}")
    request = CreatePayment.model_validate(compare.CARD)
    service = PaymentService(client, settings)
    slots = asyncio.Semaphore(concurrency)
    started: list[PaymentState] = []
    began = time.monotonic()

    async def one() -> None:
        async with slots:
            state = (await service.start(merchant, request)).payment
            started.append(state)
            if len(started) % 1000 == 0:
                sys.stderr.write(f"  {len(started)} started, {time.monotonic() - began:.0f}s\n")

    await asyncio.gather(*(one() for _ in range(count)))
    return started


async def until_visible(client: Client, merchant: str, count: int) -> None:
    query = f"WorkflowType = 'PaymentWorkflow' AND MerchantId = '{merchant}'"
    for _ in range(600):
        if (await client.count_workflows(query)).count >= count:
            return
        await asyncio.sleep(0.1)
    raise RuntimeError(f"visibility never showed {count} payments")


def positions(newest_first: list[str], limit: int) -> dict[str, tuple[str | None, list[str], bool]]:
    """For the first, middle and last page: its cursor, the ids it must hold,
    and its has_more."""
    total = len(newest_first)
    middle = (total // 2 // limit) * limit
    last = total - limit
    return {
        "first": (None, newest_first[:limit], True),
        "middle": (newest_first[middle - 1], newest_first[middle : middle + limit], True),
        "last": (newest_first[last - 1], newest_first[last:], False),
    }


async def measure_page(
    http: httpx.AsyncClient,
    metrics_url: str,
    limit: int,
    cursor: str | None,
    expected: list[str],
    has_more: bool,
    repeats: int,
) -> dict[str, Any]:
    params: dict[str, Any] = {"limit": limit}
    if cursor:
        params["starting_after"] = cursor
    await _page(http, params, expected, has_more)  # warm: connections, caches
    await asyncio.sleep(METRICS_LAG_S)
    before = compare.requests_by_operation(metrics_url)
    times = []
    for _ in range(repeats):
        began = time.monotonic()
        await _page(http, params, expected, has_more)
        times.append((time.monotonic() - began) * 1000)
    await asyncio.sleep(METRICS_LAG_S)
    after = compare.requests_by_operation(metrics_url)
    by_operation = {
        operation: round((after[operation] - before[operation]) / repeats, 2)
        for operation in LIST_OPERATIONS
        if after[operation] - before[operation]
    }
    return {
        "ms_p50": round(percentile(times, 0.5), 1),
        "ms_min": round(min(times), 1),
        "ms_max": round(max(times), 1),
        "temporal_requests": round(sum(by_operation.values()), 2),
        "temporal_requests_by_operation": by_operation,
    }


async def _page(
    http: httpx.AsyncClient, params: dict[str, Any], expected: list[str], has_more: bool
) -> None:
    response = await http.get("/v1/payments", params=params)
    body = response.json()
    if response.status_code != 200:
        raise RuntimeError(f"list answered {response.status_code}: {body}")
    ids = [payment["id"] for payment in body["data"]]
    if ids != expected or body["has_more"] is not has_more:
        raise RuntimeError(f"wrong page for {params}: has_more {body['has_more']}")


def with_ratios(result: dict[str, Any]) -> None:
    """Every page's figures against the first page of its limit at the largest size."""
    largest = str(max(result["merchant_payments"]))
    for limit in map(str, LIMITS):
        first = result["pages"][largest][limit]["first"]
        for size in result["pages"]:
            for page in result["pages"][size][limit].values():
                page["ms_p50_ratio"] = round(page["ms_p50"] / first["ms_p50"], 2)
                page["temporal_requests_ratio"] = round(
                    page["temporal_requests"] / first["temporal_requests"], 2
                )


async def run(repeats: int, sizes: tuple[int, ...] = SIZES) -> dict[str, Any]:
    with bench_stack() as (stack, metrics_url):
        conditions = compare.conditions(stack)
        merchant = Settings().api_keys[stack.api_key]
        client = await stack.client()
        headers = {"Authorization": f"Bearer {stack.api_key}"}
        started: list[PaymentState] = []
        result: dict[str, Any] = {"merchant_payments": list(sizes), "pages": {}}
        async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http:
            for size in sizes:
                sys.stderr.write(f"starting payments up to {size}\n")
                started += await start_payments(client, merchant, size - len(started))
                await until_visible(client, merchant, size)
                ordered = sorted(started, key=lambda s: (s.created_at, s.id), reverse=True)
                ids = [state.id for state in ordered]
                result["pages"][str(size)] = {}
                for limit in LIMITS:
                    pages = {}
                    for where, (cursor, expected, has_more) in positions(ids, limit).items():
                        sys.stderr.write(f"  {size} payments, limit {limit}, {where} page\n")
                        pages[where] = await measure_page(
                            http, metrics_url, limit, cursor, expected, has_more, repeats
                        )
                    result["pages"][str(size)][str(limit)] = pages
    with_ratios(result)
    result["repeats"] = repeats
    result["conditions"] = conditions
    return result


def table(result: dict[str, Any]) -> str:
    lines = [
        "| payments | limit | page | p50 ms | ratio | Temporal requests | ratio |",
        "|---|---|---|---|---|---|---|",
    ]
    for size, by_limit in result["pages"].items():
        for limit, pages in by_limit.items():
            for where, page in pages.items():
                lines.append(
                    f"| {int(size):,} | {limit} | {where} | {page['ms_p50']} | "
                    f"{page['ms_p50_ratio']}x | {page['temporal_requests']} | "
                    f"{page['temporal_requests_ratio']}x |"
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=25, help="reads of each page measured")
    parser.add_argument(
        "--sizes",
        type=lambda text: tuple(int(n) for n in text.split(",")),
        default=SIZES,
        help="the merchant's payments at each step, comma-separated (default 1000,10000)",
    )
    args = parser.parse_args()
    result = asyncio.run(run(args.repeats, args.sizes))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "list_pages.json").write_text(json.dumps(result, indent=2) + "\n")
    print(table(result))
    print(f"written: {RESULTS / 'list_pages.json'}")


if __name__ == "__main__":
    main()
