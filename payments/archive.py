"""The archive: a closed payment's record, kept after Temporal forgets it.

A payment's Temporal history is its record (CONTRACT §10), and the namespace's
retention deletes it some days after the workflow closes. Before that, the
archiver (:mod:`activities.archive`, a long-lived workflow's passes) copies
every closed payment here: every run's history as Temporal stores it
(payloads still sealed by the codec), the memo the API reads the payment
from, and the request fingerprint that tells an idempotent replay from a
reused key. A run that continued as new is copied as soon as it closes, as
retention counts from then, not from the payment's end. Reads
then answer from here exactly as they did from Temporal: the same payment, the
same events with the same ``seq``.

:class:`Archive` is the port; adapters live in the ``archive`` package (a
directory on disk today; an object store would take the same three calls).
Exceptions: :class:`ArchiveError` (the store could not be read or written).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Protocol

from google.protobuf.json_format import MessageToDict, ParseDict
from pydantic import BaseModel, Field, field_validator
from temporalio.api.common.v1 import Payload
from temporalio.client import WorkflowHistory
from temporalio.converter import DataConverter

from payments.models import PaymentState


class ArchiveError(Exception):
    """The archive could not be read or written."""


class ArchivedPayment(BaseModel):
    """One closed payment, as the archive keeps it."""

    payment_id: str
    archived_at: datetime
    closed_at: datetime
    # How the last run ended, as Temporal names it ("Completed", "Terminated", ...).
    execution_status: str
    # Every run, oldest first; the last one is the run that closed.
    run_ids: list[str]
    # The memo's `payment` payload as Temporal stored it (proto JSON, still sealed).
    payment: dict[str, Any]
    request_fingerprint: str | None
    # Each run's history in Temporal's JSON (`temporal workflow show -o json`).
    histories: list[dict[str, Any]]

    @classmethod
    def of(
        cls,
        *,
        payment_id: str,
        archived_at: datetime,
        closed_at: datetime,
        execution_status: str,
        runs: list[tuple[str, WorkflowHistory]],
        payment: Payload,
        request_fingerprint: str | None,
    ) -> ArchivedPayment:
        return cls(
            payment_id=payment_id,
            archived_at=archived_at,
            closed_at=closed_at,
            execution_status=execution_status,
            run_ids=[run_id for run_id, _ in runs],
            payment=MessageToDict(payment),
            request_fingerprint=request_fingerprint,
            histories=[history.to_json_dict() for _, history in runs],
        )

    @property
    def last_run_id(self) -> str:
        return self.run_ids[-1]

    def started_with(self, search_attribute: str) -> bool:
        """Whether the payment's first run started with ``search_attribute`` set."""
        started = self.histories[0]["events"][0].get("workflowExecutionStartedEventAttributes", {})
        return search_attribute in started.get("searchAttributes", {}).get("indexedFields", {})

    def runs(self) -> list[WorkflowHistory]:
        """The histories again, as :func:`payments.events.project` reads them."""
        return [WorkflowHistory.from_json(self.payment_id, run) for run in self.histories]

    async def state(self, converter: DataConverter) -> PaymentState:
        """The payment as it stood when the workflow closed, with ``archived_at``."""
        payload = ParseDict(self.payment, Payload())
        [state] = await converter.decode([payload], [PaymentState])
        if not isinstance(state, PaymentState):
            raise ArchiveError(f"{self.payment_id}: the archived payment does not decode")
        return state.model_copy(update={"archived_at": self.archived_at})


class ArchivedRun(BaseModel):
    """One closed run of a payment that goes on in its next run (continue-as-new).

    Retention deletes such a run some days after *it* closed, while its payment
    may stay open for months (the refund window): so each run is archived as
    soon as it closes, and reads find it here once Temporal has forgotten it.
    """

    payment_id: str
    run_id: str
    closed_at: datetime
    history: dict[str, Any]

    @classmethod
    def of(
        cls, *, payment_id: str, run_id: str, closed_at: datetime, history: WorkflowHistory
    ) -> ArchivedRun:
        return cls(
            payment_id=payment_id,
            run_id=run_id,
            closed_at=closed_at,
            history=history.to_json_dict(),
        )

    def workflow_history(self) -> WorkflowHistory:
        return WorkflowHistory.from_json(self.payment_id, self.history)


