"""Replay every recorded history (tests/histories/*.json) against today's workflow code: a
change that running opportunities could not survive (non-deterministic) fails here.

Each history replays twice: with the runner workers use by default (no sandbox) and inside
the SDK's sandbox, whose guards fail a workflow that reads the clock, does I/O or imports
something non-deterministic, so the guard stays in the build while workers run without it."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from temporalio import workflow
from temporalio.client import WorkflowHistory
from temporalio.common import RawValue
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.worker import Replayer, UnsandboxedWorkflowRunner, WorkflowRunner
from temporalio.worker.workflow_sandbox import SandboxedWorkflowRunner
from temporalio.workflow import NondeterminismError

from sales.opportunity import Opportunity
from workflows.mass_modify import MassModifyWorkflow
from workflows.messages import NO_INPUT
from workflows.opportunity import OpportunityWorkflow
from workflows.projection import Projection

HISTORIES = sorted((Path(__file__).parents[1] / "histories").glob("*.json"))
RECORDED = {path.stem: json.loads(path.read_text()) for path in HISTORIES}


PATHS = {"actions", "outcomes-won", "reopened-then-lost", "timers", "continue-as-new",
         "mass-modified-opportunity", "batched", "continue-as-new-under-load", "mass-modify",
         "local-projection", "continue-as-new-under-updates", "reference-product"}  # fmt: skip
"""The feature paths, each recorded on today's code by `tests/histories/record.py`."""


def test_every_feature_path_has_a_recorded_history() -> None:
    assert set(RECORDED) == PATHS


@pytest.mark.parametrize(
    "runner",
    [UnsandboxedWorkflowRunner(), SandboxedWorkflowRunner()],
    ids=["as-workers-run", "in-sandbox"],
)
@pytest.mark.parametrize("name", sorted(RECORDED))
async def test_history_replays_on_current_code(name: str, runner: WorkflowRunner) -> None:
    recorded = RECORDED[name]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=[OpportunityWorkflow, MassModifyWorkflow],
        data_converter=pydantic_data_converter,
        workflow_runner=runner,
    )
    await replayer.replay_workflow(history)


def test_updates_project_by_local_activity_and_a_burst_of_signals_by_activity_task() -> None:
    """`local-projection`: the opening's projection and each update wrote by local activity
    (a marker), the opening's setup (in the run's first task) and the burst of 60 signals by
    an activity task; so replay covers both branches."""
    events = RECORDED["local-projection"]["history"]["events"]
    local = [_local_activity(e["markerRecordedEventAttributes"])
             for e in events if "markerRecordedEventAttributes" in e]  # fmt: skip
    activities = [e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
                  for e in events if "activityTaskScheduledEventAttributes" in e]  # fmt: skip
    assert local.count("project_opportunity") == 3  # the opening, the two updates
    assert local.count("find_users") == 3  # the update's owner; the burst's, once a batch
    assert "project_opportunity" in activities and "load_setup" in activities


def test_a_run_under_a_stream_of_updates_closes_in_one_task() -> None:
    """`continue-as-new-under-updates`: once continuing was due, the last workflow task
    accepted updates, wrote their projection by local activity, answered them and continued
    as new."""
    events = RECORDED["continue-as-new-under-updates"]["history"]["events"]
    last_task = max(n for n, e in enumerate(events) if e["eventType"].endswith("TASK_COMPLETED"))
    closing = [_event_name(e) for e in events[last_task + 1 :]]
    assert closing[0] == "WORKFLOW_EXECUTION_UPDATE_ACCEPTED"
    assert closing[-1] == "WORKFLOW_EXECUTION_CONTINUED_AS_NEW"
    assert "core_local_activity" in closing
    assert closing.count("WORKFLOW_EXECUTION_UPDATE_ACCEPTED") == closing.count(
        "WORKFLOW_EXECUTION_UPDATE_COMPLETED"
    )


def _event_name(event: dict[str, Any]) -> str:
    """The event's type, or for a marker its name."""
    marker = event.get("markerRecordedEventAttributes")
    if marker is None:
        return str(event["eventType"]).removeprefix("EVENT_TYPE_")
    return str(marker["markerName"])


class _ByActivityTask(Projection):
    async def write(self, *args: Any, **options: Any) -> None:
        await super().write(*args, **{**options, "updates_waiting": False, "continuing": False})


@workflow.defn(name="Opportunity", sandboxed=False)
class _OpportunityProjectingByActivityTask(OpportunityWorkflow):
    """Today's workflow, but every projection goes through an activity task: a change that
    running opportunities could not survive."""

    def __init__(self) -> None:
        super().__init__()
        self.projection = _ByActivityTask()

    @workflow.run
    async def run(self, input: RawValue = NO_INPUT) -> Opportunity:
        return await super().run(input)


async def test_a_changed_workflow_fails_to_replay() -> None:
    """The replay test can fail: a recorded local-activity projection meets an activity task."""
    recorded = RECORDED["local-projection"]
    history = WorkflowHistory.from_json(recorded["workflow_id"], recorded["history"])
    replayer = Replayer(
        workflows=[_OpportunityProjectingByActivityTask], data_converter=pydantic_data_converter
    )
    with pytest.raises(NondeterminismError):
        await replayer.replay_workflow(history)


def _local_activity(marker: dict) -> str:
    """The activity type a local activity's marker records."""
    data = marker["details"]["data"]["payloads"][0]["data"]
    return str(json.loads(base64.b64decode(data))["activity_type"])
