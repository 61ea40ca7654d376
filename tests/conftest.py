"""Shared fixtures: Temporal servers from the installed wheels (never
downloaded), workers on fresh task queues, gateways whose ledger tests read."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from support import TEMPORAL_CLI, TEST_SERVER, dev_server_args, register_search_attributes
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

LOCALSTRIPE_BIN = Path(sys.executable).parent / "localstripe"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a suite in which two tests share a node id: run alone, pytest
    runs both, but pytest-xdist (``make test``) keeps its work by id and runs
    one, and the other passes without having run. Under xdist the refusal
    shows as an INTERNALERROR (exit 3); ``pytest --collect-only`` names them."""
    counts = Counter(item.nodeid for item in items)
    twins = sorted(nodeid for nodeid, count in counts.items() if count > 1)
    if twins:
        raise pytest.UsageError(
            "tests sharing a node id (pytest-xdist would run only one of each): " + ", ".join(twins)
        )


@pytest.fixture(scope="session")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_local(
        data_converter=pydantic_data_converter,
        dev_server_existing_path=str(TEMPORAL_CLI),
        dev_server_extra_args=dev_server_args(),
    )
    try:
        yield env
    finally:
        await env.shutdown()


@pytest.fixture(scope="session")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await WorkflowEnvironment.start_time_skipping(
        data_converter=pydantic_data_converter,
        test_server_existing_path=str(TEST_SERVER),
    )
    try:
        await register_search_attributes(env.client)
        yield env
    finally:
        await env.shutdown()


@pytest.fixture
def task_queue() -> str:
    return f"payments-test-{uuid.uuid4()}"


@pytest.fixture
def dev_client(dev_env: WorkflowEnvironment) -> Client:
    return dev_env.client


# -- localstripe: a Stripe-compatible peer for the Stripe adapter ---------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET6) as sock:
        sock.bind(("::", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe of our own on a free port, its store empty; its URL."""
    yield from _localstripe_server(tmp_path_factory.mktemp("localstripe"))


@pytest.fixture(scope="module")
def module_localstripe(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A localstripe for one module alone, for tests that crowd its store."""
    yield from _localstripe_server(tmp_path_factory.mktemp("localstripe"))


def _localstripe_server(directory: Path) -> Iterator[str]:
    port = _free_port()
    log_path = directory / "localstripe.log"
    url = f"http://127.0.0.1:{port}"
    with log_path.open("wb") as log:
        # --from-scratch: it would otherwise load the store another run left in
        # /tmp/localstripe.pickle (which it writes on every change regardless).
        process = subprocess.Popen(
            [str(LOCALSTRIPE_BIN), "--port", str(port), "--from-scratch"],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            _wait_until_answering(url, process, log_path)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_until_answering(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    with httpx.Client(
        base_url=url, headers={"Authorization": "Bearer sk_test_localstripe"}
    ) as client:
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"localstripe exited: {log.read_text(errors='replace')}")
            try:
                if client.get("/v1/payment_intents", params={"limit": 1}).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"localstripe did not answer: {log.read_text(errors='replace')}")
            time.sleep(0.1)
