"""The worker's sandbox (payments/sandbox.py) is still the SDK's sandbox: a
workflow that reaches for the wall clock is stopped, each workflow gets its
module afresh, and a data converter that reads a serialization context is
given one as before. Only what it costs per workflow changed (``make bench``)."""

from __future__ import annotations

import asyncio
import dataclasses
import importlib
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from types import ModuleType

from temporalio import workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.converter import (
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)
from temporalio.worker import Worker
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner

# The sandbox imports this module afresh for the probes: the rest comes from outside.
with workflow.unsafe.imports_passed_through():
    import pytest

    from payments.codec import EncryptionCodec, generate_key
    from payments.sandbox import WorkflowCode, reads_context, workflow_runner

# Module state: a fresh module per workflow starts it empty every time.
_RUNS: list[str] = []


@workflow.defn(name="SandboxProbeModuleState")
class ModuleStateProbe:
    @workflow.run
    async def run(self) -> int:
        _RUNS.append(workflow.info().workflow_id)
        return len(_RUNS)


@workflow.defn(name="SandboxProbeWallClock")
class WallClockProbe:
    @workflow.run
    async def run(self) -> str:
        return datetime.now().isoformat()  # what the sandbox exists to stop


class _ContextCodec(PayloadCodec, WithSerializationContext):
    """A codec that wants to know whose payloads it seals."""

    seen: list[SerializationContext] = []

    def __init__(self, context: SerializationContext | None = None) -> None:
        self._context = context

    def with_context(self, context: SerializationContext) -> _ContextCodec:
        return _ContextCodec(context)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self._context is not None:
            _ContextCodec.seen.append(self._context)
        return list(payloads)

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        return list(payloads)


def _client_with(client: Client, codec: PayloadCodec) -> Client:
    converter = dataclasses.replace(pydantic_data_converter, payload_codec=codec)
    return Client(client.service_client, namespace=client.namespace, data_converter=converter)


async def test_each_workflow_gets_its_module_afresh(dev_client: Client, task_queue: str) -> None:
    workflows = [ModuleStateProbe]
    async with Worker(
        dev_client,
        task_queue=task_queue,
        workflows=workflows,
        workflow_runner=workflow_runner(workflows, dev_client.data_converter),
        max_cached_workflows=0,
    ):
        counts = [
            await dev_client.execute_workflow(
                ModuleStateProbe.run, id=f"probe-{uuid.uuid4()}", task_queue=task_queue
            )
            for _ in range(3)
        ]
    assert counts == [1, 1, 1]


async def test_the_wall_clock_is_still_out_of_reach(dev_client: Client, task_queue: str) -> None:
    workflows = [WallClockProbe]
    async with Worker(
        dev_client,
        task_queue=task_queue,
        workflows=workflows,
        workflow_runner=workflow_runner(workflows, dev_client.data_converter),
    ):
        handle = await dev_client.start_workflow(
            WallClockProbe.run,
            id=f"probe-{uuid.uuid4()}",
            task_queue=task_queue,
            execution_timeout=timedelta(seconds=30),
        )
        failure = ""
        for _ in range(100):
            async for event in handle.fetch_history_events():
                if event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_FAILED:
                    failure = event.workflow_task_failed_event_attributes.failure.message
            if failure:
                break
            await asyncio.sleep(0.1)
        await handle.terminate("probed")
    assert "Cannot access datetime.datetime.now" in failure


def test_the_workers_converter_reads_no_context() -> None:
    sealed = dataclasses.replace(
        pydantic_data_converter, payload_codec=EncryptionCodec([generate_key("k")])
    )
    assert not reads_context(sealed)
    runner = workflow_runner([ModuleStateProbe], sealed)
    assert type(runner) is not SandboxedWorkflowRunner
    # Still the sandbox to what looks for one: the SDK's debug mode relaxes it
    # by isinstance and dataclasses.replace.
    assert isinstance(runner, SandboxedWorkflowRunner)
    relaxed = dataclasses.replace(runner, restrictions=runner.restrictions)
    assert type(relaxed) is type(runner)


async def test_a_converter_that_reads_context_is_asked_inside_as_before(
    dev_client: Client, task_queue: str
) -> None:
    client = _client_with(dev_client, _ContextCodec())
    assert reads_context(client.data_converter)
    runner = workflow_runner([ModuleStateProbe], client.data_converter)
    assert type(runner) is SandboxedWorkflowRunner
    _ContextCodec.seen.clear()
    workflow_id = f"probe-{uuid.uuid4()}"
    async with Worker(
        client, task_queue=task_queue, workflows=[ModuleStateProbe], workflow_runner=runner
    ):
        await client.execute_workflow(ModuleStateProbe.run, id=workflow_id, task_queue=task_queue)
    # The worker sealed the run's result under the workflow's own context.
    assert WorkflowSerializationContext(namespace=client.namespace, workflow_id=workflow_id) in (
        _ContextCodec.seen
    )


def test_kept_code_is_read_once_and_run_in_a_fresh_module(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    package = tmp_path / "keptprobe"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "probe.py").write_text("VERSION = 1\nSTATE: list[int] = []\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    code = WorkflowCode()
    code.keep(["keptprobe"])

    first = _import_afresh("keptprobe.probe", monkeypatch)
    first.STATE.append(1)
    (package / "probe.py").write_text("VERSION = 2\nSTATE: list[int] = []\n")
    again = _import_afresh("keptprobe.probe", monkeypatch)

    assert again is not first
    assert again.STATE == []  # executed anew
    assert again.VERSION == 1  # from the code kept, not the file changed since
    assert again.__file__ == str(package / "probe.py")


def _import_afresh(name: str, monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    for module in [m for m in sys.modules if m == "keptprobe" or m.startswith("keptprobe.")]:
        monkeypatch.delitem(sys.modules, module)
    return importlib.import_module(name)
