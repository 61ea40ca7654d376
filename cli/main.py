"""``payments``: the service from the command line (CONTRACT §13).

It talks to the API at ``PAYMENTS_API_URL`` (default http://127.0.0.1:8000)
with ``PAYMENTS_API_KEY`` (default sk_test_demo; ``reconcile`` uses
``PAYMENTS_OPERATOR_KEY``). ``--json`` prints the API's JSON as is. Exit 0 on
success, 1 on an API error (its message on stderr), 2 on a usage error.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import httpx
import typer
from httpx_sse import connect_sse

from cli import listen as listening
from cli import render
from cli.api import Api, CommandError, answer

app = typer.Typer(
    help="Payments from the command line: pay, read, act, reconcile, webhooks.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
webhooks = typer.Typer(
    help="A merchant's webhook endpoints and their deliveries.", no_args_is_help=True
)
app.add_typer(webhooks, name="webhooks")

Json = Annotated[bool, typer.Option("--json", help="Print the API's JSON as is.")]


def _run(body: Callable[[Api], Any], as_json: bool, show: Callable[[Any], None]) -> None:
    try:
        result = body(Api.from_env())
    except CommandError as err:
        render.err.print(f"error: {err}")
        raise typer.Exit(1) from None
    if as_json:
        render.as_json(result)
    else:
        show(result)


def _wait(seconds: int) -> dict[str, str]:
    return {"Prefer": f"wait={seconds}"}


@app.command()
def pay(
    amount: Annotated[int, typer.Option(help="In the currency's minor unit (1999 = 19.99).")],
    currency: str = "usd",
    method: Annotated[str, typer.Option(help="A payment method token.")] = "pm_card_visa",
    manual: Annotated[bool, typer.Option(help="Authorize only; capture later.")] = False,
    wait: Annotated[bool, typer.Option(help="Wait for the outcome (up to 60 s).")] = False,
    customer: Annotated[str | None, typer.Option(help="Your customer's id.")] = None,
    description: str | None = None,
    receipt_email: Annotated[
        str | None, typer.Option(help="E-mail the customer a receipt at this address.")
    ] = None,
    idempotency_key: Annotated[str | None, typer.Option(help="Retry safely with it.")] = None,
    json: Json = False,
) -> None:
    """Create a payment."""
    body: dict[str, Any] = {
        "amount": amount,
        "currency": currency,
        "payment_method": method,
        "capture_method": "manual" if manual else "automatic",
    }
    if customer:
        body["customer_id"] = customer
    if description:
        body["description"] = description
    if receipt_email:
        body["receipt_email"] = receipt_email
    headers = _wait(60) if wait else {}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key

    def create(api: Api) -> Any:
        if not wait:
            return api.call("POST", "/v1/payments", json=body, headers=headers)
        with render.err.status("waiting for the outcome…"):
            return api.call("POST", "/v1/payments", json=body, headers=headers)

    _run(create, json, render.payment)


@app.command("list")
def list_payments(
    status: str | None = None,
    customer: str | None = None,
    limit: int = 10,
    json: Json = False,
) -> None:
    """The merchant's payments, newest first."""
    params: dict[str, Any] = {"limit": limit}
    if status:
        params["status"] = status
    if customer:
        params["customer_id"] = customer
    _run(
        lambda api: api.call("GET", "/v1/payments", params=params),
        json,
        lambda page: render.payments(page["data"]),
    )


@app.command()
def show(payment_id: str, json: Json = False) -> None:
    """One payment."""
    _run(lambda api: api.call("GET", f"/v1/payments/{payment_id}"), json, render.payment)


@app.command()
def events(payment_id: str, json: Json = False) -> None:
    """A payment's events, oldest first (its Temporal history)."""
    _run(
        lambda api: api.call("GET", f"/v1/payments/{payment_id}/events"),
        json,
        lambda page: render.events(page["data"]),
    )


@app.command()
def tail(
    payment_id: str,
    follow: Annotated[bool, typer.Option(help="Go on after it settles, until it closes.")] = False,
    json: Json = False,
) -> None:
    """A payment's events as they happen, until it settles."""
    api = Api.from_env()
    params = {"follow": "true"} if follow else {}
    try:
        with (
            api.client(timeout=3700) as http,
            connect_sse(http, "GET", f"/v1/payments/{payment_id}/stream", params=params) as stream,
        ):
            if not stream.response.is_success:
                stream.response.read()
                answer(stream.response)
            for message in stream.iter_sse():
                if not message.data:
                    continue
                event = message.json()
                print(message.data if json else render.event_line(event), flush=True)
    except CommandError as err:
        render.err.print(f"error: {err}")
        raise typer.Exit(1) from None
    except httpx.HTTPError as err:
        render.err.print(f"error: cannot reach the API at {api.url}: {err}")
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        raise typer.Exit(0) from None


@app.command()
def capture(payment_id: str, amount: int | None = None, json: Json = False) -> None:
    """Capture an authorized payment (all of it, or --amount)."""
    body = {"amount": amount} if amount is not None else {}
    _run(
        lambda api: api.call(
            "POST", f"/v1/payments/{payment_id}/capture", json=body, headers=_wait(10)
        ),
        json,
        render.payment,
    )


@app.command()
def cancel(payment_id: str, reason: str = "requested_by_customer", json: Json = False) -> None:
    """Cancel before capture (the authorization is voided)."""
    _run(
        lambda api: api.call(
            "POST", f"/v1/payments/{payment_id}/cancel", json={"reason": reason}, headers=_wait(10)
        ),
        json,
        render.payment,
    )


