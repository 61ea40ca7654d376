"""What `make bench` prints and keeps: the Markdown table with ratios to the
baseline of the same run, the targets of issue 6 checked, and the plot of
latency against offered load; where a run keeps them, and what it exits with.

A full run (`make bench`) is a check: it exits 1 when a target is missed,
unless ``--report`` asks for the figures only. A quick run (`make bench-quick`)
is a smoke test of the bench itself: its figures are too rough to judge, so it
keeps them apart from the full run's (which the README quotes) and exits 0
whatever they are."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Workflows a worker keeps in memory: the SDK's default max_cached_workflows,
# which worker.py keeps.
WORKFLOW_CACHE = 1000
PATHS = {
    "baseline": "baseline (bare Temporal)",
    "ours_async": "ours, async (202 + SSE)",
    "ours_sync": "ours, sync (Prefer: wait)",
}


QUICK_NOTE = "quick run: a smoke test of the bench, its figures are not the targets' measure"


@dataclass(frozen=True)
class Outputs:
    """The files one run writes."""

    results: Path
    plot: Path


def outputs(directory: Path, *, quick: bool) -> Outputs:
    """The full run's files are the committed ones; a quick run's are its own
    (and ignored by git), so it never overwrites what the README quotes."""
    if quick:
        return Outputs(directory / "quick.json", directory / "quick_latency_vs_load.png")
    return Outputs(directory / "latest.json", directory / "latency_vs_load.png")


@dataclass(frozen=True)
class Verdict:
    """What a run says last, and its exit status."""

    lines: list[str]
    exit_status: int


def verdict(judged: list[tuple[str, str, bool]], *, quick: bool, report_only: bool) -> Verdict:
    """``judged`` as :func:`targets` gives it: a full run fails when any target
    is missed (unless ``report_only``); a quick run's figures decide nothing."""
    missed = [target for target, _, met in judged if not met]
    summary = f"{len(judged) - len(missed)} of {len(judged)} targets met"
    if quick:
        return Verdict([summary, QUICK_NOTE], 0)
    if missed and report_only:
        return Verdict(
            ["--report: a report, not a check; exiting 0 with targets missed", summary], 0
        )
    return Verdict([summary], 1 if missed else 0)


