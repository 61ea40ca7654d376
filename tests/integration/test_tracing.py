"""One trace per payment (CONTRACT §15): the HTTP request, the Temporal
client's start, the workflow and its gateway activities, all in one trace,
each span with ``payment.id``. Spans go to the SDK's in-memory exporter; the
e2e test receives real OTLP from the running stack."""

from __future__ import annotations

import uuid

import httpx
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from support import running_stack, serving
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from payments.settings import Settings
from payments.tracing import PAYMENT_ID, Tracing


async def test_a_payment_is_one_trace_from_the_request_to_the_gateway_steps(
    dev_env: WorkflowEnvironment, task_queue: str
) -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing.exporting(exporter, "payments-api")
    client = await Client.connect(
        dev_env.client.service_client.config.target_host,
        namespace=dev_env.client.namespace,
        data_converter=pydantic_data_converter,
        interceptors=tracing.temporal_interceptors(),
    )
    key = f"sk_test_{uuid.uuid4().hex[:8]}"
    settings = Settings(task_queue=task_queue, api_keys={key: "tracing"})
    app = create_app(settings, client=client, tracing=tracing)
    async with running_stack(client, task_queue), serving(app) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            answer = await http.post(
                "/v1/payments",
                json={"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"},
                headers={"Authorization": f"Bearer {key}", "Prefer": "wait=10"},
            )
        assert answer.status_code == 200, answer.text
        assert answer.json()["status"] == "succeeded"
        payment_id = answer.json()["id"]
    tracing.provider.force_flush()

    spans = exporter.get_finished_spans()
    request = next(s for s in spans if s.name == "POST /v1/payments" and s.kind.name == "SERVER")
    trace_id = request.context.trace_id
    ours = [s for s in spans if s.context.trace_id == trace_id]
    names = {s.name for s in ours}
    assert "StartWorkflow:PaymentWorkflow" in names, names
    assert "RunWorkflow:PaymentWorkflow" in names, names
    assert {"RunActivity:authorize", "RunActivity:capture"} <= names, names
    # Every span of the trace names the payment, the request's own included.
    assert {s.name: (s.attributes or {}).get(PAYMENT_ID) for s in ours} == {
        s.name: payment_id for s in ours
    }
    assert request.resource.attributes["service.name"] == "payments-api"
