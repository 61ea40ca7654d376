"""``PAYMENTS_API_WORKER``: the API runs a worker of its own beside worker.py's
and starts each payment on it eagerly, so the start's answer carries the
payment's first workflow task. On a stack of its own, both workers running."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator

import httpx
import pytest
from support import simulator_ledger, status_of
from temporalio.api.enums.v1 import EventType

from devstack import Stack, StackConfig

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@pytest.fixture(scope="module")
def hosting(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, str]]:
    config = StackConfig.on_free_ports(tmp_path_factory.mktemp("api-worker-stack"))
    assert config.api_worker_metrics_url is not None
    env = {"PAYMENTS_API_WORKER": "true"}
    lines: list[str] = []
    with Stack(config, env=env, output=lines.append) as stack:
        stack.output_lines = lines  # type: ignore[attr-defined]
        yield stack, config.api_worker_metrics_url


@pytest.fixture
async def http(hosting: tuple[Stack, str]) -> Iterator[httpx.AsyncClient]:
    stack, _ = hosting
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client


def created_total(exposition: str) -> float:
    found = re.search(
        r'^payments_created_total\{capture_method="automatic"[^}]*\} (\S+)$', exposition, re.M
    )
    return float(found.group(1)) if found else 0.0


async def test_payments_start_on_the_apis_worker_and_settle_there(
    hosting: tuple[Stack, str], http: httpx.AsyncClient
) -> None:
    stack, _ = hosting
    client = await stack.client()
    api_identity = f"{stack.pid('api')}@"
    for _ in range(3):
        response = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
        assert response.status_code == 200, response.text
        payment = response.json()
        assert (payment["status"], payment["amount_captured"]) == ("succeeded", 1999)
        kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment["id"])]
        assert kinds == ["authorization", "capture"]

        history = await client.get_workflow_handle(payment["id"]).fetch_history()
        started = next(
            e for e in history.events if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED
        )
        attributes = started.workflow_task_started_event_attributes
        # The API's process took the first task, and not from a poll: the
        # server fills in the history's size only for a task a poll hands out.
        assert attributes.identity.startswith(api_identity), attributes.identity
        assert attributes.history_size_bytes == 0
        # Authorized and captured in that same first task (the fast path).
        completed = [
            e
            for e in history.events
            if e.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED
        ]
        first = completed[0].workflow_task_completed_event_attributes
        assert first.identity.startswith(api_identity), first.identity
    # Like worker.py, the API's worker writes no log line per gateway request.
    logged = stack.output_lines  # type: ignore[attr-defined]
    assert not [line for line in logged if "HTTP Request: POST" in line and "/v1/auth" in line]


async def test_the_apis_worker_serves_its_metrics(
    hosting: tuple[Stack, str], http: httpx.AsyncClient
) -> None:
    stack, metrics_url = hosting
    assert f"API's worker {metrics_url}" in stack.banner()
    async with httpx.AsyncClient() as scraper:
        before = created_total((await scraper.get(metrics_url)).text)
        response = await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})
        assert response.json()["status"] == "succeeded"
        exposition = (await scraper.get(metrics_url)).text
    assert created_total(exposition) == before + 1
    assert "temporal_workflow_task_execution_latency" in exposition


async def test_payments_in_flight_on_the_apis_worker_survive_its_kill(
    hosting: tuple[Stack, str], http: httpx.AsyncClient
) -> None:
    """SIGKILL of the API while its worker is calling the gateway: the workflow
    task times out, another worker takes it over with the same idempotency
    keys, and each payment is authorized and captured once."""
    stack, _ = hosting
    async with httpx.AsyncClient(base_url=stack.simulator_url) as simulator:
        await simulator.put("/_faults", json={"latency_ms": 1000})
        try:
            in_flight = [
                (await http.post("/v1/payments", json=VISA)).json()["id"] for _ in range(3)
            ]
            await asyncio.sleep(0.3)
            await asyncio.to_thread(stack.kill, "api")
            await asyncio.to_thread(stack.wait_ready, "api", 90)
        finally:
            await simulator.delete("/_faults")
    client = await stack.client()
    for payment_id in in_flight:
        assert await status_of(http, payment_id, "succeeded") == "succeeded"
        kinds = [e["kind"] for e in await simulator_ledger(stack.simulator_url, payment_id)]
        assert kinds == ["authorization", "capture"], (payment_id, kinds)
        # The kill took the payment's first workflow task with it.
        history = await client.get_workflow_handle(payment_id).fetch_history()
        lost = EventType.EVENT_TYPE_WORKFLOW_TASK_TIMED_OUT
        assert any(e.event_type == lost for e in history.events), payment_id