class Archive(Protocol):
    async def put(self, record: ArchivedPayment) -> None:
        """Keep ``record``, replacing an earlier one of the same payment,
        atomically: a reader sees the old record or the new one, never part."""
        ...

    async def get(self, payment_id: str) -> ArchivedPayment | None:
        """The payment's record, if it was archived."""
        ...

    async def archived(self, payment_id: str) -> tuple[datetime, str] | None:
        """When the payment was archived, and the last run archived: cheaper
        than :meth:`get`, for answering ``archived_at`` and for the archiver's
        "already done?"."""
        ...

    async def put_run(self, run: ArchivedRun) -> None:
        """Keep one closed run of a payment that continued as new, atomically."""
        ...

    async def get_run(self, payment_id: str, run_id: str) -> ArchivedRun | None: ...

    async def has_run(self, payment_id: str, run_id: str) -> bool:
        """Whether :meth:`get_run` would find it, without reading it."""
        ...

    async def cursor(self) -> ArchiveCursor | None:
        """Where the archiver's last complete pass began (see activities.archive)."""
        ...

    async def set_cursor(self, cursor: ArchiveCursor) -> None: ...


# Why a payment's record is lost when Temporal deleted the payment itself.
DELETED_BEFORE_ARCHIVED = "Temporal deleted it before it was archived"


class Unarchived(BaseModel):
    """A closed payment, or one of its runs, that a pass could not archive."""

    payment_id: str
    # None: the payment's final record; else this run of it.
    run_id: str | None = None
    error: str


class ArchiveCursor(BaseModel):
    """The archiver's place: a pass lists what closed since ``at``, and first
    tries again what the passes before could not archive."""

    at: datetime
    retry: list[Unarchived] = Field(default_factory=list)
    # When a pass last ended with nothing left unarchived (None: never yet).
    # Kept here, not in a worker, so any worker's pass reports the same.
    complete_at: datetime | None = None


class ArchiveRun(BaseModel):
    """How the archiver runs (its workflow's input, and each pass's)."""

    # Between passes (PAYMENTS_ARCHIVE_INTERVAL).
    interval_seconds: float


class ArchiveReport(BaseModel):
    """What one pass did: the archiver's activity result, shown in the UI."""

    # Closed payments written to the archive in this pass.
    archived: int = 0
    # Runs of payments that continued as new, written in this pass.
    runs_archived: int = 0
    # Listed again but archived already (the pass overlaps the one before).
    already_archived: int = 0
    # Listed as closed, but a newer run is open (an operator reset it).
    reopened: int = 0
    # Listed, but no payment of this service's (an id it never makes).
    skipped: int = 0
    # Could not be archived this pass: tried again by the next ones, first.
    failed: list[Unarchived] = Field(default_factory=list)
    # Payments (or runs) Temporal deleted (retention, or an operator) before
    # any pass archived them: their record is gone, and not tried again.
    lost: list[Unarchived] = Field(default_factory=list)
    # The pass looked at payments closed since this time (None: since ever).
    closed_since: datetime | None = None
    # Where the next pass starts.
    cursor: datetime

    @field_validator("lost", mode="before")
    @classmethod
    def _lost_as_reported_before(cls, value: Any) -> Any:
        """A pass of the version before reported a lost payment by its id
        alone. Such a report is an activity result in a running archiver's
        history, which a new worker replays: it must still decode."""
        if not isinstance(value, list):
            return value
        return [
            Unarchived(payment_id=e, error=DELETED_BEFORE_ARCHIVED) if isinstance(e, str) else e
            for e in value
        ]


async def archived_at(archive: Archive | None, payment_id: str, run_id: str) -> datetime | None:
    """When a closed payment's record was archived, if it was archived as it now
    stands in Temporal: as of ``run_id``, its last run (a record of an earlier
    run, before an operator reset it, is not its record any more)."""
    found = await archive.archived(payment_id) if archive is not None else None
    return found[0] if found is not None and found[1] == run_id else None
