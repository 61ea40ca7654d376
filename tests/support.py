"""Helpers for the tests: run a worker on the in-memory simulator, start
payments the way the API does, wait for a status."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import hmac
import json
import re
import shutil
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from playwright.async_api import Browser, async_playwright
from temporalio.api.enums.v1 import EventType, IndexedValueType
from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest
from temporalio.api.testservice.v1 import SleepRequest
from temporalio.client import Client, WorkflowExecutionStatus, WorkflowFailureError
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.payment_activities import PaymentActivities
from activities.receipts import ReceiptActivities
from activities.webhooks import WebhookActivities
from devstack.mail import MailSink, serve
from gateway.memory import InMemoryGateway
from gateway.simulator.core import SimulatorLedger
from payments import events
from payments.codec import EncryptionCodec, EncryptionKey
from payments.gateway import Gateway, GatewayOperation, InvalidGatewayRequest
from payments.models import CreatePayment, Event, GatewayEvent, PaymentState
from payments.names import SEARCH_ATTRIBUTES
from payments.outbound import Outbound
from payments.sandbox import workflow_runner
from payments.service import PaymentService
from payments.settings import Settings
from payments.webhook_service import WebhookService
from workflows.payment import PaymentWorkflow
from workflows.webhooks import (
    WebhookDeliveryWorkflow,
    WebhookDispatchWorkflow,
    WebhookEndpointsWorkflow,
)

MERCHANT = "acme"
BIN = Path(sys.executable).parent
TEMPORAL_CLI = BIN / "temporal"
TEST_SERVER = BIN / "temporal-test-server"
# Low enough that a test with a dozen refunds sees Temporal suggest
# continue-as-new; ordinary payments stay well below it.
SUGGEST_CONTINUE_AS_NEW_AFTER = 120


async def register_search_attributes(client: Client) -> None:
    """The time-skipping server takes no flags for them: register through its API."""
    kinds = {
        "Keyword": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
        "Int": IndexedValueType.INDEXED_VALUE_TYPE_INT,
        "Datetime": IndexedValueType.INDEXED_VALUE_TYPE_DATETIME,
        "KeywordList": IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD_LIST,
    }
    await client.operator_service.add_search_attributes(
        AddSearchAttributesRequest(
            namespace=client.namespace,
            search_attributes={name: kinds[kind] for name, kind in SEARCH_ATTRIBUTES.items()},
        )
    )


# A deleted workflow (what retention does) is gone once the transfer queue's
# ack level passes its close, which the server moves every 30 s by default:
# each test that waits out a deletion waited that long. Every second instead,
# a deletion takes 3-5 s on the dev server (measured: 33-35 s before).
QUICK_DELETES = ("--dynamic-config-value", 'history.transferProcessorUpdateAckInterval="1s"')
# The server's task-queue backlog gauges (approximate_backlog_count, _age_seconds),
# which the alerts use, come once a minute by default; every second instead,
# a scrape finds them within moments of the server's start (measured: about
# 50 s before, 6 s after).
PROMPT_BACKLOG_GAUGES = ("--dynamic-config-value", 'matching.backlogMetricsEmitInterval="1s"')


def dev_server_args() -> list[str]:
    args = [
        arg
        for name, kind in SEARCH_ATTRIBUTES.items()
        for arg in ("--search-attribute", f"{name}={kind}")
    ]
    return [
        *args,
        "--dynamic-config-value",
        f"limit.historyCount.suggestContinueAsNew={SUGGEST_CONTINUE_AS_NEW_AFTER}",
        *QUICK_DELETES,
    ]


@dataclass
class Stack:
    client: Client
    settings: Settings
    gateway: InMemoryGateway

    async def create(self, idempotency_key: str | None = None, **fields: Any) -> PaymentState:
        request = CreatePayment.model_validate(
            {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa", **fields}
        )
        return (await self.service.start(MERCHANT, request, idempotency_key)).payment

    @property
    def service(self) -> PaymentService:
        return PaymentService(self.client, self.settings)

    @property
    def webhooks(self) -> WebhookService:
        return WebhookService(self.client, self.settings)

    async def get(self, payment_id: str, merchant: str = MERCHANT) -> PaymentState:
        return await self.service.get(payment_id, merchant)

    async def query(self, payment_id: str) -> PaymentState:
        return await self.client.get_workflow_handle(payment_id).query(
            "state", result_type=PaymentState
        )

    async def update(self, payment_id: str, name: str, argument: Any, result_type: type) -> Any:
        return await self.service.send(
            payment_id, MERCHANT, name, argument, result_type=result_type
        )

    async def events(self, payment_id: str) -> list[Event]:
        return await self.service.payment_events(payment_id, MERCHANT)

    async def wait_for(
        self, payment_id: str, predicate: Any, within: float = 20.0, merchant: str = MERCHANT
    ) -> PaymentState:
        """Poll (the describe memo) until ``predicate(state)`` holds."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            state = await self.get(payment_id, merchant)
            if predicate(state):
                return state
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; last state: {state.status}")
            await asyncio.sleep(0.05)

    async def wait_status(
        self, payment_id: str, *statuses: str, within: float = 20.0, merchant: str = MERCHANT
    ) -> PaymentState:
        return await self.wait_for(payment_id, lambda s: s.status in statuses, within, merchant)

    async def waiting_on_customer(self, **fields: Any) -> tuple[PaymentState, str]:
        """A 3-D Secure payment waiting on its customer, and its authentication's id."""
        created = await self.create(payment_method="pm_card_threeDSecure2Required", **fields)
        waiting = await self.wait_status(created.id, "requires_action")
        [required] = [
            e for e in await self.events(created.id) if e.type == "payment.action_required"
        ]
        return waiting, str(required.data["authentication_id"])

    async def receipt_events(
        self, payment_id: str, count: int, within: float = 30.0
    ) -> list[Event]:
        """The payment's receipt events (receipt.sent, receipt.failed), once
        there are ``count`` of them."""
        deadline = asyncio.get_running_loop().time() + within
        while True:
            found = [e for e in await self.events(payment_id) if e.type.startswith("receipt.")]
            if len(found) >= count:
                return found
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"{payment_id}: {len(found)} receipt events of {count}")
            await asyncio.sleep(0.1)

    async def ring(self, payment_id: str, event_id: str = "evt_1") -> None:
        """The gateway's webhook for the payment, as the API delivers it."""
        event = GatewayEvent(
            id=event_id, type="authentication.succeeded", payment_id=payment_id, object_id="x"
        )
        assert await self.service.deliver(event)

    def ledger(self, payment_id: str) -> list[GatewayOperation]:
        return self.gateway.ledger.ledger(payment_id)

    def kinds(self, payment_id: str) -> list[str]:
        return [op.kind for op in self.ledger(payment_id)]


