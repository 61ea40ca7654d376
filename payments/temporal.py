"""Temporal names of the contract (§7) and the one way a process connects.

The connection is configured the Temporal way: ``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY`` and the SDK's TLS variables, read
by :mod:`temporalio.envconfig`. Payloads use the pydantic data converter so
models travel as themselves between API, workflow and activities.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.common import SearchAttributeKey
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

WORKFLOW_TYPE = "PaymentWorkflow"
DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"

STATUS = SearchAttributeKey.for_keyword("PaymentStatus")
MERCHANT = SearchAttributeKey.for_keyword("MerchantId")
CUSTOMER = SearchAttributeKey.for_keyword("CustomerId")
AMOUNT = SearchAttributeKey.for_int("PaymentAmount")
CURRENCY = SearchAttributeKey.for_keyword("PaymentCurrency")
RECONCILIATION_MISMATCHES = SearchAttributeKey.for_int("ReconciliationMismatches")

RECONCILIATION_WORKFLOW_TYPE = "ReconciliationWorkflow"
RECONCILIATION_SCHEDULE_ID = "payments-reconciliation"

# name -> type as `temporal server start-dev --search-attribute` and
# `temporal operator search-attribute create` spell it.
SEARCH_ATTRIBUTES: dict[str, str] = {
    "PaymentStatus": "Keyword",
    "MerchantId": "Keyword",
    "CustomerId": "Keyword",
    "PaymentAmount": "Int",
    "PaymentCurrency": "Keyword",
    # Not on payments: on reconciliation runs, so runs that found something filter out.
    "ReconciliationMismatches": "Int",
}


def connect_config() -> dict[str, Any]:
    """Keyword arguments for :meth:`Client.connect` from the environment."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    return config


async def connect(**overrides: Any) -> Client:
    config = connect_config()
    config.update(overrides)
    return await Client.connect(data_converter=pydantic_data_converter, **config)
