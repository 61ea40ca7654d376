"""The one way a process connects to Temporal.

The connection is configured the Temporal way: ``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY`` and the SDK's TLS variables, read
by :mod:`temporalio.envconfig`. Payloads use the pydantic data converter so
models travel as themselves between API, workflow and activities, sealed by
the encryption codec when ``PAYMENTS_ENCRYPTION_KEYS`` is set.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import timedelta
from typing import Any

from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleSpec,
)
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import DataConverter
from temporalio.envconfig import ClientConfig

from payments.codec import EncryptionCodec
from payments.settings import Settings

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"

log = logging.getLogger("payments")


def connect_config() -> dict[str, Any]:
    """Keyword arguments for :meth:`Client.connect` from the environment."""
    config: dict[str, Any] = dict(ClientConfig.load_client_connect_config())
    config.setdefault("target_host", DEFAULT_ADDRESS)
    config.setdefault("namespace", DEFAULT_NAMESPACE)
    return config


def encryption_codec(settings: Settings) -> EncryptionCodec | None:
    """The codec the settings' keys make; None when there are none."""
    keys = settings.encryption_key_list()
    return EncryptionCodec(keys) if keys else None


def data_converter(settings: Settings) -> DataConverter:
    codec = encryption_codec(settings)
    if codec is None:
        return pydantic_data_converter
    return dataclasses.replace(pydantic_data_converter, payload_codec=codec)


async def connect(settings: Settings | None = None, **overrides: Any) -> Client:
    settings = settings or Settings()
    converter = data_converter(settings)
    if converter.payload_codec is None:
        log.warning("PAYMENTS_ENCRYPTION_KEYS is empty: payloads reach Temporal unencrypted")
    config = connect_config()
    config.update(overrides)
    return await Client.connect(data_converter=converter, **config)


async def retention(client: Client) -> timedelta | None:
    """How long the client's namespace keeps closed workflows (None: forever)."""
    described = await client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=client.namespace)
    )
    config = described.config
    if not config.HasField("workflow_execution_retention_ttl"):
        return None
    kept: timedelta = config.workflow_execution_retention_ttl.ToTimedelta()
    return kept or None


async def ensure_interval_schedule(
    client: Client, schedule_id: str, action: ScheduleActionStartWorkflow, every: timedelta
) -> bool:
    """A Schedule starting ``action`` every ``every``, unless one of that id
    exists (as it is: never changed here); True if created."""
    schedule = Schedule(
        action=action, spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)])
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        return False
    return True
