"""The gateway simulator: a PSP-like service for development and tests.

:mod:`.core` keeps the ledger; :mod:`.app` serves it over HTTP;
``python -m gateway.simulator`` runs it (CONTRACT §8).
"""

from gateway.simulator.core import Faults, SimulatorLedger

__all__ = ["Faults", "SimulatorLedger"]
