"""``python -m gateway.simulator``: serve the simulator on the configured host
and port, its ledger kept in ``<data_dir>/simulator.sqlite`` (deleting the data
directory starts it from empty)."""

from __future__ import annotations

import logging

import uvicorn

from gateway.simulator.app import create_app
from gateway.simulator.notify import Notifier
from gateway.simulator.store import FILE_NAME
from payments.production import load_settings


def main() -> None:
    settings = load_settings()
    # As the API and the worker log: the webhook tries (gateway.simulator.notify)
    # are the first thing to read when a payment was not woken by its webhook.
    logging.basicConfig(level=settings.log_level, format="%(levelname)s %(name)s: %(message)s")
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    # The app closes the file as it shuts down: uvicorn ends the process by
    # re-raising SIGTERM or SIGINT, so nothing after uvicorn.run would run.
    # A process killed outright leaves the file as consistent (WAL).
    target = settings.simulator_webhook_target()
    notifier = (
        Notifier(target, settings.simulator_webhook_secret.get_secret_value()) if target else None
    )
    uvicorn.run(
        create_app(path=settings.data_dir / FILE_NAME, notifier=notifier),
        host=settings.simulator_host,
        port=settings.simulator_port,
        log_level=settings.log_level.lower(),
        access_log=False,
        # The simulator speaks plain HTTP only; skipping websockets also skips
        # importing a websockets implementation it would never use.
        ws="none",
    )


if __name__ == "__main__":
    main()
