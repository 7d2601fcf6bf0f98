"""An experiment of `bench.memory`: the service's worker (`worker.main`, unchanged) with
modules passed through the workflow sandbox, to measure what the sandbox's per-run imports
cost per cached workflow. (Sandbox on or off is the service's own setting,
`OPPORTUNITIES_WORKFLOW_SANDBOX`.)

    .venv/bin/python -m bench.runner_worker passthrough:workflows[,MODULE...]

`passthrough:` adds modules to the sandbox's passthrough set (imported once, shared by every
run, instead of imported again for each run). Not a configuration of the service.
"""

from __future__ import annotations

import sys

from temporalio.worker import WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner, SandboxRestrictions

import worker


def runner(spec: str) -> WorkflowRunner:
    kind, _, modules = spec.partition(":")
    if kind != "passthrough" or not modules:
        raise SystemExit(f"runner: 'passthrough:MODULE[,...]', not {spec!r}")
    restrictions = SandboxRestrictions.default.with_passthrough_modules(*modules.split(","))
    return SandboxedWorkflowRunner(restrictions=restrictions)


def use_runner(spec: str) -> None:
    """Make `worker.build_worker` use this runner (in this process): it asks
    `worker.workflow_runner()` for the one the setting chooses."""
    chosen = runner(spec)
    worker.workflow_runner = lambda: chosen


def main() -> None:
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    use_runner(sys.argv[1])
    worker.main()


if __name__ == "__main__":
    main()
