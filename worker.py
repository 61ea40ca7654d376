"""`python worker.py`: the Temporal worker for the ``payments`` task queue, nothing else.

SIGTERM or SIGINT shuts it down gracefully: it stops polling, lets in-flight
activities finish (or hands them back to Temporal after the grace period), and
exits, so nothing is lost or done twice.

:func:`serving` is the same worker for another process: the API runs one with
``PAYMENTS_API_WORKER`` (api/app.py), for eager workflow start.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.worker import Worker

from activities.archive import ArchiveActivities, ensure_archiver
from activities.payment_activities import PaymentActivities
from activities.receipts import ReceiptActivities
from activities.reconciliation import ReconciliationActivities
from activities.stuck import StuckActivities
from activities.webhooks import WebhookActivities
from archive import build_archive
from gateway.factory import build_gateway
from payments import metrics
from payments.archive import Archive
from payments.codec import EncryptionCodec
from payments.gateway import Gateway
from payments.outbound import Outbound
from payments.production import load_settings
from payments.reconciliation_service import ReconciliationService
from payments.sandbox import workflow_runner
from payments.settings import Settings
from payments.stuck import StuckCounter
from payments.temporal import connect, retention
from payments.tracing import WORKER_SERVICE, Tracing
from workflows.archive import ArchiveWorkflow
from workflows.payment import PaymentWorkflow
from workflows.reconciliation import ReconciliationWorkflow
from workflows.stuck import StuckPaymentsWorkflow
from workflows.webhooks import (
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    WebhookEndpointsWorkflow,
)

log = logging.getLogger("worker")

WORKFLOWS = [
    PaymentWorkflow,
    ReconciliationWorkflow,
    ArchiveWorkflow,
    WebhookEndpointsWorkflow,
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    StuckPaymentsWorkflow,
]


def build_worker(
    client: Client,
    settings: Settings,
    gateway: Gateway,
    archive: Archive,
    outbound: Outbound,
    **options: object,
) -> Worker:
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=WORKFLOWS,
        workflow_runner=workflow_runner(WORKFLOWS, client.data_converter),
        activities=[
            *PaymentActivities(gateway).all(),
            *ReceiptActivities(settings).all(),
            *ReconciliationActivities(gateway, client, archive).all(),
            *ArchiveActivities(client, archive).all(),
            *WebhookActivities(client, settings, outbound).all(),
            StuckActivities(StuckCounter(client, settings.task_queue)).count_stuck_payments,
        ],
        graceful_shutdown_timeout=timedelta(seconds=20),
        **options,  # type: ignore[arg-type]
    )


@asynccontextmanager
async def serving(
    client: Client, settings: Settings, tracing: Tracing | None = None
) -> AsyncIterator[Worker]:
    """The worker, polling from entry until exit, with the gateway's client and
    the outbound HTTP client it uses, which are closed after it stops."""
    # One INFO line per gateway request is what each payment's history already
    # holds, and writing it was a tenth of the gateway call's cost (bench/profile.py).
    if settings.log_level != "DEBUG":
        logging.getLogger("httpx").setLevel(logging.WARNING)
    gateway = build_gateway(settings)
    outbound = Outbound(allow_private=settings.webhook_allow_private_addresses)
    if tracing is not None:
        tracing.instrument_httpx()
    try:
        async with build_worker(client, settings, gateway, build_archive(settings), outbound) as w:
            yield w
    finally:
        await gateway.aclose()
        await outbound.aclose()


def telemetry_runtime(address: str, setting: str = "PAYMENTS_WORKER_METRICS_ADDRESS") -> Runtime:
    """The Temporal runtime of a process that runs a worker: its Prometheus
    endpoint at ``address`` (``setting``; "" for none) serves the SDK's metrics
    and ours (payments/metrics.py), durations in seconds."""
    if not address:
        return Runtime(telemetry=TelemetryConfig())
    prometheus = PrometheusConfig(
        bind_address=address,
        durations_as_seconds=True,
        histogram_bucket_overrides={metrics.GATEWAY_DURATION: list(metrics.GATEWAY_BUCKETS)},
    )
    try:
        runtime = Runtime(telemetry=TelemetryConfig(metrics=prometheus))
    except ValueError as err:
        raise SystemExit(
            f"cannot serve the worker's metrics on {setting}={address} ({err}); "
            "set a free address, or an empty one for none"
        ) from None
    return runtime


async def worker_client(
    settings: Settings,
    metrics_address: str,
    tracing: Tracing | None,
    setting: str = "PAYMENTS_WORKER_METRICS_ADDRESS",
) -> Client:
    """A client for a process that runs a worker: connected at once (a worker
    cannot use a lazy one), its runtime serving the metrics on
    ``metrics_address``, every payment counter's series there from the start."""
    runtime = telemetry_runtime(metrics_address, setting)
    client = await connect(
        settings,
        runtime=runtime,
        interceptors=tracing.temporal_interceptors() if tracing else [],
    )
    metrics.zero_series(runtime.metric_meter, client.namespace, settings.task_queue)
    return client


async def warn_about_retention(client: Client, settings: Settings) -> None:
    """A namespace that deletes closed histories sooner than the service expects
    shortens the time the archiver has to copy them: say so, loudly."""
    kept = await retention(client)
    wanted = timedelta(days=settings.retention_days)
    if kept is not None and kept < wanted:
        log.warning(
            "namespace %r keeps closed workflows for %s only, less than "
            "PAYMENTS_RETENTION_DAYS=%d: payments are deleted from Temporal that soon after "
            "they close (set it with `temporal operator namespace update --retention %dd`)",
            client.namespace,
            kept,
            settings.retention_days,
            settings.retention_days,
        )


async def main() -> None:
    settings = load_settings()
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    tracing = Tracing.from_environment(WORKER_SERVICE)
    client = await worker_client(settings, settings.worker_metrics_address, tracing)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await warn_about_retention(client, settings)
        runs = ReconciliationService(client, settings.task_queue)
        if await runs.ensure_schedule(settings.reconciliation_interval):
            log.info(
                "created the reconciliation schedule (every %s)", settings.reconciliation_interval
            )
        if await StuckCounter(client, settings.task_queue).ensure_schedule():
            log.info("created the stuck-payment count's schedule")
        if await ensure_archiver(client, settings.task_queue, settings.archive_interval):
            log.info("started the archiver (a pass every %s)", settings.archive_interval)
        async with serving(client, settings, tracing):
            codec = client.data_converter.payload_codec
            log.info(
                "worker ready on task queue %r (gateway: %s, payloads %s)",
                settings.task_queue,
                settings.gateway,
                f"encrypted with key {codec.active.key_id!r}"
                if isinstance(codec, EncryptionCodec)
                else "NOT encrypted",
            )
            await stop.wait()
            log.info("shutting down: finishing in-flight activities")
    finally:
        if tracing is not None:
            tracing.shutdown()  # what is still buffered goes out
    log.info("worker stopped")


if __name__ == "__main__":
    asyncio.run(main())
