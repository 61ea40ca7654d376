"""The local mail sink (CONTRACT §16): a real SMTP server (``aiosmtpd``) that
keeps every message it is sent as a ``.eml`` file and prints one line for
each, so receipts can be read on a laptop and nothing leaves it.

``python -m devstack.mail --port 1025 --dir .data/mail`` is what `make run`
starts; tests serve a :class:`MailSink` in their own event loop with
:func:`serve`, refusing recipients when they want a refusal.

The line it prints names the file and the subject, never the recipient: a
stack's output is a log like any other, and an address is personal data.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import logging
import os
import re
import signal
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from aiosmtpd.smtp import SMTP, Envelope, Session

from devstack.services import MAIL_READY_MARKER

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


class MailSink:
    """An ``aiosmtpd`` handler: accepts every message (unless ``refuse`` says
    no to its recipient, with a 550) and writes it under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        refuse: Callable[[str], bool] | None = None,
        announce: Callable[[str], None] = print,
    ) -> None:
        self.directory = directory
        self.refuse = refuse
        self.announce = announce
        self._numbers = itertools.count(1)

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: Any
    ) -> str:
        if self.refuse is not None and self.refuse(address):
            # As Postfix words it: the address quoted back.
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        message = message_from_bytes(raw, policy=default_policy)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        name = _UNSAFE.sub("_", str(message.get("Message-ID", "")).strip("<>"))[:120] or "message"
        path = self.directory / f"{stamp}-{next(self._numbers):04d}-{name}.eml"
        self.directory.mkdir(parents=True, exist_ok=True)
        partial = path.with_suffix(".part")
        partial.write_bytes(raw)
        os.replace(partial, path)  # a reader never sees half a message
        self.announce(f"mail: {path} ({message.get('Subject', 'no subject')})")
        return "250 Message accepted for delivery"


async def serve(sink: MailSink, host: str = "127.0.0.1", port: int = 1025) -> asyncio.Server:
    """The sink, listening; close the server to stop it."""
    loop = asyncio.get_running_loop()
    # hostname: aiosmtpd would otherwise ask DNS for this machine's name.
    return await loop.create_server(lambda: SMTP(sink, hostname="localhost"), host, port)


async def _main(host: str, port: int, directory: Path) -> None:
    # aiosmtpd logs each command at DEBUG, recipients among them: none of that here.
    logging.getLogger("mail.log").setLevel(logging.WARNING)
    server = await serve(
        MailSink(directory, announce=lambda line: print(line, flush=True)), host, port
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(
        f"{MAIL_READY_MARKER} on smtp://{host}:{port}, keeping messages in {directory}", flush=True
    )
    async with server:
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=1025)
    parser.add_argument("--dir", type=Path, default=Path(".data/mail"))
    arguments = parser.parse_args()
    asyncio.run(_main(arguments.host, arguments.port, arguments.dir))
