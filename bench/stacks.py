"""The stack every benchmark runs against: as `make run` has it
(:class:`devstack.Stack`, dev server on SQLite), with a temporary data directory,
on free ports away from those a developer's `make run` may hold, the merchant's
rate limit lifted, and the dev server's Prometheus metrics on a port of their own."""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from devstack import Stack, StackConfig, StackError, free_ports

# The ports a developer's `make run` may be holding.
DEFAULT_PORTS = frozenset({7233, 8233, 8000, 8100})
# The bench is one merchant on purpose, polling as it likes: lift its rate limit,
# which would otherwise be what it measures.
BENCH_ENV = {"PAYMENTS_RATE_LIMIT_PER_SECOND": "100000", "PAYMENTS_RATE_LIMIT_BURST": "100000"}
# `--api-worker`: the API runs a worker too and starts payments eagerly on it.
API_WORKER_ENV = {"PAYMENTS_API_WORKER": "true"}


def bench_config(data_dir: Path) -> StackConfig:
    """Free ports, never the ones a developer's `make run` may hold."""
    for _ in range(10):
        config = StackConfig.on_free_ports(data_dir)
        ports = {config.temporal_port, config.ui_port, config.api_port, config.simulator_port}
        if not ports & DEFAULT_PORTS:
            return config
    raise StackError("could not find free ports away from the defaults")


def _discard(line: str) -> None:
    pass


@contextlib.contextmanager
def bench_stack(
    dev_server_args: Sequence[str] = (),
    *,
    output: Callable[[str], None] = _discard,
    prefix: str = "payments-bench-",
    env: dict[str, str] | None = None,
    config_changes: dict[str, Any] | None = None,
) -> Iterator[tuple[Stack, str]]:
    """The bench's stack, started, and the URL of the dev server's metrics; stopped
    and its data directory removed on the way out. Its output goes to ``output``;
    ``config_changes`` replace fields of its :class:`StackConfig`."""
    (metrics_port,) = free_ports(1)
    with tempfile.TemporaryDirectory(prefix=prefix) as data_dir:
        args = ["--metrics-port", str(metrics_port), *dev_server_args]
        config = dataclasses.replace(bench_config(Path(data_dir)), **(config_changes or {}))
        merged = {**BENCH_ENV, **(env or {})}
        with Stack(config, env=merged, output=output, dev_server_args=args) as stack:
            yield stack, f"http://127.0.0.1:{metrics_port}/metrics"
