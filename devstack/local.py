"""What a local stack sets up before any child starts: a data directory only its
owner can enter, the children's development defaults, and keys of its own, each
made once and kept private in the data directory."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from collections.abc import Callable
from pathlib import Path

from payments.codec import generate_key


def _signing_key() -> str:
    return secrets.token_urlsafe(32)


def _encryption_key() -> str:
    return generate_key(f"local-{time.strftime('%Y%m%d')}").entry()


# Unset, PAYMENTS_ENV means production, which refuses the demo key and all of these:
# the demo page on, as its own merchant; the codec endpoint open to the local UI,
# which has no login to pass a key.
LOCAL_DEFAULTS = {
    "PAYMENTS_ENV": "development",
    "PAYMENTS_DEMO_MERCHANT": "demo-page",
    "PAYMENTS_CODEC_ALLOW_ANONYMOUS": "true",
    # `payments listen` and a local receiver are on this machine.
    "PAYMENTS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
}
# variable -> (file in the data directory, how a new one is made)
LOCAL_SECRETS: dict[str, tuple[str, Callable[[], str]]] = {
    "PAYMENTS_CLIENT_SECRET_KEY": ("client_secret_key", _signing_key),
    "PAYMENTS_ENCRYPTION_KEYS": ("encryption_keys", _encryption_key),
}


def set_up(env: dict[str, str], data_dir: Path, archive_dir: Path) -> None:
    """Fill in what ``env`` does not say already: the defaults above, the archive
    at ``archive_dir``, and each secret from its file (made now if missing)."""
    private_directory(data_dir)
    for variable, value in LOCAL_DEFAULTS.items():
        env.setdefault(variable, value)
    env.setdefault("PAYMENTS_ARCHIVE_DIR", str(archive_dir))
    for variable, (filename, make) in LOCAL_SECRETS.items():
        if variable in env:
            continue
        key_file = data_dir / filename
        if not key_file.exists():
            write_private_file(key_file, make())
        env[variable] = key_file.read_text().strip()


def private_directory(path: Path) -> None:
    """``path`` as a directory only its owner can enter (it holds keys and the
    dev server's database): created so, and narrowed if it was wider."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    if path.stat().st_mode & 0o077:
        path.chmod(0o700)


def write_private_file(path: Path, text: str) -> None:
    """Write a new file that is never readable by anyone but its owner, not
    even for a moment, and never seen half written: a private temporary file,
    then linked into place. If another process got there first, its file wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.unlink(missing_ok=True)  # left by a process of ours that died here
    fd = os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
