"""The simulator's book on disk: one SQLite file holding every committed
operation and every idempotency reply, so a restarted simulator remembers
what it committed, as a PSP does; and every customer authentication
(3-D Secure) with where it stands.

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

from payments.gateway import Authentication, CardDeclined, GatewayOperation

FILE_NAME = "simulator.sqlite"

_SCHEMA_VERSION = 2
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
    authentication_id TEXT,  -- when the outcome was a pending authentication
    decline TEXT  -- JSON [code, decline_code, message] when the outcome was a decline
);
CREATE TABLE IF NOT EXISTS authentications (
    id TEXT PRIMARY KEY,
    idempotency_key TEXT NOT NULL,  -- the authorize call's: approving authorizes under it
    payment_method TEXT NOT NULL,
    body TEXT NOT NULL  -- the Authentication as JSON, as it now stands
);
"""
# Version 1 had no authentications: its replies gain the column that names one.
_FROM_VERSION_1 = "ALTER TABLE replies ADD COLUMN authentication_id TEXT"
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
    # The operation's id, the decline, or the authentication (as first answered).
    outcome: str | CardDeclined | Authentication


@dataclass(frozen=True)
class StoredAuthentication:
    authentication: Authentication
    idempotency_key: str
    payment_method: str


class LedgerFile:
    def __init__(self, path: Path) -> None:
        # Autocommit: every transaction is an explicit BEGIN ... COMMIT below.
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version not in (0, 1, _SCHEMA_VERSION):
            self._db.close()
            raise RuntimeError(
                f"{path} is a simulator ledger of version {version}, not {_SCHEMA_VERSION}; "
                "delete it to start from empty"
            )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(replies)")}
        if version == 1 and "authentication_id" not in columns:
            # Checked, not assumed: the ALTER commits on its own, so a process
            # that died before the version was written has done it already.
            self._db.execute(_FROM_VERSION_1)
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
            "SELECT r.idempotency_key, r.request, r.operation_id, r.decline, a.body"
            " FROM replies r LEFT JOIN authentications a ON a.id = r.authentication_id"
        )
        for key, request, operation_id, decline, authentication in rows:
            outcome: str | CardDeclined | Authentication
            if decline is not None:
                outcome = CardDeclined(*json.loads(decline))
            elif authentication is not None:
                outcome = Authentication.model_validate_json(authentication)
            else:
                outcome = operation_id
            yield StoredReply(key, tuple(json.loads(request)), outcome)

    def authentications(self) -> Iterator[StoredAuthentication]:
        rows = self._db.execute(
            "SELECT body, idempotency_key, payment_method FROM authentications ORDER BY rowid"
        )
        for body, key, payment_method in rows:
            yield StoredAuthentication(
                Authentication.model_validate_json(body), key, payment_method
            )

    def commit(
        self,
        key: str,
        request: tuple[object, ...],
        outcome: GatewayOperation | CardDeclined | Authentication,
        payment_method: str | None = None,
    ) -> None:
        """Write one outcome and the reply its key replays, both or neither."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            decline = operation_id = authentication_id = None
            if isinstance(outcome, CardDeclined):
                decline = json.dumps([outcome.code, outcome.decline_code, outcome.message])
            elif isinstance(outcome, Authentication):
                authentication_id = outcome.id
                self._db.execute(
                    "INSERT INTO authentications (id, idempotency_key, payment_method, body)"
                    " VALUES (?, ?, ?, ?)",
                    (outcome.id, key, payment_method, outcome.model_dump_json()),
                )
            else:
                operation_id = outcome.id
                self._insert_operation(outcome, payment_method)
            self._db.execute(
                "INSERT INTO replies"
                " (idempotency_key, request, operation_id, authentication_id, decline)"
                " VALUES (?, ?, ?, ?, ?)",
                (key, json.dumps(request), operation_id, authentication_id, decline),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def settle(self, authentication: Authentication, payment_method: str) -> None:
        """Write where an authentication ended, with the authorization that
        approving it made, both or neither."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            if authentication.authorization is not None:
                self._insert_operation(authentication.authorization, payment_method)
            self._db.execute(
                "UPDATE authentications SET body = ? WHERE id = ?",
                (authentication.model_dump_json(), authentication.id),
            )
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _insert_operation(self, operation: GatewayOperation, payment_method: str | None) -> None:
        self._db.execute(
            f"INSERT INTO operations ({_OPERATION_COLUMNS}, payment_method)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (*(getattr(operation, field) for field in _OPERATION_FIELDS), payment_method),
        )

    def close(self) -> None:
        self._db.close()
