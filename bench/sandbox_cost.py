"""What the workflow sandbox costs each cached run before it does anything: the modules it
imports again for the run (instead of sharing the worker's), and the Python memory of one
sandboxed instance (tracemalloc, 100 instances, no server needed). Fast and exact, unlike
`bench.memory`'s RSS: check a change to the workflow modules with it.

    .venv/bin/python -m bench.sandbox_cost [--passthrough MODULE,...]
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import sys
import tracemalloc
from typing import Any

import temporalio.converter
import temporalio.workflow
from temporalio.api.common.v1 import Payloads
from temporalio.api.failure.v1 import Failure
from temporalio.worker import WorkflowInstance, WorkflowInstanceDetails
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions
from temporalio.worker.workflow_sandbox._runner import _fake_info, _Instance

from bench.bare import BareCommands
from workflows.mass_modify import MassModifyWorkflow
from workflows.opportunity import OpportunityWorkflow

INSTANCES = 100


def details(cls: type) -> WorkflowInstanceDetails:
    """What the worker gives a new run, with the SDK's own placeholder info (as the sandbox
    validates a workflow when the worker starts)."""
    converter = temporalio.converter.DataConverter.default
    return WorkflowInstanceDetails(
        payload_converter_factory=converter._new_payload_converter,
        failure_converter_class=converter.failure_converter_class,
        interceptor_classes=[],
        defn=temporalio.workflow._Definition.must_from_class(cls),
        info=_fake_info,
        randomness_seed=-1,
        extern_functions={},
        disable_eager_activity_execution=False,
        worker_level_failure_exception_types=[],
        patch_activation_callback=None,
        last_completion_result=Payloads(),
        last_failure=Failure(),
    )


def reimported(instance: WorkflowInstance) -> list[str]:
    """Modules this run has a copy of its own of (not the worker's, not a restricted proxy)."""
    assert isinstance(instance, _Instance)
    modules: dict[str, Any] = instance.importer.new_modules
    return sorted(
        name
        for name, module in modules.items()
        if name != "__main__"
        and sys.modules.get(name) is not module
        and type(module).__name__ != "RestrictedModule"
    )


def kib_per_instance(runner: SandboxedWorkflowRunner, cls: type) -> float:
    runner.create_instance(details(cls))  # first imports and caches
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    kept = [runner.create_instance(details(cls)) for _ in range(INSTANCES)]
    gc.collect()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    del kept
    return sum(stat.size_diff for stat in after.compare_to(before, "filename")) / INSTANCES / 1024


async def main(passthrough: str | None) -> None:
    restrictions = SandboxRestrictions.default
    if passthrough:
        restrictions = restrictions.with_passthrough_modules(*passthrough.split(","))
    runner = SandboxedWorkflowRunner(restrictions=restrictions)
    for cls in (OpportunityWorkflow, MassModifyWorkflow, BareCommands):
        size = kib_per_instance(runner, cls)
        modules = reimported(runner.create_instance(details(cls)))
        print(f"{cls.__name__}: {size:.1f} KiB per run; imported again for each run: {modules}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--passthrough", metavar="MODULES", help="also pass these through")
    asyncio.run(main(parser.parse_args().passthrough))
