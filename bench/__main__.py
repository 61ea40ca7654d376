"""`python -m bench`: every benchmark, one run, results in bench/results/."""

from __future__ import annotations

import asyncio

from bench import push_latency

if __name__ == "__main__":
    asyncio.run(push_latency.main())
