"""``FilesystemArchive``: the archive port on a directory (``PAYMENTS_ARCHIVE_DIR``).

Layout, one directory per two characters of the id so that no directory
grows past a few thousand entries::

    <dir>/payments/<aa>/pay_<aa...>.json       the record (ArchivedPayment)
    <dir>/payments/<aa>/pay_<aa...>.archived   {"archived_at", "last_run_id"}
    <dir>/payments/<aa>/pay_<aa...>.runs/<run id>.json
                                               a run that continued as new (ArchivedRun)
    <dir>/cursor.json                          the archiver's cursor (ArchiveCursor)

Every file is written whole to a temporary file in its directory, synced, and
renamed over the old one, then the directory is synced: a crash leaves the old
file or the new one, never a torn one. The record is written before its
``.archived`` marker, so a marker always points at a complete record; a record
without its marker (a crash in between) reads as not archived, and the next
archiver pass writes both again. Directories are 700 and files 600: the
records hold sealed payloads, but also ids and amounts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import secrets
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from payments.archive import ArchiveCursor, ArchivedPayment, ArchivedRun, ArchiveError
from payments.ids import is_payment_id

_RUN_ID = re.compile(r"^[A-Za-z0-9-]{1,64}$")


class _Marker(BaseModel):
    archived_at: datetime
    last_run_id: str


class FilesystemArchive:
    def __init__(self, root: Path) -> None:
        self.root = root

    # -- the port ---------------------------------------------------------------

    async def put(self, record: ArchivedPayment) -> None:
        base = self._base(record.payment_id)
        marker = _Marker(archived_at=record.archived_at, last_run_id=record.last_run_id)
        await asyncio.to_thread(self._write, base.with_suffix(".json"), record.model_dump_json())
        await asyncio.to_thread(
            self._write, base.with_suffix(".archived"), marker.model_dump_json()
        )

    async def get(self, payment_id: str) -> ArchivedPayment | None:
        if not is_payment_id(payment_id):
            return None
        raw = await asyncio.to_thread(self._read, self._base(payment_id).with_suffix(".json"))
        return None if raw is None else self._parse(ArchivedPayment, raw, payment_id)

    async def archived(self, payment_id: str) -> tuple[datetime, str] | None:
        if not is_payment_id(payment_id):
            return None
        raw = await asyncio.to_thread(self._read, self._base(payment_id).with_suffix(".archived"))
        if raw is None:
            return None
        marker = self._parse(_Marker, raw, payment_id)
        return marker.archived_at, marker.last_run_id

    async def put_run(self, run: ArchivedRun) -> None:
        path = self._run_path(run.payment_id, run.run_id)
        await asyncio.to_thread(self._write, path, run.model_dump_json())

    async def get_run(self, payment_id: str, run_id: str) -> ArchivedRun | None:
        if not is_payment_id(payment_id) or not _RUN_ID.match(run_id):
            return None
        raw = await asyncio.to_thread(self._read, self._run_path(payment_id, run_id))
        return None if raw is None else self._parse(ArchivedRun, raw, f"{payment_id}/{run_id}")

    async def has_run(self, payment_id: str, run_id: str) -> bool:
        if not is_payment_id(payment_id) or not _RUN_ID.match(run_id):
            return False
        return await asyncio.to_thread(self._run_path(payment_id, run_id).exists)

    async def cursor(self) -> ArchiveCursor | None:
        raw = await asyncio.to_thread(self._read, self.root / "cursor.json")
        return None if raw is None else self._parse(ArchiveCursor, raw, "cursor")

    async def set_cursor(self, cursor: ArchiveCursor) -> None:
        await asyncio.to_thread(self._write, self.root / "cursor.json", cursor.model_dump_json())

    # -- files ------------------------------------------------------------------

    def _run_path(self, payment_id: str, run_id: str) -> Path:
        if not _RUN_ID.match(run_id):
            raise ArchiveError(f"not a run id: {run_id[:80]!r}")
        base = self._base(payment_id)
        return base.with_name(f"{base.name}.runs") / f"{run_id}.json"

    def _base(self, payment_id: str) -> Path:
        if not is_payment_id(payment_id):
            raise ArchiveError(f"not a payment id: {payment_id[:80]!r}")
        return self.root / "payments" / payment_id[4:6] / payment_id

    def _read(self, path: Path) -> str | None:
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None
        except OSError as err:
            raise ArchiveError(f"reading {path}: {err}") from err

    def _write(self, path: Path, text: str) -> None:
        try:
            self._make_dirs(path.parent)
            temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as file:
                    file.write(text)
                    file.flush()
                    os.fsync(file.fileno())
                os.replace(temporary, path)
            except BaseException:
                temporary.unlink(missing_ok=True)
                raise
            _sync_directory(path.parent)
        except OSError as err:
            raise ArchiveError(f"writing {path}: {err}") from err

    def _make_dirs(self, directory: Path) -> None:
        missing = []
        while not directory.exists():
            missing.append(directory)
            directory = directory.parent
        for created in reversed(missing):
            created.mkdir(mode=0o700, exist_ok=True)
            # The new entry must survive a crash too.
            _sync_directory(created.parent)

    @staticmethod
    def _parse(model: type[Any], raw: str, what: str) -> Any:
        try:
            return model.model_validate(json.loads(raw))
        except (ValueError, ValidationError) as err:
            raise ArchiveError(f"{what}: the archived file does not parse: {err}") from err


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
