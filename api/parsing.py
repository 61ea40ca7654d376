"""What a route reads from a request: its JSON body, its Idempotency-Key.

A body is refused, changing nothing, when it is missing (where required), not
JSON, nested too deeply or not an object; then the model's own rules apply,
the first of which is the card-number scan (``payments.models.RefusesCardNumbers``),
so a refused body's digits are never logged, echoed or started with.
"""

from __future__ import annotations

import json
from typing import Annotated, TypeVar

from fastapi import Header, Request
from pydantic import BaseModel, ValidationError

from api.errors import InvalidRequest, from_validation_error
from api.limits import MAX_JSON_DEPTH, json_depth
from payments.models import NEW_REQUEST

M = TypeVar("M", bound=BaseModel)

IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=255, pattern=r"^[\x21-\x7e]+$"),
]


def _too_deep() -> InvalidRequest:
    return InvalidRequest(400, "json_too_deep", "the request body nests too deeply")


async def parse_body(request: Request, model: type[M], *, required: bool = True) -> M:
    """Parse a JSON body into ``model``: its shape first, then the model's rules."""
    raw = await request.body()
    if not raw.strip():
        if required:
            raise InvalidRequest(400, "body_missing", "a JSON body is required")
        raw = b"{}"
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidRequest(400, "invalid_json", "the request body is not valid JSON") from None
    except RecursionError:
        raise _too_deep() from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise _too_deep()
    if not isinstance(data, dict):
        raise InvalidRequest(400, "invalid_json", "the request body must be a JSON object")
    try:
        return model.model_validate(data, context=NEW_REQUEST)
    except ValidationError as err:
        raise from_validation_error(err) from None
