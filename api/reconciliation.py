"""Reconciliation runs over HTTP, for operators (an operator key, not a
merchant's): trigger one now and read its report, or read a scheduled one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from api.deps import OperatorDep, ReconciliationDep
from api.openapi import (
    RETRY_AFTER,
    V1_ERRORS,
    ReconciliationCompleted,
    ReconciliationRunning,
    errors,
)
from api.parsing import parse_body
from payments.reconciliation import ReconciliationRequest
from payments.reconciliation_service import Run

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


def _rendered(run: Run) -> Any:
    if run.report is None:
        body = {"id": run.id, "object": "reconciliation_run", "status": "running"}
        return JSONResponse(body, status_code=202, headers={"Retry-After": "5"})
    return {
        "object": "reconciliation_run",
        "status": "completed",
        **run.report.model_dump(mode="json"),
    }


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
async def run_now(request: Request, runs: ReconciliationDep) -> Any:
    body = await parse_body(request, ReconciliationRequest, required=False)
    return _rendered(await runs.run(body, RUN_WAIT_SECONDS))


@router.get(
    "/v1/reconciliation/runs/{run_id}",
    responses={**_RUN_RESPONSES, **errors(404)},
    response_model=None,
)
async def read_run(run_id: str, runs: ReconciliationDep) -> Any:
    return _rendered(await runs.read(run_id))
