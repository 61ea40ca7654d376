"""The gateway simulator: a PSP-like service for development and tests.

:mod:`.core` keeps the ledger, :mod:`.store` keeps it on disk; :mod:`.app`
serves it over HTTP; ``python -m gateway.simulator`` runs it (CONTRACT §8),
its ledger in ``<data_dir>/simulator.sqlite``.
"""

from gateway.simulator.core import Faults, SimulatorLedger

__all__ = ["Faults", "SimulatorLedger"]
