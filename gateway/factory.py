"""Chooses the ``Gateway`` adapter the settings name (``PAYMENTS_GATEWAY``)."""

from __future__ import annotations

from gateway.http_simulator import SimulatorGateway
from gateway.stripe_adapter import StripeGateway
from payments.gateway import Gateway
from payments.settings import Settings


def build_gateway(settings: Settings) -> Gateway:
    match settings.gateway:
        case "simulator":
            return SimulatorGateway(settings.gateway_base(), settings.gateway_timeout_seconds)
        case "stripe":
            return StripeGateway(settings)
