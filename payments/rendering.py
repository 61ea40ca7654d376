"""The payment object of CONTRACT §4, as the API answers it and as a webhook
delivers it (``data.object``): one rendering for both."""

from __future__ import annotations

from typing import Any

from payments.ids import client_secret
from payments.models import INTERNAL_FIELDS, MERCHANT_ONLY_FIELDS, PaymentState
from payments.settings import Settings


def render(
    state: PaymentState, settings: Settings, namespace: str, *, for_merchant: bool = True
) -> dict[str, Any]:
    """The payment object of CONTRACT §4; without the merchant's own fields
    unless ``for_merchant``."""
    hidden = INTERNAL_FIELDS if for_merchant else INTERNAL_FIELDS | MERCHANT_ONLY_FIELDS
    body = state.model_dump(mode="json", exclude=set(hidden))
    key = settings.client_secret_key.get_secret_value().encode()
    body["client_secret"] = client_secret(state.id, key)
    base = f"/v1/payments/{state.id}"
    body["links"] = {
        "events": f"{base}/events",
        "stream": f"{base}/stream",
        "temporal_ui": f"{settings.temporal_ui_base()}/namespaces/{namespace}/workflows/{state.id}",
    }
    return body
