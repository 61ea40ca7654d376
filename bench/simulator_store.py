"""What keeping the simulator's ledger on disk costs: N authorize+capture
pairs against a :class:`~gateway.simulator.core.SimulatorLedger` in memory
(what :mod:`gateway.memory` uses) and over a SQLite file (what
``python -m gateway.simulator`` uses), called as the HTTP app calls it
(``ledger.run``), without HTTP.

``python -m bench.simulator_store [--pairs N] [--repeats R]`` prints, for each,
the median wall time of R runs, the time per call, and the ratio file/memory;
then how long a restarted simulator takes to read that file back. Every run
checks that it committed (or read) 2N operations, so a fast wrong answer
cannot pass.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import statistics
import tempfile
import time
from pathlib import Path

from gateway.simulator.core import SimulatorLedger


async def _pair(ledger: SimulatorLedger, n: int) -> None:
    auth = await ledger.run(
        functools.partial(
            ledger.authorize,
            reference=f"pay_{n}",
            amount=1999,
            currency="usd",
            payment_method="pm_card_visa",
            idempotency_key=f"pay_{n}:authorize",
        )
    )
    await ledger.run(
        functools.partial(
            ledger.capture,
            authorization_id=auth.id,
            amount=1999,
            idempotency_key=f"pay_{n}:capture",
        )
    )


async def _pairs(ledger: SimulatorLedger, pairs: int) -> float:
    started = time.perf_counter()
    for n in range(pairs):
        await _pair(ledger, n)
    elapsed = time.perf_counter() - started
    assert len(ledger.ledger()) == 2 * pairs
    return elapsed


async def _median(pairs: int, repeats: int, on_disk: bool) -> float:
    times = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as directory:
            path = Path(directory, "simulator.sqlite") if on_disk else None
            ledger = SimulatorLedger(path=path)
            try:
                times.append(await _pairs(ledger, pairs))
            finally:
                ledger.close()
    return statistics.median(times)


async def _reopen(pairs: int) -> float:
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory, "simulator.sqlite")
        ledger = SimulatorLedger(path=path)
        await _pairs(ledger, pairs)
        ledger.close()
        started = time.perf_counter()
        again = SimulatorLedger(path=path)
        elapsed = time.perf_counter() - started
        assert len(again.ledger()) == 2 * pairs
        again.close()
    return elapsed


async def main(pairs: int, repeats: int) -> None:
    memory = await _median(pairs, repeats, on_disk=False)
    on_disk = await _median(pairs, repeats, on_disk=True)
    calls = 2 * pairs
    print(f"{pairs} authorize+capture pairs, median of {repeats} runs")
    for name, seconds in (("memory", memory), ("sqlite", on_disk)):
        print(f"  {name:7} {seconds * 1000:8.1f} ms  {seconds / calls * 1e6:7.1f} µs/call")
    print(f"  ratio sqlite/memory: {on_disk / memory:.1f}x")
    print(f"  reopening the file ({calls} operations): {await _reopen(pairs) * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.pairs, arguments.repeats))
