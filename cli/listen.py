"""``payments listen``: a local webhook receiver the service delivers to.

It registers a temporary endpoint pointing at itself, leased: the service
removes an endpoint whose lease is not renewed (``lease_seconds``), so a
``listen`` killed with SIGKILL leaves nothing behind for longer than the
lease. Each delivery's signature is checked with ``standardwebhooks``; a
good one is printed and forwarded, as it came, to ``--forward-to``, and the
service is answered with what the forward got (2xx: delivered; anything else:
the service retries on its schedule). Ctrl-C or SIGTERM removes the endpoint.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from standardwebhooks import Webhook, WebhookVerificationError

# A body larger than this is not a delivery of ours.
MAX_BODY = 1024 * 1024
LEASE_SECONDS = 60
RENEW_EVERY = 20.0
FORWARDED_HEADERS = (
    "content-type",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
)


class Receiver:
    """Checks, prints and forwards deliveries; ``secret`` is set once registered."""

    def __init__(self, forward_to: str, say: Callable[[str], None]) -> None:
        self.forward_to = forward_to
        self.say = say
        self.secret: str | None = None
        self._http = httpx.Client(timeout=10)

    def handle(self, body: bytes, headers: dict[str, str]) -> int:
        """The status to answer the service with."""
        if self.secret is None:
            return 503
        try:
            event: dict[str, Any] = Webhook(self.secret).verify(body, headers)
        except (WebhookVerificationError, ValueError):
            self.say(f"{_now()}  BAD SIGNATURE  {headers.get('webhook-id', '?')}  (not forwarded)")
            return 400
        sent = {name: headers[name] for name in FORWARDED_HEADERS if name in headers}
        try:
            forwarded = self._http.post(self.forward_to, content=body, headers=sent)
            outcome = f"-> {forwarded.status_code}"
            status = 200 if forwarded.is_success else 502
        except httpx.HTTPError as err:
            outcome = f"-> {self.forward_to} unreachable ({type(err).__name__})"
            status = 502
        self.say(
            f"{_now()}  {event.get('type', '?'):<26} {event.get('payment_id', '?')}  "
            f"seq {event.get('seq', '?')}  signature ok  {outcome}"
        )
        return status

    def close(self) -> None:
        self._http.close()


def _now() -> str:
    return datetime.now().strftime("%H:%M:%S")


def serve(receiver: Receiver) -> ThreadingHTTPServer:
    """The receiver on a free port of 127.0.0.1, served from a thread."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length") or 0)
            if length > MAX_BODY:
                self.send_response(413)
                self.end_headers()
                return
            body = self.rfile.read(length)
            headers = {name.lower(): value for name, value in self.headers.items()}
            status = receiver.handle(body, headers)
            self.send_response(status)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the receiver prints its own line per delivery

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def stop(server: ThreadingHTTPServer) -> None:
    server.shutdown()
    server.server_close()


def description() -> str:
    return f"payments listen ({socket.gethostname()} pid {os.getpid()})"


def until_stopped(renew: Callable[[], None]) -> None:
    """Renew the lease every ``RENEW_EVERY`` seconds until SIGINT or SIGTERM."""
    stopped = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopped.set())
    while not stopped.wait(RENEW_EVERY):
        renew()
