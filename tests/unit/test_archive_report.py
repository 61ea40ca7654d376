"""The archiver's pass report as its workflow decodes it: an activity result in
a running archiver's history, which a new worker replays, so a report an
earlier version wrote must still decode."""

from __future__ import annotations

import json

from temporalio.api.common.v1 import Payload
from temporalio.contrib.pydantic import pydantic_data_converter

from payments.archive import DELETED_BEFORE_ARCHIVED, ArchiveReport, Unarchived


def decoded(report: dict[str, object]) -> ArchiveReport:
    payload = Payload(metadata={"encoding": b"json/plain"}, data=json.dumps(report).encode())
    [value] = pydantic_data_converter.payload_converter.from_payloads([payload], [ArchiveReport])
    assert isinstance(value, ArchiveReport)
    return value


def test_a_lost_payment_reported_by_its_id_alone_decodes() -> None:
    """Before lost records said why, a report listed their payment ids."""
    report = decoded(
        {"archived": 3, "lost": ["pay_abcdefghijklmnop"], "cursor": "2026-12-01T10:00:00Z"}
    )
    assert report.archived == 3
    assert report.lost == [
        Unarchived(payment_id="pay_abcdefghijklmnop", run_id=None, error=DELETED_BEFORE_ARCHIVED)
    ]


def test_a_lost_record_as_reported_now_decodes_as_it_is() -> None:
    lost = {"payment_id": "pay_abcdefghijklmnop", "run_id": "run-1", "error": "gone"}
    report = decoded({"lost": [lost], "cursor": "2026-12-01T10:00:00Z"})
    assert report.lost == [Unarchived(**lost)]  # type: ignore[arg-type]
