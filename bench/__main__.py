"""`python -m bench` (`make bench`): ours against bare Temporal, one run, one
stack. Prints the Markdown table, writes bench/results/latest.json and
latency_vs_load.png, and ends with "N of M targets met": it exits 1 when one is
missed, unless `--report`. `--quick` (`make bench-quick`) is the short subset,
about 3.5 minutes: a smoke test of the bench, writing quick.json and
quick_latency_vs_load.png instead, and exiting 0 whatever its figures
(bench/report.py says why). `--api-worker` runs ours with PAYMENTS_API_WORKER:
the API runs a worker too and starts payments eagerly on it; a full run of it
writes latest_api_worker.json and latency_vs_load_api_worker.png."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

from bench import compare, report
from bench.stacks import API_WORKER_ENV, bench_stack

RESULTS = Path(__file__).parent / "results"


async def main(quick: bool, report_only: bool, api_worker: bool) -> int:
    profile = compare.QUICK if quick else compare.FULL
    with bench_stack(env=API_WORKER_ENV if api_worker else None) as (stack, metrics_url):
        conditions = {**compare.conditions(stack), "api_worker": api_worker}
        result = await compare.measure(stack, metrics_url, profile)
    result["conditions"] = conditions
    judged = report.targets(result)
    result["targets"] = [
        {"target": target, "measured": measured, "met": met} for target, measured, met in judged
    ]
    files = report.outputs(RESULTS, quick=quick, api_worker=api_worker)
    RESULTS.mkdir(exist_ok=True)
    files.results.write_text(json.dumps(result, indent=2) + "\n")
    report.plot(result, files.plot)
    print(report.markdown(result))
    print(f"written: {files.results}, {files.plot}")
    verdict = report.verdict(judged, quick=quick, report_only=report_only)
    print("\n".join(verdict.lines))
    return verdict.exit_status


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="the short subset (about 3.5 minutes)")
    parser.add_argument("--report", action="store_true", help="exit 0 even when a target is missed")
    parser.add_argument(
        "--api-worker", action="store_true", help="the API runs a worker and starts eagerly"
    )
    arguments = parser.parse_args()
    sys.exit(asyncio.run(main(arguments.quick, arguments.report, arguments.api_worker)))
