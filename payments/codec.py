"""Encryption of everything the service writes to Temporal.

Every payload (workflow input, memo, update and signal arguments, activity
inputs and results, failures' details, summaries) leaves the process sealed
with AES-256-GCM under the active key and is opened again on the way in, so
the Temporal service, its database and anyone reading history without the key
see ciphertext only. Search attributes are not payloads of this kind and stay
readable: they carry no personal data by design.

Keys come from ``PAYMENTS_ENCRYPTION_KEYS``: a comma-separated list of
``<key id>:<base64 of 32 bytes>``. The first key seals; every listed key opens,
so a key is rotated by putting a new one first and keeping the old ones until
no history still needs them. Each sealed payload names its key id, which is
also bound to the ciphertext as associated data.

``python -m payments.codec`` prints a fresh key, ready for that list.

A payload that is not sealed passes through unchanged: an operator's signal
typed as plain JSON in the Temporal CLI or UI still reaches the workflow.

    EncryptionKeyError   a key list that cannot be used (raised at startup)
    DecryptionError      a sealed payload whose key this process lacks, or
                         which does not open with it (tampered, wrong key)
"""

from __future__ import annotations

import base64
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
from temporalio.converter import PayloadCodec

ENCODING = b"binary/encrypted"
KEY_ID_METADATA = "encryption-key-id"
NONCE_BYTES = 12
KEY_BYTES = 32
_KEY_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class EncryptionKeyError(ValueError):
    pass


class DecryptionError(ValueError):
    pass


@dataclass(frozen=True)
class EncryptionKey:
    key_id: str
    secret: bytes

    def entry(self) -> str:
        """This key as one ``PAYMENTS_ENCRYPTION_KEYS`` item."""
        return f"{self.key_id}:{base64.b64encode(self.secret).decode()}"


def parse_keys(value: str) -> list[EncryptionKey]:
    """``"id:base64,id:base64"`` into keys, the active one first. Errors name the
    key id or position, never the key."""
    keys: list[EncryptionKey] = []
    for position, item in enumerate(part.strip() for part in value.split(",") if part.strip()):
        key_id, sep, encoded = item.partition(":")
        if not sep or not _KEY_ID.fullmatch(key_id):
            raise EncryptionKeyError(
                f"encryption key #{position + 1}: expected '<key id>:<base64 key>', "
                "the id made of letters, digits, '.', '_' or '-'"
            )
        try:
            secret = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise EncryptionKeyError(f"encryption key {key_id!r} is not valid base64") from None
        if len(secret) != KEY_BYTES:
            raise EncryptionKeyError(
                f"encryption key {key_id!r} must be {KEY_BYTES} bytes (AES-256), not {len(secret)}"
            )
        if any(known.key_id == key_id for known in keys):
            raise EncryptionKeyError(f"encryption key id {key_id!r} is listed twice")
        keys.append(EncryptionKey(key_id, secret))
    return keys


def generate_key(key_id: str) -> EncryptionKey:
    return EncryptionKey(key_id, AESGCM.generate_key(bit_length=KEY_BYTES * 8))


def is_sealed(payload: Payload) -> bool:
    return payload.metadata.get("encoding") == ENCODING


class EncryptionCodec(PayloadCodec):
    """Seals payloads with the first key; opens those sealed with any key it holds."""

    def __init__(self, keys: Sequence[EncryptionKey]) -> None:
        if not keys:
            raise EncryptionKeyError("an encryption codec needs at least one key")
        self.active = keys[0]
        self._ciphers = {key.key_id: AESGCM(key.secret) for key in keys}

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.seal(payload) for payload in payloads]

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return [self.open(payload) for payload in payloads]

    def seal(self, payload: Payload) -> Payload:
        if is_sealed(payload):
            return payload  # never sealed twice, e.g. a payload passed through as is
        key_id = self.active.key_id.encode()
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._ciphers[self.active.key_id].encrypt(
            nonce, payload.SerializeToString(), key_id
        )
        return Payload(
            metadata={"encoding": ENCODING, KEY_ID_METADATA: key_id}, data=nonce + sealed
        )

    def open(self, payload: Payload) -> Payload:
        if not is_sealed(payload):
            return payload
        key_id = payload.metadata.get(KEY_ID_METADATA, b"").decode(errors="replace")
        cipher = self._ciphers.get(key_id)
        if cipher is None:
            raise DecryptionError(f"payload sealed with key {key_id!r}, which is not configured")
        nonce, sealed = payload.data[:NONCE_BYTES], payload.data[NONCE_BYTES:]
        try:
            plain = cipher.decrypt(nonce, sealed, key_id.encode())
        except InvalidTag:
            raise DecryptionError(
                f"payload sealed with key {key_id!r} does not open with the configured key"
            ) from None
        opened = Payload()
        opened.ParseFromString(plain)
        return opened


if __name__ == "__main__":
    import time

    print(generate_key(f"key-{time.strftime('%Y%m%d')}").entry())