@contextlib.asynccontextmanager
async def running_stack(
    client: Client,
    task_queue: str,
    gateway: InMemoryGateway | None = None,
    *,
    smtp_url: str = "smtp://127.0.0.1:1025",
    **worker_options: Any,
) -> AsyncIterator[Stack]:
    """A worker on ``task_queue`` and the stack to drive it; receipts are
    mailed to ``smtp_url``."""
    gateway = gateway or InMemoryGateway()
    settings = Settings(
        task_queue=task_queue,
        authorization_window=timedelta(days=7),
        refund_window=timedelta(days=180),
        webhook_allow_private_addresses=True,
        smtp_url=smtp_url,
    )
    async with payment_worker(client, settings, gateway, **worker_options):
        yield Stack(client, settings, gateway)


@contextlib.asynccontextmanager
async def payment_worker(
    client: Client, settings: Settings, gateway: Gateway, **worker_options: Any
) -> AsyncIterator[Worker]:
    """A worker for payments and their webhooks on ``settings.task_queue``; the
    webhooks may go to loopback receivers."""
    outbound = Outbound(allow_private=True)
    workflows = [
        PaymentWorkflow,
        WebhookEndpointsWorkflow,
        WebhookDispatchWorkflow,
        WebhookDeliveryWorkflow,
    ]
    try:
        async with Worker(
            client,
            task_queue=settings.task_queue,
            workflows=workflows,
            workflow_runner=workflow_runner(workflows, client.data_converter),
            activities=[
                *PaymentActivities(gateway).all(),
                *ReceiptActivities(settings).all(),
                *WebhookActivities(client, settings, outbound).all(),
            ],
            **worker_options,
        ) as worker:
            yield worker
    finally:
        await outbound.aclose()


