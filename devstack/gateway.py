"""Which gateway a local stack runs the payments on, and what that asks of it:
:class:`GatewayPlan`, read from the children's environment.

- ``PAYMENTS_GATEWAY=simulator`` (the default): the stack starts the simulator.
- ``PAYMENTS_GATEWAY=stripe`` without ``PAYMENTS_STRIPE_API_BASE``: the stack
  starts localstripe (the venv's console script, ``--from-scratch``, on
  ``PAYMENTS_LOCALSTRIPE_PORT``) and points the children at it; no simulator.
- ``PAYMENTS_GATEWAY=stripe`` with a base URL: the stack starts no gateway, and
  :func:`check_stripe_server` makes sure something answers there, with the
  configured key, before the stack says it is up.

``--from-scratch`` matters: otherwise localstripe loads the store that any
localstripe on the machine last wrote to ``/tmp/localstripe.pickle`` (they all
write it, on every change, from scratch or not): half written while another
one writes it, or full of another run's PaymentIntents.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Literal
from urllib.parse import urlsplit

import httpx

from devstack.errors import StackError

GatewayName = Literal["simulator", "stripe"]
GATEWAYS: tuple[GatewayName, ...] = ("simulator", "stripe")
# The processes that are a gateway: the stack starts at most one of them.
GATEWAY_PROCESSES = frozenset({"simulator", "localstripe"})
# The key the adapter uses when none is set (payments.settings.Settings).
DEFAULT_STRIPE_KEY = "sk_test_stripe"
# How long a Stripe server given by URL may take to answer: long enough for
# one started in the background just before `make run` (the README's recipe).
STRIPE_CHECK_TIMEOUT = 10.0
_CHECK_INTERVAL = 0.25


@dataclass(frozen=True)
class GatewayPlan:
    """The gateway of a stack, as its environment names it."""

    name: GatewayName
    # Stripe mode: the Stripe-compatible server the children were pointed at;
    # None when the stack starts a localstripe of its own.
    stripe_api_base: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> GatewayPlan:
        name = env.get("PAYMENTS_GATEWAY") or "simulator"
        if name == "simulator":
            return cls("simulator")
        if name == "stripe":
            base = (env.get("PAYMENTS_STRIPE_API_BASE") or "").strip().rstrip("/")
            return cls("stripe", base or None)
        raise ValueError(f"PAYMENTS_GATEWAY must be one of {', '.join(GATEWAYS)}, not {name!r}")

    @property
    def own_localstripe(self) -> bool:
        return self.name == "stripe" and self.stripe_api_base is None

    @property
    def process(self) -> str | None:
        """The gateway process the stack starts, if any."""
        if self.name == "simulator":
            return "simulator"
        return "localstripe" if self.own_localstripe else None


def stripe_problem(url: str, api_key: str, timeout: float = 5.0) -> tuple[str, bool] | None:
    """What is wrong with the Stripe server at ``url``, and whether waiting may
    mend it; ``None`` when it lists PaymentIntents for ``api_key``."""
    host = urlsplit(url).hostname or ""
    try:
        # A developer's HTTP(S)_PROXY is for the world, not for loopback.
        with httpx.Client(timeout=timeout, trust_env=not _loopback(host)) as client:
            answer = client.get(
                f"{url}/v1/payment_intents",
                params={"limit": 1},
                headers={"Authorization": f"Bearer {api_key}"},
            )
    except httpx.HTTPError as exc:
        return f"nothing answers there ({str(exc) or type(exc).__name__})", True
    if answer.status_code == 200:
        return None
    said = f"GET /v1/payment_intents answered HTTP {answer.status_code}"
    if answer.status_code in (401, 403):
        return f"{said}: the server refuses the key; check PAYMENTS_STRIPE_API_KEY", False
    return f"{said}; is it a Stripe-compatible server?", answer.status_code >= 500


def check_stripe_server(
    url: str,
    api_key: str,
    *,
    timeout: float = STRIPE_CHECK_TIMEOUT,
    wait: Callable[[float], None] = time.sleep,
) -> None:
    """Return once the Stripe server at ``url`` answers; raise :class:`StackError`
    saying why not after ``timeout`` (at once when waiting cannot help).
    ``wait`` sleeps between tries; the stack's raises when it is stopped."""
    deadline = time.monotonic() + timeout
    while True:
        found = stripe_problem(url, api_key)
        if found is None:
            return
        problem, worth_waiting = found
        if not worth_waiting or time.monotonic() >= deadline:
            raise StackError(
                f"PAYMENTS_GATEWAY=stripe, but the Stripe server at "
                f"PAYMENTS_STRIPE_API_BASE={url} does not serve: {problem}. Start it "
                "first, or leave PAYMENTS_STRIPE_API_BASE unset and the stack starts "
                "a localstripe of its own"
            )
        wait(_CHECK_INTERVAL)


def _loopback(host: str) -> bool:
    return host in ("localhost", "::1") or host.startswith("127.")
