"""Identifiers: payment and refund ids, request fingerprints, client secrets.

A payment id derives from merchant + ``Idempotency-Key``, so every duplicate of
a request names the same workflow and Temporal itself refuses a second one.
Client secrets are an HMAC of the payment id: nothing to store, nothing in the
workflow history.

Gateway idempotency keys name the payment *instance*, not only its id: an
instance id is drawn when the payment is started, so even if a payment id came
back (its workflow deleted from Temporal, its archive lost), the new payment's
keys could never replay the old one's operations at the gateway.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
from typing import Final

from pydantic import BaseModel

_ID_LENGTH = 24


def _b32(data: bytes) -> str:
    return base64.b32encode(data).decode().rstrip("=").lower()[:_ID_LENGTH]


# What payment_id_for makes: "pay_" and 24 lowercase base32 characters (a
# little looser, so that an id is never refused for its length alone).
_PAYMENT_ID = re.compile(r"^pay_[a-z0-9]{1,64}$")


def is_payment_id(text: str) -> bool:
    """Whether ``text`` has the shape of a payment id, so it may name a workflow or a file."""
    return _PAYMENT_ID.match(text) is not None


def payment_id_for(merchant_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "pay_" + _b32(secrets.token_bytes(16))
    digest = hashlib.sha256(f"payment\0{merchant_id}\0{idempotency_key}".encode()).digest()
    return "pay_" + _b32(digest)


def refund_id_for(payment_id: str, idempotency_key: str | None) -> str:
    if idempotency_key is None:
        return "re_" + _b32(secrets.token_bytes(16))
    digest = hashlib.sha256(f"refund\0{payment_id}\0{idempotency_key}".encode()).digest()
    return "re_" + _b32(digest)


def command_key_for(payment_id: str, command: str, idempotency_key: str) -> str:
    """The digest the workflow knows a capture's or cancel's Idempotency-Key by.
    Hashed, so whatever a client put in the key never reaches history."""
    digest = hashlib.sha256(f"{command}\0{payment_id}\0{idempotency_key}".encode()).digest()
    return f"{command}_{_b32(digest)}"


def update_id_for(key: str, request_fingerprint: str) -> str:
    """The Temporal update id of a request sent with an Idempotency-Key: the same
    key with the same request is the same update, which Temporal answers once;
    the same key with another request is another update, which reaches the
    workflow's validator and is refused there."""
    return f"{key}_{request_fingerprint[:16]}"


def fingerprint(request: BaseModel) -> str:
    """A stable digest of a validated request, to tell a replay from a key reused.
    Fields a model gained later (its ``ADDED_LATER``) count only when set, so
    a request sent again after an upgrade still matches its first time."""
    body = request.model_dump(mode="json")
    for name in getattr(request, "ADDED_LATER", ()):
        if body.get(name) is None:
            body.pop(name, None)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


# The tag client_secret and demo_token append to a payment id: whatever quotes
# one (a log line) shows the payment but not the tag (api/app.py redacts it).
TOKEN_TAG = re.compile(r"(_secret_|_demo_)[A-Za-z0-9]+")


def client_secret(payment_id: str, key: bytes) -> str:
    tag = hmac.new(key, payment_id.encode(), hashlib.sha256).digest()
    return f"{payment_id}_secret_{_b32(tag)}"


def demo_token(payment_id: str, key: bytes) -> str:
    """What the demo page acts with on a payment it made (capture, cancel,
    refund): a client secret only ever reads (CONTRACT §11), so acting takes
    a token of its own, signed apart from the secret."""
    tag = hmac.new(key, b"demo-action\0" + payment_id.encode(), hashlib.sha256).digest()
    return f"{payment_id}_demo_{_b32(tag)}"


def verify_demo_token(payment_id: str, token: str, key: bytes) -> bool:
    return hmac.compare_digest(demo_token(payment_id, key).encode(), token.encode())


def verify_client_secret(payment_id: str, secret: str, key: bytes) -> bool:
    # As bytes: compare_digest refuses str with non-ASCII characters (TypeError).
    return hmac.compare_digest(client_secret(payment_id, key).encode(), secret.encode())


def random_id(prefix: str) -> str:
    """``prefix`` and 24 random lowercase base32 characters."""
    return prefix + _b32(secrets.token_bytes(16))


def instance_id() -> str:
    """Drawn once per payment when it is started (see the module's docstring)."""
    return "ins_" + _b32(secrets.token_bytes(10))[:16]


# The steps an idempotency key names: one per gateway operation of a payment.
AUTHORIZE_STEP: Final = "authorize"
CAPTURE_STEP: Final = "capture"
VOID_STEP: Final = "void"
CANCEL_AUTHENTICATION_STEP: Final = "cancel_authentication"
_REFUND_STEP = "refund:"


def refund_step(refund_id: str) -> str:
    return f"{_REFUND_STEP}{refund_id}"


def refund_of_step(step: str) -> str | None:
    """The refund id a step names, if it is a refund's."""
    return step.removeprefix(_REFUND_STEP) if step.startswith(_REFUND_STEP) else None


def idempotency_key(payment_id: str, step: str, instance: str | None) -> str:
    """The gateway idempotency key of one step of one payment instance
    (``pay_x:ins_y:capture``); payments started before instances existed keep
    the keys they began with (``pay_x:capture``)."""
    if instance is None:
        return f"{payment_id}:{step}"
    return f"{payment_id}:{instance}:{step}"


def step_of(key: str, payment_id: str, instance: str | None) -> str | None:
    """The step an idempotency key names, if it is one of this payment instance's."""
    prefix = idempotency_key(payment_id, "", instance)
    return key.removeprefix(prefix) if key.startswith(prefix) else None
