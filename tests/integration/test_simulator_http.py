"""The simulator as a real HTTP service (uvicorn on a free port, in-process),
driven through ``SimulatorGateway``: outcomes, error mapping, faults, and the
test controls of CONTRACT §8."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from support import serving

from gateway.http_simulator import SimulatorGateway
from gateway.simulator.app import create_app
from gateway.simulator.core import SimulatorLedger
from payments.gateway import (
    CardDeclined,
    GatewayOperation,
    InvalidGatewayRequest,
    NotFound,
    TransientGatewayError,
)


@dataclass
class Simulator:
    ledger: SimulatorLedger
    url: str
    control: httpx.AsyncClient  # for the test endpoints and raw requests
    gateway: SimulatorGateway


@pytest.fixture
async def simulator() -> AsyncIterator[Simulator]:
    ledger = SimulatorLedger()
    app = create_app(ledger)
    async with (
        serving(app, access_log=False, lifespan="off", ws="none") as url,
        httpx.AsyncClient(base_url=url, timeout=5) as control,
    ):
        gateway = SimulatorGateway(url, timeout=2)
        try:
            yield Simulator(ledger, url, control, gateway)
        finally:
            await gateway.aclose()


async def _authorize(
    gateway: SimulatorGateway,
    key: str = "pay_1:authorize",
    *,
    payment_method: str = "pm_card_visa",
    amount: int = 1999,
) -> GatewayOperation:
    return await gateway.authorize(
        reference="pay_1",
        amount=amount,
        currency="usd",
        payment_method=payment_method,
        idempotency_key=key,
    )


async def _ledger(sim: Simulator, reference: str = "pay_1") -> list[dict[str, object]]:
    response = await sim.control.get("/_ledger", params={"reference": reference})
    assert response.status_code == 200
    data: list[dict[str, object]] = response.json()["data"]
    return data


async def test_healthz(simulator: Simulator) -> None:
    response = await simulator.control.get("/healthz")
    assert (response.status_code, response.json()) == (200, {"status": "ok"})


async def test_authorize_capture_refund_and_ledger(simulator: Simulator) -> None:
    gateway = simulator.gateway
    auth = await _authorize(gateway)
    assert await _authorize(gateway) == auth
    capture = await gateway.capture(
        authorization_id=auth.id, amount=1500, idempotency_key="pay_1:capture"
    )
    refund = await gateway.refund(
        authorization_id=auth.id, amount=500, idempotency_key="pay_1:refund:1"
    )
    assert (capture.kind, capture.amount, refund.kind, refund.amount) == (
        "capture",
        1500,
        "refund",
        500,
    )
    assert await gateway.find_by_reference("pay_1") == [auth, capture, refund]
    assert await gateway.find_by_reference("pay_other") == []

    entries = await _ledger(simulator)
    assert [(e["kind"], e["amount"], e["idempotency_key"], e["id"]) for e in entries] == [
        ("authorization", 1999, "pay_1:authorize", auth.id),
        ("capture", 1500, "pay_1:capture", capture.id),
        ("refund", 500, "pay_1:refund:1", refund.id),
    ]


async def test_void(simulator: Simulator) -> None:
    gateway = simulator.gateway
    auth = await _authorize(gateway)
    void = await gateway.void(authorization_id=auth.id, idempotency_key="pay_1:void")
    assert (void.kind, void.authorization_id) == ("void", auth.id)
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.void(authorization_id=auth.id, idempotency_key="pay_1:void:2")
    assert refused.value.code == "already_voided"
    assert [e["kind"] for e in await _ledger(simulator)] == ["authorization", "void"]


@pytest.mark.parametrize(
    ("payment_method", "code", "decline_code"),
    [
        ("pm_card_chargeDeclined", "card_declined", "generic_decline"),
        ("pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"),
        ("pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"),
    ],
)
async def test_declines_map_to_card_declined(
    simulator: Simulator, payment_method: str, code: str, decline_code: str
) -> None:
    with pytest.raises(CardDeclined) as declined:
        await _authorize(simulator.gateway, payment_method=payment_method)
    assert (declined.value.code, declined.value.decline_code) == (code, decline_code)
    assert await _ledger(simulator) == []

    raw = await simulator.control.post(
        "/v1/authorizations",
        headers={"Idempotency-Key": "pay_1:authorize"},
        json={"reference": "pay_1", "amount": 1999, "currency": "usd", "payment_method": "x"},
    )
    assert raw.status_code == 409  # the key was spent on the decline
    raw = await simulator.control.post(
        "/v1/authorizations",
        headers={"Idempotency-Key": "k2"},
        json={
            "reference": "pay_1",
            "amount": 1999,
            "currency": "usd",
            "payment_method": payment_method,
        },
    )
    assert raw.status_code == 402
    assert raw.json()["error"] == {
        "type": "card_error",
        "code": code,
        "decline_code": decline_code,
        "message": declined.value.message,
    }


async def test_refusals_map_to_permanent_errors(simulator: Simulator) -> None:
    gateway = simulator.gateway
    with pytest.raises(NotFound):
        await gateway.capture(authorization_id="auth_nope", amount=1, idempotency_key="c")
    auth = await _authorize(gateway, payment_method="pm_card_captureFails")
    with pytest.raises(InvalidGatewayRequest) as refused:
        await gateway.capture(authorization_id=auth.id, amount=1999, idempotency_key="c1")
    assert refused.value.code == "capture_refused"
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(gateway, amount=1)
    assert refused.value.code == "idempotency_key_reused"
    with pytest.raises(InvalidGatewayRequest) as refused:
        await _authorize(gateway, "k-zero", amount=0)
    assert refused.value.code == "amount_too_small"
    assert [e["kind"] for e in await _ledger(simulator)] == ["authorization"]


async def test_bad_requests_over_http(simulator: Simulator) -> None:
    body = {"reference": "pay_1", "amount": 1999, "currency": "usd", "payment_method": "pm_x"}
    missing_key = await simulator.control.post("/v1/authorizations", json=body)
    assert missing_key.status_code == 400
    assert missing_key.json()["error"]["code"] == "idempotency_key_missing"
    not_an_int = await simulator.control.post(
        "/v1/authorizations", headers={"Idempotency-Key": "k"}, json={**body, "amount": "12"}
    )
    assert not_an_int.status_code == 422
    assert not_an_int.json()["error"]["type"] == "invalid_request_error"
    assert await _ledger(simulator) == []


async def test_dropped_reply_commits_and_the_retry_replays(simulator: Simulator) -> None:
    faults = await simulator.control.put("/_faults", json={"drop_reply_rate": 1.0})
    assert faults.status_code == 200
    with pytest.raises(TransientGatewayError, match="RemoteProtocolError"):
        await _authorize(simulator.gateway)
    committed = await _ledger(simulator)
    assert len(committed) == 1

    assert (await simulator.control.delete("/_faults")).status_code == 200
    auth = await _authorize(simulator.gateway)
    assert auth.id == committed[0]["id"]
    assert await _ledger(simulator) == committed


async def test_error_rate_commits_nothing(simulator: Simulator) -> None:
    await simulator.control.put("/_faults", json={"error_rate": 1.0})
    with pytest.raises(TransientGatewayError, match="503"):
        await _authorize(simulator.gateway)
    assert await _ledger(simulator) == []
    await simulator.control.delete("/_faults")
    await _authorize(simulator.gateway)
    assert len(await _ledger(simulator)) == 1


async def test_timeout_leaves_a_commit_to_find(simulator: Simulator) -> None:
    await simulator.control.put("/_faults", json={"latency_ms": 400})
    impatient = SimulatorGateway(simulator.url, timeout=0.1)
    try:
        with pytest.raises(TransientGatewayError, match="no answer within"):
            await _authorize(impatient)
        # The lookup is not delayed by faults: it is how the outcome is recovered.
        found = await impatient.find_by_reference("pay_1")
    finally:
        await impatient.aclose()
    assert [op.kind for op in found] == ["authorization"]


async def test_unreachable_simulator_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        gateway = SimulatorGateway(f"http://127.0.0.1:{port}", timeout=2)
        try:
            with pytest.raises(TransientGatewayError, match="ConnectError"):
                await _authorize(gateway)
        finally:
            await gateway.aclose()


async def test_faults_endpoint(simulator: Simulator) -> None:
    control = simulator.control
    cleared = {"error_rate": 0.0, "drop_reply_rate": 0.0, "latency_ms": 0}
    assert (await control.get("/_faults")).json() == cleared
    wanted = {"error_rate": 0.25, "drop_reply_rate": 0.5, "latency_ms": 20}
    assert (await control.put("/_faults", json=wanted)).json() == wanted
    assert (await control.get("/_faults")).json() == wanted
    for bad in ({"error_rate": 2}, {"drop_reply_rate": -1}, {"latency_ms": -5}, {"nope": 1}):
        response = await control.put("/_faults", json=bad)
        assert response.status_code == 422, bad
    assert (await control.get("/_faults")).json() == wanted
    # What `curl -X PUT -d '{...}'` sends: a form content type, a JSON body.
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    as_curl = await control.put("/_faults", content=b'{"latency_ms": 7}', headers=form)
    assert as_curl.status_code == 200 and simulator.ledger.faults.latency_ms == 7
    assert (await control.put("/_faults", content=b"not json")).status_code == 422
    assert (await control.delete("/_faults")).json() == cleared
    assert simulator.ledger.faults.error_rate == 0.0


async def test_operations_by_time_window(simulator: Simulator) -> None:
    auth = await _authorize(simulator.gateway)
    ops = await simulator.control.get("/v1/operations", params={"since": auth.created_at})
    assert [op["id"] for op in ops.json()["data"]] == [auth.id]
    ops = await simulator.control.get("/v1/operations", params={"until": auth.created_at})
    assert ops.json()["data"] == []
    naive = await simulator.control.get("/v1/operations", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
