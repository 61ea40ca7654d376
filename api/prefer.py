"""``Prefer: wait=N`` (RFC 7240): how long a caller will wait for the outcome.

Asynchronous is the default: ``202`` and a ``Retry-After`` hint. With
``wait=N`` the same call waits up to N seconds (at most 60) and answers with
the settled object (``200``) when it settles in time; ``Preference-Applied``
says the preference was honoured.

A wait follows the payment's changes (:meth:`payments.service.PaymentService.changes`) and
ends when the caller's condition holds, when its seconds run out, or when the
client goes away, whichever comes first; it never sends the workflow anything.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
from collections.abc import AsyncGenerator, Callable
from typing import Annotated

from fastapi import Depends, Header, Request

from api.errors import InvalidRequest
from payments.models import PaymentState

MAX_WAIT_SECONDS = 60
RETRY_AFTER_SECONDS = 1
_WAIT = re.compile(r"^\s*wait\s*=\s*(\S*?)\s*$", re.IGNORECASE)


def parse_wait(header: str | None) -> int | None:
    """Seconds asked for by ``Prefer``; other preferences are ignored, as RFC 7240 says."""
    if header is None:
        return None
    for preference in header.split(","):
        match = _WAIT.match(preference.split(";")[0])
        if match is None:
            continue
        value = match.group(1).strip('"')
        if not re.fullmatch(r"[0-9]{1,6}", value):
            raise InvalidRequest(
                400,
                "invalid_prefer_header",
                "Prefer: wait takes whole seconds, e.g. wait=10",
                "Prefer",
            )
        return min(int(value), MAX_WAIT_SECONDS)
    return None


async def _prefer_wait(prefer: Annotated[str | None, Header(max_length=200)] = None) -> int | None:
    return parse_wait(prefer)


PreferWait = Annotated[int | None, Depends(_prefer_wait)]


def status_code(wait: int | None, settled: bool) -> int:
    """``200`` only for a caller who asked to wait and got the outcome; else ``202``."""
    return 200 if wait is not None and settled else 202


def response_headers(wait: int | None, settled: bool) -> dict[str, str]:
    headers = {"Vary": "Prefer"}
    if wait is not None:
        headers["Preference-Applied"] = f"wait={wait}"
    if not settled:
        headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return headers


async def wait_until(
    request: Request,
    seconds: float,
    done: Callable[[PaymentState], bool],
    changes: AsyncGenerator[PaymentState, None],
) -> PaymentState:
    """The first of ``changes`` for which ``done`` holds; or, when ``seconds``
    run out, the workflow closes or the client leaves, the last one read."""
    async with contextlib.aclosing(changes):
        # The first read (404 for a stranger) is not cut short by the deadline.
        latest = await anext(changes)
        if done(latest):
            return latest

        async def follow() -> None:
            nonlocal latest
            async for state in changes:
                latest = state
                if done(state):
                    return

        following = asyncio.ensure_future(follow())
        leaving = asyncio.ensure_future(_client_gone(request))
        try:
            await asyncio.wait(
                {following, leaving}, timeout=seconds, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            # Cancelling the follower cancels its history long poll: nothing
            # of this wait outlives the request.
            following.cancel()
            leaving.cancel()
            await asyncio.gather(following, leaving, return_exceptions=True)
        failed = None if following.cancelled() else following.exception()
        if failed is not None:
            raise failed  # Temporal unreachable, say: the error handlers answer it
        return latest


async def _client_gone(request: Request) -> None:
    """Returns once the client has closed the connection (the body is read by now)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass
