"""ops/ against the metrics the code exports (CONTRACT §15): promtool accepts the
Prometheus config and the alert rules and runs the rules on made-up series;
every metric and label the rules and the Grafana dashboard name is one that
exists; the dashboard has its panels, on the provisioned data source; every
alert tells an operator what it means and what to do."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from ops_config import (
    ALERT_RULES,
    DATASOURCES,
    KNOWN_METRICS,
    PROMETHEUS_CONFIG,
    ROOT,
    TARGET_LABELS,
    alerts,
    dashboard,
    expressions,
    known_series,
    load_yaml,
    panels,
    read_query,
)

from payments import metrics

PANELS = (
    "Authorization rate",
    "Declines by code",
    "Gateway latency by operation",
    "Unknown outcomes",
    "Refunds",
    "Webhook deliveries by outcome",
    "Receipts by e-mail",
    "Stuck payments",
    "Archive",
    "Workflow task schedule-to-start latency",
    "Activity schedule-to-start latency",
    "Workflow task execution latency",
    "HTTP request rate",
    "HTTP request latency",
    "Open streams",
)
# The alerts CONTRACT §15 names, and the worker backlog.
ALERTS = (
    "PaymentsGatewayErrorRate",
    "PaymentsUnknownOutcomes",
    "PaymentsStuckProcessing",
    "PaymentsArchiveBehind",
    "PaymentsArchiveRecordsLost",
    "PaymentsWebhookFailureRatio",
    "PaymentsWebhookDeliveriesFailed",
    "PaymentsReceiptsFailing",
    "PaymentsTaskBacklog",
)


def test_the_reader_finds_series_and_labels_not_functions() -> None:
    query = read_query(
        'histogram_quantile(0.95, sum by (le, operation) (rate(gateway_bucket{outcome="error",'
        ' x=~"a|b"}[$__rate_interval]))) / ignoring(y) max(up offset 10m) > 1e3'
        ' unless on (job) label_replace(other, "dst", "$1", "src", "(.*)")'
    )
    assert query.selectors == [
        ("gateway_bucket", {"outcome", "x"}),
        ("up", set()),
        ("other", set()),
    ]
    assert query.grouping == {"le", "operation", "y", "job"}


@pytest.fixture(scope="module")
def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        pytest.fail(
            "promtool is not installed: it comes with Debian's prometheus package "
            "(apt-get install prometheus), which .ci/run installs when it is missing"
        )
    return found


def _run(command: list[str], cwd: Path = ROOT) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{' '.join(command)}:\n{done.stdout}{done.stderr}"


def test_promtool_accepts_the_alert_rules(promtool: str) -> None:
    _run([promtool, "check", "rules", str(ALERT_RULES.relative_to(ROOT))])


def test_promtool_accepts_the_prometheus_config_and_the_rules_it_loads(promtool: str) -> None:
    # It also checks every rule file the config names, so a wrong path fails here.
    _run([promtool, "check", "config", str(PROMETHEUS_CONFIG.relative_to(ROOT))])
    rule_files = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert [(PROMETHEUS_CONFIG.parent / name).resolve() for name in rule_files] == [ALERT_RULES]


# --- The rules on made-up series (promtool test rules) ---

# (alert, input series, [(when, the label sets of the alerts firing then)]).
# A series' values: one a minute; `_` is no sample, `a+bxn` counts up by b n times.
_GATEWAY = "payments_gateway_request_duration_seconds_count"
_WEBHOOKS = "payments_webhook_deliveries_total"
_COMPLETE_PASS = "payments_archive_complete_pass_timestamp_seconds"
_LOST = "payments_archive_lost_total"
_BACKLOG_AGE = (
    'approximate_backlog_age_seconds{namespace="default", taskqueue="%s",'
    ' task_type="Workflow", partition="%d", service_name="matching"}'
)
ALERT_CASES: list[tuple[str, dict[str, str], list[tuple[str, list[dict[str, str]]]]]] = [
    (
        "PaymentsGatewayErrorRate",
        # 10% errors from minute 0 on: firing once it has held for 5 minutes.
        {
            f'{_GATEWAY}{{operation="authorize", outcome="ok"}}': "0+90x30",
            f'{_GATEWAY}{{operation="authorize", outcome="declined"}}': "0+5x30",
            f'{_GATEWAY}{{operation="capture", outcome="error"}}': "0+10x30",
        },
        [("4m", []), ("12m", [{"severity": "critical"}])],
    ),
    (
        "PaymentsGatewayErrorRate",
        # 1% errors, and declines (answers) do not count.
        {
            f'{_GATEWAY}{{operation="authorize", outcome="ok"}}': "0+50x30",
            f'{_GATEWAY}{{operation="authorize", outcome="declined"}}': "0+49x30",
            f'{_GATEWAY}{{operation="authorize", outcome="error"}}': "0+1x30",
        },
        [("20m", [])],
    ),
    (
        "PaymentsUnknownOutcomes",
        # The capture counter's series appears at minute 15, already at 1, and
        # stays there; the refund one has stood still since before the window.
        {
            'payments_unknown_outcomes_total{step="capture", instance="w1"}': "_x15 1x30",
            'payments_unknown_outcomes_total{step="refund", instance="w1"}': "3x45",
        },
        [
            ("14m", []),
            ("16m", [{"step": "capture", "severity": "critical"}]),
            ("24m", [{"step": "capture", "severity": "critical"}]),
            ("30m", []),
        ],
    ),
    (
        "PaymentsUnknownOutcomes",
        # A counter that was there before and moves.
        {'payments_unknown_outcomes_total{step="void", instance="w1"}': "2x15 3x15"},
        [("14m", []), ("17m", [{"step": "void", "severity": "critical"}]), ("30m", [])],
    ),
    (
        "PaymentsArchiveBehind",
        # Passes end complete every minute, then (minute 10) every pass leaves
        # something unarchived: the time stands still. Another worker has
        # exported 0 since its start, and never ran a pass.
        {
            f'{_COMPLETE_PASS}{{instance="w1"}}': "0+60x10 600x60",
            f'{_COMPLETE_PASS}{{instance="w2"}}': "0x70",
        },
        [("20m", []), ("35m", []), ("42m", [{"severity": "critical"}])],
    ),
    (
        "PaymentsArchiveBehind",
        # The same two workers, the passes on w1 complete throughout.
        {
            f'{_COMPLETE_PASS}{{instance="w1"}}': "0+60x70",
            f'{_COMPLETE_PASS}{{instance="w2"}}': "0x70",
        },
        [("60m", [])],
    ),
    (
        "PaymentsArchiveBehind",
        # No pass has ever ended: a worker's 0 from its start. (promtool's
        # clock starts at 0, so 0 is 20 minutes old at minute 20.)
        {f'{_COMPLETE_PASS}{{instance="w1"}}': "0x60"},
        [("28m", []), ("32m", [{"severity": "critical"}])],
    ),
    (
        "PaymentsArchiveRecordsLost",
        # A worker's counter from 0 at its start; at minute 20 a pass finds two
        # records lost; another worker's series appears at minute 50, already at 1.
        {
            f'{_LOST}{{instance="w1"}}': "0x20 2x100",
            f'{_LOST}{{instance="w2"}}': "_x50 1x70",
        },
        # An hour on, w1's step is out of the window; w2's new series is not.
        [
            ("10m", []),
            ("21m", [{"severity": "critical"}]),
            ("82m", [{"severity": "critical"}]),
            ("115m", []),
        ],
    ),
    (
        "PaymentsStuckProcessing",
        # Two workers export the gauge; one is behind. requires_capture for an hour is fine.
        {
            'payments_stuck{status="processing", older_than="1h", instance="w1"}': "2x30",
            'payments_stuck{status="processing", older_than="1h", instance="w2"}': "0x30",
            'payments_stuck{status="processing", older_than="15m", instance="w1"}': "5x30",
            'payments_stuck{status="requires_capture", older_than="1h", instance="w1"}': "7x30",
        },
        [("5m", []), ("15m", [{"status": "processing", "severity": "critical"}])],
    ),
    (
        "PaymentsAuthorizationsNotCaptured",
        {
            'payments_stuck{status="requires_capture", older_than="1h", instance="w1"}': "7x30",
            'payments_stuck{status="requires_capture", older_than="24h", instance="w1"}': "1x30",
        },
        [("15m", [{"status": "requires_capture", "severity": "warning"}])],
    ),
    (
        "PaymentsWebhookFailureRatio",
        # 30% of attempts retrying from minute 0: firing after 15 minutes of it.
        {
            f'{_WEBHOOKS}{{outcome="delivered"}}': "0+7x40",
            f'{_WEBHOOKS}{{outcome="retrying"}}': "0+3x40",
        },
        [("10m", []), ("35m", [{"severity": "warning"}])],
    ),
    (
        "PaymentsWebhookFailureRatio",
        {
            f'{_WEBHOOKS}{{outcome="delivered"}}': "0+9x40",
            f'{_WEBHOOKS}{{outcome="retrying"}}': "0+1x40",
        },
        [("35m", [])],
    ),
    (
        "PaymentsWebhookDeliveriesFailed",
        # One delivery gives up at minute 10 (its series appears at 1).
        {
            f'{_WEBHOOKS}{{outcome="delivered"}}': "0+9x40",
            f'{_WEBHOOKS}{{outcome="failed"}}': "_x10 1x30",
        },
        [("9m", []), ("11m", [{"severity": "warning"}]), ("30m", [])],
    ),
    (
        "PaymentsReceiptsFailing",
        # 30% of receipts failed from minute 0: firing once it has held for 15 minutes.
        {
            'payments_receipts_total{outcome="sent"}': "0+7x60",
            'payments_receipts_total{outcome="failed"}': "0+3x60",
        },
        [("10m", []), ("50m", [{"severity": "warning"}])],
    ),
    (
        "PaymentsReceiptsFailing",
        # A customer's typo now and then.
        {
            'payments_receipts_total{outcome="sent"}': "0+19x60",
            'payments_receipts_total{outcome="failed"}': "0+1x60",
        },
        [("50m", [])],
    ),
    (
        "PaymentsTaskBacklog",
        # One partition's oldest task ages; another queue's backlog is not ours.
        {
            _BACKLOG_AGE % ("payments", 0): "0x30",
            _BACKLOG_AGE % ("payments", 2): "0+60x30",
            _BACKLOG_AGE % ("someone-else", 0): "0+60x30",
        },
        [
            ("3m", []),
            (
                "10m",
                [
                    {
                        "namespace": "default",
                        "taskqueue": "payments",
                        "task_type": "Workflow",
                        "severity": "critical",
                    }
                ],
            ),
        ],
    ),
    (
        "PaymentsMetricsTargetDown",
        {
            'up{job="payments-worker", instance="10.0.0.7:9464"}': "1x3 0x20",
            'up{job="payments-api", instance="api:9465"}': "1x23",
        },
        [
            ("5m", []),
            (
                "10m",
                [{"job": "payments-worker", "instance": "10.0.0.7:9464", "severity": "critical"}],
            ),
        ],
    ),
]


def test_the_alerts_fire_when_they_should_and_not_otherwise(promtool: str, tmp_path: Path) -> None:
    # The rules as they are, without their annotations: promtool would otherwise
    # want every description's text repeated here.
    rules = load_yaml(ALERT_RULES)
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    (tmp_path / "rules.yml").write_text(yaml.safe_dump(rules))
    tests = [
        {
            "interval": "1m",
            "input_series": [
                {"series": series, "values": values} for series, values in inputs.items()
            ],
            "alert_rule_test": [
                {
                    "eval_time": when,
                    "alertname": alert,
                    "exp_alerts": [{"exp_labels": labels} for labels in firing],
                }
                for when, firing in expected
            ],
        }
        for alert, inputs, expected in ALERT_CASES
    ]
    (tmp_path / "tests.yml").write_text(
        yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m", "tests": tests})
    )
    _run([promtool, "test", "rules", "tests.yml"], cwd=tmp_path)
    assert {alert for alert, _, _ in ALERT_CASES} == set(alerts())


# --- Names and labels ---


def test_rules_and_dashboard_name_only_metrics_and_labels_that_exist() -> None:
    series = known_series()
    problems = []
    for where, expr in expressions():
        query = read_query(expr)
        assert query.selectors, f"{where}: no metric in {expr!r}"
        in_scope: set[str] = set(TARGET_LABELS)
        for name, matched in query.selectors:
            if name not in series:
                problems.append(f"{where}: unknown metric {name}")
                continue
            in_scope |= series[name]
            if unknown := matched - series[name]:
                problems.append(f"{where}: {name} has no label {sorted(unknown)}")
        if unknown := query.grouping - in_scope:
            problems.append(f"{where}: groups by labels its metrics lack {sorted(unknown)}")
    assert not problems, "\n".join(problems)


_TEMPLATE_LABEL = re.compile(r"\$labels\.(\w+)")


def test_alert_texts_name_only_labels_their_alert_has() -> None:
    series = known_series()
    for name, rule in alerts().items():
        query = read_query(rule["expr"])
        if query.grouping:
            # An aggregation keeps only what it groups by.
            has = set(query.grouping)
        else:
            has = set().union(*(series.get(metric, frozenset()) for metric, _ in query.selectors))
        has |= set(rule.get("labels", {}))
        for key, text in rule.get("annotations", {}).items():
            missing = set(_TEMPLATE_LABEL.findall(text)) - has
            assert not missing, f"{name} {key}: {sorted(missing)} is not a label of the alert"


def test_every_alert_says_what_it_means_and_what_to_do() -> None:
    found = alerts()
    assert set(ALERTS) <= set(found)
    for name, rule in found.items():
        annotations = rule.get("annotations", {})
        for key in ("summary", "description"):
            assert str(annotations.get(key, "")).strip(), f"{name} has no {key}"
        # What it means, then what to do: more than one sentence.
        assert annotations["description"].count(". ") >= 1, f"{name}: say what to do"
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name


# --- The dashboard ---


def test_the_dashboard_has_the_panels_operators_need() -> None:
    titles = [panel["title"] for panel in panels(dashboard())]
    assert len(titles) == len(set(titles)), "two panels share a title"
    missing = [title for title in PANELS if title not in titles]
    assert not missing
    for panel in panels(dashboard()):
        assert panel.get("targets"), f"{panel['title']!r} queries nothing"


def _provisioned_datasources() -> list[dict[str, Any]]:
    found = []
    for path in sorted(DATASOURCES.glob("*.yml")):
        found.extend(load_yaml(path)["datasources"])
    return found


def test_every_panel_queries_the_provisioned_prometheus() -> None:
    (datasource,) = _provisioned_datasources()
    assert datasource["type"] == "prometheus"
    uid = datasource["uid"]
    for panel in panels(dashboard()):
        refs = [panel.get("datasource"), *(t.get("datasource") for t in panel["targets"])]
        for ref in refs:
            assert ref == {"type": "prometheus", "uid": uid}, f"{panel['title']!r}: {ref}"


def test_grafana_rate_intervals_match_the_scrape_interval() -> None:
    (datasource,) = _provisioned_datasources()
    scrape_interval = load_yaml(PROMETHEUS_CONFIG)["global"]["scrape_interval"]
    assert datasource["jsonData"]["timeInterval"] == scrape_interval


def test_every_metric_the_code_exports_is_one_the_files_may_name() -> None:
    assert set(metrics.WORKER_METRICS) | set(metrics.API_METRICS) <= set(KNOWN_METRICS)
