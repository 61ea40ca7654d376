"""``Prefer: wait=N`` (RFC 7240): how long a caller will wait for the outcome.

Asynchronous is the default: ``202`` and a ``Retry-After`` hint. With
``wait=N`` the same call waits up to N seconds (at most 60) and answers with
the settled object (``200``) when it settles in time; ``Preference-Applied``
says the preference was honoured.
"""

from __future__ import annotations

import re
from typing import Annotated

from fastapi import Depends, Header

from api.errors import InvalidRequest

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
