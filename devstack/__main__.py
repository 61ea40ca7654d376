"""`python -m devstack` (`make run`): the whole stack on the contract's ports, its
banner once it is up, and Ctrl-C (or SIGTERM) to stop it; a second Ctrl-C kills
instead of waiting."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from devstack.errors import StackError, StackInterrupted
from devstack.processes import READY_TIMEOUT
from devstack.stack import Stack


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Start the Temporal dev server, the gateway (the simulator; with "
        "PAYMENTS_GATEWAY=stripe, localstripe unless PAYMENTS_STRIPE_API_BASE names a server), "
        "the worker and the API; Ctrl-C stops them. Ports and paths come from TEMPORAL_ADDRESS "
        "and PAYMENTS_* vars.",
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
