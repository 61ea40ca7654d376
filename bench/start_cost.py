"""Where a ``202``'s milliseconds go (``make bench-start``): the same start of
a payment, layer by layer, one at a time and interleaved, on one dev server.

Issue 13 asks for the time to ``202`` within 5 ms of a bare
``start_workflow``. Four ways of starting, each ``--rounds`` times, in turn:

- ``bare``: the naive shape's ``start_workflow`` (its input padded to a
  payment's size, the plain pydantic converter, nothing else);
- ``sdk``: the start :meth:`PaymentService.start` makes, straight from the
  SDK: the payment's input, search attributes, memo and summary, through our
  encrypting codec (and, to price its parts, the same without the search
  attributes and without the memo and summary; and ``sdk_live``, the same on
  the payments' task queue, where the worker takes the payment up at once and
  competes for the cores, as it does for a real ``202``);
- ``in_process``: ``POST /v1/payments`` to the API's app in this process
  (``httpx.ASGITransport``): FastAPI, its middleware, dependencies and the
  route, without a socket or uvicorn;
- ``http``: ``POST /v1/payments`` to the stack's API over loopback, as a
  merchant sends it.

The first two start on a task queue no worker polls, so they measure the
start alone; ``sdk_live`` and the last two start real payments. Each round takes every way
once, in a shuffled order, with the same pause after each (the payments
started over the API settle meanwhile). The differences between neighbours are what
each layer adds. Writes ``bench/results/start_cost.json``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes
from temporalio.contrib.pydantic import pydantic_data_converter

from api.app import create_app
from bench.baseline import BarePaymentWorkflow, bare_input
from bench.compare import CARD, payment_sized_padding
from bench.measure import percentile
from bench.stacks import bench_stack
from payments import listing, memo, names
from payments.ids import fingerprint
from payments.models import CreatePayment, PaymentInput
from payments.settings import Settings

RESULTS = Path(__file__).parent / "results"
# No worker polls it: the workflows started there never run.
NOWHERE = "start-cost-nowhere"
LAYERS = ("bare", "sdk", "in_process", "http")
# The sdk start without one of its parts (what each part costs), and on the
# payments' own task queue (what the worker taking the payment up costs it).
VARIANTS = ("sdk_without_search_attributes", "sdk_without_memo", "sdk_live")
# After every start, the same pause: a payment started over the API settles
# meanwhile (about 0.13 s on a 2-core machine), so it does not slow the next
# start, and no way of starting comes after a pause more often than another.
PAUSE_S = 0.25


def _sdk_start(
    client: Client,
    request: CreatePayment,
    *,
    attributes_: bool = True,
    memo_: bool = True,
    task_queue: str = NOWHERE,
) -> Callable[[], Awaitable[Any]]:
    """The start PaymentService.start makes, on NOWHERE; without its search
    attributes or without its memo and summary when told; on the payments'
    own task queue, where the worker runs it, when given that."""

    async def start() -> None:
        payment_id = f"pay_{uuid.uuid4().hex[:24]}"
        now = datetime.now(UTC)
        workflow_input = PaymentInput(
            payment_id=payment_id,
            merchant_id="bench",
            request=request,
            request_fingerprint=fingerprint(request),
            created_at=now,
            authorization_window_seconds=604800,
            refund_window_seconds=15552000,
        )
        state = workflow_input.first_state()
        attributes: list[SearchAttributePair[Any]] = [
            SearchAttributePair(names.STATUS, state.status.value),
            SearchAttributePair(names.MERCHANT, "bench"),
            SearchAttributePair(names.AMOUNT, request.amount),
            SearchAttributePair(names.CURRENCY, request.currency),
            listing.created_at_attribute(now),
        ]
        await client.start_workflow(
            names.WORKFLOW_TYPE,
            workflow_input,
            id=payment_id,
            task_queue=task_queue,
            search_attributes=TypedSearchAttributes(attributes if attributes_ else []),
            memo=memo.at_start(state, workflow_input.request_fingerprint) if memo_ else None,
            static_summary="19.99 USD · pm_card_visa" if memo_ else None,
        )

    return start


async def run(args: argparse.Namespace) -> dict[str, Any]:
    shuffle = random.Random(args.seed)
    with bench_stack() as (stack, _):
        # The in-process app reads its settings as the stack's API does.
        os.environ.update(stack.env)
        bare = await Client.connect(
            stack.temporal_address,
            namespace=stack.namespace,
            data_converter=pydantic_data_converter,
        )
        ours = await stack.client()
        padding = payment_sized_padding()
        app = create_app(Settings(), client=ours)
        headers = {"Authorization": f"Bearer {stack.api_key}"}

        async def bare_start() -> None:
            await bare.start_workflow(
                BarePaymentWorkflow.run,
                bare_input(f"bare_{uuid.uuid4().hex}", padding),
                id=f"bare-{uuid.uuid4().hex}",
                task_queue=NOWHERE,
            )

        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://app", headers=headers
            ) as in_process,
            httpx.AsyncClient(base_url=stack.api_url, headers=headers, timeout=60) as http,
        ):

            async def post(client: httpx.AsyncClient) -> None:
                answer = await client.post("/v1/payments", json=CARD)
                if answer.status_code != 202:
                    raise RuntimeError(f"create answered {answer.status_code}: {answer.text}")

            request = CreatePayment.model_validate(CARD)
            starts: dict[str, Callable[[], Awaitable[Any]]] = {
                "bare": bare_start,
                "sdk": _sdk_start(ours, request),
                "sdk_without_search_attributes": _sdk_start(ours, request, attributes_=False),
                "sdk_without_memo": _sdk_start(ours, request, memo_=False),
                "sdk_live": _sdk_start(ours, request, task_queue=Settings().task_queue),
                "in_process": lambda: post(in_process),
                "http": lambda: post(http),
            }
            for start in starts.values():  # connections, caches, imports
                for _ in range(10):
                    await start()
            took: dict[str, list[float]] = {layer: [] for layer in (*LAYERS, *VARIANTS)}
            order = list(took)
            for number in range(args.rounds):
                shuffle.shuffle(order)
                for layer in order:
                    began = time.perf_counter()
                    await starts[layer]()
                    took[layer].append(1000 * (time.perf_counter() - began))
                    await asyncio.sleep(PAUSE_S)
                if (number + 1) % 50 == 0:
                    sys.stderr.write(f"{number + 1} of {args.rounds} rounds\n")
    p50 = {layer: statistics.median(values) for layer, values in took.items()}
    return {
        "rounds": args.rounds,
        "p50_ms": {layer: round(value, 2) for layer, value in p50.items()},
        "p95_ms": {layer: round(percentile(values, 0.95), 2) for layer, values in took.items()},
        "added_p50_ms": {
            "sdk over bare (input, search attributes, memo, codec)": round(
                p50["sdk"] - p50["bare"], 2
            ),
            "sdk_live over sdk (the worker taking the payment up)": round(
                p50["sdk_live"] - p50["sdk"], 2
            ),
            "in_process over sdk_live (FastAPI, middleware, the route)": round(
                p50["in_process"] - p50["sdk_live"], 2
            ),
            "http over in_process (uvicorn, the socket, httpx)": round(
                p50["http"] - p50["in_process"], 2
            ),
            "http over bare": round(p50["http"] - p50["bare"], 2),
        },
        "part_of_sdk_p50_ms": {
            "search attributes": round(p50["sdk"] - p50["sdk_without_search_attributes"], 2),
            "memo and summary": round(p50["sdk"] - p50["sdk_without_memo"], 2),
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=150)
    parser.add_argument("--seed", type=int, default=13, help="of the shuffled order")
    report = asyncio.run(run(parser.parse_args()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "start_cost.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
