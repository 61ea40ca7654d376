"""No card data, anywhere (issue 5, item 6).

Card numbers (valid Luhn, plain, spaced and dashed) go into every place a
client can put one: each field of each body, metadata keys and values, the
headers, query parameters, path ids, webhook bodies, the demo endpoints, the
event stream and the WebSocket. Afterwards none of them is anywhere: not in an
answer the test got (status, headers, body, WebSocket messages), not in the
Temporal history of any workflow the stack has (raw, with memo and search
attributes, and decoded through the client's data converter, so the scan holds
with or without payload encryption), not in the dev server's database files,
not in what any process of the stack printed. And a refused request started
nothing and changed nothing.

The customer's address a payment's receipts go to (CONTRACT §16) is scanned
for the same way, where it must never be in the clear: what the processes
printed, the database files (the mail sink's own mailbox aside, where the
receipt belongs) and the raw history, read without the codec.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import re
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote_plus

import httpx
import pytest
import websockets
from google.protobuf.json_format import MessageToJson
from google.protobuf.message import Message
from support import read_if_there, stripe_event, stripe_signature
from temporalio.api.common.v1 import Payload
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode
from websockets.asyncio.client import connect

from devstack import Stack
from payments.cards import luhn_valid
from payments.ids import payment_id_for

pytestmark = pytest.mark.e2e

VISA = {"amount": 1999, "currency": "usd", "payment_method": "pm_card_visa"}
OPERATOR = {"Authorization": "Bearer sk_test_operator"}


def _with_check_digit(body: str) -> str:
    return next(body + d for d in "0123456789" if luhn_valid(body + d))


# One number only this run uses, so finding it cannot be a coincidence; and the
# test cards everybody knows, in the spellings a person types.
_UNIQUE = _with_check_digit("4" + "".join(random.choice("0123456789") for _ in range(14)))
CARDS = [
    "4242424242424242",
    "4242 4242 4242 4242",
    "4242-4242-4242-4242",
    "5555 5555 5555 4444",
    "3782-822463-10005",
    "6011111111111117",
    f"{_UNIQUE[:4]} {_UNIQUE[4:8]}-{_UNIQUE[8:12]} {_UNIQUE[12:]}",
]
PANS = sorted({re.sub(r"\D", "", card) for card in CARDS})
# What may group a card number's digits (URL encodings are decoded first).
_SEPARATORS = re.compile(r"(?<=\d)[\s\-]+(?=\d)")


# One address only this run uses, on the payment the module pays with.
ADDRESS = f"scan.{random.randrange(16**8):08x}@example.com"


def card_numbers_in(text: str) -> list[str]:
    """The PANs of this test found in ``text``: as sent, with the separators
    between digits stripped, and URL-decoded."""
    found = []
    for variant in {text, unquote_plus(text)}:
        stripped = _SEPARATORS.sub("", variant)
        found += [pan for pan in PANS if pan in variant or pan in stripped]
    return sorted(set(found))


def test_every_card_is_a_card() -> None:
    assert all(luhn_valid(pan) and 13 <= len(pan) <= 19 for pan in PANS)
    assert card_numbers_in(f"order {CARDS[-1]} paid") == [_UNIQUE]
    assert card_numbers_in(quote(CARDS[1])) == ["4242424242424242"]
    assert card_numbers_in("4242.4242.4242.4242 and 424242424242424") == []


# -- what a client sends ------------------------------------------------------------


@dataclass(repr=False)
class Seen:
    """One answer the test got, as a client sees it, and what it should have been."""

    what: str
    text: str
    got: tuple[int, str | None]
    expected: tuple[int, str | None]

    @classmethod
    def of(cls, what: str, response: httpx.Response, expected: tuple[int, str | None]) -> Seen:
        headers = "\n".join(f"{k}: {v}" for k, v in response.headers.multi_items())
        code = None
        if response.headers.get("content-type", "").startswith("application/json"):
            body = response.json() if response.content else None
            error = body.get("error") if isinstance(body, dict) else None
            code = error.get("code") if isinstance(error, dict) else None
        text = f"HTTP {response.status_code} {response.reason_phrase}\n{headers}\n\n"
        return cls(what, text + response.text, (response.status_code, code), expected)


@dataclass(repr=False)
class Sent:
    seen: list[Seen] = field(default_factory=list)
    # Idempotency keys of refused creates: their payment must not exist.
    refused_keys: list[str] = field(default_factory=list)
    # Card numbers sent as Idempotency-Key of a valid create: the payment id made.
    accepted_keys: dict[str, str | None] = field(default_factory=dict)
    # Payments the refused requests aimed at, as they were before.
    targets: dict[str, dict[str, Any]] = field(default_factory=dict)
    paid_events: list[dict[str, Any]] = field(default_factory=list)
    workflows_before: int = 0
    workflows_after_refusals: int = 0


def card(index: int) -> str:
    return CARDS[index % len(CARDS)]


def pan(index: int) -> str:
    return PANS[index % len(PANS)]


async def count_payments(temporal: Client) -> int:
    return (await temporal.count_workflows("WorkflowType = 'PaymentWorkflow'")).count


async def websocket_answers(url: str) -> str:
    """Everything a WebSocket client receives, and how the server closed."""
    received = []
    async with connect(url) as socket:
        try:
            async for message in socket:
                received.append(str(message))
        except websockets.ConnectionClosed:
            pass
    close = socket.close_code, socket.close_reason
    return "\n".join([*received, f"closed {close}"])


async def refused_everywhere(
    stack: Stack, api: httpx.AsyncClient, anonymous: httpx.AsyncClient, sent: Sent
) -> None:
    """Requests that carry a card number where the API reads it: each is refused."""
    demo = {"Authorization": f"Bearer {stack.api_key}"}
    paid, manual = sent.targets["paid"], sent.targets["manual"]
    demo_page = sent.targets["demo_page"]
    spellings = itertools.cycle(CARDS)

    async def expect(what: str, status: int, code: str | None, request: Any) -> None:
        sent.seen.append(Seen.of(what, await request, (status, code)))

    def create(body: Any, *, raw: bytes | None = None) -> Any:
        key = f"no-card-{len(sent.refused_keys)}-{random.getrandbits(48):x}"
        sent.refused_keys.append(key)
        headers = {**demo, "Idempotency-Key": key}
        if raw is not None:
            return api.post("/v1/payments", content=raw, headers=headers)
        return api.post("/v1/payments", json=body, headers=headers)

    # Every field of a create, as text and as a number; metadata in every spelling.
    for name in ("payment_method", "customer_id", "description", "currency", "capture_method"):
        body = {**VISA, name: next(spellings)}
        await expect(name, 422, "card_number_refused", create(body))
    prose = f"Order 1001, paid with {next(spellings)}, exp 12/34"
    await expect(
        "description prose", 422, "card_number_refused", create({**VISA, "description": prose})
    )
    for index, spelling in enumerate(CARDS):
        value = {**VISA, "metadata": {"order_id": "1001", "note": spelling}}
        await expect(f"metadata value {index}", 422, "card_number_refused", create(value))
        value = {**VISA, "metadata": {spelling: "x"}}
        await expect(f"metadata key {index}", 422, "card_number_refused", create(value))
    body = {**VISA, "amount": int(pan(0))}
    await expect("amount", 422, "card_number_refused", create(body))
    body = {**VISA, "card": next(spellings)}
    await expect("unknown field", 422, "card_number_refused", create(body))
    body = {**VISA, "metadata": {"a": [next(spellings)]}}
    await expect("nested", 422, "card_number_refused", create(body))
    raw = json.dumps(next(spellings)).encode()
    await expect("a JSON string", 400, "invalid_json", create(None, raw=raw))
    form = f"amount=1999&currency=usd&card={next(spellings)}".encode()
    await expect("a form body", 400, "invalid_json", create(None, raw=form))

    # Headers that are validated refuse the card and echo nothing.
    spaced = CARDS[1]
    await expect(
        "Idempotency-Key with spaces",
        422,
        "parameter_invalid",
        api.post("/v1/payments", json=VISA, headers={**demo, "Idempotency-Key": spaced}),
    )
    await expect(
        "Prefer",
        400,
        "invalid_prefer_header",
        api.post("/v1/payments", json=VISA, headers={**demo, "Prefer": f"wait={pan(0)}"}),
    )
    await expect(
        "API key",
        401,
        "invalid_api_key",
        anonymous.get("/v1/payments", headers={"Authorization": f"Bearer {pan(1)}"}),
    )
    await expect(
        "Authorization",
        401,
        "invalid_authorization",
        anonymous.get("/v1/payments", headers={"Authorization": CARDS[2]}),
    )

    # Bodies about an existing payment: refunds, captures, cancels.
    for index in range(3):
        path = f"/v1/payments/{paid['id']}/refunds"
        await expect(
            f"refund reason {index}",
            422,
            "card_number_refused",
            api.post(path, json={"reason": card(index)}, headers=demo),
        )
    await expect(
        "refund amount",
        422,
        "card_number_refused",
        api.post(f"/v1/payments/{paid['id']}/refunds", json={"amount": int(pan(2))}, headers=demo),
    )
    await expect(
        "refund, key and reason",
        422,
        "card_number_refused",
        api.post(
            f"/v1/payments/{paid['id']}/refunds",
            json={"amount": 100, "reason": f"customer gave {card(3)}"},
            headers={**demo, "Idempotency-Key": pan(3)},
        ),
    )
    capture = f"/v1/payments/{manual['id']}/capture"
    await expect(
        "capture amount",
        422,
        "card_number_refused",
        api.post(capture, json={"amount": int(pan(4))}, headers=demo),
    )
    await expect(
        "capture field",
        422,
        "card_number_refused",
        api.post(capture, json={"card": card(5)}, headers=demo),
    )
    await expect(
        "cancel reason",
        422,
        "card_number_refused",
        api.post(f"/v1/payments/{manual['id']}/cancel", json={"reason": card(6)}, headers=demo),
    )

    # Query parameters.
    await expect(
        "list status",
        422,
        "parameter_invalid",
        api.get("/v1/payments", params={"status": card(0)}, headers=demo),
    )
    await expect(
        "list limit",
        422,
        "parameter_invalid",
        api.get("/v1/payments", params={"limit": pan(0)}, headers=demo),
    )
    await expect(
        "list customer_id (spaced)",
        422,
        "parameter_invalid",
        api.get("/v1/payments", params={"customer_id": CARDS[1]}, headers=demo),
    )
    for index in (0, 2):
        await expect(
            f"list starting_after {index}",
            404,
            "resource_missing",
            api.get("/v1/payments", params={"starting_after": card(index)}, headers=demo),
        )
    await expect(
        "client_secret",
        401,
        "invalid_client_secret",
        anonymous.get(f"/v1/payments/{paid['id']}", params={"client_secret": card(0)}),
    )
    await expect(
        "stream client_secret",
        401,
        "invalid_client_secret",
        anonymous.get(f"/v1/payments/{paid['id']}/stream", params={"client_secret": card(2)}),
    )
    await expect(
        "stream last_event_id (spaced)",
        422,
        "parameter_invalid",
        api.get(
            f"/v1/payments/{paid['id']}/stream", params={"last_event_id": CARDS[1]}, headers=demo
        ),
    )

    # Path ids, each spelling, each route about one payment.
    for index, spelling in enumerate(CARDS):
        for pid in (quote(spelling), "pay_" + re.sub(r"\D", "", spelling)):
            base = f"/v1/payments/{pid}"
            await expect(f"get {index}", 404, "resource_missing", api.get(base, headers=demo))
            await expect(
                f"events {index}", 404, "resource_missing", api.get(f"{base}/events", headers=demo)
            )
            await expect(
                f"stream {index}", 404, "resource_missing", api.get(f"{base}/stream", headers=demo)
            )
            for action in ("capture", "cancel", "refunds"):
                await expect(
                    f"{action} {index}",
                    404,
                    "resource_missing",
                    api.post(f"{base}/{action}", headers=demo),
                )
    await expect(
        "reconciliation run",
        404,
        "resource_missing",
        api.get(f"/v1/reconciliation/runs/{quote(card(1))}", headers=OPERATOR),
    )
    await expect(
        "reconciliation request",
        422,
        "card_number_refused",
        api.post("/v1/reconciliation/runs", json={"note": card(3)}, headers=OPERATOR),
    )
    await expect("an unknown path", 404, "resource_missing", api.get(f"/v1/{quote(card(4))}"))

    # Webhooks: unsigned, and signed with the card where the API would keep it.
    await expect(
        "unsigned webhook",
        400,
        "signature_missing",
        anonymous.post(
            "/v1/gateway/webhooks/stripe",
            content=stripe_event("evt_x", paid["id"], "pi_nocard", card=card(0)),
        ),
    )
    for what, body in [
        ("webhook payment_id", stripe_event("evt_nocard_1", pan(0))),
        ("webhook payment_id spaced", stripe_event("evt_nocard_2", CARDS[1])),
        ("webhook event id", stripe_event(f"evt_{_UNIQUE}", paid["id"])),
        ("webhook object id", stripe_event("evt_nocard_3", paid["id"], object_id=f"pi_{pan(1)}")),
    ]:
        await expect(
            what,
            400,
            "card_number_refused",
            anonymous.post(
                "/v1/gateway/webhooks/stripe", content=body, headers=stripe_signature(body)
            ),
        )

    # The demo page's endpoints.
    for name in ("payment_method", "description"):
        await expect(
            f"demo {name}",
            422,
            "card_number_refused",
            anonymous.post("/demo/payments", json={**VISA, name: card(6)}),
        )
    await expect("demo asset", 404, "resource_missing", anonymous.get(f"/static/{quote(card(5))}"))
    secret = {"demo_token": demo_page["demo_token"]}
    await expect(
        "demo refund reason",
        422,
        "card_number_refused",
        anonymous.post(
            f"/demo/payments/{demo_page['id']}/refunds", params=secret, json={"reason": card(2)}
        ),
    )
    for action in ("capture", "cancel", "refunds"):
        await expect(
            f"demo {action} of a card",
            401,
            "invalid_demo_token",
            anonymous.post(
                f"/demo/payments/{quote(card(0))}/{action}", params={"demo_token": card(1)}
            ),
        )

    # The WebSocket: an id or a secret that is a card number.
    ws = stack.api_url.replace("http://", "ws://")
    for what, url in [
        ("websocket id", f"{ws}/v1/payments/{quote(card(0))}/ws?client_secret={quote(card(1))}"),
        ("websocket secret", f"{ws}/v1/payments/{paid['id']}/ws?client_secret={quote(card(2))}"),
    ]:
        answer = await websocket_answers(url)
        refused = "invalid_client_secret" in answer and "closed (1008" in answer
        got = (1008, "invalid_client_secret") if refused else (0, answer)
        sent.seen.append(Seen(what, answer, got, (1008, "invalid_client_secret")))


async def accepted_without_the_card(
    stack: Stack, api: httpx.AsyncClient, anonymous: httpx.AsyncClient, sent: Sent
) -> None:
    """Where a card number is not read as data it is not refused, and not kept either."""
    demo = {"Authorization": f"Bearer {stack.api_key}"}
    paid = sent.targets["paid"]

    async def expect(what: str, status: int, request: Any) -> httpx.Response:
        response: httpx.Response = await request
        sent.seen.append(Seen.of(what, response, (status, None)))
        return response

    # An Idempotency-Key is only ever hashed into the payment id.
    for spelling in (CARDS[0], CARDS[2], _UNIQUE):
        created = await expect(
            "Idempotency-Key",
            202,
            api.post("/v1/payments", json=VISA, headers={**demo, "Idempotency-Key": spelling}),
        )
        sent.accepted_keys[spelling] = created.json().get("id")
    # Headers the API does not read.
    noise = {
        "User-Agent": f"shop/{card(0)}",
        "Referer": f"https://shop.example/checkout?card={quote(card(1))}",
        "X-Request-Id": card(2),
        "X-Forwarded-For": pan(3),
        "Forwarded": f"for={pan(4)}",
        "Cookie": f"card={pan(5)}",
        "Accept-Language": card(6),
        "Prefer": f"respond-async, note={pan(0)}",
    }
    await expect("headers", 200, api.get(f"/v1/payments/{paid['id']}", headers={**demo, **noise}))
    await expect(
        "stream headers",
        200,
        api.get(f"/v1/payments/{paid['id']}/stream", headers={**demo, **noise}),
    )
    # Query parameters that pass validation.
    for what, params in [
        ("customer_id", {"customer_id": card(0)}),
        ("customer_id dashed", {"customer_id": CARDS[2]}),
    ]:
        await expect(what, 200, api.get("/v1/payments", params=params, headers=demo))
    # Parameters the route does not take are refused by name; a name that is a
    # card number is not echoed either.
    for what, params in [
        ("unknown parameter", {"card": card(1), "note": card(6)}),
        ("card number as a parameter name", {pan(2): "1"}),
    ]:
        refused = await api.get("/v1/payments", params=params, headers=demo)
        sent.seen.append(Seen.of(what, refused, (422, "parameter_unknown")))
    await expect(
        "last_event_id",
        204,
        api.get(
            f"/v1/payments/{paid['id']}/stream", params={"last_event_id": pan(0)}, headers=demo
        ),
    )
    await expect(
        "Last-Event-ID",
        204,
        api.get(f"/v1/payments/{paid['id']}/stream", headers={**demo, "Last-Event-ID": pan(1)}),
    )
    await expect("demo config", 200, anonymous.get("/demo/config", params={"card": card(3)}))
    # A signed webhook carrying a card in fields the API does not keep.
    body = stripe_event("evt_nocard_kept", paid["id"], description=card(4), card=card(5))
    await expect(
        "webhook object fields",
        200,
        anonymous.post("/v1/gateway/webhooks/stripe", content=body, headers=stripe_signature(body)),
    )


@pytest.fixture(scope="module")
async def temporal(stack: Stack) -> Client:
    """The stack's Temporal, with its keys: it reads what the services wrote."""
    return await stack.client()


