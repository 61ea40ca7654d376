"""The archive: a closed payment's record, kept after Temporal forgets it.

A payment's Temporal history is its record (CONTRACT §10), and the namespace's
retention deletes it some days after the workflow closes. Before that, the
archiver (:mod:`activities.archive`, run by a Temporal Schedule) copies every
closed payment here: every run's history as Temporal stores it (payloads
still sealed by the codec), the memo the API reads the payment from, and the
request fingerprint that tells an idempotent replay from a reused key. Reads
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
from pydantic import BaseModel
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

    async def cursor(self) -> datetime | None:
        """Where the archiver's last complete pass began (see activities.archive)."""
        ...

    async def set_cursor(self, at: datetime) -> None: ...


class ArchiveRun(BaseModel):
    """How the archiver runs (its workflow's input, and each pass's)."""

    # Between passes. `make run`: 20 s, so a closed payment is archived within a minute.
    interval_seconds: float = 20.0


class ArchiveReport(BaseModel):
    """What one pass did: the archiver's workflow result, shown in the UI."""

    # Closed payments written to the archive in this pass.
    archived: int = 0
    # Listed again but archived already (the pass overlaps the one before).
    already_archived: int = 0
    # Listed as closed, but a newer run is open (an operator reset it).
    reopened: int = 0
    # The pass looked at payments closed since this time (None: since ever).
    closed_since: datetime | None = None
    # Where the next pass starts.
    cursor: datetime
