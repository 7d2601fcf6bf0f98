"""Replay every recorded history (tests/histories/*.json) against today's workflow code: a
change that running opportunities could not survive (non-deterministic) fails here.

Each history replays twice: with the runner workers use by default (no sandbox) and inside
the SDK's sandbox, whose guards fail a workflow that reads the clock, does I/O or imports
something non-deterministic, so the guard stays in the build while workers run without it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.workflow import NondeterminismError

from sales.authorization import Directory
from sales.opportunity import Opportunity
from sales.registry import COMMANDS
from worker import SIGNED_STARTS, sandboxed_runner
from workflows.authorization import DIRECTORIES, Authorization, DirectoryHolder
from workflows.mass_modify import MassModifyWorkflow
from workflows.messages import NO_INPUT
from workflows.opportunity import OpportunityWorkflow
from workflows.payloads import OneArgument
from workflows.projection import Projection
from workflows.subscription import SubscriptionWorkflow

BUILD_ID = "recorded"
REPLAY_QUEUE = f"replay-{BUILD_ID}"
"""The task queue a `Replayer` of this build id runs workflows on."""

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))
RECORDED = {path.stem: json.loads(path.read_text()) for path in HISTORIES}


PATHS = {"actions", "outcomes-won", "reopened-then-lost", "timers", "continue-as-new",
         "mass-modified-opportunity", "batched", "continue-as-new-under-load", "mass-modify",
         "updates-queried", "continue-as-new-under-updates", "reference-product",
         "stage-choices", "mass-next-stage", "value", "external-status",
         "subscription", "signed"}  # fmt: skip
"""The feature paths, each recorded on today's code by `tests/histories/record.py`."""


def test_every_feature_path_has_a_recorded_history() -> None:
    assert set(RECORDED) == PATHS


@pytest.mark.parametrize(
    "runner",
    [UnsandboxedWorkflowRunner(), sandboxed_runner()],
    ids=["as-workers-run", "in-sandbox"],
)
@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_history_replays_on_current_code(name: str, runner: WorkflowRunner) -> None:
    recorded = RECORDED[name]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    directory = Directory.model_validate(recorded.get("directory", {}))
    DIRECTORIES[REPLAY_QUEUE] = DirectoryHolder(directory)  # signed commands are judged by
    replayer = Replayer(  # the directory the recording's worker judged them by
        workflows=[OpportunityWorkflow, MassModifyWorkflow, SubscriptionWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=runner,
        interceptors=[OneArgument(COMMANDS), Authorization(COMMANDS, SIGNED_STARTS)],
        build_id=BUILD_ID,
        namespace="default",  # the recording's (a token names its audience)
    )
    await replayer.replay_workflow(history)


def test_writes_and_lookups_go_by_activity_task_while_queried() -> None:
    """`updates-queried`: updates, a burst of signals and queries all along; every write and
    every lookup went by activity task, none by local activity (whose result a query can put
    in a later task than replay does: `no-local-activities`)."""
    events = RECORDED["updates-queried"]["history"]["events"]
    markers = [e for e in events if "markerRecordedEventAttributes" in e]
    activities = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                  for e in events if "activityTaskScheduledEventAttributes" in e]  # fmt: skip
    updates = [e for e in events if "workflowExecutionUpdateAcceptedEventAttributes" in e]
    assert markers == [] and len(updates) == 41
    assert {"load_setup", "find_users", "project_opportunity"} <= set(activities)


def test_a_run_under_a_stream_of_updates_answers_them_all_and_continues() -> None:
    """`continue-as-new-under-updates`: once continuing was due, the run answered every update
    it had accepted (refusing the rest, to be sent again) and continued as new."""
    events = RECORDED["continue-as-new-under-updates"]["history"]["events"]
    last_task = max(n for n, e in enumerate(events) if e["eventType"].endswith("TASK_COMPLETED"))
    closing = [_event_name(e) for e in events[last_task + 1 :]]
    assert closing[-1] == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    names = [_event_name(e) for e in events]
    assert "core_local_activity" not in names  # no local activity (`no-local-activities`)
    assert names.count("WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == names.count(
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED"
    )


def _event_name(event: dict[str, Any]) -> str:
    """The event's type, or for a marker its name."""
    marker = event.get("markerRecordedEventAttributes")
    if marker is None:
        return str(event["eventType"]).removeprefix("EVENT_TYPE_")
    return str(marker["markerName"])


class _AfterATimer(Projection):
    async def write(self, *args: Any, **options: Any) -> list[Any]:
        await workflow.sleep(1)
        return await super().write(*args, **options)


@workflow.defn(name="Opportunity", sandboxed=False)
class _OpportunityProjectingAfterATimer(OpportunityWorkflow):
    """Today's workflow, but every projection waits for a timer first: a change that running
    opportunities could not survive."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = _AfterATimer()

    @workflow.run
    async def run(self, input: RawValue = NO_INPUT) -> Opportunity:
        return await super().run(input)


async def test_a_changed_workflow_fails_to_replay() -> None:
    """The replay test can fail: a recorded projection meets a timer."""
    recorded = RECORDED["updates-queried"]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=[_OpportunityProjectingAfterATimer], data_converter=pydantic_data_converter
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)
