"""The event log projected from recorded histories (no server): the types
in order, seq = history event id, strictly increasing across continue-as-new."""

from __future__ import annotations

import json
from pathlib import Path

from temporalio.client import WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter

from payments.events import TYPES, previous_run_id, project
from payments.models import Event

HISTORIES = Path(__file__).parent.parent / "histories"


def load(name: str) -> WorkflowHistory:
    return WorkflowHistory.from_json("pay_x", json.loads((HISTORIES / f"{name}.json").read_text()))


async def events_of(*names: str) -> list[Event]:
    return await project("pay_x", [load(name) for name in names], pydantic_data_converter)


def types(events: list[Event]) -> list[str]:
    return [event.type for event in events]


async def test_success_projects_requested_authorized_captured() -> None:
    events = await events_of("success")
    assert types(events) == ["payment.requested", "payment.authorized", "payment.captured"]
    requested, authorized, captured = events
    assert requested.seq == 1
    assert requested.data["amount"] == 1999 and requested.data["metadata"] == {"order_id": "1001"}
    history = load("success")
    by_id = {event.event_id: event for event in history.events}
    # seq is the id of the history event the domain event was read from.
    assert by_id[authorized.seq].HasField("workflow_properties_modified_event_attributes")
    assert captured.data["amount"] == 1999 and captured.data["attempt"] == 1
    assert all(event.payment_id == "pay_x" for event in events)
    assert all(event.at.tzinfo is not None for event in events)


async def test_decline_carries_the_decline_code() -> None:
    events = await events_of("declined")
    assert types(events) == ["payment.requested", "payment.declined", "payment.failed"]
    assert events[1].data["decline_code"] == "insufficient_funds"
    assert events[2].data["failure"]["code"] == "card_declined"


async def test_compensation_paths() -> None:
    assert types(await events_of("capture_failed"))[1:] == [
        "payment.authorized",
        "payment.capture_failed",
        "payment.voided",
        "payment.failed",
    ]
    assert types(await events_of("expiry"))[-3:] == [
        "payment.expired",
        "payment.voided",
        "payment.canceled",
    ]
    assert types(await events_of("cancel_during_authorize"))[1:] == [
        "payment.cancel_requested",
        "payment.authorized",
        "payment.voided",
        "payment.canceled",
    ]


async def test_rejected_operator_signals_are_events() -> None:
    events = await events_of("operator_signals")
    rejected = [e for e in events if e.type in ("refund.failed", "payment.cancel_failed")]
    assert [e.data["source"] for e in rejected] == ["signal", "signal"]
    assert [e.data["amount"] for e in events if e.type == "refund.succeeded"] == [300]


async def test_continue_as_new_keeps_counting() -> None:
    first, second = load("continue_as_new_run1"), load("continue_as_new_run2")
    assert previous_run_id(second) is not None and previous_run_id(first) is None
    events = await events_of("continue_as_new_run1", "continue_as_new_run2")
    seqs = [event.seq for event in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert max(seqs) > len(first.events)
    assert types(events).count("payment.requested") == 1
    assert types(events).count("refund.succeeded") == 12


def payment_histories() -> list[Path]:
    """The corpus's payments (it holds the archiver's history too)."""
    return [
        path
        for path in HISTORIES.glob("*.json")
        if json.loads(path.read_text())["events"][0]["workflowExecutionStartedEventAttributes"][
            "workflowType"
        ]["name"]
        == "PaymentWorkflow"
    ]


async def test_every_projected_type_is_a_known_type() -> None:
    paths = payment_histories()
    assert len(paths) >= 15
    for path in paths:
        for event in await events_of(path.stem):
            assert event.type in TYPES


async def test_a_continued_run_is_not_a_new_request() -> None:
    assert "payment.requested" not in types(await events_of("continue_as_new_run2"))
