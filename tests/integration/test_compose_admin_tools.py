"""The one-shot script compose's ``temporal-admin-tools`` runs, run here with the
Temporal CLI from the wheel against the dev server, on a namespace of its own:
it sets the retention from ``PAYMENTS_RETENTION_DAYS`` and registers the
search attributes, twice in a row as a second `docker compose up` would, and
refuses a retention that is not a whole number of days ("030" too: the
shell would read it as octal)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from google.protobuf.duration_pb2 import Duration
from support import TEMPORAL_CLI
from temporalio.api.workflowservice.v1 import (
    DescribeNamespaceRequest,
    RegisterNamespaceRequest,
)
from temporalio.client import Client

from payments.names import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]


def admin_script() -> str:
    """The script as the container's shell gets it: compose turns ``$$`` into ``$``."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"][
        "temporal-admin-tools"
    ]
    assert service["entrypoint"] == ["/bin/sh", "-c"]
    (script,) = service["command"]
    # A lone "$" would be compose's interpolation, not the shell's.
    assert not re.search(r"(?<!\$)\$(?!\$)", script.replace("$$", ""))
    return str(script).replace("$$", "$")


@pytest.fixture
async def namespace(dev_client: Client) -> str:
    name = f"compose-{uuid.uuid4().hex[:12]}"
    await dev_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=name, workflow_execution_retention_period=Duration(seconds=86400)
        )
    )
    return name


def run_script(dev_client: Client, namespace: str, **env: str) -> subprocess.CompletedProcess[str]:
    path = f"{TEMPORAL_CLI.parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["/bin/sh", "-c", admin_script()],
        env={
            "PATH": path,
            "HOME": os.environ.get("HOME", "/tmp"),
            "TEMPORAL_ADDRESS": dev_client.service_client.config.target_host,
            "TEMPORAL_NAMESPACE": namespace,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )


async def retention(dev_client: Client, namespace: str) -> timedelta:
    described = await dev_client.workflow_service.describe_namespace(
        DescribeNamespaceRequest(namespace=namespace)
    )
    return described.config.workflow_execution_retention_ttl.ToTimedelta()


def registered(dev_client: Client, namespace: str) -> dict[str, str]:
    listed = subprocess.run(
        [
            str(TEMPORAL_CLI),
            "operator",
            "search-attribute",
            "list",
            "--address",
            dev_client.service_client.config.target_host,
            "--namespace",
            namespace,
            "--output",
            "json",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    custom: dict[str, str] = json.loads(listed.stdout).get("customAttributes") or {}
    return custom


async def test_the_script_sets_retention_and_registers_the_attributes(
    dev_client: Client, namespace: str
) -> None:
    first = run_script(dev_client, namespace, PAYMENTS_RETENTION_DAYS="45")
    assert first.returncode == 0, first.stdout + first.stderr
    assert await retention(dev_client, namespace) == timedelta(days=45)
    assert set(registered(dev_client, namespace)) >= set(SEARCH_ATTRIBUTES)
    # A second `up` runs it again: nothing fails, and a new value is applied.
    again = run_script(dev_client, namespace, PAYMENTS_RETENTION_DAYS="30")
    assert again.returncode == 0, again.stdout + again.stderr
    assert await retention(dev_client, namespace) == timedelta(days=30)


@pytest.mark.parametrize("days", ["", "30d", "-1", "1.5", "0", "030"])
async def test_a_retention_that_is_not_whole_days_stops_it(
    dev_client: Client, namespace: str, days: str
) -> None:
    before = await retention(dev_client, namespace)
    done = run_script(dev_client, namespace, PAYMENTS_RETENTION_DAYS=days)
    assert done.returncode != 0
    assert "PAYMENTS_RETENTION_DAYS must be a whole number of days" in done.stdout
    assert await retention(dev_client, namespace) == before
