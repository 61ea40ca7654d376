"""``InMemoryGateway``: the ``Gateway`` port straight on a
:class:`~gateway.simulator.core.SimulatorLedger`, no HTTP, for tests that
skip time. Same semantics as the simulator over HTTP, faults included: an
injected outage or a dropped reply raises a ``TransientGatewayError``
(a dropped reply after committing)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from gateway.simulator.core import SimulatorLedger
from payments.gateway import Authentication, GatewayOperation


class InMemoryGateway:
    # The simulator's core, which keeps every key's first outcome.
    replays_by_key = True

    def __init__(self, ledger: SimulatorLedger | None = None) -> None:
        self.ledger = ledger or SimulatorLedger()

    async def authorize(
        self,
        *,
        reference: str,
        amount: int,
        currency: str,
        payment_method: str,
        idempotency_key: str,
        since: datetime | None = None,
        first_attempt: bool = False,
        authorization_id: str | None = None,
        remember: Callable[[str], None] | None = None,
        return_url: str | None = None,
    ) -> GatewayOperation | Authentication:
        # It honours idempotency keys and indexes by reference: the hints change nothing.
        return await self.ledger.run(
            lambda: self.ledger.authorize(
                reference=reference,
                amount=amount,
                currency=currency,
                payment_method=payment_method,
                idempotency_key=idempotency_key,
                return_url=return_url,
            )
        )

    async def authentication(self, authentication_id: str) -> Authentication:
        return self.ledger.authentication(authentication_id)

    async def cancel_authentication(
        self, authentication_id: str, *, idempotency_key: str
    ) -> Authentication:
        return await self.ledger.run(lambda: self.ledger.cancel_authentication(authentication_id))

    async def capture(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        return await self.ledger.run(
            lambda: self.ledger.capture(
                authorization_id=authorization_id, amount=amount, idempotency_key=idempotency_key
            )
        )

    async def void(self, *, authorization_id: str, idempotency_key: str) -> GatewayOperation:
        return await self.ledger.run(
            lambda: self.ledger.void(
                authorization_id=authorization_id, idempotency_key=idempotency_key
            )
        )

    async def refund(
        self, *, authorization_id: str, amount: int, idempotency_key: str
    ) -> GatewayOperation:
        return await self.ledger.run(
            lambda: self.ledger.refund(
                authorization_id=authorization_id, amount=amount, idempotency_key=idempotency_key
            )
        )

    async def find_by_reference(
        self,
        reference: str,
        *,
        since: datetime | None = None,
        authorization_id: str | None = None,
    ) -> list[GatewayOperation]:
        return self.ledger.find_by_reference(reference)

    async def list_operations(self, *, since: datetime, until: datetime) -> list[GatewayOperation]:
        return self.ledger.list_operations(since=since, until=until)

    async def aclose(self) -> None:
        """Nothing to release."""
