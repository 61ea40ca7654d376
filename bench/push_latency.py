"""Push latency: from the capture completing in the worker to the
``payment.captured`` event reaching an SSE client of the API.

Baseline, measured in the same run on the same payments: a bare Temporal
client long-polling the same history (``wait_new_event``) for the same event,
with no API, projection or HTTP in between. Both are timed from the capture's
completion: its ``ActivityTaskCompleted`` event, or on the fast path its local
activity marker's completion time (see ``_capture_completed_at``).
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client

from bench.measure import percentile
from bench.stacks import bench_stack
from devstack import Stack
from payments import events

RESULTS = Path(__file__).parent / "results"
PAYMENTS = 100
VISA = {
    "amount": 1999,
    "currency": "usd",
    "payment_method": "pm_card_visa",
    "capture_method": "manual",
}


async def _sse_received(
    http: httpx.AsyncClient, payment_id: str, after: int, ready: asyncio.Event
) -> float:
    async with http.stream(
        "GET",
        f"/v1/payments/{payment_id}/stream",
        params={"follow": "true"},
        headers={"Last-Event-ID": str(after)},
    ) as response:
        ready.set()
        async for line in response.aiter_lines():
            if line == "event: payment.captured":
                return time.time()
    raise RuntimeError("stream ended without payment.captured")


async def _sdk_received(client: Client, payment_id: str, after: int, ready: asyncio.Event) -> float:
    history = client.get_workflow_handle(payment_id).fetch_history_events(wait_new_event=True)
    ready.set()
    async for raw in history:
        if raw.event_id <= after:
            continue
        event = await events.project_event(payment_id, raw, client.data_converter)
        if event is not None and event.type == "payment.captured":
            return time.time()
    raise RuntimeError("history ended without payment.captured")


async def _capture_completed_at(client: Client, payment_id: str) -> float:
    """When the gateway's capture answer reached the worker: the capture
    activity's ``ActivityTaskCompleted`` (server clock), or on the fast path
    the local activity marker's ``complete_time`` (worker clock; same machine)."""
    history = await client.get_workflow_handle(payment_id).fetch_history()
    scheduled = {
        raw.event_id: raw.activity_task_scheduled_event_attributes.activity_type.name
        for raw in history.events
        if raw.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED
    }
    for raw in history.events:
        if raw.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            attributes = raw.activity_task_completed_event_attributes
            if scheduled.get(attributes.scheduled_event_id) == "capture":
                return raw.event_time.ToDatetime(tzinfo=UTC).timestamp()
        marker = raw.marker_recorded_event_attributes
        if raw.event_type == EventType.EVENT_TYPE_MARKER_RECORDED and "result" in marker.details:
            local = json.loads(marker.details["data"].payloads[0].data)
            if local["activity_type"] == "capture":
                done = local["complete_time"]
                return float(done["seconds"]) + float(done.get("nanos", 0)) / 1e9
    raise RuntimeError("no completed capture")


async def one_payment(http: httpx.AsyncClient, client: Client) -> tuple[float, float]:
    created = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
    payment = created.json()
    assert payment["status"] == "requires_capture", payment
    description = await client.get_workflow_handle(payment["id"]).describe()
    after = description.raw_description.workflow_execution_info.history_length
    sse_ready, sdk_ready = asyncio.Event(), asyncio.Event()
    sse = asyncio.create_task(_sse_received(http, payment["id"], after, sse_ready))
    sdk = asyncio.create_task(_sdk_received(client, payment["id"], after, sdk_ready))
    await sse_ready.wait()
    await sdk_ready.wait()
    await asyncio.sleep(0.05)  # both are parked on the history long-poll
    await http.post(f"/v1/payments/{payment['id']}/capture")
    sse_at, sdk_at = await asyncio.gather(sse, sdk)
    completed = await _capture_completed_at(client, payment["id"])
    return (sse_at - completed) * 1000, (sdk_at - completed) * 1000


def _summary(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.5), 1),
        "p95_ms": round(percentile(values, 0.95), 1),
        "max_ms": round(max(values), 1),
    }


def _progress(done: int, total: int) -> None:
    filled = int(30 * done / total)
    sys.stderr.write(f"\rpush latency [{'#' * filled}{'.' * (30 - filled)}] {done}/{total}")
    sys.stderr.flush()


async def measure(stack: Stack, count: int = PAYMENTS, quiet: bool = False) -> dict[str, Any]:
    client = await stack.client()
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    sse: list[float] = []
    sdk: list[float] = []
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        for index in range(count):
            ours, baseline = await one_payment(http, client)
            sse.append(ours)
            sdk.append(baseline)
            if not quiet:
                _progress(index + 1, count)
    if not quiet:
        sys.stderr.write("\n")
    ours_summary, baseline_summary = _summary(sse), _summary(sdk)
    return {
        "payments": count,
        "sse": ours_summary,
        "baseline_history_long_poll": baseline_summary,
        "ratio_p50": round(ours_summary["p50_ms"] / max(baseline_summary["p50_ms"], 0.1), 2),
    }


def report(result: dict[str, Any]) -> str:
    sse, base = result["sse"], result["baseline_history_long_poll"]
    return "\n".join(
        [
            f"## Push latency: capture completed -> event received ({result['payments']} payments)",
            "",
            "| path | p50 ms | p95 ms | max ms |",
            "|---|---|---|---|",
            f"| SSE from the API | {sse['p50_ms']} | {sse['p95_ms']} | {sse['max_ms']} |",
            f"| baseline: SDK history long-poll | {base['p50_ms']} | {base['p95_ms']} | "
            f"{base['max_ms']} |",
            "",
            f"SSE p50 is {result['ratio_p50']}x the baseline's.",
        ]
    )


async def main() -> None:
    with bench_stack() as (stack, _):
        result = await measure(stack)
    result["measured_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "latest.json"
    existing = json.loads(path.read_text()) if path.exists() else {}
    existing["push_latency"] = result
    path.write_text(json.dumps(existing, indent=2) + "\n")
    print(report(result))