def with_keys(client: Client, keys: Sequence[EncryptionKey]) -> Client:
    """The same server and namespace, seen through a codec holding ``keys``."""
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=EncryptionCodec(keys))
    return Client(client.service_client, namespace=client.namespace, data_converter=converter)


@contextlib.asynccontextmanager
async def mail_sink(
    directory: Path, port: int, refuse: Callable[[str], bool] | None = None
) -> AsyncIterator[MailSink]:
    """The mail sink of `make run`, in this event loop, on ``port``; it refuses
    recipients ``refuse`` says no to."""
    sink = MailSink(directory, refuse=refuse, announce=lambda line: None)
    server = await serve(sink, "127.0.0.1", port)
    try:
        yield sink
    finally:
        server.close()
        await server.wait_closed()


def event_types(events: list[Event]) -> list[str]:
    return [event.type for event in events]


async def status_of(http: httpx.AsyncClient, payment_id: str, want: str) -> str:
    """The payment's status once it is ``want``, or the last one read after a
    minute; through processes restarting under it (errors read as no status)."""
    status = ""
    for _ in range(600):  # the API and worker reconnect on their own
        try:
            response = await http.get(f"/v1/payments/{payment_id}")
            status = response.json().get("status", "") if response.status_code == 200 else ""
        except httpx.TransportError:
            status = ""
        if status == want:
            break
        await asyncio.sleep(0.1)
    return status


async def simulator_ledger(simulator_url: str, payment_id: str) -> list[dict[str, Any]]:
    """What the running simulator committed for ``payment_id`` (its ``/_ledger``)."""
    async with httpx.AsyncClient(base_url=simulator_url) as simulator:
        response = await simulator.get("/_ledger", params={"reference": payment_id})
    entries: list[dict[str, Any]] = response.json()["data"]
    return entries


async def localstripe_card(control: httpx.AsyncClient, number: str) -> str:
    """A PaymentMethod of one of localstripe's test card numbers (its 3-D
    Secure cards have no ``pm_card_…`` name there), made around the adapter."""
    made = await control.post(
        "/v1/payment_methods",
        data={
            "type": "card",
            "card[number]": number,
            "card[exp_month]": "12",
            "card[exp_year]": "2031",
            "card[cvc]": "123",
        },
    )
    assert made.status_code == 200, made.text
    method: str = made.json()["id"]
    return method


async def localstripe_intents(
    control: httpx.AsyncClient, reference: str
) -> list[dict[str, object]]:
    """Every PaymentIntent localstripe holds for one of our payment ids, read
    straight from its API (around the adapter), oldest first."""
    found: list[dict[str, object]] = []
    params: dict[str, str | int] = {"limit": 100}
    while True:
        page = (await control.get("/v1/payment_intents", params=params)).json()
        found.extend(pi for pi in page["data"] if pi["metadata"].get("payment_id") == reference)
        if not page["has_more"]:
            return found
        params["starting_after"] = page["data"][-1]["id"]


# -- Prometheus text, as a worker's runtime serves it --------------------------

