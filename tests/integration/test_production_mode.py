"""Production mode (CONTRACT §9) as an operator meets it: the real entry points
(``python -m api``, ``python worker.py``, ``python -m gateway.simulator``)
started as processes with ``PAYMENTS_ENV=production``.

Each built-in or empty secret, the anonymous codec and the demo page make the
process exit non-zero at once, with one line on stderr naming the setting and
no traceback; so does a setting that does not parse. Fully configured, each
process gets past the check: the simulator and the API serve ``/healthz``, the
worker polls the dev server.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from temporalio.api.workflowservice.v1 import RegisterNamespaceRequest
from temporalio.client import Client
from temporalio.service import RPCError

from devstack import free_ports
from payments.codec import generate_key

ROOT = Path(__file__).resolve().parents[2]
ENTRY_POINTS = {
    "api": [sys.executable, "-m", "api"],
    "worker": [sys.executable, "worker.py"],
    "simulator": [sys.executable, "-m", "gateway.simulator"],
}
REFUSING = "refusing to start in production: "

# What an operator sets: nothing built in, nothing empty.
CONFIGURED = {
    "PAYMENTS_ENV": "production",
    "PAYMENTS_API_KEYS": json.dumps({f"sk_live_{secrets.token_hex(12)}": "acme"}),
    "PAYMENTS_OPERATOR_API_KEYS": json.dumps([f"op_{secrets.token_hex(12)}"]),
    "PAYMENTS_CLIENT_SECRET_KEY": secrets.token_urlsafe(32),
    "PAYMENTS_ENCRYPTION_KEYS": generate_key("prod-test").entry(),
    "PAYMENTS_STRIPE_WEBHOOK_SECRET": f"whsec_{secrets.token_urlsafe(24)}",
    "PAYMENTS_SIMULATOR_WEBHOOK_SECRET": secrets.token_urlsafe(24),
    "PAYMENTS_RECEIPT_FROM": "Acme <receipts@acme.example.com>",
    "PAYMENTS_SMTP_URL": "smtps://mailer:mail-secret@smtp.acme.example.com:465",
}


def environment(**changes: str | None) -> dict[str, str]:
    """This machine's environment without any PAYMENTS_* or TEMPORAL_* of its
    own, configured for production, with ``changes`` (None: unset)."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("PAYMENTS_", "TEMPORAL_"))
    }
    env.update(CONFIGURED)
    for name, value in changes.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def run_to_exit(entry_point: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    # The timeout only bounds a process that wrongly starts serving.
    return subprocess.run(
        ENTRY_POINTS[entry_point],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def sha256(key: str) -> str:
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


# (what, the change, the variable the one line must name)
REFUSALS: list[tuple[str, dict[str, str | None], str]] = [
    ("demo API key", {"PAYMENTS_API_KEYS": '{"sk_test_demo": "demo"}'}, "PAYMENTS_API_KEYS"),
    (
        "demo API key among others, as a digest",
        {"PAYMENTS_API_KEYS": json.dumps({"sk_live_x1": "acme", sha256("sk_test_demo"): "demo"})},
        "PAYMENTS_API_KEYS",
    ),
    ("API keys unset", {"PAYMENTS_API_KEYS": None}, "PAYMENTS_API_KEYS"),
    ("no API key", {"PAYMENTS_API_KEYS": "{}"}, "PAYMENTS_API_KEYS"),
    (
        "built-in operator key",
        {"PAYMENTS_OPERATOR_API_KEYS": '["op_mine", "sk_test_operator"]'},
        "PAYMENTS_OPERATOR_API_KEYS",
    ),
    ("operator keys unset", {"PAYMENTS_OPERATOR_API_KEYS": None}, "PAYMENTS_OPERATOR_API_KEYS"),
    (
        "dev client-secret key",
        {"PAYMENTS_CLIENT_SECRET_KEY": "dev-only-client-secret-key-change-me"},
        "PAYMENTS_CLIENT_SECRET_KEY",
    ),
    ("empty client-secret key", {"PAYMENTS_CLIENT_SECRET_KEY": ""}, "PAYMENTS_CLIENT_SECRET_KEY"),
    ("no encryption key", {"PAYMENTS_ENCRYPTION_KEYS": None}, "PAYMENTS_ENCRYPTION_KEYS"),
    ("empty encryption keys", {"PAYMENTS_ENCRYPTION_KEYS": " "}, "PAYMENTS_ENCRYPTION_KEYS"),
    (
        "built-in webhook secret",
        {"PAYMENTS_STRIPE_WEBHOOK_SECRET": "whsec_local_dev_only"},
        "PAYMENTS_STRIPE_WEBHOOK_SECRET",
    ),
    (
        "empty webhook secret",
        {"PAYMENTS_STRIPE_WEBHOOK_SECRET": ""},
        "PAYMENTS_STRIPE_WEBHOOK_SECRET",
    ),
    (
        "built-in simulator webhook secret with the simulator",
        {"PAYMENTS_SIMULATOR_WEBHOOK_SECRET": None},
        "PAYMENTS_SIMULATOR_WEBHOOK_SECRET",
    ),
    (
        "the built-in example sender of receipts",
        {"PAYMENTS_RECEIPT_FROM": None},
        "PAYMENTS_RECEIPT_FROM",
    ),
    (
        "the local mail sink as the mail server",
        {"PAYMENTS_SMTP_URL": None},
        "PAYMENTS_SMTP_URL",
    ),
    (
        "an SMTP password over plain smtp://",
        {"PAYMENTS_SMTP_URL": "smtp://mailer:hunter2@relay.example.com:25"},
        "PAYMENTS_SMTP_URL",
    ),
    (
        "Stripe's placeholder key on Stripe",
        {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_KEY": None},
        "PAYMENTS_STRIPE_API_KEY",
    ),
    (
        "empty Stripe key on Stripe",
        {"PAYMENTS_GATEWAY": "stripe", "PAYMENTS_STRIPE_API_KEY": ""},
        "PAYMENTS_STRIPE_API_KEY",
    ),
    (
        "anonymous codec",
        {"PAYMENTS_CODEC_ALLOW_ANONYMOUS": "true"},
        "PAYMENTS_CODEC_ALLOW_ANONYMOUS",
    ),
    ("demo page", {"PAYMENTS_DEMO_MERCHANT": "demo-page"}, "PAYMENTS_DEMO_MERCHANT"),
    (
        "webhooks to private addresses",
        {"PAYMENTS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true"},
        "PAYMENTS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES",
    ),
]
# Each refusal on each entry point in turn: all of them share one check.
CASES = [
    pytest.param(entry_point, changes, named, id=f"{what} ({entry_point})")
    for index, (what, changes, named) in enumerate(REFUSALS)
    for entry_point in [list(ENTRY_POINTS)[index % len(ENTRY_POINTS)]]
]


@pytest.mark.parametrize(("entry_point", "changes", "named"), CASES)
def test_each_refusal_is_one_line_naming_the_setting(
    entry_point: str, changes: dict[str, str | None], named: str
) -> None:
    done = run_to_exit(entry_point, environment(**changes))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{REFUSING}{named} "), lines[0]
    assert lines[0].endswith("or PAYMENTS_ENV=development for a local run")


@pytest.mark.parametrize("entry_point", ENTRY_POINTS)
def test_out_of_the_box_every_built_in_is_named_one_line_each(entry_point: str) -> None:
    # Nothing set at all: PAYMENTS_ENV unset means production too.
    nothing = {name: None for name in CONFIGURED}
    done = run_to_exit(entry_point, environment(**nothing))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert all(line.startswith(REFUSING) for line in lines), lines
    named = [line.removeprefix(REFUSING).split()[0] for line in lines]
    assert named == [
        "PAYMENTS_API_KEYS",
        "PAYMENTS_OPERATOR_API_KEYS",
        "PAYMENTS_CLIENT_SECRET_KEY",
        "PAYMENTS_ENCRYPTION_KEYS",
        "PAYMENTS_STRIPE_WEBHOOK_SECRET",
        "PAYMENTS_SIMULATOR_WEBHOOK_SECRET",
        "PAYMENTS_RECEIPT_FROM",
        "PAYMENTS_SMTP_URL",
    ]


@pytest.mark.parametrize(
    ("entry_point", "changes", "named"),
    [
        ("api", {"PAYMENTS_API_KEYS": '{"sk_live_x": "acme"'}, "PAYMENTS_API_KEYS"),
        ("worker", {"PAYMENTS_OPERATOR_API_KEYS": "op_not_json"}, "PAYMENTS_OPERATOR_API_KEYS"),
        ("simulator", {"PAYMENTS_ENCRYPTION_KEYS": "k1:not-base64"}, "PAYMENTS_ENCRYPTION_KEYS"),
        ("api", {"PAYMENTS_API_KEYS": '{"sk_live_hidden_key": 7}'}, "PAYMENTS_API_KEYS"),
        ("worker", {"PAYMENTS_ENV": "prod"}, "PAYMENTS_ENV"),
        ("simulator", {"PAYMENTS_SIMULATOR_PORT": "eighty"}, "PAYMENTS_SIMULATOR_PORT"),
    ],
)
def test_a_setting_that_does_not_parse_is_one_line_too(
    entry_point: str, changes: dict[str, str | None], named: str
) -> None:
    done = run_to_exit(entry_point, environment(**changes))
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"invalid setting {named}: "), lines[0]
    # It names the setting, never its value: that may be a key.
    assert "sk_live" not in lines[0] and "not-base64" not in lines[0]


# -- fully configured, each gets past the check -------------------------------------


@contextlib.asynccontextmanager
async def started(entry_point: str, env: dict[str, str]) -> AsyncIterator[list[str]]:
    """The entry point running; the lines it prints so far. Stopped (SIGTERM,
    then SIGKILL) on the way out, whatever happened."""
    process = await asyncio.create_subprocess_exec(
        *ENTRY_POINTS[entry_point],
        cwd=ROOT,
        env={**env, "PYTHONUNBUFFERED": "1"},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    lines: list[str] = []

    async def read() -> None:
        assert process.stdout is not None
        async for raw in process.stdout:
            lines.append(raw.decode(errors="replace").rstrip())

    reader = asyncio.create_task(read())
    try:
        yield lines
        assert process.returncode is None, lines
    finally:
        if process.returncode is None:
            process.terminate()
            try:
                await asyncio.wait_for(process.wait(), 20)
            except TimeoutError:
                process.kill()
                await process.wait()
        await reader


async def answer(url: str, lines: list[str]) -> int:
    """The status ``url`` answers once the server listens."""
    async with httpx.AsyncClient(timeout=5, trust_env=False) as http:
        for _ in range(300):
            try:
                return (await http.get(url)).status_code
            except httpx.TransportError:
                await asyncio.sleep(0.1)
    raise AssertionError(f"{url} never answered; the process said: {lines}")


async def test_a_configured_simulator_serves(tmp_path: Path) -> None:
    (port,) = free_ports(1)
    env = environment(PAYMENTS_SIMULATOR_PORT=str(port), PAYMENTS_DATA_DIR=str(tmp_path))
    async with started("simulator", env) as lines:
        assert await answer(f"http://127.0.0.1:{port}/healthz", lines) == 200
    assert not any(REFUSING in line for line in lines)


async def test_a_configured_api_serves_and_says_temporal_is_down(tmp_path: Path) -> None:
    api, nothing_there = free_ports(2)
    env = environment(
        PAYMENTS_API_PORT=str(api),
        TEMPORAL_ADDRESS=f"127.0.0.1:{nothing_there}",
        PAYMENTS_DATA_DIR=str(tmp_path),
        PAYMENTS_ARCHIVE_DIR=str(tmp_path / "archive"),
    )
    async with started("api", env) as lines:
        assert await answer(f"http://127.0.0.1:{api}/healthz", lines) == 503
    assert not any(REFUSING in line for line in lines)


async def test_a_configured_worker_polls_temporal(dev_client: Client, tmp_path: Path) -> None:
    # A namespace of its own: the worker makes its Schedules there, not where
    # other tests list workflows.
    namespace = f"production-mode-{uuid.uuid4().hex[:12]}"
    (metrics_port,) = free_ports(1)
    await dev_client.workflow_service.register_namespace(
        RegisterNamespaceRequest(
            namespace=namespace, workflow_execution_retention_period=Duration(seconds=86400 * 30)
        )
    )
    env = environment(
        TEMPORAL_ADDRESS=dev_client.service_client.config.target_host,
        TEMPORAL_NAMESPACE=namespace,
        PAYMENTS_DATA_DIR=str(tmp_path),
        PAYMENTS_ARCHIVE_DIR=str(tmp_path / "archive"),
        PAYMENTS_WORKER_METRICS_ADDRESS=f"127.0.0.1:{metrics_port}",
    )
    try:
        async with started("worker", env) as lines:
            for _ in range(600):
                if any("worker ready" in line for line in lines):
                    break
                await asyncio.sleep(0.1)
            assert any("worker ready" in line for line in lines), lines
            assert any("encrypted with key 'prod-test'" in line for line in lines), lines
            # Its metrics, on the address it was given: the SDK's own among them.
            async with httpx.AsyncClient() as http:
                scraped = await http.get(f"http://127.0.0.1:{metrics_port}/metrics")
            assert scraped.status_code == 200
            assert "temporal_num_pollers" in scraped.text
    finally:
        # Its Schedules would start workflows nobody polls for the rest of the session.
        other = Client(dev_client.service_client, namespace=namespace)
        async for listed in await other.list_schedules():
            with contextlib.suppress(RPCError):
                await other.get_schedule_handle(listed.id).delete()
