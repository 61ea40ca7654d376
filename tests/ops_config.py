"""The observability files of ops/ as tests read them: the metrics (and their
labels) that the rules and the dashboard may name, a small reader of PromQL
that says which series and labels an expression uses, and the rules' and the
dashboard's expressions (tests/unit/test_observability_config.py, and
tests/e2e/test_observability.py against a real Prometheus)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
OPS = ROOT / "ops"
PROMETHEUS_CONFIG = OPS / "prometheus" / "prometheus.yml"
ALERT_RULES = OPS / "prometheus" / "alerts.yml"
DATASOURCES = OPS / "grafana" / "provisioning" / "datasources"
DASHBOARD = OPS / "grafana" / "dashboards" / "payments.json"

# Every metric the rules and the dashboard may name, with the labels it has:
# the one list of them here (the code's names are in payments/metrics.py).
_SDK_LABELS = frozenset({"namespace", "task_queue", "service_name"})
# The SDK's meters add these to the worker's own metrics.
_WORKER_LABELS = _SDK_LABELS | {"workflow_type", "activity_type"}
KNOWN_METRICS: dict[str, frozenset[str]] = {
    # API, prometheus-client.
    "payments_http_requests_total": frozenset({"route", "method", "status"}),
    "payments_http_request_duration_seconds": frozenset({"route", "method"}),
    "payments_streams_open": frozenset(),
    # Worker, through the Temporal SDK's meters (no `_total` added: it is in the name).
    "payments_created_total": _WORKER_LABELS | {"capture_method"},
    "payments_settled_total": _WORKER_LABELS | {"status"},
    "payments_declines_total": _WORKER_LABELS | {"decline_code"},
    "payments_gateway_request_duration_seconds": _WORKER_LABELS | {"operation", "outcome"},
    "payments_unknown_outcomes_total": _WORKER_LABELS | {"step"},
    "payments_refunds_total": _WORKER_LABELS | {"status"},
    "payments_receipts_total": _WORKER_LABELS | {"outcome"},
    "payments_webhook_deliveries_total": _WORKER_LABELS | {"outcome"},
    "payments_stuck": _WORKER_LABELS | {"status", "older_than"},
    # Set by the archiver's activity: the SDK's activity meter adds activity_type.
    "payments_archive_unarchived": _SDK_LABELS | {"activity_type"},
    "payments_archive_complete_pass_timestamp_seconds": _SDK_LABELS | {"activity_type"},
    "payments_archive_lost_total": _SDK_LABELS | {"activity_type"},
    # The Temporal SDK's own, as a worker's scrape shows them (seconds).
    "temporal_workflow_task_schedule_to_start_latency": _SDK_LABELS,
    "temporal_activity_schedule_to_start_latency": _SDK_LABELS,
    "temporal_workflow_task_execution_latency": _SDK_LABELS | {"workflow_type"},
    "temporal_activity_execution_latency": _SDK_LABELS | {"workflow_type", "activity_type"},
    "temporal_workflow_endtoend_latency": _SDK_LABELS | {"workflow_type"},
    "temporal_request_latency": _SDK_LABELS | {"operation"},
    "temporal_request": _SDK_LABELS | {"operation"},
    "temporal_workflow_completed": _SDK_LABELS | {"workflow_type"},
    "temporal_activity_task_received": _SDK_LABELS | {"workflow_type", "activity_type"},
    "temporal_num_pollers": _SDK_LABELS | {"poller_type"},
    "temporal_worker_task_slots_available": _SDK_LABELS | {"worker_type"},
    "temporal_worker_task_slots_used": _SDK_LABELS | {"worker_type"},
    "temporal_sticky_cache_size": _SDK_LABELS,
    # The Temporal server's (PROMETHEUS_ENDPOINT), as a dev server's scrape shows them.
    "approximate_backlog_count": frozenset(
        {"namespace", "taskqueue", "task_type", "partition", "task_priority", "service_name"}
    ),
    "approximate_backlog_age_seconds": frozenset(
        {"namespace", "taskqueue", "task_type", "partition", "service_name"}
    ),
    # Prometheus' own, one per scrape target.
    "up": frozenset(),
}
HISTOGRAMS = frozenset(
    {
        "payments_http_request_duration_seconds",
        "payments_gateway_request_duration_seconds",
        "temporal_workflow_task_schedule_to_start_latency",
        "temporal_activity_schedule_to_start_latency",
        "temporal_workflow_task_execution_latency",
        "temporal_activity_execution_latency",
        "temporal_workflow_endtoend_latency",
        "temporal_request_latency",
    }
)
# Prometheus adds these to every series it scrapes.
TARGET_LABELS = frozenset({"job", "instance"})


def known_series() -> dict[str, frozenset[str]]:
    """Every series name a query may use, with its labels: a histogram is its
    ``_bucket`` (with ``le``), ``_sum`` and ``_count``."""
    found: dict[str, frozenset[str]] = {}
    for name, labels in KNOWN_METRICS.items():
        if name in HISTOGRAMS:
            found[f"{name}_bucket"] = labels | {"le"}
            found[f"{name}_sum"] = labels
            found[f"{name}_count"] = labels
        else:
            found[name] = labels
    return {name: labels | TARGET_LABELS for name, labels in found.items()}


# The panels CONTRACT §15 and the operators ask for, by title.


# --- A small reader of PromQL: which metrics and labels an expression names ---

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
# Grafana's variables ($__rate_interval, ${job}) and range or subquery brackets.
_VARIABLE = re.compile(r"\$\{[^}]*\}|\$\w+")
_RANGE = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
# A name, then what follows it: `(` makes it a function or an aggregation.
_NAME = re.compile(r"(?<![\w.])([A-Za-z_:][\w:]*)\s*(\(|\{[^}]*\})?")
_MATCHER = re.compile(r"([A-Za-z_]\w*)\s*(?:=~|!~|!=|=)")
# Words that are neither series nor functions.
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"})


@dataclass
class Query:
    # (series name, the labels its matchers name)
    selectors: list[tuple[str, set[str]]] = field(default_factory=list)
    # Labels named in by/without/on/ignoring/group_left/group_right.
    grouping: set[str] = field(default_factory=set)


def read_query(expr: str) -> Query:
    text = _STRING.sub('""', expr)
    text = _VARIABLE.sub("", text)
    text = _RANGE.sub("", text)
    query = Query()
    for labels in _GROUPING.findall(text):
        query.grouping |= {label.strip() for label in labels.split(",") if label.strip()}
    text = _GROUPING.sub(" ", text)
    for name, after in _NAME.findall(text):
        if after == "(" or name in _KEYWORDS:
            continue
        query.selectors.append((name, set(_MATCHER.findall(after))))
    return query


# --- The files ---


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def rules() -> list[dict[str, Any]]:
    loaded = load_yaml(ALERT_RULES)
    return [rule for group in loaded["groups"] for rule in group["rules"]]


def alerts() -> dict[str, dict[str, Any]]:
    return {rule["alert"]: rule for rule in rules() if "alert" in rule}


def dashboard() -> dict[str, Any]:
    loaded = json.loads(DASHBOARD.read_text())
    assert isinstance(loaded, dict)
    return loaded


def panels(container: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, those inside collapsed rows too; rows themselves are not panels."""
    for panel in container.get("panels", []):
        if panel.get("type") == "row":
            yield from panels(panel)
        else:
            yield panel


def expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every rule and every dashboard query."""
    found = [
        (f"alerts.yml {rule.get('alert') or rule['record']}", rule["expr"]) for rule in rules()
    ]
    for panel in panels(dashboard()):
        for target in panel.get("targets", []):
            found.append((f"dashboard panel {panel['title']!r}", target["expr"]))
    return found