@pytest.fixture(scope="module")
async def sent(stack: Stack, temporal: Client) -> AsyncIterator[Sent]:
    """Every request of this module, sent once; what came back."""
    result = Sent()
    demo = {"Authorization": f"Bearer {stack.api_key}"}
    async with (
        httpx.AsyncClient(base_url=stack.api_url, timeout=30) as api,
        httpx.AsyncClient(base_url=stack.api_url, timeout=30) as anonymous,
    ):
        wait = {**demo, "Prefer": "wait=20"}
        receipted = {**VISA, "receipt_email": ADDRESS}
        paid = (await api.post("/v1/payments", json=receipted, headers=wait)).json()
        manual = {**VISA, "capture_method": "manual"}
        waiting = (await api.post("/v1/payments", json=manual, headers=wait)).json()
        assert (paid["status"], waiting["status"]) == ("succeeded", "requires_capture")
        page = (await anonymous.post("/demo/payments", json=VISA)).json()
        result.targets = {"paid": paid, "manual": waiting, "demo_page": page}
        for _ in range(100):  # its receipt goes out a moment after it succeeded
            events = await api.get(f"/v1/payments/{paid['id']}/events", headers=demo)
            result.paid_events = events.json()["data"]
            if result.paid_events[-1]["type"] == "receipt.sent":
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)  # visibility is eventually consistent
        result.workflows_before = await count_payments(temporal)

        await refused_everywhere(stack, api, anonymous, result)
        await asyncio.sleep(1.0)
        result.workflows_after_refusals = await count_payments(temporal)

        await accepted_without_the_card(stack, api, anonymous, result)
    # What the processes print reaches the test's list a moment later.
    await asyncio.sleep(1.0)
    yield result


