"""Bare Temporal, two workflows for ours to be measured against.

- The naive shape, ``BarePaymentWorkflow``: an input of the size of a real
  ``PaymentInput``, two regular activities in a row (authorize, then capture)
  whose inputs and results are the size of ours, started and awaited by the
  SDK. No API, no memo, no search attributes, no gateway: what Temporal itself
  costs for a payment done the obvious way.
- The floor, ``FloorPaymentWorkflow``: the same input, returned at once with no
  activity. What Temporal costs to start a workflow and hand back its result,
  which no payment can beat.

Their worker runs in a process of its own, as ours does:
``python -m bench.baseline --task-queue Q`` (Temporal from ``TEMPORAL_ADDRESS``).
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import signal
from datetime import timedelta
from typing import Any

from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Worker

READY = "baseline worker ready"


@activity.defn(name="bare_authorize")
async def bare_authorize(request: dict[str, Any]) -> dict[str, Any]:
    return {"operation_id": "auth_" + request["payment_id"], "amount": request["amount"], "n": 1}


@activity.defn(name="bare_capture")
async def bare_capture(request: dict[str, Any]) -> dict[str, Any]:
    return {"operation_id": "cap_" + request["payment_id"], "amount": request["amount"], "n": 1}


@workflow.defn(name="BarePaymentWorkflow")
class BarePaymentWorkflow:
    @workflow.run
    async def run(self, payment: dict[str, Any]) -> dict[str, Any]:
        options: dict[str, Any] = {
            "start_to_close_timeout": timedelta(seconds=30),
            "retry_policy": RetryPolicy(maximum_attempts=5),
        }
        step = {
            "payment_id": payment["payment_id"],
            "amount": payment["amount"],
            "currency": payment["currency"],
            "payment_method": payment["payment_method"],
        }
        authorized = await workflow.execute_activity(bare_authorize, step, **options)
        captured = await workflow.execute_activity(
            bare_capture, {**step, "authorization_id": authorized["operation_id"]}, **options
        )
        return {"payment_id": payment["payment_id"], "status": "succeeded", "capture": captured}


@workflow.defn(name="FloorPaymentWorkflow")
class FloorPaymentWorkflow:
    @workflow.run
    async def run(self, payment: dict[str, Any]) -> dict[str, Any]:
        return {"payment_id": payment["payment_id"], "status": "succeeded"}


def bare_input(payment_id: str, padding: int) -> dict[str, Any]:
    """An input as large as a real payment's, ``padding`` bytes of it filler."""
    return {
        "payment_id": payment_id,
        "amount": 1999,
        "currency": "usd",
        "payment_method": "pm_card_visa",
        "filler": "x" * padding,
    }


async def run_worker(task_queue: str, address: str, namespace: str) -> None:
    # As worker.py does for ours: bytecode on disk, so the sandbox does not
    # compile this module again for every workflow it starts.
    compileall.compile_file(__file__, quiet=2)
    client = await Client.connect(
        address, namespace=namespace, data_converter=pydantic_data_converter
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[BarePaymentWorkflow, FloorPaymentWorkflow],
        activities=[bare_authorize, bare_capture],
    ):
        print(READY, flush=True)
        await stop.wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--task-queue", required=True)
    args = parser.parse_args()
    asyncio.run(
        run_worker(
            args.task_queue,
            os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233"),
            os.environ.get("TEMPORAL_NAMESPACE", "default"),
        )
    )
