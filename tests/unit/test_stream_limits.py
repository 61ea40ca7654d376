"""The stream caps as counted in one API process (``StreamSlots``), and their
settings: the contract's defaults, read from the environment, bad values refused."""

from __future__ import annotations

import os

import pytest

from api.errors import TooManyStreams
from api.limits import StreamSlots
from payments.settings import Settings


@pytest.fixture
def env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    """No PAYMENTS_* variable of the surrounding shell leaks into a test."""
    for name in list(os.environ):
        if name.upper().startswith("PAYMENTS_"):
            monkeypatch.delenv(name)
    return monkeypatch


def test_a_payment_holds_at_most_its_cap_and_a_released_slot_is_free_again() -> None:
    slots = StreamSlots(per_payment=2, per_merchant=10)
    first, _ = slots.take("pay_a", "m"), slots.take("pay_a", "m")
    with pytest.raises(TooManyStreams) as refused:
        slots.take("pay_a", "m")
    assert refused.value.status_code == 429 and refused.value.type == "rate_limit_error"
    assert refused.value.body()["error"]["code"] == "too_many_streams"
    assert refused.value.headers() == {"Retry-After": "5"}
    slots.take("pay_b", "m")  # another payment of the merchant has its own
    first.release()
    first.release()  # twice gives back one slot, not two
    assert slots.count("pay_a") == 1
    slots.take("pay_a", "m")
    with pytest.raises(TooManyStreams):
        slots.take("pay_a", "m")


def test_a_merchant_holds_at_most_its_cap_over_all_its_payments() -> None:
    slots = StreamSlots(per_payment=5, per_merchant=3)
    held = [slots.take(f"pay_{n}", "m") for n in range(3)]
    with pytest.raises(TooManyStreams) as refused:
        slots.take("pay_9", "m")
    assert "merchant" in refused.value.message
    slots.take("pay_9", "other")
    for slot in held:
        slot.release()
    # Nothing is kept for payments no longer streamed.
    assert (slots.count(), slots.count(merchant_id="m"), slots.count("pay_0")) == (1, 0, 0)


def test_stream_settings_default_to_the_contract_and_come_from_the_environment(
    env: pytest.MonkeyPatch,
) -> None:
    defaults = Settings()
    assert (defaults.streams_per_payment, defaults.streams_per_merchant) == (20, 1000)
    assert defaults.stream_max_seconds == 3600
    env.setenv("PAYMENTS_STREAMS_PER_PAYMENT", "3")
    env.setenv("PAYMENTS_STREAMS_PER_MERCHANT", "7")
    env.setenv("PAYMENTS_STREAM_MAX_SECONDS", "90")
    settings = Settings()
    assert (settings.streams_per_payment, settings.streams_per_merchant) == (3, 7)
    assert settings.stream_max_seconds == 90


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("STREAMS_PER_PAYMENT", "0"),
        ("STREAMS_PER_MERCHANT", "-1"),
        ("STREAMS_PER_MERCHANT", "many"),
        ("STREAM_MAX_SECONDS", "0"),
        ("STREAM_MAX_SECONDS", "604800"),
    ],
)
def test_bad_stream_settings_are_refused(env: pytest.MonkeyPatch, name: str, value: str) -> None:
    env.setenv(f"PAYMENTS_{name}", value)
    with pytest.raises(ValueError):
        Settings()
