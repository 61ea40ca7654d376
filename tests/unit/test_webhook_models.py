"""Webhooks' rules as data (payments/webhooks.py): the retry schedule of
CONTRACT §12, event ids, and what an endpoint request may say."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from payments.webhooks import (
    CreateEndpoint,
    Endpoint,
    EndpointStatus,
    SigningSecret,
    StoredEndpoint,
    UpdateEndpoint,
    event_id,
    next_attempt_delay,
    parse_event_id,
)

START = datetime(2026, 12, 1, tzinfo=UTC)


def schedule() -> list[timedelta]:
    """Every wait between attempts of a delivery that never succeeds."""
    waits: list[timedelta] = []
    now, attempts = START, 1
    while (delay := next_attempt_delay(attempts, START, now)) is not None:
        waits.append(delay)
        now += delay
        attempts += 1
    return waits


def test_the_schedule_is_the_published_one_up_to_three_days() -> None:
    minute, hour = timedelta(minutes=1), timedelta(hours=1)
    assert schedule() == [
        timedelta(seconds=5),
        5 * minute,
        30 * minute,
        2 * hour,
        5 * hour,
        10 * hour,
        10 * hour,
        12 * hour,
        12 * hour,
        12 * hour,
    ]
    # Eleven attempts, the last within three days of the first.
    assert sum(schedule(), timedelta()) <= timedelta(days=3)
    assert sum(schedule(), timedelta()) + 12 * hour > timedelta(days=3)


def test_an_event_id_names_the_payment_and_the_seq() -> None:
    made = event_id("pay_abc123", 18)
    assert made == "evt_abc123_18"
    assert parse_event_id(made) == ("pay_abc123", 18)
    for bad in ("evt_", "evt_abc", "pay_abc_1", "evt_ABC_1", "evt_abc_x", "evt_a_1_2"):
        assert parse_event_id(bad) is None


@pytest.mark.parametrize(
    "body",
    [
        {"url": "http://x", "enabled_events": []},
        {"url": "http://x", "enabled_events": ["payment.shipped"]},
        {"url": "http://x", "enabled_events": ["*", "payment.captured"]},
        {"url": "http://x", "enabled_events": ["*"], "lease_seconds": 5},
        {"url": "http://x", "enabled_events": ["*"], "colour": "blue"},
        {"url": "http://x" + "x" * 2048, "enabled_events": ["*"]},
    ],
)
def test_a_bad_endpoint_request_is_refused(body: dict[str, object]) -> None:
    with pytest.raises(ValidationError):
        CreateEndpoint.model_validate(body)


def test_an_update_names_only_what_changes() -> None:
    update = UpdateEndpoint.model_validate({"status": "disabled"})
    assert update.model_dump(exclude_unset=True) == {"status": EndpointStatus.DISABLED}
    with pytest.raises(ValidationError):
        UpdateEndpoint.model_validate({"enabled_events": ["nope"]})


def test_an_endpoint_receives_what_it_wants_once_it_exists_and_while_enabled() -> None:
    endpoint = Endpoint(
        id="we_1", url="http://x", enabled_events=["payment.captured"], created_at=START
    )
    later = START + timedelta(seconds=1)
    assert endpoint.receives("payment.captured", later)
    assert not endpoint.receives("payment.authorized", later)
    assert not endpoint.receives("payment.captured", START - timedelta(seconds=1))
    disabled = endpoint.model_copy(update={"status": EndpointStatus.DISABLED})
    assert not disabled.receives("payment.captured", later)
    everything = endpoint.model_copy(update={"enabled_events": ["*"]})
    assert everything.receives("refund.failed", later)


def test_an_endpoint_enabled_again_receives_nothing_recorded_while_it_was_disabled() -> None:
    endpoint = Endpoint(id="we_1", url="http://x", enabled_events=["*"], created_at=START)
    enabled_again = START + timedelta(minutes=5)
    stored = StoredEndpoint(
        endpoint=endpoint, secrets=[SigningSecret(secret="whsec_x")], enabled_at=enabled_again
    )
    assert not stored.receives("payment.captured", START + timedelta(minutes=1))
    assert stored.receives("payment.captured", enabled_again)
    never_disabled = stored.model_copy(update={"enabled_at": None})
    assert never_disabled.receives("payment.captured", START + timedelta(minutes=1))
