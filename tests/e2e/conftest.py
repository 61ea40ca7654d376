"""The stack as `make run` starts it (devstack.Stack), on free ports with a
fresh data directory, shared by the e2e tests and always stopped."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser
from support import QUICK_DELETES, chromium
from temporalio.client import Client

from devstack import Stack, StackConfig


@pytest.fixture(scope="session")
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    data_dir: Path = tmp_path_factory.mktemp("stack-data")
    lines: list[str] = []
    # A second merchant, to show that merchants cannot see each other's payments.
    keys = {"sk_test_demo": "demo", "sk_test_other": "other"}
    # Keep-alives every second, so a test sees them while a slow gateway works.
    env = {
        "PAYMENTS_API_KEYS": json.dumps(keys),
        "PAYMENTS_STREAM_KEEPALIVE_SECONDS": "1",
        # Short, so the fault tests see slow answers time out and be retried.
        "PAYMENTS_GATEWAY_TIMEOUT_SECONDS": "2",
        # The archiver's Schedule every 2 s (20 s under `make run`), so the
        # record tests see a closed payment archived in moments.
        "PAYMENTS_ARCHIVE_INTERVAL": "2",
    }
    config = StackConfig.on_free_ports(data_dir)
    with Stack(config, env=env, output=lines.append, dev_server_args=QUICK_DELETES) as running:
        running.output_lines = lines  # type: ignore[attr-defined]
        yield running
    if request.session.testsfailed:
        # What the processes said is the first thing to read when an e2e test
        # fails. Written past pytest's capture, which would swallow a print here.
        terminal = request.config.pluginmanager.get_plugin("terminalreporter")
        if terminal is not None:
            terminal.write_line("\n--- stack output (last 200 lines) ---")
            for line in lines[-200:]:
                terminal.write_line(line)


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=30) as client:
        yield client


@pytest.fixture
async def anonymous(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """A client that sends no API key of its own."""
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as client:
        yield client


@pytest.fixture
async def simulator(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    """The simulator's control API (``/_faults``); faults are cleared afterwards."""
    async with httpx.AsyncClient(base_url=stack.simulator_url) as client:
        try:
            yield client
        finally:
            await client.delete("/_faults")


@pytest.fixture
async def slow_gateway(simulator: httpx.AsyncClient) -> AsyncIterator[None]:
    """Gateway answers 1.2 s late: long enough to watch work in flight, shorter
    than the worker's 2 s gateway timeout, so slowness alone breaks nothing."""
    await simulator.put("/_faults", json={"latency_ms": 1200})
    yield


@pytest.fixture
async def temporal(stack: Stack) -> Client:
    return await stack.client()


# -- headless Chromium: Debian's package, never a downloaded browser ------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as launched:
        yield launched
