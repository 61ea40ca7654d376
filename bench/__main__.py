"""`python -m bench` (`make bench`): ours against bare Temporal, one run, one
stack; `--quick` (`make bench-quick`) is the short subset, about 2.5 minutes.
Prints the Markdown table and writes bench/results/latest.json and
latency_vs_load.png."""

from __future__ import annotations

import argparse
import asyncio
import json
from pathlib import Path

from bench import compare, report
from bench.stacks import bench_stack

RESULTS = Path(__file__).parent / "results"


async def main(quick: bool) -> None:
    profile = compare.QUICK if quick else compare.FULL
    with bench_stack() as (stack, metrics_url):
        conditions = compare.conditions(stack)
        result = await compare.measure(stack, metrics_url, profile)
    result["conditions"] = conditions
    result["targets"] = [
        {"target": target, "measured": measured, "met": met}
        for target, measured, met in report.targets(result)
    ]
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(result, indent=2) + "\n")
    report.plot(result, RESULTS / "latency_vs_load.png")
    print(report.markdown(result))
    print(f"written: {RESULTS / 'latest.json'}, {RESULTS / 'latency_vs_load.png'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short subset (about 2.5 minutes)")
    asyncio.run(main(parser.parse_args().quick))
