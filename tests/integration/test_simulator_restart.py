"""``python -m gateway.simulator`` as a real process, SIGKILLed between a
committed call and its retry and started again on the same data directory:
it remembers what it committed, as a PSP does (issue 19)."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO

import httpx
import pytest

from devstack import free_ports
from gateway.http_simulator import SimulatorGateway
from gateway.simulator.store import FILE_NAME
from payments.gateway import GatewayOperation, TransientGatewayError

ROOT = Path(__file__).resolve().parents[2]


class SimulatorProcess:
    """The simulator on one port and one data directory, started and killed
    at will; its output goes to a file the failure messages quote."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        (self.port,) = free_ports(1)
        self.url = f"http://127.0.0.1:{self.port}"
        self.data_dir = data_dir
        self._log_path = log
        self._log: IO[bytes] | None = None
        self._process: asyncio.subprocess.Process | None = None

    def output(self) -> str:
        return self._log_path.read_text(errors="replace") if self._log_path.exists() else ""

    async def start(self) -> None:
        assert self._process is None, "already running"
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("PAYMENTS_", "TEMPORAL_"))
        }
        env |= {
            "PAYMENTS_ENV": "development",
            "PAYMENTS_SIMULATOR_HOST": "127.0.0.1",
            "PAYMENTS_SIMULATOR_PORT": str(self.port),
            "PAYMENTS_DATA_DIR": str(self.data_dir),
            "PYTHONUNBUFFERED": "1",
        }
        self._log = self._log_path.open("ab")
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "gateway.simulator",
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=asyncio.subprocess.STDOUT,
        )
        async with httpx.AsyncClient(timeout=2, trust_env=False) as http:
            for _ in range(300):
                if self._process.returncode is not None:
                    break
                try:
                    if (await http.get(f"{self.url}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        raise AssertionError(f"the simulator never answered; it said:\n{self.output()}")

    async def kill(self) -> None:
        """SIGKILL: no shutdown, no closing the file, as when it crashes."""
        assert self._process is not None
        self._process.send_signal(signal.SIGKILL)
        await self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None

    async def stop(self) -> None:
        if self._process is not None and self._process.returncode is None:
            self._process.terminate()
            try:
                await asyncio.wait_for(self._process.wait(), 20)
            except TimeoutError:
                self._process.kill()
                await self._process.wait()
        self._process = None
        if self._log is not None:
            self._log.close()
            self._log = None


@pytest.fixture
async def simulator(tmp_path: Path) -> AsyncIterator[SimulatorProcess]:
    process = SimulatorProcess(tmp_path / "data", tmp_path / "simulator.log")
    try:
        yield process
    finally:
        await process.stop()


async def _ledger(control: httpx.AsyncClient, reference: str) -> list[dict[str, object]]:
    response = await control.get("/_ledger", params={"reference": reference})
    assert response.status_code == 200, response.text
    data: list[dict[str, object]] = response.json()["data"]
    return data


async def test_a_capture_committed_before_a_kill_is_replayed_after_the_restart(
    simulator: SimulatorProcess,
) -> None:
    reference = "pay_restart"
    window = {
        "since": datetime.now(UTC) - timedelta(minutes=1),
        "until": datetime.now(UTC) + timedelta(minutes=5),
    }

    async def authorize(gateway: SimulatorGateway) -> GatewayOperation:
        return await gateway.authorize(
            reference=reference,
            amount=1999,
            currency="usd",
            payment_method="pm_card_visa",
            idempotency_key=f"{reference}:authorize",
        )

    async def capture(gateway: SimulatorGateway) -> GatewayOperation:
        return await gateway.capture(
            authorization_id=auth.id, amount=1999, idempotency_key=f"{reference}:capture"
        )

    await simulator.start()
    gateway = SimulatorGateway(simulator.url, timeout=5)
    control = httpx.AsyncClient(base_url=simulator.url, timeout=5, trust_env=False)
    try:
        auth = await authorize(gateway)
        # The capture commits and its reply is lost: the caller does not know
        # it happened, and retries after the simulator has died.
        assert (await control.put("/_faults", json={"drop_reply_rate": 1.0})).status_code == 200
        with pytest.raises(TransientGatewayError):
            await capture(gateway)
        committed = await _ledger(control, reference)
        assert [entry["kind"] for entry in committed] == ["authorization", "capture"]
        listed = await gateway.list_operations(**window)
        assert [operation.kind for operation in listed] == ["authorization", "capture"]
    finally:
        await gateway.aclose()
        await control.aclose()

    await simulator.kill()
    assert (simulator.data_dir / FILE_NAME).exists()
    await simulator.start()

    gateway = SimulatorGateway(simulator.url, timeout=5)
    control = httpx.AsyncClient(base_url=simulator.url, timeout=5, trust_env=False)
    try:
        # Faults are not kept: the restarted simulator injects none.
        faults = (await control.get("/_faults")).json()
        assert faults == {"error_rate": 0.0, "drop_reply_rate": 0.0, "latency_ms": 0}
        retried = await capture(gateway)
        assert retried.id == committed[1]["id"]
        assert (await authorize(gateway)).id == auth.id
        # Exactly one capture, and what reconciliation reads is unchanged.
        assert await _ledger(control, reference) == committed
        assert await gateway.list_operations(**window) == listed
        refused = await control.post(
            f"/v1/authorizations/{auth.id}/capture",
            json={"amount": 1000},
            headers={"Idempotency-Key": f"{reference}:capture"},
        )
        assert refused.status_code == 409
        assert refused.json()["error"]["code"] == "idempotency_key_reused"
    finally:
        await gateway.aclose()
        await control.aclose()
