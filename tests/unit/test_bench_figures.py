"""The bench's arithmetic: requests counted from the dev server's metrics, and
the targets judged from a result (bench/). The measuring itself is `make bench`."""

from __future__ import annotations

import copy
from typing import Any

from bench import compare, report

SCRAPE = """\
# HELP service_requests service_requests counter
# TYPE service_requests counter
service_requests{namespace="default",operation="StartWorkflowExecution",service_name="frontend"} 12
service_requests{namespace="default",operation="PollWorkflowTaskQueue",service_name="frontend"} 30
service_requests{namespace="_unknown_",operation="PollWorkflowTaskQueue",service_name="frontend"} 6
service_requests{namespace="default",operation="AddWorkflowTask",service_name="matching"} 99
service_latency_count{operation="StartWorkflowExecution",service_name="frontend"} 12
"""


def test_requests_are_the_frontends_by_operation() -> None:
    counted = compare.frontend_requests(SCRAPE)
    # Summed over namespaces; the matching service's own calls and other series left out.
    assert counted == {"StartWorkflowExecution": 12, "PollWorkflowTaskQueue": 36}


def test_requests_per_payment_leave_out_what_payments_did_not_cause() -> None:
    before = compare.frontend_requests(SCRAPE)
    after = before.copy()
    # 100 payments; two DescribeNamespace calls in the meantime are the workers' own.
    after.update({"StartWorkflowExecution": 100, "PollWorkflowTaskQueue": 305})
    after.update({"DescribeNamespace": 2})
    assert compare.per_payment(before, after, 100) == {
        "PollWorkflowTaskQueue": 3.05,
        "StartWorkflowExecution": 1.0,
    }


def _point(level: float, p50: float, first: float) -> dict[str, Any]:
    return {
        "level": level,
        "offered_per_s": 10 * level,
        "latency_ms": {"p50": p50, "p95": p50, "p99": p50, "n": 10},
        "first_ms": {"p50": first, "p95": first, "p99": first, "n": 10},
        "failed": 0,
    }


RESULT: dict[str, Any] = {
    "saturation": {
        "baseline": {"payments_per_s": 20.0},
        "ours_async": {"payments_per_s": 15.0},
        "ours_sync": {"payments_per_s": 17.0},
    },
    "load": {
        "baseline": [_point(0.25, 60, 6)],
        "ours_async": [_point(0.25, 90, 17)],
        "ours_sync": [_point(0.25, 78, 0)],
    },
    "push_latency": {"sse": {"p50_ms": 21.0}},
    "memory": [
        {"open_payments": 500, "worker_rss_mib": 200.0},
        {"open_payments": 2000, "worker_rss_mib": 350.0},
        {"open_payments": 12000, "worker_rss_mib": 360.0},
    ],
}


def test_targets_are_judged_against_the_same_runs_baseline() -> None:
    judged = {target: (measured, met) for target, measured, met in report.targets(RESULT)}
    assert judged["throughput ours_async >= 0.8x baseline"] == ("0.75x", False)
    assert judged["throughput ours_sync >= 0.8x baseline"] == ("0.85x", True)
    assert judged["sync p50 <= 1.3x baseline at 25%"] == ("1.30x", True)
    assert judged["202 p50 <= start_workflow p50 + 10 ms at 25%"] == ("+11.0 ms", False)
    assert judged["push latency p50 <= 50 ms"] == ("21.0 ms", True)
    # Judged beyond the worker's cache only: 2000 -> 12000, +10 MiB, 1 MiB per 1000.
    assert judged["worker RSS flat from 2000 to 12000 open"] == ("+1.0 MiB per 1000", True)


def test_worker_memory_is_not_judged_below_the_cache() -> None:
    small = copy.deepcopy(RESULT)
    small["memory"] = [
        {"open_payments": 500, "worker_rss_mib": 200.0},
        {"open_payments": 900, "worker_rss_mib": 290.0},
    ]
    assert not [target for target, _, _ in report.targets(small) if "RSS" in target]
