"""Observability of the stack as `make run` starts it (CONTRACT §15): each
process's Prometheus metrics move with payments, exactly once each, and with
``OTEL_EXPORTER_OTLP_ENDPOINT`` set the API and the worker send real
OTLP/HTTP traces to a receiver on loopback: one trace from the request to the
gateway's HTTP call, every span with ``payment.id``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from ops_config import expressions, read_query
from support import PROMPT_BACKLOG_GAUGES, Receiver, chromium, serving
from temporalio.client import Client

from devstack import Stack, StackConfig, free_ports
from payments import metrics
from payments.names import STUCK_SCHEDULE_ID

ARTIFACTS = Path(__file__).resolve().parent.parent / "artifacts"

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
DECLINED = {**VISA, "payment_method": "pm_card_chargeDeclinedInsufficientFunds"}


def total(text: str, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples that carry these labels."""
    found = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            found += float(line.rsplit(" ", 1)[1])
    return found


@pytest.fixture(scope="module")
async def traced(
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[tuple[Stack, Receiver]]:
    """A stack of its own whose API and worker export traces to ``receiver``."""
    receiver = Receiver()
    async with serving(receiver) as url:
        config = StackConfig.on_free_ports(tmp_path_factory.mktemp("observability"))
        env = {
            "OTEL_EXPORTER_OTLP_ENDPOINT": url,
            # Export within a fraction of a second, not the default five.
            "OTEL_BSP_SCHEDULE_DELAY": "200",
        }
        async with Stack(
            config, env=env, output=lambda _: None, dev_server_args=PROMPT_BACKLOG_GAUGES
        ) as stack:
            yield stack, receiver


async def scrape(url: str) -> str:
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    assert answer.status_code == 200, url
    return answer.text


async def test_metrics_move_once_per_payment(traced: tuple[Stack, Receiver]) -> None:
    stack, _ = traced
    config = stack.config
    assert config.worker_metrics_url is not None
    api_metrics = f"{stack.api_url}/metrics"
    worker_before = await scrape(config.worker_metrics_url)
    api_before = await scrape(api_metrics)
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=10"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        for body in (VISA, VISA, DECLINED):
            answer = await http.post("/v1/payments", json=body)
            assert answer.status_code == 200, answer.text
    # The SDK exports its counters every second or so.
    for _ in range(50):
        worker = await scrape(config.worker_metrics_url)
        if total(worker, metrics.SETTLED) - total(worker_before, metrics.SETTLED) >= 3:
            break
        await asyncio.sleep(0.2)
    await asyncio.sleep(2)  # and nothing more arrives later: exactly once
    worker = await scrape(config.worker_metrics_url)

    def moved(name: str, **labels: str) -> float:
        return total(worker, name, **labels) - total(worker_before, name, **labels)

    assert moved(metrics.CREATED, capture_method="automatic") == 3
    assert moved(metrics.SETTLED, status="succeeded") == 2
    assert moved(metrics.SETTLED, status="failed") == 1
    assert moved(metrics.DECLINES, decline_code="insufficient_funds") == 1
    gateway = metrics.GATEWAY_DURATION + "_count"
    assert moved(gateway, operation="authorize", outcome="ok") == 2
    assert moved(gateway, operation="authorize", outcome="declined") == 1
    assert moved(gateway, operation="capture", outcome="ok") == 2
    assert "temporal_workflow_task_schedule_to_start_latency_bucket" in worker

    api = await scrape(api_metrics)
    requests = metrics.HTTP_REQUESTS
    created = {"route": "/v1/payments", "method": "POST", "status": "200"}
    assert total(api, requests, **created) - total(api_before, requests, **created) == 3
    assert metrics.STREAMS_OPEN in api
    # The dev server's own, on the port `make run` prints.
    assert "persistence_requests" in await scrape(config.temporal_metrics_url)


async def test_one_trace_runs_from_the_request_to_the_gateway_call(
    traced: tuple[Stack, Receiver],
) -> None:
    stack, receiver = traced
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=10"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        answer = await http.post("/v1/payments", json=VISA)
    assert answer.status_code == 200, answer.text
    payment_id = answer.json()["id"]

    def spans_of_payment() -> list[tuple[str, str, bytes, dict[str, str]]]:
        found = []
        for request in receiver.received:
            export = ExportTraceServiceRequest.FromString(request.body)
            for resource_spans in export.resource_spans:
                service = next(
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                )
                for scope_spans in resource_spans.scope_spans:
                    for span in scope_spans.spans:
                        attributes = {a.key: a.value.string_value for a in span.attributes}
                        found.append((service, span.name, span.trace_id, attributes))
        return [f for f in found if f[3].get("payment.id") == payment_id]

    for _ in range(100):
        spans = spans_of_payment()
        # Each process exports in batches of its own: the API's request span
        # ends after the answer, and may come a batch after its other spans.
        if any(s[0] == "payments-worker" and re.match(r"POST", s[1]) for s in spans) and any(
            s[:2] == ("payments-api", "POST /v1/payments") for s in spans
        ):
            break
        await asyncio.sleep(0.2)
    spans = spans_of_payment()
    services = {s[0] for s in spans}
    assert services == {"payments-api", "payments-worker"}, spans
    assert len({s[2] for s in spans}) == 1, "one trace"
    names = {(s[0], s[1]) for s in spans}
    assert ("payments-api", "POST /v1/payments") in names, names
    assert ("payments-api", "StartWorkflow:PaymentWorkflow") in names, names
    assert ("payments-worker", "RunWorkflow:PaymentWorkflow") in names, names
    # The gateway's HTTP call, made by the worker's activity: httpx's span.
    gateway_calls = [s for s in spans if s[0] == "payments-worker" and s[1] == "POST"]
    assert gateway_calls, names
    simulator = stack.config.simulator_url
    urls = sorted(s[3].get("http.url") or s[3].get("url.full", "") for s in gateway_calls)
    assert len(urls) == 2 and all(u.startswith(simulator) for u in urls), urls
    assert any(u.endswith("/capture") for u in urls), urls


# -- a real Prometheus scraping the stack -------------------------------------------


def _prometheus_config(stack: Stack) -> dict[str, Any]:
    """The compose file's jobs (ops/prometheus/prometheus.yml), aimed at this stack."""
    config = stack.config
    assert config.worker_metrics_url is not None

    def target(url: str) -> str:
        return httpx.URL(url).netloc.decode()

    return {
        "global": {"scrape_interval": "1s"},
        "scrape_configs": [
            {"job_name": "payments-api", "static_configs": [{"targets": [target(stack.api_url)]}]},
            {
                "job_name": "payments-worker",
                "static_configs": [{"targets": [target(config.worker_metrics_url)]}],
            },
            {
                "job_name": "temporal",
                "static_configs": [{"targets": [target(config.temporal_metrics_url)]}],
            },
        ],
    }


@contextlib.asynccontextmanager
async def prometheus(config: dict[str, Any], data: Path) -> AsyncIterator[str]:
    """Debian's Prometheus (installed by .ci/run), on a free port; its URL."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("no `prometheus`: install Debian's prometheus package (.ci/run does)")
    (data / "prometheus.yml").write_text(json.dumps(config))
    (port,) = free_ports(1)
    process = await asyncio.create_subprocess_exec(
        binary,
        f"--config.file={data / 'prometheus.yml'}",
        f"--storage.tsdb.path={data / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        process.terminate()
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_a_real_prometheus_finds_every_metric_the_rules_and_dashboard_use(
    traced: tuple[Stack, Receiver], tmp_path: Path
) -> None:
    stack, _ = traced
    headers = {"Authorization": f"Bearer {stack.api_key}", "Prefer": "wait=10"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http:
        for body in (VISA, DECLINED):
            assert (await http.post("/v1/payments", json=body)).status_code == 200
    # The stuck-payment count runs every five minutes: once now.
    client = await Client.connect(stack.config.temporal_address)
    await client.get_schedule_handle(STUCK_SCHEDULE_ID).trigger()

    wanted = {name for _, expr in expressions() for name, _ in read_query(expr).selectors}
    async with prometheus(_prometheus_config(stack), tmp_path) as url, httpx.AsyncClient() as http:
        missing = wanted
        # The server's backlog gauges come with its task-queue stats: once a
        # minute by default, every second on this stack (PROMPT_BACKLOG_GAUGES).
        for _ in range(180):
            try:
                answer = await http.get(f"{url}/api/v1/label/__name__/values")
            except httpx.TransportError:
                answer = None  # still starting
            if answer is not None and answer.status_code == 200:
                missing = wanted - set(answer.json()["data"])
                if not missing:
                    break
            await asyncio.sleep(0.5)
        assert not missing, f"in the rules or the dashboard, not in any scrape: {sorted(missing)}"
        every_job_up = {"payments-api": "1", "payments-worker": "1", "temporal": "1"}
        for _ in range(60):  # a job's latest scrape may lag the names a moment
            up = (await http.get(f"{url}/api/v1/query", params={"query": "up"})).json()
            jobs = {r["metric"]["job"]: r["value"][1] for r in up["data"]["result"]}
            if jobs == every_job_up:
                break
            await asyncio.sleep(0.5)
        assert jobs == every_job_up
        # The archiver's pass time, one series, set by a real pass (not the
        # worker's 0 from its start): it passes once at start, then every 20 s.
        for _ in range(120):
            found = (
                await http.get(
                    f"{url}/api/v1/query",
                    params={"query": metrics.ARCHIVE_COMPLETE_PASS},
                )
            ).json()["data"]["result"]
            if len(found) == 1 and float(found[0]["value"][1]) > 0:
                break
            await asyncio.sleep(0.5)
        assert len(found) == 1 and float(found[0]["value"][1]) > 0, found
        # What the README shows: Prometheus' own graph of payments by outcome.
        expression = "sum by (status) (payments_settled_total)"
        async with chromium() as browser:
            page = await browser.new_page(viewport={"width": 1280, "height": 800})
            await page.goto(f"{url}/graph?g0.expr={quote(expression)}&g0.tab=0&g0.range_input=5m")
            await page.wait_for_selector("canvas, svg, .graph-chart", timeout=20_000)
            await page.wait_for_timeout(1500)
            await page.screenshot(path=ARTIFACTS / "prometheus-settled-by-status.png")


async def test_webhooks_to_merchants_carry_no_trace_context(
    traced: tuple[Stack, Receiver],
) -> None:
    """The worker's gateway calls are traced; its POSTs to merchants are not:
    no ``traceparent`` or ``baggage`` of ours goes to a third party."""
    stack, _ = traced
    merchant = Receiver()
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with (
        serving(merchant) as url,
        httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as http,
    ):
        made = await http.post("/v1/webhook_endpoints", json={"url": url, "enabled_events": ["*"]})
        assert made.status_code == 201, made.text
        try:
            await asyncio.sleep(1.1)  # the workers' look at the endpoints goes stale
            paid = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
            assert paid.status_code == 200, paid.text
            received = await merchant.wait_for(
                lambda got: any(r.json()["payment_id"] == paid.json()["id"] for r in got)
            )
        finally:
            await http.delete(f"/v1/webhook_endpoints/{made.json()['id']}")
    assert received
    assert all("traceparent" not in r.headers and "baggage" not in r.headers for r in received)
