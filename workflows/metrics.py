"""Counters from workflow code: through the workflow's metric meter, which
does not count while a worker replays a history, so each counts once."""

from __future__ import annotations

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from payments import metrics


def add(name: str, labels: dict[str, str]) -> None:
    workflow.metric_meter().create_counter(name, metrics.DESCRIPTIONS[name]).add(1, labels)
