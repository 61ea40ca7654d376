"""The simulator's book on disk: one SQLite file holding every committed
operation and every idempotency reply, so a restarted simulator remembers
what it committed, as a PSP does.

:class:`LedgerFile` is written by :class:`~gateway.simulator.core.SimulatorLedger`
once per outcome, the operation and its reply in one transaction, before the
reply is sent, and read once, when the ledger opens. The ledger answers from
memory; the file is what it starts from.

WAL with ``synchronous=NORMAL``: a commit is in the write-ahead log before the
call returns, so it survives the process being killed (what devstack restarts
the simulator after); a power cut may lose the last few, which a test tool
can afford. The file holds payment method tokens, never card numbers (the
ledger refuses those before anything is written).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from payments.gateway import CardDeclined, GatewayOperation

FILE_NAME = "simulator.sqlite"

_SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    amount INTEGER NOT NULL,
    currency TEXT NOT NULL,
    reference TEXT NOT NULL,
    idempotency_key TEXT NOT NULL,
    authorization_id TEXT,
    created_at TEXT NOT NULL,
    payment_method TEXT  -- authorizations only: which test card it was
);
CREATE TABLE IF NOT EXISTS replies (
    idempotency_key TEXT PRIMARY KEY,
    request TEXT NOT NULL,  -- JSON array: the request the key was first used for
    operation_id TEXT REFERENCES operations (id),
    decline TEXT  -- JSON [code, decline_code, message] when the outcome was a decline
);
"""
# The columns of `operations` before payment_method, in the model's order: a
# field added to GatewayOperation fails every write here, loudly, until the
# schema has a column for it.
_OPERATION_FIELDS = tuple(GatewayOperation.model_fields)
_OPERATION_COLUMNS = ", ".join(_OPERATION_FIELDS)


@dataclass(frozen=True)
class StoredOperation:
    operation: GatewayOperation
    payment_method: str | None


@dataclass(frozen=True)
class StoredReply:
    idempotency_key: str
    request: tuple[object, ...]
    outcome: str | CardDeclined  # the operation's id, or the decline


class LedgerFile:
    def __init__(self, path: Path) -> None:
        # Autocommit: every transaction is an explicit BEGIN ... COMMIT below.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, _SCHEMA_VERSION):
            self._db.close()
            raise RuntimeError(
                f"{path} is a simulator ledger of version {version}, not {_SCHEMA_VERSION}; "
                "delete it to start from empty"
            )
        self._db.executescript(_SCHEMA)
        self._db.execute(f"PRAGMA user_version={_SCHEMA_VERSION}")

    def operations(self) -> Iterator[StoredOperation]:
        """Every committed operation, in the order it was committed."""
        rows = self._db.execute(
            f"SELECT {_OPERATION_COLUMNS}, payment_method FROM operations ORDER BY seq"
        )
        for *fields, payment_method in rows:
            operation = GatewayOperation.model_validate(
                dict(zip(_OPERATION_FIELDS, fields, strict=True))
            )
            yield StoredOperation(operation, payment_method)

    def replies(self) -> Iterator[StoredReply]:
        rows = self._db.execute(
            "SELECT idempotency_key, request, operation_id, decline FROM replies"
        )
        for key, request, operation_id, decline in rows:
            outcome = operation_id if decline is None else CardDeclined(*json.loads(decline))
            yield StoredReply(key, tuple(json.loads(request)), outcome)

    def commit(
        self,
        key: str,
        request: tuple[object, ...],
        outcome: GatewayOperation | CardDeclined,
        payment_method: str | None = None,
    ) -> None:
        """Write one outcome and the reply its key replays, both or neither."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if isinstance(outcome, CardDeclined):
                decline = json.dumps([outcome.code, outcome.decline_code, outcome.message])
                operation_id = None
            else:
                decline, operation_id = None, outcome.id
                self._db.execute(
                    f"INSERT INTO operations ({_OPERATION_COLUMNS}, payment_method)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (*(getattr(outcome, field) for field in _OPERATION_FIELDS), payment_method),
                )
            self._db.execute(
                "INSERT INTO replies (idempotency_key, request, operation_id, decline)"
                " VALUES (?, ?, ?, ?)",
                (key, json.dumps(request), operation_id, decline),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def close(self) -> None:
        self._db.close()
