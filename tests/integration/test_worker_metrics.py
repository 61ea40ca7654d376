"""The worker's metrics (CONTRACT §15), scraped from the Prometheus endpoint
of a worker built the way worker.py builds its runtime: the payment counters
move once per payment, the gateway's latency is there per operation and
outcome, and replaying the same histories moves nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from support import metric_samples, metric_value, running_stack, scrape_metrics
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer

from devstack import free_ports
from payments import metrics
from payments.models import Refund, RefundCommand
from worker import telemetry_runtime
from workflows.payment import PaymentWorkflow


@pytest.fixture
async def metered(dev_env: WorkflowEnvironment) -> AsyncIterator[tuple[Client, str]]:
    """A client whose runtime serves Prometheus metrics, as the worker's does."""
    (port,) = free_ports(1)
    runtime = telemetry_runtime(f"127.0.0.1:{port}")
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        runtime=runtime,
    )
    yield client, f"http://127.0.0.1:{port}/metrics"


async def test_payments_count_once_and_replays_count_nothing(
    metered: tuple[Client, str], task_queue: str
) -> None:
    client, url = metered
    async with running_stack(client, task_queue) as stack:
        paid = [await stack.create() for _ in range(2)]
        declined = await stack.create(payment_method="pm_card_chargeDeclinedInsufficientFunds")
        manual = await stack.create(capture_method="manual")
        for payment in paid:
            await stack.wait_status(payment.id, "succeeded")
        await stack.wait_status(declined.id, "failed")
        await stack.wait_status(manual.id, "requires_capture")
        await stack.update(
            paid[0].id, "refund", RefundCommand(refund_id="re_metrics_1", amount=500), Refund
        )
        await stack.wait_for(paid[0].id, lambda s: s.amount_refunded == 500)
        ids = [p.id for p in [*paid, declined, manual]]
        histories = [await client.get_workflow_handle(i).fetch_history() for i in ids]

    # Counters reach the endpoint when the SDK exports them: within moments.
    text = await scrape_metrics(url)
    assert metric_value(text, metrics.CREATED, capture_method="automatic") == 3
    assert metric_value(text, metrics.CREATED, capture_method="manual") == 1
    assert metric_value(text, metrics.SETTLED, status="succeeded") == 2
    assert metric_value(text, metrics.SETTLED, status="failed") == 1
    assert metric_value(text, metrics.SETTLED, status="requires_capture") == 1
    assert metric_value(text, metrics.DECLINES, decline_code="insufficient_funds") == 1
    assert metric_value(text, metrics.REFUNDS, status="succeeded") == 1
    assert metric_value(text, metrics.UNKNOWN_OUTCOMES) == 0
    duration = metrics.GATEWAY_DURATION + "_count"
    assert metric_value(text, duration, operation="authorize", outcome="ok") == 3
    assert metric_value(text, duration, operation="authorize", outcome="declined") == 1
    assert metric_value(text, duration, operation="capture", outcome="ok") == 2
    assert metric_value(text, duration, operation="refund", outcome="ok") == 1
    assert metric_value(text, duration, outcome="error") == 0
    # The SDK's own metrics are served beside ours.
    assert "temporal_workflow_task_execution_latency_bucket" in text

    before = {name: metric_samples(text, name) for name in metrics.WORKER_METRICS}
    replayer = Replayer(
        workflows=[PaymentWorkflow],
        data_converter=pydantic_data_converter,
        runtime=client.service_client.config.runtime,
    )
    for history in histories:
        await replayer.replay_workflow(history)
    after_replay = await scrape_metrics(url)
    assert {name: metric_samples(after_replay, name) for name in metrics.WORKER_METRICS} == before