@app.command()
def refund(
    payment_id: str,
    amount: Annotated[int | None, typer.Option(help="Default: all that remains.")] = None,
    reason: str | None = None,
    json: Json = False,
) -> None:
    """Refund part or all of a captured payment."""
    body: dict[str, Any] = {}
    if amount is not None:
        body["amount"] = amount
    if reason:
        body["reason"] = reason

    def show_refund(refund: dict[str, Any]) -> None:
        render.out.print(f"{refund['id']}: {refund['status']}, amount {refund['amount']}")

    _run(
        lambda api: api.call(
            "POST", f"/v1/payments/{payment_id}/refunds", json=body, headers=_wait(10)
        ),
        json,
        show_refund,
    )


def _seconds(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1] in units:
            return float(text[:-1]) * units[text[-1]]
        return float(text)
    except (ValueError, IndexError):
        raise typer.BadParameter("a duration such as 90s, 15m, 1h or 2d") from None


@app.command()
def reconcile(
    lookback: Annotated[str, typer.Option(help="How far back: 90s, 15m, 1h, 2d.")] = "1h",
    json: Json = False,
) -> None:
    """Run a reconciliation now (operator key) and print its report."""
    seconds = _seconds(lookback)
    _run(
        lambda api: api.call(
            "POST",
            "/v1/reconciliation/runs",
            operator=True,
            json={"lookback_seconds": seconds},
        ),
        json,
        render.reconciliation,
    )


# -- webhooks ---------------------------------------------------------------

_PATH = "/v1/webhook_endpoints"


def _events(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


@webhooks.command("create")
def webhooks_create(
    url: Annotated[str, typer.Option(help="Where the events are POSTed.")],
    events: Annotated[str, typer.Option(help="Event types, comma separated, or *.")] = "*",
    description: str | None = None,
    json: Json = False,
) -> None:
    """Register an endpoint; prints its secret (this once)."""
    body: dict[str, Any] = {"url": url, "enabled_events": _events(events)}
    if description:
        body["description"] = description
    _run(lambda api: api.call("POST", _PATH, json=body), json, render.endpoint)


@webhooks.command("list")
def webhooks_list(limit: int = 10, json: Json = False) -> None:
    """The merchant's endpoints, newest first."""
    _run(
        lambda api: api.call("GET", _PATH, params={"limit": limit}),
        json,
        lambda page: render.endpoints(page["data"]),
    )


@webhooks.command("show")
def webhooks_show(endpoint_id: str, json: Json = False) -> None:
    """One endpoint."""
    _run(lambda api: api.call("GET", f"{_PATH}/{endpoint_id}"), json, render.endpoint)


@webhooks.command("delete")
def webhooks_delete(endpoint_id: str, json: Json = False) -> None:
    """Remove an endpoint; its pending deliveries stop."""
    _run(
        lambda api: api.call("DELETE", f"{_PATH}/{endpoint_id}"),
        json,
        lambda body: render.out.print(f"{body['id']} deleted"),
    )


@webhooks.command("rotate")
def webhooks_rotate(endpoint_id: str, json: Json = False) -> None:
    """A new secret; the old one keeps signing for 24 hours."""
    _run(
        lambda api: api.call("POST", f"{_PATH}/{endpoint_id}/rotate_secret"),
        json,
        render.endpoint,
    )


@webhooks.command("deliveries")
def webhooks_deliveries(endpoint_id: str, limit: int = 10, json: Json = False) -> None:
    """An endpoint's deliveries, newest first."""
    _run(
        lambda api: api.call("GET", f"{_PATH}/{endpoint_id}/deliveries", params={"limit": limit}),
        json,
        lambda page: render.deliveries(page["data"]),
    )


@webhooks.command("retry")
def webhooks_retry(endpoint_id: str, event_id: str, json: Json = False) -> None:
    """Deliver an event to an endpoint again, now."""
    _run(
        lambda api: api.call("POST", f"{_PATH}/{endpoint_id}/deliveries/{event_id}/retry"),
        json,
        lambda body: render.out.print(f"{body['event_id']} to {body['endpoint_id']}: pending"),
    )


@app.command()
def listen(
    forward_to: Annotated[str, typer.Option(help="Your local app's webhook URL.")],
    events: Annotated[str, typer.Option(help="Event types, comma separated, or *.")] = "*",
) -> None:
    """Receive the merchant's webhooks here: check each signature, print it and
    forward it to --forward-to. The endpoint it registers is removed on Ctrl-C;
    if this is killed outright, its lease lapses and the service removes it
    within a minute."""
    api = Api.from_env()
    receiver = listening.Receiver(forward_to, lambda line: render.out.print(line))
    server = listening.serve(receiver)
    port = server.server_address[1]
    body = {
        "url": f"http://127.0.0.1:{port}/",
        "enabled_events": _events(events),
        "description": listening.description(),
        "lease_seconds": listening.LEASE_SECONDS,
    }
    try:
        made = api.call("POST", _PATH, json=body)
    except CommandError as err:
        listening.stop(server)
        render.err.print(f"error: {err}")
        raise typer.Exit(1) from None
    receiver.secret = made["secret"]
    endpoint_id = made["id"]
    render.out.print(f"Ready: forwarding to {forward_to} (endpoint {endpoint_id}). Ctrl-C to stop.")

    def renew() -> None:
        try:
            api.call(
                "POST", f"{_PATH}/{endpoint_id}", json={"lease_seconds": body["lease_seconds"]}
            )
        except CommandError as err:
            render.err.print(f"could not renew the endpoint's lease: {err}")

    try:
        listening.until_stopped(renew)
    finally:
        listening.stop(server)
        receiver.close()
        try:
            api.call("DELETE", f"{_PATH}/{endpoint_id}")
            render.out.print(f"Removed endpoint {endpoint_id}.")
        except CommandError as err:
            render.err.print(f"could not remove endpoint {endpoint_id}: {err}")


def main() -> None:
    app()
