"""The four services of the local stack, as data: what each runs, the ports it
binds, and how it shows that it is ready. :data:`SERVICES` is in start order;
stopping goes the other way.

The dev server is the one service that is not a Python entry point of this
repository; its command line and its readiness are :mod:`devstack.temporal`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx

from devstack.config import StackConfig
from devstack.processes import ChildProcess

WORKER_READY_MARKER = "worker ready"

Probe = Callable[[ChildProcess], bool]


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        # trust_env=False: a developer's HTTP(S)_PROXY must not swallow loopback calls.
        with httpx.Client(timeout=timeout, trust_env=False) as client:
            return client.get(url).status_code == 200
    except httpx.HTTPError:
        return False


@dataclass(frozen=True)
class Service:
    """One process of the stack.

    Ready means: ``GET <health_base>/healthz`` answers 200, or ``ready_marker`` was
    printed, or (the dev server) what :class:`devstack.temporal.DevServer` checks.
    """

    name: str
    # The ports it binds: nothing else may hold them when the stack starts.
    ports: Callable[[StackConfig], list[tuple[str, int]]]
    # Arguments to the stack's Python interpreter (the contract's entry points).
    python_args: tuple[str, ...] = ()
    dev_server: bool = False
    health_base: Callable[[StackConfig], str] | None = None
    ready_marker: str | None = None
    # The dev server logs a screenful of expected errors while it shuts down.
    quiet_when_stopping: bool = False

    def probe(self, config: StackConfig) -> Probe:
        """Whether a child of this service is ready (not the dev server's)."""
        if self.health_base is not None:
            health = f"{self.health_base(config)}/healthz"
            return lambda _: http_ok(health)
        assert self.ready_marker is not None, f"{self.name} has no readiness check"
        return lambda child: child.marker_seen


SERVICES = (
    Service(
        "temporal",
        ports=lambda c: [(c.temporal_host, c.temporal_port), (c.temporal_host, c.ui_port)],
        dev_server=True,
        quiet_when_stopping=True,
    ),
    Service(
        "simulator",
        ports=lambda c: [(c.simulator_host, c.simulator_port)],
        python_args=("-m", "gateway.simulator"),
        health_base=lambda c: c.simulator_url,
    ),
    Service(
        "worker",
        ports=lambda c: [],
        python_args=("worker.py",),
        ready_marker=WORKER_READY_MARKER,
    ),
    Service(
        "api",
        ports=lambda c: [(c.api_host, c.api_port)],
        python_args=("-m", "api"),
        health_base=lambda c: c.api_url,
    ),
)
SERVICES_BY_NAME = {service.name: service for service in SERVICES}
PROCESS_NAMES = tuple(SERVICES_BY_NAME)
