"""How the command shows what the API answered: rich tables, or the JSON as is."""

from __future__ import annotations

import json
from typing import Any

from rich.console import Console
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

# Minor units of the currencies people try first; others print in minor units.
_DECIMALS = {"jpy": 0, "krw": 0, "kwd": 3, "bhd": 3}


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return "-"
    places = _DECIMALS.get(currency, 2)
    return f"{amount / 10**places:.{places}f} {currency.upper()}"


def as_json(body: Any) -> None:
    print(json.dumps(body, indent=2))


def payment(body: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    currency = body.get("currency", "usd")
    table.add_row("id", body["id"])
    table.add_row("status", body["status"])
    table.add_row("amount", money(body.get("amount"), currency))
    table.add_row("captured", money(body.get("amount_captured"), currency))
    table.add_row("refunded", money(body.get("amount_refunded"), currency))
    if body.get("receipt_email"):
        table.add_row("receipts to", body["receipt_email"])
    failure = body.get("failure")
    if failure:
        table.add_row(
            "failure",
            f"{failure.get('decline_code') or failure.get('code')}: {failure.get('message', '')}",
        )
    table.add_row("temporal ui", body.get("links", {}).get("temporal_ui", ""))
    out.print(table)
    redirect = (body.get("next_action") or {}).get("redirect_to_url") or {}
    if redirect.get("url"):
        # 3-D Secure: where to send the customer, on one line to copy whole.
        out.print(f"next action: customer confirms at {redirect['url']}", soft_wrap=True)


def payments(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "status", "amount", "customer", "created")
    for body in rows:
        table.add_row(
            body["id"],
            body["status"],
            money(body["amount"], body["currency"]),
            body.get("customer_id") or "",
            body["created_at"],
        )
    out.print(table)


def _detail(event: dict[str, Any]) -> str:
    """The one thing worth a glance in an event's data: its amount, reason or code."""
    data = event.get("data", {})
    return str(data.get("amount", data.get("reason", data.get("code", ""))))


def event_line(event: dict[str, Any]) -> str:
    return f"{event['seq']:>4}  {event['type']:<26} {event['at']}  {_detail(event)}"


def events(rows: list[dict[str, Any]]) -> None:
    table = Table("seq", "type", "at", "detail")
    for event in rows:
        table.add_row(str(event["seq"]), event["type"], event["at"], _detail(event))
    out.print(table)


def endpoint(body: dict[str, Any]) -> None:
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column()
    for field in ("id", "url", "status", "description", "created_at", "expires_at"):
        if body.get(field) is not None:
            table.add_row(field, str(body[field]))
    table.add_row("events", ", ".join(body.get("enabled_events", [])))
    if "secret" in body:
        table.add_row("secret", body["secret"])
    out.print(table)
    if "secret" in body:
        err.print("Keep the secret: it is shown this once (and again on rotation).")


def endpoints(rows: list[dict[str, Any]]) -> None:
    table = Table("id", "url", "status", "events", "description")
    for body in rows:
        table.add_row(
            body["id"],
            body["url"],
            body["status"],
            ", ".join(body["enabled_events"]),
            body.get("description") or "",
        )
    out.print(table)


def deliveries(rows: list[dict[str, Any]]) -> None:
    table = Table("event", "type", "payment", "status", "attempts", "last", "next attempt")
    for body in rows:
        last = body.get("last_status_code") or body.get("last_error") or ""
        table.add_row(
            body["event_id"],
            body["type"],
            body["payment_id"],
            body["status"],
            str(body["attempts"]),
            str(last),
            body.get("next_attempt_at") or "",
        )
    out.print(table)


def reconciliation(body: dict[str, Any]) -> None:
    out.print(f"run {body.get('id', '')}: {body.get('status')}, checked {body.get('checked', 0)}")
    for mismatch in body.get("mismatches", []):
        out.print(f"  mismatch: {json.dumps(mismatch)}")
    if body.get("in_flight"):
        out.print(f"  in flight (next run): {', '.join(body['in_flight'])}")
