"""A client that drops an event stream releases everything it held: after
25 streams opened and abandoned mid-flight, the API process has no more
asyncio tasks than before (no history long-poll, no pump left behind)."""

from __future__ import annotations

import asyncio

import httpx
from support import running_stack, serving
from temporalio.client import Client

from api.app import create_app
from payments.settings import Settings


async def test_abandoned_streams_leave_nothing_behind(dev_client: Client, task_queue: str) -> None:
    settings = Settings(task_queue=task_queue, stream_keepalive_seconds=0.1)
    app = create_app(settings, client=dev_client)
    headers = {"Authorization": "Bearer sk_test_demo"}
    async with (
        serving(app) as url,
        running_stack(dev_client, task_queue),
        httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as http,
    ):
        created = await http.post(
            "/v1/payments",
            json={
                "amount": 500,
                "currency": "usd",
                "payment_method": "pm_card_visa",
                "capture_method": "manual",
            },
            headers={"Prefer": "wait=10"},
        )
        path = f"/v1/payments/{created.json()['id']}/stream"
        baseline = len(asyncio.all_tasks())
        # Each stream left behind would leave its tasks: 25 show a leak as
        # plainly as 100 did, in a quarter of the time.
        for _ in range(25):
            # follow=true keeps the stream open: it is waiting on the history.
            async with (
                httpx.AsyncClient(base_url=http.base_url, headers=headers) as one,
                one.stream("GET", path, params={"follow": "true"}) as response,
            ):
                # A keep-alive means the server sent the past and now waits on
                # Temporal's history long-poll: drop the stream right there.
                lines = response.aiter_lines()
                while not (await anext(lines)).startswith(": keep-alive"):
                    pass
        for _ in range(100):
            if len(asyncio.all_tasks()) <= baseline:
                break
            await asyncio.sleep(0.05)
        assert len(asyncio.all_tasks()) <= baseline, [t.get_coro() for t in asyncio.all_tasks()]
