"""The routes over a fake service: a handler parses, calls one use case and
renders, so its HTTP side is testable without Temporal. The fake records what
the routes asked of it and answers as the real service would."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from api.app import create_app
from api.deps import get_reconciliation, get_service
from payments.models import (
    CapturePayment,
    CreatePayment,
    PaymentInput,
    PaymentState,
)
from payments.reconciliation import ReconciliationReport, ReconciliationRequest, Window
from payments.reconciliation_service import NO_SUCH_RUN, Run, RunFailed
from payments.refusals import NO_SUCH_PAYMENT, Refusal, Refused
from payments.service import Sent, Started
from payments.settings import Settings
from payments.status import PaymentStatus, capture_settled

SETTINGS = Settings(api_keys={"sk_test_fake": "merchant_fake"})
KEY = {"Authorization": "Bearer sk_test_fake"}
OPERATOR = {"Authorization": "Bearer sk_test_operator"}
CARD = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}


@dataclass
class _Client:
    namespace: str = "default"


@dataclass
class FakeService:
    """Holds payments in a dict; records every call as (use case, arguments)."""

    settings: Settings = field(default_factory=lambda: SETTINGS)
    client: _Client = field(default_factory=_Client)
    payments: dict[str, PaymentState] = field(default_factory=dict)
    calls: list[tuple[str, Any]] = field(default_factory=list)

    async def start(
        self, merchant_id: str, request: CreatePayment, idempotency_key: str | None = None
    ) -> Started:
        self.calls.append(("start", (merchant_id, request, idempotency_key)))
        state = PaymentInput(
            payment_id=f"pay_{len(self.payments):024d}",
            merchant_id=merchant_id,
            request=request,
            request_fingerprint="fp",
            created_at=datetime(2026, 12, 2, tzinfo=UTC),
            authorization_window_seconds=1,
            refund_window_seconds=1,
        ).first_state()
        self.payments[state.id] = state
        return Started(state, True)

    async def get(self, payment_id: str, merchant_id: str | None) -> PaymentState:
        self.calls.append(("get", (payment_id, merchant_id)))
        state = self.payments.get(payment_id)
        if state is None or state.merchant_id != merchant_id:
            raise Refused(NO_SUCH_PAYMENT)
        return state

    async def capture(
        self,
        payment_id: str,
        merchant_id: str,
        request: CapturePayment,
        idempotency_key: str | None = None,
    ) -> Sent:
        self.calls.append(("capture", (payment_id, merchant_id, request, idempotency_key)))
        state = await self.get(payment_id, merchant_id)
        if state.status is not PaymentStatus.REQUIRES_CAPTURE:
            raise Refused(Refusal("payment_not_capturable", "not now"))
        return Sent(state, None, lambda payment: capture_settled(payment.status))


@dataclass
class FakeRuns:
    """Reconciliation runs by id: a report, None while running, or RunFailed."""

    runs: dict[str, ReconciliationReport | RunFailed | None] = field(default_factory=dict)
    started: list[ReconciliationRequest | None] = field(default_factory=list)

    async def run(self, request: ReconciliationRequest | None, wait_seconds: float) -> Run:
        self.started.append(request)
        return await self.read("reconciliation-new")

    async def read(self, run_id: str) -> Run:
        if run_id not in self.runs:
            raise Refused(NO_SUCH_RUN)
        outcome = self.runs[run_id]
        if isinstance(outcome, RunFailed):
            raise outcome
        return Run(run_id, outcome)


@pytest.fixture
def service() -> FakeService:
    return FakeService()


@pytest.fixture
def runs() -> FakeRuns:
    return FakeRuns()


@pytest.fixture
async def http(service: FakeService, runs: FakeRuns) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(SETTINGS)

    async def fake() -> FakeService:
        return service

    async def fake_runs() -> FakeRuns:
        return runs

    app.dependency_overrides[get_service] = fake
    app.dependency_overrides[get_reconciliation] = fake_runs
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_create_answers_202_with_the_payment_the_service_started(
    http: httpx.AsyncClient, service: FakeService
) -> None:
    response = await http.post(
        "/v1/payments", json=CARD, headers={**KEY, "Idempotency-Key": "order-1"}
    )
    assert response.status_code == 202
    body = response.json()
    assert (body["object"], body["status"], body["amount"], body["currency"]) == (
        "payment",
        "processing",
        1999,
        "usd",
    )
    assert response.headers["Location"] == f"/v1/payments/{body['id']}"
    assert response.headers["Retry-After"] == "1"
    assert body["client_secret"].startswith(f"{body['id']}_secret_")
    assert "merchant_id" not in body and "request_fingerprints" not in body
    [(use_case, (merchant, request, key))] = service.calls
    assert (use_case, merchant, request.amount, key) == ("start", "merchant_fake", 1999, "order-1")


async def test_get_renders_the_service_s_payment_with_an_etag(
    http: httpx.AsyncClient, service: FakeService
) -> None:
    created = (await http.post("/v1/payments", json=CARD, headers=KEY)).json()
    response = await http.get(f"/v1/payments/{created['id']}", headers=KEY)
    assert response.status_code == 200
    assert response.json()["id"] == created["id"]
    again = await http.get(
        f"/v1/payments/{created['id']}",
        headers={**KEY, "If-None-Match": response.headers["ETag"]},
    )
    assert again.status_code == 304


async def test_a_refusal_of_the_service_is_the_contract_s_error(
    http: httpx.AsyncClient, service: FakeService
) -> None:
    missing = await http.get("/v1/payments/pay_nobody", headers=KEY)
    assert missing.status_code == 404
    assert missing.json()["error"] == {
        "type": "invalid_request_error",
        "code": "resource_missing",
        "message": "no such payment",
        "param": "id",
    }
    created = (await http.post("/v1/payments", json=CARD, headers=KEY)).json()
    refused = await http.post(f"/v1/payments/{created['id']}/capture", headers=KEY)
    assert refused.status_code == 409
    assert refused.json()["error"]["code"] == "payment_not_capturable"


async def test_a_bad_body_reaches_no_use_case(
    http: httpx.AsyncClient, service: FakeService
) -> None:
    card = await http.post(
        "/v1/payments",
        json={**CARD, "metadata": {"note": "4242 4242 4242 4242"}},
        headers=KEY,
    )
    assert card.status_code == 422
    assert card.json()["error"]["code"] == "card_number_refused"
    assert "4242" not in card.text
    unknown = await http.post("/v1/payments", json={**CARD, "colour": "red"}, headers=KEY)
    assert unknown.status_code == 422
    assert unknown.json()["error"]["code"] == "parameter_unknown"
    assert service.calls == []


async def test_reconciliation_runs_answer_by_their_outcome(
    http: httpx.AsyncClient, runs: FakeRuns
) -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    runs.runs["reconciliation-done"] = ReconciliationReport(
        id="reconciliation-done", window=Window(start=now, end=now), checked=3
    )
    runs.runs["reconciliation-failed"] = RunFailed("reconciliation-failed")
    runs.runs["reconciliation-new"] = None
    done = await http.get("/v1/reconciliation/runs/reconciliation-done", headers=OPERATOR)
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["checked"]) == ("completed", 3)
    running = await http.post("/v1/reconciliation/runs", json={}, headers=OPERATOR)
    assert running.status_code == 202 and running.headers["Retry-After"] == "5"
    assert running.json() == {
        "id": "reconciliation-new",
        "object": "reconciliation_run",
        "status": "running",
    }
    failed = await http.get("/v1/reconciliation/runs/reconciliation-failed", headers=OPERATOR)
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "reconciliation_failed"
    missing = await http.get("/v1/reconciliation/runs/nobody", headers=OPERATOR)
    assert missing.status_code == 404
    assert missing.json()["error"]["message"] == "no such reconciliation run"
    merchant = await http.get("/v1/reconciliation/runs/reconciliation-done", headers=KEY)
    assert merchant.status_code == 401
    assert len(runs.started) == 1


def _sample(text: str, name: str, **labels: str) -> float | None:
    """The value of the one sample of ``name`` with exactly these labels."""
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith(f"{name}{{{wanted}}} ") or (not labels and line.startswith(f"{name} ")):
            return float(line.rsplit(" ", 1)[1])
    return None


@pytest.fixture
async def dev_http(service: FakeService) -> AsyncIterator[httpx.AsyncClient]:
    """The app as `make run` has it (development): metrics on its own port."""
    app = create_app(SETTINGS.model_copy(update={"env": "development"}))

    async def fake() -> FakeService:
        return service

    app.dependency_overrides[get_service] = fake
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


async def test_metrics_count_requests_by_route_template_method_and_status(
    dev_http: httpx.AsyncClient,
) -> None:
    http = dev_http
    assert (await http.post("/v1/payments", json=CARD, headers=KEY)).status_code == 202
    assert (await http.get("/v1/payments/pay_secretlooking123")).status_code == 401
    assert (await http.get("/no/such/path/pay_other")).status_code == 404
    await http.request("BREW", "/v1/payments")
    await http.post("/codec/encode", json={"payloads": []})
    scraped = await http.get("/metrics")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain")
    text = scraped.text
    requests = "payments_http_requests_total"
    assert _sample(text, requests, method="POST", route="/v1/payments", status="202") == 1
    assert (
        _sample(text, requests, method="GET", route="/v1/payments/{payment_id}", status="401") == 1
    )
    assert _sample(text, requests, method="GET", route="unmatched", status="404") == 1
    assert (
        _sample(
            text,
            "payments_http_request_duration_seconds_count",
            method="POST",
            route="/v1/payments",
        )
        == 1
    )
    assert _sample(text, "payments_streams_open") == 0
    # A method a client invents is one series, whatever it is.
    assert 'method="BREW"' not in text
    assert (
        _sample(
            text,
            "payments_http_request_duration_seconds_count",
            method="other",
            route="/v1/payments",
        )
        == 1
    )
    # A mounted app's route under its mount.
    assert 'route="/codec/encode"' in text
    # Label values are templates, never what a caller put in the path.
    assert "pay_secretlooking123" not in text and "pay_other" not in text


@pytest.mark.parametrize(
    "settings",
    [
        SETTINGS.model_copy(update={"env": "production"}),
        SETTINGS.model_copy(update={"env": "development", "api_metrics_address": ":9465"}),
    ],
    ids=["production", "an-address-of-their-own"],
)
async def test_metrics_stay_off_the_public_port(settings: Settings) -> None:
    transport = httpx.ASGITransport(app=create_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        assert (await client.get("/metrics")).status_code == 404