# -- the scans ----------------------------------------------------------------------


def _payloads(message: Message) -> Iterator[Payload]:
    """Every Payload inside a protobuf message, however deep (memo, search
    attributes, inputs, results, failures, headers)."""
    if isinstance(message, Payload):
        yield message
        return
    for descriptor, value in message.ListFields():
        if descriptor.type != descriptor.TYPE_MESSAGE:
            continue
        if descriptor.message_type.GetOptions().map_entry:
            items = [item for item in value.values() if isinstance(item, Message)]
        elif descriptor.is_repeated:
            items = list(value)
        else:
            items = [value]
        for item in items:
            yield from _payloads(item)


async def _readable(client: Client, message: Message) -> list[str]:
    """The message as JSON, and each of its payloads raw and decoded through the
    client's data converter (its codec, when payloads are encrypted)."""
    texts = [MessageToJson(message)]
    codec = client.data_converter.payload_codec
    for payload in _payloads(message):
        texts.append(payload.data.decode("latin-1"))
        texts += [value.decode("latin-1") for value in payload.metadata.values()]
        if codec is not None:
            (decoded,) = await codec.decode([payload])
            texts.append(decoded.data.decode("latin-1"))
    return texts


async def history_texts(client: Client) -> dict[str, list[str]]:
    """Every run of every workflow in the namespace: its description (memo,
    search attributes) and its whole history."""
    found: dict[str, list[str]] = {}
    # The whole session's workflows (hundreds): read a few at a time.
    reading = asyncio.Semaphore(16)

    async def read(workflow_id: str, run_id: str) -> None:
        handle = client.get_workflow_handle(workflow_id, run_id=run_id)
        async with reading:
            description = await handle.describe()
            history = await handle.fetch_history()
        texts = await _readable(client, description.raw_description)
        for event in history.events:
            texts += await _readable(client, event)
        found[f"{workflow_id} (run {run_id})"] = texts

    runs = [(execution.id, execution.run_id) async for execution in client.list_workflows()]
    await asyncio.gather(*(read(workflow_id, run_id) for workflow_id, run_id in runs))
    return found


