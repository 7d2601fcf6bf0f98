"""An experiment of `bench.memory`: the service's worker (`worker.main`, unchanged) with
another workflow runner, to measure what the sandbox costs per cached workflow.

    .venv/bin/python -m bench.runner_worker passthrough:workflows[,MODULE...]
    .venv/bin/python -m bench.runner_worker unsandboxed

`passthrough:` adds modules to the sandbox's passthrough set (imported once, shared by every
run, instead of imported again for each run); `unsandboxed` runs workflows without it. Not a
configuration of the service.
"""

from __future__ import annotations

import functools
import sys

from temporalio.worker import UnsandboxedWorkflowRunner, Worker, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import worker


def runner(spec: str) -> WorkflowRunner:
    if spec == "unsandboxed":
        return UnsandboxedWorkflowRunner()
    kind, _, modules = spec.partition(":")
    if kind != "passthrough" or not modules:
        raise SystemExit(f"runner: 'unsandboxed' or 'passthrough:MODULE[,...]', not {spec!r}")
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*modules.split(","))
    return SandboxedWorkflowRunner(restrictions=restrictions)


def use_runner(spec: str) -> None:
    """Make `worker.build_worker` create its Worker with this runner (in this process)."""
    # `build_worker` creates its Worker through this module-level name.
    worker.Worker = functools.partial(Worker, workflow_runner=runner(spec))  # type: ignore[misc, assignment]


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    use_runner(sys.argv[1])
    worker.main()


if __name__ == "__main__":
    main()
