"""The local stack that `make run` starts, and that end-to-end tests start on free
ports: :class:`Stack` puts the services of :mod:`devstack.services` together with a
configuration, the children's environment, the gateway that environment names
(:mod:`devstack.gateway`) and a :class:`~devstack.processes.Supervisor`.
"""

from __future__ import annotations

import os
import shutil
import signal
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Self

from pydantic import TypeAdapter
from temporalio.client import Client

from devstack import local
from devstack.config import ROOT, StackConfig, port_open
from devstack.errors import StackError
from devstack.gateway import (
    DEFAULT_STRIPE_KEY,
    GATEWAY_PROCESSES,
    STRIPE_CHECK_TIMEOUT,
    GatewayPlan,
    check_stripe_server,
)
from devstack.processes import (
    READY_TIMEOUT,
    STOP_TIMEOUT,
    ChildProcess,
    Output,
    Supervisor,
    stdout_line,
)
from devstack.services import PROCESS_NAMES, SERVICES_BY_NAME, Probe
from devstack.temporal import DevServer, find_temporal_bin, retention_days
from payments.names import CODEC_PATH
from payments.settings import Settings
from payments.temporal import connect


class Stack:
    """Starts, supervises and stops the four processes of the local stack: the dev
    server, the gateway (the simulator, or in Stripe mode a localstripe of its own
    unless ``PAYMENTS_STRIPE_API_BASE`` names a server), the worker and the API.

    ``start()`` returns once every process is ready (and a Stripe server given by
    URL answers), or raises :class:`StackError` after stopping what it had started.
    ``stop()`` is idempotent. Both are blocking; the async context manager runs them
    in a thread.
    """

    def __init__(
        self,
        config: StackConfig | None = None,
        *,
        env: Mapping[str, str] | None = None,
        processes: Iterable[str] = PROCESS_NAMES,
        python: str = sys.executable,
        temporal_bin: str | None = None,
        dev_server_args: Sequence[str] = (),
        ready_timeout: float = READY_TIMEOUT,
        stop_timeout: float = STOP_TIMEOUT,
        restart: bool = True,
        output: Output = stdout_line,
        cwd: Path = ROOT,
        stripe_check_timeout: float = STRIPE_CHECK_TIMEOUT,
    ) -> None:
        self.config = config if config is not None else StackConfig.from_env()
        wanted = set(processes)
        unknown = wanted - set(PROCESS_NAMES)
        if unknown:
            raise ValueError(f"unknown processes {sorted(unknown)}; known: {PROCESS_NAMES}")
        self.env: dict[str, str] = {**os.environ, **(env or {}), **self.config.child_env()}
        self.gateway = GatewayPlan.from_env(self.env)
        if self.gateway.own_localstripe:
            self.env["PAYMENTS_STRIPE_API_BASE"] = self.config.localstripe_url
        self.python = python
        self.temporal_bin = temporal_bin
        self.dev_server_args = list(dev_server_args)
        self.output = output
        self.cwd = cwd
        self.stripe_check_timeout = stripe_check_timeout
        # Of the gateways, only the one this stack runs on; the mail sink
        # unless receipts go to a server of the caller's.
        self._names = [
            name
            for name in PROCESS_NAMES
            if name in wanted
            and (name not in GATEWAY_PROCESSES or name == self.gateway.process)
            and (name != "mail" or self.config.smtp_url is None)
        ]
        self.processes: dict[str, ChildProcess] = {}
        self._supervisor = Supervisor(
            ready_timeout=ready_timeout, stop_timeout=stop_timeout, restart=restart, log=self.log
        )
        self._dev_server: DevServer | None = None

    # -- what tests and the banner need --

    @property
    def process_names(self) -> tuple[str, ...]:
        """The processes this stack starts, in order (one gateway of the two, or none)."""
        return tuple(self._names)

    @property
    def temporal_address(self) -> str:
        return self.env["TEMPORAL_ADDRESS"]

    @property
    def namespace(self) -> str:
        return self.config.namespace

    @property
    def api_url(self) -> str:
        return self.config.api_url

    @property
    def simulator_url(self) -> str:
        return self.config.simulator_url

    @property
    def stripe_api_base(self) -> str | None:
        """In Stripe mode, the server the children talk to: its own localstripe's,
        or the one ``PAYMENTS_STRIPE_API_BASE`` named."""
        return self.env["PAYMENTS_STRIPE_API_BASE"] if self.gateway.name == "stripe" else None

    @property
    def temporal_ui_url(self) -> str:
        return self.config.temporal_ui_url

    @property
    def api_key(self) -> str:
        return self.config.api_key

    @property
    def data_dir(self) -> Path:
        return self.config.data_dir

    @property
    def archive_dir(self) -> Path:
        """Where closed payments are archived: the data directory's unless set."""
        configured = self.env.get("PAYMENTS_ARCHIVE_DIR")
        return Path(configured) if configured else self.config.data_dir / "archive"

    @property
    def retention_days(self) -> int:
        """``PAYMENTS_RETENTION_DAYS`` as the children see it (CONTRACT §10)."""
        return retention_days(self.env)

    @property
    def codec_endpoint(self) -> str | None:
        """Where the UI and CLI decode payloads, when this stack encrypts them."""
        if "api" not in self._names or not self.env.get("PAYMENTS_ENCRYPTION_KEYS"):
            return None
        return f"{self.api_url}{CODEC_PATH}"

    def command(self, name: str) -> list[str]:
        """The command line ``name`` is started with."""
        return self._build(name).argv

    def pid(self, name: str) -> int | None:
        return self.processes[name].pid

    def kill(self, name: str, sig: int = signal.SIGKILL, timeout: float = STOP_TIMEOUT) -> None:
        """Signal one child and wait for it to exit; it is then restarted like any crash.

        Waiting matters: until the old process is gone, :meth:`wait_ready` could still
        see it as ready."""
        popen = self.processes[name].popen
        if popen is not None:
            popen.send_signal(sig)
            popen.wait(timeout)

    def wait_ready(self, name: str, timeout: float | None = None) -> None:
        """Block until ``name`` runs and answers its probe, e.g. after :meth:`kill` and
        the restart that follows it."""
        self._supervisor.wait_running(self.processes[name], timeout)

    async def client(self) -> Client:
        """A Temporal client for this stack, holding its keys as its children do."""
        settings = Settings(encryption_keys=self.env.get("PAYMENTS_ENCRYPTION_KEYS", ""))
        return await connect(settings, target_host=self.temporal_address, namespace=self.namespace)

    # -- lifecycle --

    def start(self) -> None:
        self._supervisor.begin()
        local.set_up(self.env, self.config.data_dir, self.archive_dir)
        self.processes = {name: self._build(name) for name in self._names}
        for child in self.processes.values():
            for host, port in child.ports:
                # Another server on the port would answer our readiness probe for us.
                if port_open(host, port):
                    raise StackError(
                        f"{child.name}: port {port} on {host} is already in use "
                        "(another `make run`?); stop it or choose other ports"
                    )
        if "localstripe" in self.processes:
            self._find_script(self.processes["localstripe"])
        if self.gateway.stripe_api_base is not None and "worker" in self.processes:
            # Before anything starts: said at once, and nothing to stop.
            self.log(f"checking the Stripe server at {self.gateway.stripe_api_base}")
            check_stripe_server(
                self.gateway.stripe_api_base,
                self.env.get("PAYMENTS_STRIPE_API_KEY") or DEFAULT_STRIPE_KEY,
                timeout=self.stripe_check_timeout,
                wait=self._supervisor.pause,
            )
            self.log(f"the Stripe server at {self.gateway.stripe_api_base} answers")
        try:
            for child in self.processes.values():
                self._supervisor.start(child)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        self._supervisor.stop(list(self.processes.values()))

    def interrupt(self) -> None:
        """Make a ``start()`` in progress give up soon (safe from a signal handler)."""
        self._supervisor.interrupt()

    def force(self) -> None:
        """Kill instead of waiting for a graceful exit (a second Ctrl-C)."""
        self._supervisor.force()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        import asyncio

        await asyncio.to_thread(self.start)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio

        await asyncio.to_thread(self.stop)

    def log(self, message: str) -> None:
        self.output(f"[devstack] {message}")

    def banner(self) -> str:
        api = self.api_url
        body = '{"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}'
        curl = (
            f"curl -sS -X POST {api}/v1/payments -H 'Authorization: Bearer {self.api_key}' "
            f"-H 'Content-Type: application/json' -H 'Prefer: wait=10' -d '{body}'"
        )
        lines = ["", "payments stack is up"]
        if "api" in self.processes:
            lines += [f"  API          {api}", f"  API docs     {api}/docs"]
            if self.env.get("PAYMENTS_DEMO_MERCHANT"):
                lines.append(f"  Try it       {api}/  (pay in a browser, watch the events)")
        if "temporal" in self.processes:
            lines += [
                f"  Temporal UI  {self.temporal_ui_url}",
                f"  Temporal     {self.temporal_address} (namespace {self.namespace})",
            ]
        if self.gateway.process in self.processes or "worker" in self.processes:
            lines.append(f"  Gateway      {self._gateway_line()}")
        metrics = []
        if "api" in self.processes:
            metrics.append(f"API {api}/metrics")
        if "worker" in self.processes and self.config.worker_metrics_url:
            metrics.append(f"worker {self.config.worker_metrics_url}")
        if "api" in self.processes and self._api_worker_metrics_url():
            metrics.append(f"API's worker {self._api_worker_metrics_url()}")
        if "temporal" in self.processes:
            metrics.append(f"Temporal {self.config.temporal_metrics_url}")
        if metrics:
            lines.append(f"  Metrics      {'  '.join(metrics)}")
        if self.codec_endpoint:
            lines.append(f"  Codec        {self.codec_endpoint}  (history is encrypted)")
        lines += [f"  Data         {self.config.data_dir}", f"  API key      {self.api_key}"]
        if "mail" in self.processes:
            config = self.config
            lines.append(
                f"  Mail         {config.sink_smtp_url}  (receipts kept in {config.mail_dir})"
            )
        if "temporal" in self.processes:
            lines.append(
                f"  Records      kept {self.retention_days} days in Temporal once closed, "
                f"archived to {self.archive_dir}"
            )
        if "api" in self.processes:
            stream = (
                f"curl -N {api}/v1/payments/<id>/stream -H 'Authorization: Bearer {self.api_key}'"
            )
            lines += ["", "Create a payment:", f"  {curl}", "Watch one:", f"  {stream}"]
        lines += ["", "Ctrl-C stops everything.", ""]
        return "\n".join(lines)

    def _api_worker_metrics_url(self) -> str | None:
        """Where the API's worker serves its metrics, when it runs one."""
        hosts = TypeAdapter(bool).validate_python(self.env.get("PAYMENTS_API_WORKER") or False)
        return self.config.api_worker_metrics_url if hosts else None

    def _gateway_line(self) -> str:
        if self.gateway.name == "simulator":
            return f"simulator  {self.simulator_url}"
        if self.gateway.own_localstripe:
            return (
                f"stripe     localstripe at {self.config.localstripe_url} "
                "(from scratch, in memory: an earlier run's PaymentIntents are not there)"
            )
        return f"stripe     {self.gateway.stripe_api_base}"

    # -- internals --

    def _build(self, name: str) -> ChildProcess:
        service = SERVICES_BY_NAME[name]
        probe: Probe
        if service.dev_server:
            dev_server = self._temporal()
            argv = dev_server.command([*self._codec_args(), *self.dev_server_args])
            probe = dev_server.ready
        elif service.script is not None:
            # Installed beside the interpreter, as the venv's console scripts are.
            script = Path(self.python).parent / service.script
            argv = [str(script), *service.args(self.config)]
            probe = service.probe(self.config)
        else:
            argv = [self.python, *service.python_args, *service.args(self.config)]
            probe = service.probe(self.config)
        return ChildProcess(
            name=name,
            argv=argv,
            probe=probe,
            ports=service.ports(self.config),
            cwd=self.cwd,
            env=self.env,
            output=self.output,
            ready_marker=service.ready_marker,
            quiet_when_stopping=service.quiet_when_stopping,
            hidden=service.hidden,
        )

    def _find_script(self, child: ChildProcess) -> None:
        """The console script ``child`` runs, on PATH when it is not beside the
        interpreter; a clear refusal when it is nowhere."""
        script = Path(child.argv[0])
        if script.exists():
            return
        found = shutil.which(script.name)
        if found is None:
            raise StackError(
                f"{child.name}: no `{script.name}` beside {self.python} or on PATH. It comes "
                "with the dev extras (pip install -e '.[dev]'); or set PAYMENTS_STRIPE_API_BASE "
                "to a Stripe-compatible server of your own"
            )
        child.argv[0] = found

    def _temporal(self) -> DevServer:
        if self._dev_server is None:
            self.temporal_bin = self.temporal_bin or find_temporal_bin()
            self._dev_server = DevServer(self.temporal_bin, self.config, self.env, self.log)
        return self._dev_server

    def _codec_args(self) -> list[str]:
        endpoint = self.codec_endpoint
        return ["--ui-codec-endpoint", endpoint] if endpoint else []
