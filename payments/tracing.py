"""OpenTelemetry tracing (CONTRACT §15): off unless ``OTEL_EXPORTER_OTLP_ENDPOINT``
is set (and ``OTEL_SDK_DISABLED`` is not ``true``); then OTLP over
http/protobuf (another ``OTEL_EXPORTER_OTLP_PROTOCOL`` stops the process
with a message), configured by the standard ``OTEL_*`` variables, the service named
``payments-api`` or ``payments-worker`` unless ``OTEL_SERVICE_NAME`` says so.

One trace runs from the HTTP request (FastAPI's instrumentation) through the
Temporal client, the workflow and its activities (Temporal's
``TracingInterceptor``, which carries the context in Temporal's headers) to
the gateway's HTTP call (httpx's instrumentation). Every span of a payment
carries ``payment.id``: Temporal's spans name the workflow, and a span started
under one that has it inherits it (:class:`PaymentIdSpans`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
from temporalio.client import Interceptor

PAYMENT_ID = "payment.id"
API_SERVICE = "payments-api"
WORKER_SERVICE = "payments-worker"
_TEMPORAL_WORKFLOW_ID = "temporalWorkflowID"
PAYMENT_PREFIX = "pay_"


def enabled() -> bool:
    """On when an endpoint is set, unless ``OTEL_SDK_DISABLED`` says otherwise."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    return bool(os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


class PaymentIdSpans(SpanProcessor):
    """``payment.id`` on every span of a payment: from the workflow id a
    Temporal span names (``pay_…``, or a payment's webhook deliveries
    ``pay_…-webhooks``), else from the span it starts under."""

    def on_start(self, span: Span, parent_context: otel_context.Context | None = None) -> None:
        attributes = span.attributes or {}
        if PAYMENT_ID in attributes:
            return
        workflow_id = attributes.get(_TEMPORAL_WORKFLOW_ID)
        if isinstance(workflow_id, str) and workflow_id.startswith(PAYMENT_PREFIX):
            span.set_attribute(PAYMENT_ID, workflow_id.removesuffix("-webhooks"))
            return
        parent = trace.get_current_span(parent_context)
        inherited = getattr(parent, "attributes", None) or {}
        if PAYMENT_ID in inherited:
            span.set_attribute(PAYMENT_ID, inherited[PAYMENT_ID])

    def on_end(self, span: ReadableSpan) -> None:
        pass


@dataclass
class Tracing:
    """A process's tracing: its provider, and what instruments with it."""

    provider: TracerProvider

    @classmethod
    def from_environment(cls, service: str) -> Tracing | None:
        """Tracing as the ``OTEL_*`` variables configure it; None when off."""
        if not enabled():
            return None
        protocol = os.environ.get("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        if protocol != "http/protobuf":
            raise SystemExit(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol}: only http/protobuf is supported "
                "(unset it, and point OTEL_EXPORTER_OTLP_ENDPOINT at the collector's HTTP port)"
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracing = cls.exporting(OTLPSpanExporter(), service)
        trace.set_tracer_provider(tracing.provider)
        return tracing

    @classmethod
    def exporting(cls, exporter: SpanExporter, service: str) -> Tracing:
        name = os.environ.get("OTEL_SERVICE_NAME") or service
        provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
        provider.add_span_processor(PaymentIdSpans())
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider)

    def temporal_interceptors(self) -> list[Interceptor]:
        """For ``Client.connect``: workers made from the client trace too."""
        from temporalio.contrib.opentelemetry import TracingInterceptor

        return [TracingInterceptor(self.provider.get_tracer("temporalio"))]

    def instrument_httpx(self) -> None:
        """Every httpx client of the process, the gateway's calls among them.
        Webhooks to merchants go out through aiohttp (payments/outbound.py),
        which is not instrumented: they carry no trace context of ours
        (``traceparent``, ``baggage``) to a third party."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor

        HTTPXClientInstrumentor().instrument(tracer_provider=self.provider)

    def shutdown(self) -> None:
        self.provider.shutdown()


_PAYMENT_IN_PATH = re.compile(r"/v1/payments/(pay_[a-z0-9]{1,64})(?:/|$)")


def payment_in_path(span: trace.Span, scope: dict[str, Any]) -> None:
    """FastAPI's server-request hook: ``payment.id`` on a request for one payment."""
    found = _PAYMENT_IN_PATH.match(scope.get("path", ""))
    if found and span.is_recording():
        span.set_attribute(PAYMENT_ID, found[1])


def tag_payment(payment_id: str) -> None:
    """``payment.id`` on the current span (the HTTP request's, say), when one records."""
    trace.get_current_span().set_attribute(PAYMENT_ID, payment_id)