def _ratio(ours: float, base: float) -> str:
    if not base or math.isnan(base) or math.isnan(ours):
        return "n/a"
    return f"{ours / base:.2f}x"


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(target, measured, met) for each target of issue 6."""
    sat = result["saturation"]
    base_tput = sat["baseline"]["payments_per_s"]
    checks = []
    for name in ("ours_async", "ours_sync"):
        ratio = sat[name]["payments_per_s"] / base_tput if base_tput else 0.0
        checks.append((f"throughput {name} >= 0.8x baseline", f"{ratio:.2f}x", ratio >= 0.8))
    for base, sync in zip(result["load"]["baseline"], result["load"]["ours_sync"], strict=True):
        ratio = sync["latency_ms"]["p50"] / base["latency_ms"]["p50"]
        checks.append(
            (f"sync p50 <= 1.3x baseline at {base['level']:.0%}", f"{ratio:.2f}x", ratio <= 1.3)
        )
    for base, ours in zip(result["load"]["baseline"], result["load"]["ours_async"], strict=True):
        gap = ours["first_ms"]["p50"] - base["first_ms"]["p50"]
        checks.append(
            (
                f"202 p50 <= start_workflow p50 + 10 ms at {base['level']:.0%}",
                f"+{gap:.1f} ms",
                gap <= 10,
            )
        )
    push = result["push_latency"]["sse"]["p50_ms"]
    checks.append(("push latency p50 <= 50 ms", f"{push} ms", push <= 50))
    # Flat beyond the worker's cache: below it, each open payment is a cached
    # workflow and memory grows with them by design.
    beyond = [point for point in result["memory"] if point["open_payments"] > WORKFLOW_CACHE]
    if len(beyond) >= 2:
        first, last = beyond[0], beyond[-1]
        grown = last["worker_rss_mib"] - first["worker_rss_mib"]
        per_1000 = 1000 * grown / max(1, last["open_payments"] - first["open_payments"])
        checks.append(
            (
                f"worker RSS flat from {first['open_payments']} to {last['open_payments']} open",
                f"{per_1000:+.1f} MiB per 1000",
                per_1000 <= 2.0,
            )
        )
    return checks


def markdown(result: dict[str, Any]) -> str:
    sat = result["saturation"]
    base = sat["baseline"]
    lines = [
        f"# Payments against bare Temporal ({result['profile']} run)",
        "",
        f"{result['conditions']['machine']}; {result['conditions']['temporal']}; "
        f"load average at start {result['conditions']['load_average_at_start']}; "
        f"{result['conditions']['measured_at']}.",
        "",
        "## Throughput at saturation (closed loop)",
        "",
        "| path | payments/s | ratio | p50 ms | p99 ms | failed |",
        "|---|---|---|---|---|---|",
    ]
    for name, label in PATHS.items():
        run = sat[name]
        lines.append(
            f"| {label} | {run['payments_per_s']} | "
            f"{_ratio(run['payments_per_s'], base['payments_per_s'])} | "
            f"{run['latency_ms']['p50']} | {run['latency_ms']['p99']} | {run['failed']} |"
        )
    cpu = result.get("cpu_ms_per_payment")
    if cpu:
        processes = list(cpu["baseline"])
        lines += [
            "",
            "## Where the time goes: CPU ms per payment at saturation",
            "",
            "| path | " + " | ".join(processes) + " |",
            "|---|" + "---|" * len(processes),
        ]
        for name, label in PATHS.items():
            lines.append(f"| {label} | " + " | ".join(str(cpu[name][p]) for p in processes) + " |")
    requests = result.get("temporal_requests_per_payment")
    if requests:
        operations = sorted({operation for counts in requests.values() for operation in counts})
        lines += [
            "",
            "## Requests to Temporal per payment at saturation",
            "",
            "| path | " + " | ".join(operations) + " | all |",
            "|---|" + "---|" * (len(operations) + 1),
        ]
        for name, label in PATHS.items():
            counts = requests[name]
            cells = [str(counts.get(operation, 0)) for operation in operations]
            lines.append(f"| {label} | " + " | ".join(cells) + f" | {sum(counts.values()):.1f} |")
    history = result.get("history_per_payment")
    if history:
        lines += [
            "",
            "## What one settled payment leaves in Temporal",
            "",
            "| path | history events | state transitions |",
            "|---|---|---|",
        ]
        for name, label in PATHS.items():
            if name in history:
                size = history[name]
                lines.append(f"| {label} | {size['events']} | {size['state_transitions']} |")
    lines += [
        "",
        "## Latency under open-loop load (share of the baseline's saturation rate)",
        "",
        "| load | path | p50 ms | p95 ms | p99 ms | p50 ratio | failed |",
        "|---|---|---|---|---|---|---|",
    ]
    for index, point in enumerate(result["load"]["baseline"]):
        for name, label in PATHS.items():
            ours = result["load"][name][index]
            lat = ours["latency_ms"]
            lines.append(
                f"| {point['level']:.0%} ({point['offered_per_s']}/s) | {label} | {lat['p50']} | "
                f"{lat['p95']} | {lat['p99']} | "
                f"{_ratio(lat['p50'], point['latency_ms']['p50'])} | {ours['failed']} |"
            )
    lines += [
        "",
        "## Time to accept",
        "",
        "| load | baseline start_workflow p50 ms | ours 202 p50 ms | difference |",
        "|---|---|---|---|",
    ]
    for base_point, ours in zip(
        result["load"]["baseline"], result["load"]["ours_async"], strict=True
    ):
        b, o = base_point["first_ms"]["p50"], ours["first_ms"]["p50"]
        lines.append(f"| {base_point['level']:.0%} | {b} | {o} | {o - b:+.1f} ms |")
    push = result["push_latency"]
    lines += [
        "",
        "## Push latency (capture completed -> event received)",
        "",
        "| path | p50 ms | p95 ms |",
        "|---|---|---|",
        f"| SSE from the API | {push['sse']['p50_ms']} | {push['sse']['p95_ms']} |",
        f"| baseline: SDK history long-poll | {push['baseline_history_long_poll']['p50_ms']} | "
        f"{push['baseline_history_long_poll']['p95_ms']} |",
        "",
        "## Memory (RSS)",
        "",
        "| open payments | worker MiB | API MiB |",
        "|---|---|---|",
    ]
    for point in result["memory"]:
        lines.append(
            f"| {point['open_payments']} | {point['worker_rss_mib']} | {point['api_rss_mib']} |"
        )
    streams = result["streams"]
    lines += [
        "",
        f"API with {streams['streams']} SSE streams open: {streams['api_rss_mib_with_streams']} "
        f"MiB (before: {streams['api_rss_mib_before']} MiB).",
        "",
        "## Worker processes",
        "",
        "| workers | payments/s (async) | vs 1 worker |",
        "|---|---|---|",
    ]
    one = result["scaling"][0]["payments_per_s"]
    for point in result["scaling"]:
        lines.append(
            f"| {point['workers']} | {point['payments_per_s']} | "
            f"{_ratio(point['payments_per_s'], one)} |"
        )
    lines += ["", "## Targets", ""]
    if result["profile"] == "quick":
        lines += [f"Not judged: {QUICK_NOTE}.", ""]
    lines += ["| target | measured | met |", "|---|---|---|"]
    for target, measured, met in targets(result):
        lines.append(f"| {target} | {measured} | {'yes' if met else 'NO'} |")
    return "\n".join(lines) + "\n"


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(8, 5))
    colours = {"baseline": "tab:blue", "ours_async": "tab:orange", "ours_sync": "tab:green"}
    for name, label in PATHS.items():
        points = result["load"][name]
        rates = [point["offered_per_s"] for point in points]
        colour = colours[name]
        axis.plot(
            rates,
            [p["latency_ms"]["p50"] for p in points],
            marker="o",
            color=colour,
            label=f"{label} p50",
        )
        axis.plot(
            rates,
            [p["latency_ms"]["p99"] for p in points],
            marker="x",
            linestyle="--",
            color=colour,
            label=f"{label} p99",
        )
    # Queueing near saturation spans orders of magnitude.
    axis.set_yscale("log")
    axis.set_xlabel("offered load (payments/s, open loop)")
    axis.set_ylabel("latency to settled (ms)")
    axis.set_title("Latency against offered load: ours and bare Temporal, same run")
    axis.grid(True, alpha=0.3)
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