def test_each_request_got_the_answer_a_client_expects(sent: Sent) -> None:
    assert len(sent.seen) > 100
    wrong = {
        seen.what: (seen.got, seen.expected) for seen in sent.seen if seen.got != seen.expected
    }
    assert wrong == {}
    # A card number as an Idempotency-Key is only hashed into the payment's id.
    assert sent.accepted_keys == {key: payment_id_for("demo", key) for key in sent.accepted_keys}


def test_no_answer_carries_a_card_number(sent: Sent) -> None:
    leaks = {seen.what: card_numbers_in(seen.text) for seen in sent.seen}
    assert {what: pans for what, pans in leaks.items() if pans} == {}


async def test_refused_requests_started_and_changed_nothing(
    sent: Sent, stack: Stack, temporal: Client
) -> None:
    before, after = sent.workflows_before, sent.workflows_after_refusals
    assert after == before
    for key in sent.refused_keys:
        handle = temporal.get_workflow_handle(payment_id_for("demo", key))
        with pytest.raises(RPCError) as missing:
            await handle.describe()
        assert missing.value.status == RPCStatusCode.NOT_FOUND
    headers = {"Authorization": f"Bearer {stack.api_key}"}
    async with httpx.AsyncClient(base_url=stack.api_url, headers=headers) as api:
        for name in ("paid", "manual"):
            was = sent.targets[name]
            now = (await api.get(f"/v1/payments/{was['id']}")).json()
            keep = ("status", "amount_captured", "amount_refunded", "refunds")
            assert {k: now[k] for k in keep} == {k: was[k] for k in keep}
        # The one webhook accepted (no card in what is kept) is the only new event.
        events = (await api.get(f"/v1/payments/{sent.targets['paid']['id']}/events")).json()
        old = sent.paid_events
        assert events["data"][: len(old)] == old
        assert [e["type"] for e in events["data"][len(old) :]] == ["payment.gateway_event"]
        assert events["data"][-1]["data"]["event_id"] == "evt_nocard_kept"


