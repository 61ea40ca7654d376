"""The services of the local stack, as data: what each runs, the ports it
binds, and how it shows that it is ready. :data:`SERVICES` is in start order;
stopping goes the other way. A stack runs one gateway of the two
(:mod:`devstack.gateway` says which): the simulator, or localstripe in Stripe
mode.

The dev server is the one service that is not a Python entry point of this
repository; its command line and its readiness are :mod:`devstack.temporal`'s.
localstripe is a console script installed beside the stack's interpreter.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import httpx

from devstack.config import StackConfig, parse_host_port
from devstack.processes import ChildProcess

WORKER_READY_MARKER = "worker ready"
MAIL_READY_MARKER = "mail sink ready"
# Any key localstripe takes (it wants ``sk_`` and more): readiness is about the
# process, the children's own key is checked by their first call.
LOCALSTRIPE_PROBE_KEY = "sk_test_devstack"

Probe = Callable[[ChildProcess], bool]

# aiohttp's access log, a line a request: `::1 [date] "GET /v1/... HTTP/1.1" 200 ...`.
_ACCESS_LOG = re.compile(r'^\S+ \[[^\]]*\] "[A-Z]+ \S* HTTP/[\d.]+" \d{3} ')


def http_ok(url: str, timeout: float = 2.0, headers: Mapping[str, str] | None = None) -> bool:
    try:
        # trust_env=False: a developer's HTTP(S)_PROXY must not swallow loopback calls.
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            return client.get(url, headers=headers).status_code == 200
    except httpx.HTTPError:
        return False


def access_log_line(line: str) -> bool:
    """A request line of localstripe's access log: kept for a crash report, not
    printed (the simulator prints none either)."""
    return _ACCESS_LOG.match(line) is not None


@dataclass(frozen=True)
class Service:
    """One process of the stack.

    It runs ``python_args`` with the stack's interpreter, or the console script
    ``script`` installed beside it, either followed by ``args``, or (the dev server) what
    :class:`devstack.temporal.DevServer` says. Ready means: ``health_url``
    answers 200 (sent ``health_headers``), or ``ready_marker`` was printed, or
    (the dev server) what ``DevServer`` checks.
    """

    name: str
    # The ports it binds: nothing else may hold them when the stack starts.
    ports: Callable[[StackConfig], list[tuple[str, int]]]
    # Arguments to the stack's Python interpreter (the contract's entry points).
    python_args: tuple[str, ...] = ()
    script: str | None = None
    args: Callable[[StackConfig], tuple[str, ...]] = lambda c: ()
    dev_server: bool = False
    health_url: Callable[[StackConfig], str] | None = None
    health_headers: Mapping[str, str] = field(default_factory=dict)
    ready_marker: str | None = None
    # The dev server logs a screenful of expected errors while it shuts down.
    quiet_when_stopping: bool = False
    # Lines not worth printing (still kept for the report of a crash).
    hidden: Callable[[str], bool] | None = None

    def probe(self, config: StackConfig) -> Probe:
        """Whether a child of this service is ready (not the dev server's)."""
        if self.health_url is not None:
            url, headers = self.health_url(config), dict(self.health_headers)
            return lambda _: http_ok(url, headers=headers)
        assert self.ready_marker is not None, f"{self.name} has no readiness check"
        return lambda child: child.marker_seen


SERVICES = (
    Service(
        "temporal",
        ports=lambda c: [
            (c.temporal_host, c.temporal_port),
            (c.temporal_host, c.ui_port),
            (c.temporal_host, c.temporal_metrics_port),
        ],
        dev_server=True,
        quiet_when_stopping=True,
    ),
    Service(
        "simulator",
        ports=lambda c: [(c.simulator_host, c.simulator_port)],
        python_args=("-m", "gateway.simulator"),
        health_url=lambda c: f"{c.simulator_url}/healthz",
    ),
    Service(
        "localstripe",
        # It binds every interface (IPv4 and IPv6); loopback is where a clash shows.
        ports=lambda c: [("127.0.0.1", c.localstripe_port)],
        script="localstripe",
        # --from-scratch: never the store another localstripe left in /tmp.
        args=lambda c: ("--port", str(c.localstripe_port), "--from-scratch"),
        health_url=lambda c: f"{c.localstripe_url}/v1/payment_intents?limit=1",
        health_headers={"Authorization": f"Bearer {LOCALSTRIPE_PROBE_KEY}"},
        hidden=access_log_line,
    ),
    Service(
        # Receipts by e-mail land here (CONTRACT §16), unless PAYMENTS_SMTP_URL names a server.
        "mail",
        ports=lambda c: [("127.0.0.1", c.mail_port)],
        python_args=("-m", "devstack.mail"),
        args=lambda c: ("--port", str(c.mail_port), "--dir", str(c.mail_dir)),
        ready_marker=MAIL_READY_MARKER,
    ),
    Service(
        "worker",
        ports=lambda c: (
            [parse_host_port(c.worker_metrics_address, 9464)] if c.worker_metrics_address else []
        ),
        python_args=("worker.py",),
        ready_marker=WORKER_READY_MARKER,
    ),
    Service(
        "api",
        ports=lambda c: [(c.api_host, c.api_port)],
        python_args=("-m", "api"),
        health_url=lambda c: f"{c.api_url}/healthz",
    ),
)
SERVICES_BY_NAME = {service.name: service for service in SERVICES}
PROCESS_NAMES = tuple(SERVICES_BY_NAME)