_SAMPLE = re.compile(r"^(?P<name>[a-z_]+)(?:\{(?P<labels>.*)\})? (?P<value>\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


async def scrape_metrics(url: str) -> str:
    """A Prometheus endpoint's text (a worker runtime's ``/metrics``)."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(url)
    answer.raise_for_status()
    return answer.text


def metric_samples(text: str, name: str) -> dict[frozenset[tuple[str, str]], float]:
    """Each sample of ``name``, by its labels (those Temporal adds left out)."""
    found: dict[frozenset[tuple[str, str]], float] = {}
    for line in text.splitlines():
        match = _SAMPLE.match(line)
        if match is None or match["name"] != name:
            continue
        labels = {
            k: v
            for k, v in _LABEL.findall(match["labels"] or "")
            if k
            not in ("namespace", "task_queue", "service_name", "workflow_type", "activity_type")
        }
        key = frozenset(labels.items())
        found[key] = found.get(key, 0.0) + float(match["value"])
    return found


def metric_value(text: str, name: str, **labels: str) -> float:
    wanted = set(labels.items())
    return sum(v for key, v in metric_samples(text, name).items() if wanted <= key)


async def gone_from_temporal(client: Client, workflow_id: str, run_id: str | None = None) -> None:
    """Wait out a deletion (a few seconds on a dev server started with
    :data:`QUICK_DELETES`, half a minute on one without)."""
    for _ in range(1200):
        try:
            await client.get_workflow_handle(workflow_id, run_id=run_id).describe()
        except RPCError as err:
            if err.status == RPCStatusCode.NOT_FOUND:
                return
            raise
        await asyncio.sleep(0.1)
    raise AssertionError(f"{workflow_id} is still in Temporal")


async def run_closed(client: Client, payment_id: str) -> WorkflowExecutionStatus | None:
    """Wait until the payment's last run closes (a failed payment's run
    fails), and say how it closed."""
    handle = client.get_workflow_handle(payment_id)
    with contextlib.suppress(WorkflowFailureError):
        await handle.result()
    return (await handle.describe()).status


async def current_details(client: Client, payment_id: str) -> str:
    """What the Temporal UI shows as the payment's current details."""
    metadata = await client.get_workflow_handle(payment_id).query("__temporal_workflow_metadata")
    return str(metadata.current_details)


async def updates_in_history(client: Client, payment_id: str) -> tuple[list[str], int]:
    """The updates the payment's workflow accepted, by name, across its runs,
    and how many of them have not completed: those are still in flight."""
    accepted: list[str] = []
    completed = 0
    for history in await events.fetch_runs(client, payment_id):
        for event in history.events:
            if event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
                attributes = event.workflow_execution_update_accepted_event_attributes
                accepted.append(attributes.accepted_request.input.name)
            elif event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_UPDATE_COMPLETED:
                completed += 1
    return accepted, len(accepted) - completed


async def found_in_visibility(client: Client, query: str) -> bool:
    """Whether exactly one workflow matches ``query`` within a few seconds:
    visibility is eventually consistent."""
    for _ in range(50):
        if (await client.count_workflows(query)).count == 1:
            return True
        await asyncio.sleep(0.1)
    return False


