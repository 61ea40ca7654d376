"""The simulator telling the service of a customer's decision, the way a PSP
does: an event POSTed to the service's webhook URL, signed as Stripe signs
(``Stripe-Signature: t=<unix time>,v1=<HMAC-SHA256 of "<t>.<body>">``), in
Stripe's event shape, so the service verifies and reads it as it reads
Stripe's (``POST /v1/gateway/webhooks/simulator``).

Best effort, as with any PSP: a few tries within seconds, then it gives up
and logs. The payment does not depend on it: its workflow looks the outcome
up itself when no word comes (CONTRACT §14).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import time

import httpx

from payments.gateway import Authentication

log = logging.getLogger("gateway.simulator.notify")

# Seconds before each try after the first.
_BACKOFF = (0.5, 1.0, 2.0)


def signature(body: bytes, secret: str, at: int) -> str:
    digest = hmac.new(secret.encode(), f"{at}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event_of(authentication: Authentication) -> dict[str, object]:
    """The event for a decided authentication, in Stripe's shape."""
    return {
        "id": f"evt_{secrets.token_hex(12)}",
        "object": "event",
        "type": f"authentication.{authentication.status}",
        "created": int(time.time()),
        "data": {
            "object": {
                "id": authentication.id,
                "object": "authentication",
                "status": authentication.status,
                "metadata": {"payment_id": authentication.reference},
            }
        },
    }


class Notifier:
    """Sends each decision in the background; :meth:`aclose` waits for none."""

    def __init__(self, url: str, secret: str, *, timeout: float = 5.0) -> None:
        self._url = url
        self._secret = secret
        self._client = httpx.AsyncClient(timeout=timeout)
        self._sending: set[asyncio.Task[None]] = set()

    def send(self, authentication: Authentication) -> None:
        task = asyncio.get_running_loop().create_task(
            self._deliver(event_of(authentication), authentication.reference)
        )
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _deliver(self, event: dict[str, object], payment_id: str) -> None:
        body = json.dumps(event, separators=(",", ":")).encode()
        about = f"webhook {event['id']} of {payment_id}"
        for attempt, pause in enumerate((0.0, *_BACKOFF), start=1):
            await asyncio.sleep(pause)
            headers = {
                "content-type": "application/json",
                "stripe-signature": signature(body, self._secret, int(time.time())),
            }
            try:
                response = await self._client.post(self._url, content=body, headers=headers)
            except httpx.HTTPError as err:
                log.info("%s: try %d failed: %s", about, attempt, type(err).__name__)
                continue
            if response.is_success:
                # The service's answer says whether it reached a running payment.
                log.info("%s: try %d answered %s", about, attempt, response.text[:200])
                return
            log.info("%s: try %d got %d", about, attempt, response.status_code)
        log.warning("%s not delivered to %s: gave up", about, self._url)

    async def aclose(self) -> None:
        for task in list(self._sending):
            task.cancel()
        await self._client.aclose()
