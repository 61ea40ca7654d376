"""The workflow sandbox, at less cost per workflow (issue 13, ``make bench``).

The SDK's sandbox is what catches non-deterministic workflow code, so every
workflow runs in it. Two of its costs are paid per payment for nothing here:

- **Reading the workflow modules again.** The sandbox imports each workflow's
  module afresh for every workflow it starts (or takes back after eviction),
  so that no state leaks between them: it looks the file up, reads its
  bytecode from disk and unmarshals it, every time. :class:`WorkflowCode`
  keeps each module's code object from its first import and hands the same
  one out again; the module is still executed anew, in its own namespace, as
  the sandbox wants. A worker also runs the code it started with, not a file
  changed under it mid-run.
- **Asking the sandbox for a serialization context.** Before it encodes or
  decodes a payload sequence of an activation, the SDK steps into the sandbox
  (compiling a line of code and patching the importer each time) to ask the
  workflow which serialization context applies: some sixty times a payment.
  A context changes nothing unless a converter, the codec or external storage
  reads it. :func:`workflow_runner` checks that of the data converter it is
  given and, when none does, answers from outside: the worker's own converter
  (no context) and the store context of the workflow itself.

Both keep the workflow's own code inside the sandbox, restricted as before.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import CodeType, ModuleType
from typing import Any

from temporalio import workflow
from temporalio.bridge.proto.workflow_activation import WorkflowActivation
from temporalio.bridge.proto.workflow_completion import WorkflowActivationCompletion
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    SerializationContext,
    StorageDriverStoreContext,
    StorageDriverWorkflowInfo,
    WorkflowSerializationContext,
)
from temporalio.worker import (
    WorkflowInstance,
    WorkflowInstanceDetails,
    WorkflowRunner,
)
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner


def reads_context(data_converter: DataConverter) -> bool:
    """Whether any part of ``data_converter`` would act on a serialization or
    store context. The SDK's own test: a converter none of whose parts takes
    a context comes back unchanged (the same object) from ``with_context``."""
    probes = [
        WorkflowSerializationContext(namespace="probe", workflow_id="probe"),
        ActivitySerializationContext(
            namespace="probe",
            workflow_id="probe",
            workflow_type="probe",
            activity_type="probe",
            activity_task_queue="probe",
            activity_id="probe",
            is_local=True,
        ),
    ]
    return data_converter.external_storage is not None or any(
        data_converter.with_context(probe) is not data_converter for probe in probes
    )


def workflow_runner(workflows: Sequence[type], data_converter: DataConverter) -> WorkflowRunner:
    """The sandbox for ``workflows``: their packages' code kept once for the
    process (:class:`WorkflowCode`), and the context questions answered from
    outside when ``data_converter`` ignores the answers (asked inside otherwise)."""
    _CODE.keep(cls.__module__.rpartition(".")[0] or cls.__module__ for cls in workflows)
    if reads_context(data_converter):
        return SandboxedWorkflowRunner()
    return _ContextFree()


@dataclass(frozen=True)
class _ContextFree(SandboxedWorkflowRunner):
    """The SDK's sandbox, a subclass so that what looks for it (the SDK's
    debug mode relaxing it, ``dataclasses.replace``) still finds it."""

    def create_instance(self, det: WorkflowInstanceDetails) -> WorkflowInstance:
        return _ContextFreeInstance(super().create_instance(det))


class _ContextFreeInstance(WorkflowInstance):
    """A sandboxed instance; only the two context questions stay outside."""

    def __init__(self, sandboxed: WorkflowInstance) -> None:
        self._sandboxed = sandboxed
        info = sandboxed.get_info()
        self._store = StorageDriverStoreContext(
            target=StorageDriverWorkflowInfo(
                id=info.workflow_id,
                run_id=info.run_id,
                type=info.workflow_type,
                namespace=info.namespace,
            )
        )

    def activate(self, act: WorkflowActivation) -> WorkflowActivationCompletion:
        return self._sandboxed.activate(act)

    def get_serialization_context(self, command_info: Any) -> SerializationContext | None:
        return None  # the worker's converter, as it is: nothing in it reads one

    def get_external_store_context(self, command_info: Any) -> StorageDriverStoreContext:
        return self._store

    def get_info(self) -> workflow.Info:
        return self._sandboxed.get_info()

    def get_thread_id(self) -> int | None:
        return self._sandboxed.get_thread_id()


class WorkflowCode(importlib.abc.MetaPathFinder):
    """Finds the modules of the packages it keeps (those holding the worker's
    workflow classes: ``workflows`` and what is below it) once per process,
    and from then on hands out the code object it compiled: an import in the
    sandbox executes it in a fresh module without touching the disk."""

    def __init__(self) -> None:
        self._packages: set[str] = set()
        self._found: dict[str, tuple[importlib.machinery.ModuleSpec, CodeType]] = {}

    def keep(self, packages: Iterable[str]) -> None:
        """Keep the code of ``packages`` from now on (in this process)."""
        self._packages.update(packages)
        if self not in sys.meta_path:
            sys.meta_path.insert(0, self)

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None,
        target: ModuleType | None = None,
    ) -> importlib.machinery.ModuleSpec | None:
        if not any(fullname == kept or fullname.startswith(kept + ".") for kept in self._packages):
            return None
        found = self._found.get(fullname)
        if found is None:
            spec = importlib.machinery.PathFinder.find_spec(fullname, path)
            if spec is None or not isinstance(spec.loader, importlib.abc.InspectLoader):
                return spec
            code = spec.loader.get_code(fullname)
            if code is None:
                return spec
            found = self._found[fullname] = (spec, code)
        spec, code = found
        return importlib.util.spec_from_file_location(
            fullname,
            spec.origin,
            loader=_Compiled(code, spec.loader),
            # A package's __path__ of its own: one module's change stays its own.
            submodule_search_locations=(
                None
                if spec.submodule_search_locations is None
                else list(spec.submodule_search_locations)
            ),
        )


class _Compiled(importlib.abc.InspectLoader):
    def __init__(self, code: CodeType, source: Any) -> None:
        self._code = code
        self._source = source  # the file's own loader, for tracebacks' source lines

    def exec_module(self, module: ModuleType) -> None:
        exec(self._code, module.__dict__)

    def get_code(self, fullname: str) -> CodeType:
        return self._code

    def get_source(self, fullname: str) -> str | None:
        return self._source.get_source(fullname)  # type: ignore[no-any-return]

    def is_package(self, fullname: str) -> bool:
        return bool(self._source.is_package(fullname))


_CODE = WorkflowCode()
