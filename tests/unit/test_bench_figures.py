"""The bench's arithmetic: requests counted from the dev server's metrics, the
targets judged from a result, where a run writes and what it exits with
(bench/). The measuring itself is `make bench`."""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bench import compare, report
from bench.__main__ import RESULTS

ROOT = Path(__file__).resolve().parents[2]

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


def _ignored_by_git(path: Path) -> bool:
    # --no-index: whether .gitignore covers it, tracked or not.
    found = subprocess.run(
        ["git", "check-ignore", "--quiet", "--no-index", str(path.relative_to(ROOT))], cwd=ROOT
    )
    assert found.returncode in (0, 1), found
    return found.returncode == 0


def test_a_quick_run_leaves_the_full_runs_files_alone() -> None:
    full = report.outputs(RESULTS, quick=False)
    quick = report.outputs(RESULTS, quick=True)
    # The full run's are the ones the README quotes, committed.
    assert (full.results.name, full.plot.name) == ("latest.json", "latency_vs_load.png")
    assert {quick.results, quick.plot}.isdisjoint({full.results, full.plot})
    assert (quick.results.parent, quick.plot.parent) == (RESULTS, RESULTS)
    assert (quick.results.suffix, quick.plot.suffix) == (".json", ".png")
    assert _ignored_by_git(quick.results) and _ignored_by_git(quick.plot)
    assert not _ignored_by_git(full.results) and not _ignored_by_git(full.plot)


JUDGED_ALL_MET = [("throughput", "0.9x", True), ("push latency", "20 ms", True)]
JUDGED_ONE_MISSED = [("throughput", "0.7x", False), ("push latency", "20 ms", True)]


def test_a_full_run_that_meets_every_target_exits_0() -> None:
    verdict = report.verdict(JUDGED_ALL_MET, quick=False, report_only=False)
    assert (verdict.lines[-1], verdict.exit_status) == ("2 of 2 targets met", 0)


def test_a_full_run_that_misses_a_target_exits_1() -> None:
    verdict = report.verdict(JUDGED_ONE_MISSED, quick=False, report_only=False)
    assert (verdict.lines, verdict.exit_status) == (["1 of 2 targets met"], 1)


def test_report_makes_a_full_run_a_report_that_exits_0() -> None:
    verdict = report.verdict(JUDGED_ONE_MISSED, quick=False, report_only=True)
    assert (verdict.lines[-1], verdict.exit_status) == ("1 of 2 targets met", 0)
    assert "a report, not a check" in verdict.lines[0]


@pytest.mark.parametrize("judged", [JUDGED_ALL_MET, JUDGED_ONE_MISSED])
@pytest.mark.parametrize("report_only", [False, True])
def test_a_quick_run_judges_nothing_and_exits_0(
    judged: list[tuple[str, str, bool]], report_only: bool
) -> None:
    verdict = report.verdict(judged, quick=True, report_only=report_only)
    assert verdict.exit_status == 0
    assert verdict.lines[-1] == (
        "quick run: a smoke test of the bench, its figures are not the targets' measure"
    )
