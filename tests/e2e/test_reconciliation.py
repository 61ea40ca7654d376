"""Reconciliation against the running stack: clean payments reconcile to no
mismatch; money moved behind our back at the gateway is reported, and the
run is findable in Temporal by its mismatch count."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from support import found_in_visibility, simulator_ledger
from temporalio.client import Client

from devstack import Stack
from payments.names import RECONCILIATION_SCHEDULE_ID

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
OPERATOR = {"Authorization": "Bearer sk_test_operator"}


def window(start: datetime) -> dict[str, str]:
    return {
        "start": start.isoformat(),
        "end": (datetime.now(UTC) + timedelta(seconds=1)).isoformat(),
    }


async def run(anonymous: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await anonymous.post("/v1/reconciliation/runs", json=body, headers=OPERATOR)
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


async def test_clean_payments_reconcile(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    ids = []
    for body in (
        VISA,
        {**VISA, "payment_method": "pm_card_chargeDeclined"},
        {**VISA, "capture_method": "manual"},
    ):
        ids.append(
            (await http.post("/v1/payments", json=body, headers={"Prefer": "wait=10"})).json()["id"]
        )
    await http.post(
        f"/v1/payments/{ids[0]}/refunds", json={"amount": 100}, headers={"Prefer": "wait=10"}
    )
    await http.post(f"/v1/payments/{ids[2]}/cancel", headers={"Prefer": "wait=10"})
    report = await run(anonymous, window(start))
    assert report["checked"] >= 3
    assert report["mismatches"] == []
    again = await anonymous.get(f"/v1/reconciliation/runs/{report['id']}", headers=OPERATOR)
    assert again.status_code == 200 and again.json() == report


async def test_money_moved_behind_our_back_is_reported(
    stack: Stack, http: httpx.AsyncClient, anonymous: httpx.AsyncClient, temporal: Client
) -> None:
    start = datetime.now(UTC) - timedelta(seconds=1)
    paid = (await http.post("/v1/payments", json=VISA, headers={"Prefer": "wait=10"})).json()
    authorization = (await simulator_ledger(stack.simulator_url, paid["id"]))[0]["id"]
    ghost = f"pay_ghost{uuid.uuid4().hex[:12]}"
    async with httpx.AsyncClient(base_url=stack.simulator_url) as gateway:
        # A refund nobody asked us for, and a charge for a payment we never made.
        planted = await gateway.post(
            f"/v1/authorizations/{authorization}/refunds",
            json={"amount": 250},
            headers={"Idempotency-Key": "planted-1"},
        )
        assert planted.status_code == 200
        stray = await gateway.post(
            "/v1/authorizations",
            headers={"Idempotency-Key": "planted-2"},
            json={
                "reference": ghost,
                "amount": 700,
                "currency": "usd",
                "payment_method": "pm_card_visa",
            },
        )
        await gateway.post(
            f"/v1/authorizations/{stray.json()['id']}/capture",
            json={"amount": 700},
            headers={"Idempotency-Key": "planted-3"},
        )
    report = await run(anonymous, window(start))
    found = {(m["payment_id"], m["kind"]): m for m in report["mismatches"]}
    refund = found[(paid["id"], "refund_amount_mismatch")]
    assert (refund["gateway"], refund["payment"], refund["merchant_id"]) == (250, 0, "demo")
    assert found[(ghost, "unknown_payment")]["gateway"] == 700
    assert len(report["mismatches"]) == 2

    query = f'WorkflowId = "{report["id"]}" AND ReconciliationMismatches = 2'
    assert await found_in_visibility(temporal, query)


async def test_schedule_exists_and_runs_need_an_operator_key(
    temporal: Client, http: httpx.AsyncClient, anonymous: httpx.AsyncClient
) -> None:
    schedule = await temporal.get_schedule_handle(RECONCILIATION_SCHEDULE_ID).describe()
    intervals = schedule.schedule.spec.intervals
    assert [i.every for i in intervals] == [timedelta(hours=1)]
    refused = await http.post("/v1/reconciliation/runs", json={})  # a merchant key
    assert refused.status_code == 401
    assert (
        await anonymous.get("/v1/reconciliation/runs/nope", headers=OPERATOR)
    ).status_code == 404
