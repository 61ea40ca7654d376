"""The filesystem archive: whole files or none, private modes, ids that cannot
escape the directory, and a record without its marker reading as not archived
(so the archiver writes it again)."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from archive.filesystem import FilesystemArchive
from payments.archive import ArchiveCursor, ArchivedPayment, ArchivedRun, ArchiveError

AT = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
PAYMENT_ID = "pay_abcdefghijklmnop"


def record(run_ids: list[str], at: datetime = AT) -> ArchivedPayment:
    return ArchivedPayment(
        payment_id=PAYMENT_ID,
        archived_at=at,
        closed_at=AT,
        execution_status="Completed",
        run_ids=run_ids,
        payment={"metadata": {"encoding": "YmluYXJ5L2VuY3J5cHRlZA=="}, "data": "c2VhbGVk"},
        request_fingerprint="f" * 64,
        histories=[{"events": []} for _ in run_ids],
    )


def files(root: Path) -> list[Path]:
    return sorted(path for path in root.rglob("*") if path.is_file())


async def test_a_record_reads_back_as_written(tmp_path: Path) -> None:
    archive = FilesystemArchive(tmp_path / "archive")
    assert await archive.get(PAYMENT_ID) is None
    assert await archive.archived(PAYMENT_ID) is None
    first = record(["run-1"])
    await archive.put(first)
    assert await archive.get(PAYMENT_ID) == first
    assert await archive.archived(PAYMENT_ID) == (AT, "run-1")
    # A later record of the same payment (it was reset and closed again) replaces it.
    later = record(["run-2"], at=datetime(2026, 12, 2, tzinfo=UTC))
    await archive.put(later)
    assert await archive.get(PAYMENT_ID) == later
    assert await archive.archived(PAYMENT_ID) == (later.archived_at, "run-2")


async def test_files_are_private_and_no_temporary_file_is_left(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    archive = FilesystemArchive(root)
    await archive.put(record(["run-1"]))
    await archive.set_cursor(ArchiveCursor(at=AT))
    written = files(root)
    assert [path.name for path in written] == [
        "cursor.json",
        f"{PAYMENT_ID}.archived",
        f"{PAYMENT_ID}.json",
    ]
    assert all(path.stat().st_mode & 0o777 == 0o600 for path in written)
    for directory in (root, root / "payments", root / "payments" / "ab"):
        assert directory.stat().st_mode & 0o777 == 0o700
    assert await archive.cursor() == ArchiveCursor(at=AT)


async def test_a_record_without_its_marker_is_not_yet_archived(tmp_path: Path) -> None:
    archive = FilesystemArchive(tmp_path)
    await archive.put(record(["run-1"]))
    # A crash between the record and its marker: the archiver must write both again.
    (tmp_path / "payments" / "ab" / f"{PAYMENT_ID}.archived").unlink()
    assert await archive.archived(PAYMENT_ID) is None


async def test_a_failed_write_leaves_the_old_file_whole(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    archive = FilesystemArchive(tmp_path)
    first = record(["run-1"])
    await archive.put(first)

    def no_rename(source: object, target: object) -> None:
        raise OSError(28, "No space left on device")

    # The new file is written and synced; the rename over the old one fails.
    monkeypatch.setattr(os, "replace", no_rename)
    with pytest.raises(ArchiveError, match="No space left"):
        await archive.put(record(["run-2"]))
    monkeypatch.undo()
    assert await archive.get(PAYMENT_ID) == first
    assert await archive.archived(PAYMENT_ID) == (AT, "run-1")
    assert [path.name for path in files(tmp_path / "payments" / "ab")] == [
        f"{PAYMENT_ID}.archived",
        f"{PAYMENT_ID}.json",
    ]


async def test_ids_never_reach_outside_the_archive(tmp_path: Path) -> None:
    archive = FilesystemArchive(tmp_path / "archive")
    (tmp_path / "secret.json").write_text("{}")
    for bad in ("../secret", "pay_../../secret", "pay_AB", "", "pay_" + "a" * 65):
        assert await archive.get(bad) is None
        assert await archive.archived(bad) is None


async def test_a_torn_record_is_an_error_not_a_payment(tmp_path: Path) -> None:
    archive = FilesystemArchive(tmp_path)
    await archive.put(record(["run-1"]))
    (tmp_path / "payments" / "ab" / f"{PAYMENT_ID}.json").write_text('{"payment_id": "pay_ab')
    with pytest.raises(ArchiveError):
        await archive.get(PAYMENT_ID)


async def test_a_run_that_continued_as_new_is_kept_apart(tmp_path: Path) -> None:
    archive = FilesystemArchive(tmp_path)
    run = ArchivedRun(
        payment_id=PAYMENT_ID, run_id="01a2333d-9483-799e", closed_at=AT, history={"events": []}
    )
    assert not await archive.has_run(PAYMENT_ID, run.run_id)
    await archive.put_run(run)
    assert await archive.has_run(PAYMENT_ID, run.run_id)
    assert await archive.get_run(PAYMENT_ID, run.run_id) == run
    # Not the payment's record: that is written when its last run closes.
    assert await archive.archived(PAYMENT_ID) is None
    path = tmp_path / "payments" / "ab" / f"{PAYMENT_ID}.runs" / f"{run.run_id}.json"
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    for bad in ("../../x", "a/b", ""):
        assert await archive.get_run(PAYMENT_ID, bad) is None
        assert not await archive.has_run(PAYMENT_ID, bad)
