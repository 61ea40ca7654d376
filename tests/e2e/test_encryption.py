"""Encrypted history on the stack as `make run` starts it: the Temporal CLI
without the codec sees ciphertext, with the codec endpoint it sees the
payment; the database file holds no plaintext; the Web UI is pointed at the
codec and shows the decrypted input in a browser."""

from __future__ import annotations

import base64
import json
import subprocess
from typing import Any

import httpx
import pytest
from playwright.async_api import Browser, expect
from support import read_if_there, without_core_bookkeeping

from devstack import Stack

pytestmark = pytest.mark.e2e

SECRET_DESCRIPTION = "order 77 for Grace Hopper, 1 Navy Way"
SEALED = base64.b64encode(b"binary/encrypted").decode()


async def paid(http: httpx.AsyncClient) -> dict[str, Any]:
    created = await http.post(
        "/v1/payments",
        json={
            "amount": 4200,
            "currency": "eur",
            "payment_method": "pm_card_visa",
            "description": SECRET_DESCRIPTION,
            "metadata": {"shipping": "1 Navy Way"},
        },
        headers={"Prefer": "wait=20"},
    )
    assert created.status_code == 200
    payment: dict[str, Any] = created.json()
    assert payment["status"] == "succeeded"
    return payment


def shown(stack: Stack, payment_id: str, *codec: str) -> dict[str, Any]:
    """`temporal workflow show -o json`, as an operator would run it."""
    run = subprocess.run(
        [
            stack.command("temporal")[0],
            "workflow",
            "show",
            "--address",
            stack.temporal_address,
            "--workflow-id",
            payment_id,
            "--output",
            "json",
            *codec,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=30,
    )
    history: dict[str, Any] = without_core_bookkeeping(json.loads(run.stdout))
    return history


def payloads(node: Any) -> list[dict[str, Any]]:
    """Every payload-shaped object ({"metadata": {...}, "data": ...}) in the JSON."""
    found = []
    if isinstance(node, dict):
        if "metadata" in node and "data" in node:
            found.append(node)
        for key, child in node.items():
            if key != "searchAttributes":
                found += payloads(child)
    elif isinstance(node, list):
        for child in node:
            found += payloads(child)
    return found


def plaintext(payload: dict[str, Any]) -> str:
    return base64.b64decode(payload["data"]).decode(errors="replace")


async def test_the_cli_sees_ciphertext_unless_it_uses_the_codec(
    stack: Stack, http: httpx.AsyncClient
) -> None:
    payment = await paid(http)

    bare = payloads(shown(stack, payment["id"]))
    assert len(bare) > 10
    assert {p["metadata"]["encoding"] for p in bare} == {SEALED}
    assert not any("Grace Hopper" in plaintext(p) for p in bare)

    codec = f"{stack.api_url}/codec"
    decoded = payloads(shown(stack, payment["id"], "--codec-endpoint", codec))
    assert len(decoded) == len(bare)
    assert SEALED not in {p["metadata"]["encoding"] for p in decoded}
    assert any(SECRET_DESCRIPTION in plaintext(p) for p in decoded)


async def test_the_database_holds_no_plaintext(stack: Stack, http: httpx.AsyncClient) -> None:
    payment = await paid(http)
    stored = b"".join(
        read_if_there(path)
        for path in stack.data_dir.iterdir()
        if path.name.startswith("temporal.sqlite")  # the file, its WAL and journal
    )
    assert payment["id"].encode() in stored  # the right file, holding this payment
    assert b"Grace Hopper" not in stored
    assert b"1 Navy Way" not in stored


async def test_the_ui_decodes_through_the_codec_endpoint(
    stack: Stack, http: httpx.AsyncClient, browser: Browser
) -> None:
    async with httpx.AsyncClient() as ui:
        settings = (await ui.get(f"{stack.temporal_ui_url}/api/v1/settings")).json()
    assert settings["Codec"]["Endpoint"] == f"{stack.api_url}/codec"

    payment = await paid(http)
    page = await browser.new_page(viewport={"width": 1200, "height": 900})
    codec_calls: list[str] = []
    page.on("requestfinished", lambda request: codec_calls.append(request.url))
    await page.goto(payment["links"]["temporal_ui"])
    # The workflow's input, decrypted by our endpoint in the browser (a CORS call).
    await expect(page.get_by_text(SECRET_DESCRIPTION).first).to_be_visible(timeout=30_000)
    assert any(url.startswith(f"{stack.api_url}/codec/decode") for url in codec_calls)
