"""Reconciliation runs over HTTP, for operators (an operator key, not a
merchant's): trigger one now and read its report, or read a scheduled one."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from temporalio.client import WorkflowFailureError
from temporalio.service import RPCError, RPCStatusCode

from api.deps import ClientDep, OperatorDep, SettingsDep
from api.errors import ApiError, not_found
from api.openapi import (
    RETRY_AFTER,
    V1_ERRORS,
    ReconciliationCompleted,
    ReconciliationRunning,
    errors,
)
from api.parsing import parse_body
from payments import names
from payments.reconciliation import ReconciliationReport, ReconciliationRequest

router = APIRouter(dependencies=[OperatorDep], tags=["reconciliation"])
# An on-demand run answers within this; past it the caller reads the run later.
RUN_WAIT_SECONDS = 50
_RUN_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": ReconciliationCompleted, "description": "the run's report"},
    202: {
        "model": ReconciliationRunning,
        "description": "the run is still going; read it later",
        "headers": {"Retry-After": RETRY_AFTER},
    },
    # 500: the run itself failed.
    **errors(*V1_ERRORS, 500),
}


def _running(run_id: str) -> JSONResponse:
    body = {"id": run_id, "object": "reconciliation_run", "status": "running"}
    return JSONResponse(body, status_code=202, headers={"Retry-After": "5"})


def _report(report: ReconciliationReport) -> dict[str, Any]:
    return {"object": "reconciliation_run", "status": "completed", **report.model_dump(mode="json")}


@router.post(
    "/v1/reconciliation/runs",
    responses=_RUN_RESPONSES,
    response_model=None,
    openapi_extra={
        "requestBody": {
            "content": {"application/json": {"schema": ReconciliationRequest.model_json_schema()}}
        }
    },
)
async def run_now(request: Request, settings: SettingsDep, client: ClientDep) -> Any:
    body = await parse_body(request, ReconciliationRequest, required=False)
    run_id = f"reconciliation-{uuid.uuid4().hex[:16]}"
    handle = await client.start_workflow(
        names.RECONCILIATION_WORKFLOW_TYPE,
        body,
        id=run_id,
        task_queue=settings.task_queue,
        result_type=ReconciliationReport,
        static_summary="reconciliation run (on demand)",
    )
    try:
        async with asyncio.timeout(RUN_WAIT_SECONDS):
            return _report(await handle.result())
    except TimeoutError:
        return _running(run_id)
    except WorkflowFailureError:
        raise ApiError("reconciliation_failed", "the reconciliation run failed") from None


@router.get(
    "/v1/reconciliation/runs/{run_id}",
    responses={**_RUN_RESPONSES, **errors(404)},
    response_model=None,
)
async def read_run(run_id: str, client: ClientDep) -> Any:
    handle = client.get_workflow_handle(run_id, result_type=ReconciliationReport)
    try:
        description = await handle.describe()
    except RPCError as err:
        if err.status == RPCStatusCode.NOT_FOUND:
            raise not_found("reconciliation run") from None
        raise
    if description.workflow_type != names.RECONCILIATION_WORKFLOW_TYPE:
        raise not_found("reconciliation run")
    if description.close_time is None:
        return _running(run_id)
    try:
        return _report(await handle.result())
    except WorkflowFailureError:
        raise ApiError("reconciliation_failed", "the reconciliation run failed") from None
