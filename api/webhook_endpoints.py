"""A merchant's webhook endpoints over HTTP (CONTRACT §12): register, read,
change, remove, rotate the secret, list the deliveries, deliver again.

Each handler parses, calls one use case of ``payments.webhook_service`` and
renders the endpoint (or delivery) object. The secret is in an answer twice
only: when the endpoint is made and when its secret is rotated.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.deps import MerchantDep, WebhooksDep
from api.openapi import V1_ERRORS, body_schema, errors
from api.parsing import parse_body
from payments.webhooks import CreateEndpoint, EndpointWithSecret, UpdateEndpoint

router = APIRouter(tags=["webhook endpoints"])
BASE = "/v1/webhook_endpoints"
Limit = Annotated[int, Query(ge=1, le=100)]
After = Annotated[str | None, Query(max_length=100)]


def _with_secret(made: EndpointWithSecret) -> dict[str, Any]:
    return {**made.endpoint.view(), "secret": made.secret}


@router.post(
    BASE,
    status_code=201,
    openapi_extra=body_schema(CreateEndpoint),
    responses=errors(*V1_ERRORS, 409),
)
async def create_endpoint(
    request: Request, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> JSONResponse:
    body = await parse_body(request, CreateEndpoint)
    made = await webhooks.create(merchant_id, body)
    return JSONResponse(
        _with_secret(made), status_code=201, headers={"Location": f"{BASE}/{made.endpoint.id}"}
    )


@router.get(BASE, responses=errors(*V1_ERRORS, 404))
async def list_endpoints(
    webhooks: WebhooksDep,
    merchant_id: MerchantDep,
    limit: Limit = 10,
    starting_after: After = None,
) -> dict[str, Any]:
    page, more = await webhooks.list_endpoints(
        merchant_id, limit=limit, starting_after=starting_after
    )
    return {"object": "list", "data": [e.view() for e in page], "has_more": more}


@router.get(BASE + "/{endpoint_id}", responses=errors(*V1_ERRORS, 404))
async def get_endpoint(
    endpoint_id: str, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> dict[str, Any]:
    return (await webhooks.get(merchant_id, endpoint_id)).view()


@router.post(
    BASE + "/{endpoint_id}",
    openapi_extra=body_schema(UpdateEndpoint),
    responses=errors(*V1_ERRORS, 404),
)
async def update_endpoint(
    endpoint_id: str, request: Request, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> dict[str, Any]:
    body = await parse_body(request, UpdateEndpoint)
    return (await webhooks.update(merchant_id, endpoint_id, body)).view()


@router.delete(BASE + "/{endpoint_id}", responses=errors(*V1_ERRORS, 404))
async def delete_endpoint(
    endpoint_id: str, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> dict[str, Any]:
    removed = await webhooks.delete(merchant_id, endpoint_id)
    return {**removed.view(), "deleted": True}


@router.post(BASE + "/{endpoint_id}/rotate_secret", responses=errors(*V1_ERRORS, 404))
async def rotate_secret(
    endpoint_id: str, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> dict[str, Any]:
    return _with_secret(await webhooks.rotate(merchant_id, endpoint_id))


@router.get(BASE + "/{endpoint_id}/deliveries", responses=errors(*V1_ERRORS, 404))
async def list_deliveries(
    endpoint_id: str,
    webhooks: WebhooksDep,
    merchant_id: MerchantDep,
    limit: Limit = 10,
    starting_after: After = None,
) -> dict[str, Any]:
    page, more = await webhooks.deliveries(
        merchant_id, endpoint_id, limit=limit, starting_after=starting_after
    )
    return {"object": "list", "data": [d.view() for d in page], "has_more": more}


@router.post(
    BASE + "/{endpoint_id}/deliveries/{event_id}/retry",
    status_code=202,
    responses=errors(*V1_ERRORS, 404),
)
async def retry_delivery(
    endpoint_id: str, event_id: str, webhooks: WebhooksDep, merchant_id: MerchantDep
) -> JSONResponse:
    accepted = await webhooks.redeliver(merchant_id, endpoint_id, event_id)
    return JSONResponse(accepted.view(), status_code=202)
