"""Where a local stack's processes listen and keep their data: :class:`StackConfig`,
read from TEMPORAL_* and PAYMENTS_* vars or put on free ports, and the address and
port helpers it is built from."""

from __future__ import annotations

import os
import random
import socket
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from payments.settings import Settings
from payments.temporal import DEFAULT_ADDRESS, DEFAULT_NAMESPACE

# The repository: where the children are started (`python worker.py`).
ROOT = Path(__file__).resolve().parent.parent
DB_FILENAME = "temporal.sqlite"


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


def url_host(host: str) -> str:
    """``host`` as it is written in a URL or an address: an IPv6 one in brackets."""
    return f"[{host}]" if ":" in host else host


# Where free_ports looks: above the ports the stack's servers default to
# (7233, 8000, 8100, 8233, 9090 and their neighbours).
PICKED_PORTS = range(10000, 65536)


def ephemeral_ports() -> range:
    """The ports the kernel gives outgoing connections (Linux's default when unreadable)."""
    try:
        low, high = Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()
        return range(int(low), int(high) + 1)
    except (OSError, ValueError):
        return range(32768, 61000)


def metrics_url(address: str, default_port: int) -> str | None:
    """Where a client scrapes metrics served on ``address`` (None: "", none served)."""
    if not address:
        return None
    host, port = parse_host_port(address, default_port)
    return f"http://{url_host(connect_host(host))}:{port}/metrics"


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Distinct ports that were free a moment ago (all held open until all are
    picked), outside the kernel's ephemeral range: a port the kernel picks for
    ``bind(0)`` comes from the range it gives outgoing connections, and one of
    those could take it in the seconds before its server binds it."""
    ephemeral = ephemeral_ports()
    candidates = [port for port in PICKED_PORTS if port not in ephemeral]
    random.shuffle(candidates)
    sockets: list[socket.socket] = []
    try:
        for port in candidates:
            if len(sockets) == count:
                break
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                sock.bind((host, port))
            except OSError:
                sock.close()
                continue
            sockets.append(sock)
        if len(sockets) < count:
            raise OSError(f"fewer than {count} free ports on {host} outside {ephemeral}")
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
    # Stripe mode without PAYMENTS_STRIPE_API_BASE: the localstripe this stack starts.
    localstripe_port: int = 8420
    api_key: str = "sk_test_demo"
    # Prometheus metrics: the worker's (SDK and ours) and the dev server's.
    worker_metrics_address: str = "127.0.0.1:9464"
    # The API's worker's, when it runs one (PAYMENTS_API_WORKER).
    api_worker_metrics_address: str = "127.0.0.1:9465"
    temporal_metrics_port: int = 9233
    # Where receipts go: the stack's own mail sink on this port, unless
    # ``smtp_url`` names another server (PAYMENTS_SMTP_URL).
    mail_port: int = 1025
    smtp_url: str | None = None

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
            localstripe_port=settings.localstripe_port,
            api_key=next(iter(settings.api_keys)),
            worker_metrics_address=settings.worker_metrics_address,
            api_worker_metrics_address=settings.api_worker_metrics_address,
            temporal_metrics_port=settings.temporal_metrics_port,
            smtp_url=os.environ.get("PAYMENTS_SMTP_URL") or None,
        )

    @classmethod
    def on_free_ports(cls, data_dir: Path, **overrides: Any) -> StackConfig:
        """Every port free and on loopback: for tests next to a running `make run`."""
        (
            temporal,
            ui,
            api,
            simulator,
            localstripe,
            worker_metrics,
            api_worker_metrics,
            temporal_metrics,
            mail,
        ) = free_ports(9)
        config = cls(
            data_dir=data_dir.resolve(),
            temporal_address=f"127.0.0.1:{temporal}",
            temporal_ui_url=f"http://127.0.0.1:{ui}",
            api_port=api,
            simulator_port=simulator,
            localstripe_port=localstripe,
            worker_metrics_address=f"127.0.0.1:{worker_metrics}",
            api_worker_metrics_address=f"127.0.0.1:{api_worker_metrics}",
            temporal_metrics_port=temporal_metrics,
            mail_port=mail,
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
        return f"http://{url_host(connect_host(self.api_host))}:{self.api_port}"

    @property
    def simulator_url(self) -> str:
        return f"http://{url_host(connect_host(self.simulator_host))}:{self.simulator_port}"

    @property
    def worker_metrics_url(self) -> str | None:
        return metrics_url(self.worker_metrics_address, 9464)

    @property
    def api_worker_metrics_url(self) -> str | None:
        return metrics_url(self.api_worker_metrics_address, 9465)

    @property
    def temporal_metrics_url(self) -> str:
        return f"http://{url_host(connect_host(self.temporal_host))}:{self.temporal_metrics_port}/metrics"

    @property
    def mail_dir(self) -> Path:
        return self.data_dir / "mail"

    @property
    def sink_smtp_url(self) -> str:
        return f"smtp://127.0.0.1:{self.mail_port}"

    @property
    def localstripe_url(self) -> str:
        # It listens on every interface, IPv4 and IPv6: loopback reaches it.
        return f"http://127.0.0.1:{self.localstripe_port}"

    def child_env(self) -> dict[str, str]:
        """What every child is told, so that all of them agree with this config."""
        return {
            "TEMPORAL_ADDRESS": f"{url_host(self.temporal_host)}:{self.temporal_port}",
            "TEMPORAL_NAMESPACE": self.namespace,
            "PAYMENTS_TEMPORAL_UI_URL": self.temporal_ui_url,
            "PAYMENTS_API_HOST": self.api_host,
            "PAYMENTS_API_PORT": str(self.api_port),
            "PAYMENTS_SIMULATOR_HOST": self.simulator_host,
            "PAYMENTS_SIMULATOR_PORT": str(self.simulator_port),
            "PAYMENTS_GATEWAY_URL": self.gateway_url or self.simulator_url,
            "PAYMENTS_LOCALSTRIPE_PORT": str(self.localstripe_port),
            "PAYMENTS_WORKER_METRICS_ADDRESS": self.worker_metrics_address,
            "PAYMENTS_API_WORKER_METRICS_ADDRESS": self.api_worker_metrics_address,
            "PAYMENTS_DATA_DIR": str(self.data_dir),
            "PAYMENTS_SMTP_URL": self.smtp_url or self.sink_smtp_url,
            # Line-buffered children, or "worker ready" may sit in a buffer forever.
            "PYTHONUNBUFFERED": "1",
        }