async def test_no_workflow_history_holds_a_card_number(sent: Sent, temporal: Client) -> None:
    histories = await history_texts(temporal)
    assert len(histories) >= 3
    leaks = {
        run: pans for run, texts in histories.items() if (pans := card_numbers_in("\n".join(texts)))
    }
    assert leaks == {}


def test_the_database_files_hold_no_card_number(sent: Sent, stack: Stack) -> None:
    files = [path for path in stack.data_dir.rglob("*") if path.is_file()]
    assert any(path.name.startswith("temporal.sqlite") for path in files)
    leaks = {
        path.name: pans
        for path in files
        if (pans := card_numbers_in(read_if_there(path).decode("latin-1")))
    }
    assert leaks == {}
    # The receipt's address: in the customer's mail, and nowhere else in the clear.
    mailbox = stack.data_dir / "mail"
    mailed = [path for path in files if path.is_relative_to(mailbox)]
    assert any(ADDRESS.encode() in read_if_there(path) for path in mailed)
    kept = [
        path.name
        for path in files
        if path not in mailed and ADDRESS.encode() in read_if_there(path)
    ]
    assert kept == []


async def test_the_raw_history_holds_no_receipt_address(sent: Sent, temporal: Client) -> None:
    raw = Client(temporal.service_client, namespace=temporal.namespace)
    handle = raw.get_workflow_handle(sent.targets["paid"]["id"])
    history = await handle.fetch_history()
    # The address went into the receipt activity's input: sealed there.
    kinds = [e.activity_task_scheduled_event_attributes.activity_type.name for e in history.events]
    assert "send_receipt" in kinds
    stored = b"".join(event.SerializeToString() for event in history.events)
    assert stored and ADDRESS.encode() not in stored
    description = await handle.describe()
    assert ADDRESS.encode() not in description.raw_description.SerializeToString()


def test_no_process_logged_a_card_number(sent: Sent, stack: Stack) -> None:
    lines: list[str] = getattr(stack, "output_lines", [])
    assert {line.split("]")[0] + "]" for line in lines} >= {
        "[api]",
        "[worker]",
        "[simulator]",
        "[temporal]",
    }
    leaks = [line for line in lines if card_numbers_in(line) or ADDRESS in line]
    assert leaks == []
