"""The one way a process connects to Temporal.

The connection is configured the Temporal way: ``TEMPORAL_ADDRESS``,
``TEMPORAL_NAMESPACE``, ``TEMPORAL_API_KEY`` and the SDK's TLS variables, read
by :mod:`temporalio.envconfig`. Payloads use the pydantic data converter so
models travel as themselves between API, workflow and activities.
"""

from __future__ import annotations

from typing import Any

from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.envconfig import ClientConfig

DEFAULT_ADDRESS = "127.0.0.1:7233"
DEFAULT_NAMESPACE = "default"


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
