"""The payload codec and its endpoint: sealed with the active key, opened with
any listed key, plain payloads passed through, keys never echoed, and the
codec-server protocol with CORS for the Temporal UI."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import httpx
import pytest
from google.protobuf.json_format import MessageToDict
from pydantic import ValidationError
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.contrib.pydantic import pydantic_data_converter

from api.app import create_app
from payments.codec import (
    KEY_ID_METADATA,
    DecryptionError,
    EncryptionCodec,
    EncryptionKey,
    EncryptionKeyError,
    generate_key,
    is_sealed,
    parse_keys,
)
from payments.settings import Settings

OLD = generate_key("2026-01")
NEW = generate_key("2026-06")
CARD_HOLDER = {"customer_id": "cus_ada_lovelace", "amount": 1999}


def plain(value: object) -> Payload:
    return pydantic_data_converter.payload_converter.to_payload(value)


async def test_a_sealed_payload_hides_its_content_and_names_its_key() -> None:
    codec = EncryptionCodec([NEW])
    [sealed] = await codec.encode([plain(CARD_HOLDER)])
    assert is_sealed(sealed)
    assert sealed.metadata[KEY_ID_METADATA] == b"2026-06"
    assert b"cus_ada_lovelace" not in sealed.SerializeToString()
    [opened] = await codec.decode([sealed])
    assert pydantic_data_converter.payload_converter.from_payload(opened) == CARD_HOLDER


async def test_the_same_payload_seals_differently_each_time() -> None:
    codec = EncryptionCodec([NEW])
    first, second = await codec.encode([plain(CARD_HOLDER), plain(CARD_HOLDER)])
    assert first.data != second.data  # a fresh nonce each time


async def test_rotation_seals_with_the_first_key_and_opens_with_any() -> None:
    [before] = await EncryptionCodec([OLD]).encode([plain("before rotation")])
    rotated = EncryptionCodec([NEW, OLD])
    [after] = await rotated.encode([plain("after rotation")])
    assert after.metadata[KEY_ID_METADATA] == b"2026-06"
    opened = await rotated.decode([before, after])
    assert [pydantic_data_converter.payload_converter.from_payload(p) for p in opened] == [
        "before rotation",
        "after rotation",
    ]
    with pytest.raises(DecryptionError, match="2026-01"):
        await EncryptionCodec([NEW]).decode([before])  # the old key dropped too early


async def test_a_tampered_payload_is_refused() -> None:
    codec = EncryptionCodec([NEW])
    [sealed] = await codec.encode([plain(CARD_HOLDER)])
    flipped = bytearray(sealed.data)
    flipped[-1] ^= 1
    tampered = Payload(metadata=dict(sealed.metadata), data=bytes(flipped))
    with pytest.raises(DecryptionError):
        await codec.decode([tampered])
    # The key id is bound to the ciphertext: the same secret under another id
    # does not open a relabelled payload.
    alias = EncryptionKey("alias", NEW.secret)
    relabelled = Payload(metadata={**sealed.metadata, KEY_ID_METADATA: b"alias"}, data=sealed.data)
    with pytest.raises(DecryptionError):
        await EncryptionCodec([alias]).decode([relabelled])


async def test_plain_payloads_pass_through_so_cli_signals_still_work() -> None:
    signal_from_cli = Payload(metadata={"encoding": b"json/plain"}, data=b'{"amount": 500}')
    assert await EncryptionCodec([NEW]).decode([signal_from_cli]) == [signal_from_cli]


def test_key_lists_parse_in_order() -> None:
    keys = parse_keys(f" {NEW.entry()} , {OLD.entry()} ")
    assert [key.key_id for key in keys] == ["2026-06", "2026-01"]
    assert keys[1].secret == OLD.secret
    assert parse_keys("") == []


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("no-separator", "expected '<key id>:<base64 key>'"),
        ("bad id!:" + base64.b64encode(b"k" * 32).decode(), "expected"),
        ("short:" + base64.b64encode(b"k" * 16).decode(), "must be 32 bytes"),
        ("k1:not base64 at all", "not valid base64"),
        (f"{NEW.entry()},{NEW.entry()}", "listed twice"),
    ],
    # Not the values: a key generated at import would give each process its own id.
    ids=["no separator", "bad id", "short key", "not base64", "listed twice"],
)
def test_bad_key_lists_are_refused_without_echoing_the_key(value: str, problem: str) -> None:
    with pytest.raises(EncryptionKeyError, match=problem):
        parse_keys(value)
    with pytest.raises(ValidationError) as refused:
        Settings(encryption_keys=value)
    secret_part = value.partition(":")[2] or value
    assert secret_part not in str(refused.value)


# -- the codec endpoint --------------------------------------------------------------

UI = "http://127.0.0.1:8233"


def settings(**overrides: object) -> Settings:
    return Settings(
        encryption_keys=f"{NEW.entry()},{OLD.entry()}",
        temporal_ui_url=UI,
        **overrides,  # type: ignore[arg-type]
    )


@pytest.fixture
def anonymous_codec() -> Settings:
    return settings(codec_allow_anonymous=True)


async def serve(app_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(app_settings)
    app.state.temporal_client = None  # the codec needs keys, never Temporal
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as client:
        yield client


@pytest.fixture
async def http(anonymous_codec: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async for client in serve(anonymous_codec):
        yield client


def as_json(*payloads: Payload) -> dict[str, object]:
    return MessageToDict(Payloads(payloads=payloads))


async def test_decode_and_encode_speak_the_codec_server_protocol(http: httpx.AsyncClient) -> None:
    [sealed_old] = await EncryptionCodec([OLD]).encode([plain(CARD_HOLDER)])
    cli_signal = Payload(metadata={"encoding": b"json/plain"}, data=b'{"amount": 500}')
    response = await http.post(
        "/codec/decode",
        json=as_json(sealed_old, cli_signal),
        headers={"X-Namespace": "default", "Origin": UI},
    )
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == UI
    [opened, untouched] = response.json()["payloads"]
    assert base64.b64decode(opened["metadata"]["encoding"]) == b"json/plain"
    assert b"cus_ada_lovelace" in base64.b64decode(opened["data"])
    assert untouched == as_json(cli_signal)["payloads"][0]  # type: ignore[index]

    typed_in_ui = Payload(metadata={"encoding": b"json/plain"}, data=b'{"reason": "fraud"}')
    encoded = await http.post("/codec/encode", json=as_json(typed_in_ui))
    assert encoded.status_code == 200
    [sealed] = encoded.json()["payloads"]
    assert base64.b64decode(sealed["metadata"]["encoding"]) == b"binary/encrypted"
    assert base64.b64decode(sealed["metadata"][KEY_ID_METADATA]) == b"2026-06"
    assert b"fraud" not in base64.b64decode(sealed["data"])


async def test_a_payload_that_does_not_open_comes_back_as_it_was(http: httpx.AsyncClient) -> None:
    [foreign] = await EncryptionCodec([generate_key("elsewhere")]).encode([plain("x")])
    response = await http.post("/codec/decode", json=as_json(foreign))
    assert response.status_code == 200
    assert response.json() == as_json(foreign)


async def test_the_ui_origin_passes_the_cors_preflight_and_others_do_not(
    http: httpx.AsyncClient,
) -> None:
    preflight = {
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-namespace",
    }
    for origin in (UI, "http://localhost:8233"):
        allowed = await http.options("/codec/decode", headers={**preflight, "Origin": origin})
        assert allowed.status_code == 200
        assert allowed.headers["access-control-allow-origin"] == origin
        assert "x-namespace" in allowed.headers["access-control-allow-headers"].lower()
    foreign = await http.options(
        "/codec/decode", headers={**preflight, "Origin": "http://evil.example"}
    )
    assert foreign.status_code == 400
    assert "access-control-allow-origin" not in foreign.headers


@pytest.mark.parametrize("body", [b"not json", b'{"payloads": 7}', b"[1, 2]"])
async def test_a_malformed_body_is_400(http: httpx.AsyncClient, body: bytes) -> None:
    response = await http.post("/codec/decode", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_payloads"


async def test_by_default_the_codec_wants_an_operator_key() -> None:
    [sealed] = await EncryptionCodec([NEW]).encode([plain(CARD_HOLDER)])
    async for http in serve(settings(operator_api_keys=["sk_test_ops"])):
        refused = await http.post("/codec/decode", json=as_json(sealed))
        assert refused.status_code == 401
        assert refused.json()["error"]["type"] == "authentication_error"
        assert "cus_ada_lovelace" not in refused.text
        merchant = await http.post(
            "/codec/decode",
            json=as_json(sealed),
            headers={"Authorization": "Bearer sk_test_demo"},
        )
        assert merchant.status_code == 401
        ops = await http.post(
            "/codec/decode",
            json=as_json(sealed),
            headers={"Authorization": "Bearer sk_test_ops"},
        )
        assert ops.status_code == 200
        assert b"cus_ada_lovelace" in base64.b64decode(ops.json()["payloads"][0]["data"])
