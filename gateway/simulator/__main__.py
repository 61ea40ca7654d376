"""``python -m gateway.simulator``: serve the simulator on the configured host and port."""

from __future__ import annotations

import uvicorn

from gateway.simulator.app import create_app
from payments.production import load_settings


def main() -> None:
    settings = load_settings()
    uvicorn.run(
        create_app(),
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
