"""Adapters of the archive port (:mod:`payments.archive`), and the one that
the settings choose."""

from __future__ import annotations

from archive.filesystem import FilesystemArchive
from payments.archive import Archive
from payments.settings import Settings


def build_archive(settings: Settings) -> Archive:
    return FilesystemArchive(settings.archive_dir)