@contextlib.asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve an ASGI app with uvicorn in this event loop on a free port; its URL.

    Stopped on the way out, also when the test fails.
    """
    options.setdefault("port", 0)
    config = uvicorn.Config(app, host="127.0.0.1", log_level="critical", **options)
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # surfaces why it could not start
            await asyncio.sleep(0.01)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


# -- A merchant's webhook endpoint ---------------------------------------------------


@dataclass(frozen=True)
class Received:
    """One request a :class:`Receiver` took, and what it answered."""

    headers: dict[str, str]
    body: bytes
    answered: int

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    """A merchant's webhook endpoint, as an ASGI app to serve on loopback
    (:func:`serving`): it keeps every request and answers each with what
    ``answer`` says (by the number of requests before it), 200 by default."""

    def __init__(self, answer: Any = None) -> None:
        self.received: list[Received] = []
        self.answer = answer or (lambda _: 200)
        self._arrived = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        status = int(self.answer(len(self.received)))
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        self.received.append(Received(headers, body, status))
        self._arrived.set()
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    def delivered(self) -> list[Received]:
        return [r for r in self.received if 200 <= r.answered < 300]

    async def wait_for(self, predicate: Any, within: float = 20.0) -> list[Received]:
        """Until ``predicate(received)`` holds; the requests so far."""
        deadline = time.monotonic() + within
        while not predicate(self.received):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(
                    f"timed out; received {[r.json()['type'] for r in self.received]}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), min(remaining, 0.5))
        return self.received


# -- Stripe webhooks, as Stripe sends them -------------------------------------------

# The setting's local default, which the e2e stack keeps.
STRIPE_WEBHOOK_SECRET = "whsec_local_dev_only"


def stripe_event(
    event_id: str, payment_id: str, object_id: str = "pi_123", **object_fields: Any
) -> bytes:
    """A ``payment_intent.succeeded`` event naming our payment in its metadata."""
    event = {
        "id": event_id,
        "object": "event",
        "type": "payment_intent.succeeded",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": object_id,
                "object": "payment_intent",
                "metadata": {"payment_id": payment_id},
                **object_fields,
            }
        },
    }
    return json.dumps(event).encode()


def stripe_signature(
    body: bytes, *, at: int | None = None, secret: str = STRIPE_WEBHOOK_SECRET
) -> dict[str, str]:
    """The ``Stripe-Signature`` header for ``body``, signed at ``at`` (default: now)."""
    timestamp = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return {"Stripe-Signature": f"t={timestamp},v1={digest.hexdigest()}"}


# What Temporal's core writes in its markers for itself, never through a codec:
# a patch's id (``workflow.patched``), a local activity's sequence number,
# attempt and times. A local activity's result and failure are ours, and sealed.
CORE_BOOKKEEPING = {"core_patch": "patch-data", "core_local_activity": "data"}


def without_core_bookkeeping(node: Any) -> Any:
    """A history in Temporal's JSON (``temporal workflow show -o json``, an
    archived record) without what core writes in markers for itself."""
    if isinstance(node, list):
        return [without_core_bookkeeping(child) for child in node]
    if not isinstance(node, dict):
        return node
    kept = {key: without_core_bookkeeping(child) for key, child in node.items()}
    skipped = CORE_BOOKKEEPING.get(node.get("markerName", ""))
    if skipped and isinstance(kept.get("details"), dict):
        kept["details"] = {k: v for k, v in kept["details"].items() if k != skipped}
    return kept


async def authorize_in(
    ledger: SimulatorLedger,
    key: str = "pay_1:authorize",
    *,
    amount: int = 1000,
    payment_method: str = "pm_card_visa",
    reference: str = "pay_1",
) -> GatewayOperation:
    """An authorization of 10.00 USD straight on a simulator ledger."""
    return await ledger.authorize(
        reference=reference,
        amount=amount,
        currency="usd",
        payment_method=payment_method,
        idempotency_key=key,
    )


async def refused_with(code: str, call: Awaitable[object]) -> None:
    """``call`` is refused as an invalid request with ``code``."""
    with pytest.raises(InvalidGatewayRequest) as refused:
        await call
    assert refused.value.code == code


def read_if_there(path: Path) -> bytes:
    """A file of a running server's data directory, or nothing: SQLite's rollback
    journal comes and goes with each write."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return b""


CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# Debian's Chromium, never a downloaded one; no calls home on this closed network.
BROWSER_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)


@contextlib.asynccontextmanager
async def chromium(*extra_flags: str) -> AsyncIterator[Browser]:
    """Headless Chromium, closed afterwards whatever happened."""
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True, args=[*BROWSER_FLAGS, *extra_flags]
        )
        try:
            yield launched
        finally:
            await launched.close()


def requests_sent(gateway: Any) -> list[httpx.Request]:
    """Every request the adapter sends from now on, seen by an event hook on
    the httpx client its SDK client was built with."""
    sent: list[httpx.Request] = []

    async def record(request: httpx.Request) -> None:
        sent.append(request)

    client = gateway._http._client_async
    hooks = client.event_hooks
    client.event_hooks = {**hooks, "request": [*hooks.get("request", []), record]}
    return sent


def request_shape(request: httpx.Request) -> str:
    """``POST /v1/payment_intents/{id}/confirm``: what a request does, ids aside."""
    return request.method + " " + re.sub(r"/(pi|re|ch)_\w+", "/{id}", request.url.path)


# A skip of the time-skipping server's clock, as an RPC. Core's default bound
# for an RPC is 30 s, which a skip of a day with retries in flight outlasted
# once on a busy machine (RPCError: Timeout expired).
SKIP_TIMEOUT = timedelta(seconds=55)


async def skip_time(
    env: WorkflowEnvironment, duration: timedelta, bound: timedelta = SKIP_TIMEOUT
) -> None:
    """``duration`` on the server's clock, as ``env.sleep`` skips it, the RPC within ``bound``."""
    request = SleepRequest()
    request.duration.FromTimedelta(duration)
    await env.client.test_service.unlock_time_skipping_with_sleep(request, timeout=bound)
